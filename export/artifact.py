"""Writes a versioned, parity-checked artifact: SavedModel + ONNX + manifest.

Layout (TF Serving's model base path convention)::

    <base_dir>/<name>/<version>/
        saved_model.pb, variables/, fingerprint.pb   signature "serving_default"
        model.onnx                                   converted from that signature
        manifest.json                                specs, versions, parity report
        golden.npz, golden.json                      a fixed batch and Keras' outputs
        assets.extra/tf_serving_warmup_requests      TF Serving warm-up (export.warmup)
        vocab/                                       optional id tables (extra_files)

The version folder is built under ``<base_dir>/<name>/.tmp-<version>-<pid>-<rand>``
and renamed into place only after both parity checks pass, so a half-written or
failed export never appears as a version (TF Serving only loads numeric folders).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfrec.io import atomic_write_json, jsonable

ONNX_OPSET = 17
PARITY_BATCH_SIZES = (1, 37)
MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
_TMP_PREFIX = ".tmp-"


class ExportError(RuntimeError):
    """The export failed; no version folder was written."""


def next_version(model_dir: str | os.PathLike) -> int:
    """1 + the largest numeric version under ``model_dir`` (1 when there is none)."""
    path = Path(model_dir)
    versions = (
        [int(p.name) for p in path.iterdir() if p.name.isdigit()]
        if path.is_dir()
        else []
    )
    return max(versions, default=0) + 1


def _spec(tensor) -> dict:
    shape = [None if d is None else int(d) for d in tensor.shape]
    dtype = tensor.dtype if isinstance(tensor.dtype, str) else tensor.dtype.name
    return {"name": tensor.name.split(":")[0], "dtype": str(dtype), "shape": shape}


def model_io_specs(model) -> tuple[list[dict], list[dict]]:
    """Input and output specs of a functional Keras model with dict I/O."""
    inputs = model.input if isinstance(model.input, dict) else None
    outputs = model.output if isinstance(model.output, dict) else None
    if inputs is None or outputs is None:
        raise ExportError(
            f"Model {model.name!r} must take and return dicts of named tensors (the "
            "registry's convention); got "
            f"inputs={type(model.input).__name__}, outputs={type(model.output).__name__}."
        )
    ins = [dict(_spec(t), name=k) for k, t in sorted(inputs.items())]
    outs = [dict(_spec(t), name=k) for k, t in sorted(outputs.items())]
    return ins, outs


_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
STALE_SECONDS = 3600


def _clean_stale_tmp(model_dir: Path) -> None:
    """Removes temporary folders of dead exports: same host, process gone, and
    untouched for an hour (a shared ``saved_models/`` may serve several hosts)."""
    if not model_dir.is_dir():
        return
    for p in model_dir.iterdir():
        m = re.match(rf"{re.escape(_TMP_PREFIX)}\d+-([A-Za-z0-9]+)-(\d+)-", p.name)
        if not m or m.group(1) != _HOST:
            continue
        pid = int(m.group(2))
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive and time.time() - p.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(p, ignore_errors=True)


def _versions() -> dict[str, str]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    import tfrec

    return {
        "tfrec": tfrec.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def export_model(
    model,
    name: str,
    *,
    base_dir: str | os.PathLike = "saved_models",
    version: int | None = None,
    example_inputs: Callable[[int, np.random.Generator], Mapping[str, np.ndarray]],
    atol: float = 1e-5,
    rtol: float = 1e-5,
    tolerance_reason: str = "",
    model_config: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike] | None = None,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    opset: int = ONNX_OPSET,
    seed: int = 0,
    input_notes: Mapping[str, str] | None = None,
    oov_policy: str | None = None,
    catalogue: Mapping[str, Any] | None = None,
) -> Path:
    """Exports ``model`` to ``<base_dir>/<name>/<version>/`` and verifies parity.

    Args:
        model: functional ``keras.Model`` with dict inputs and dict outputs.
        name: model folder name (``saved_models/<name>``).
        base_dir: TF Serving model base path.
        version: version number; default is the next free one.
        example_inputs: ``(batch_size, rng) -> dict`` of valid inputs; parity is
            checked at each of ``batch_sizes`` (two sizes prove the batch axis is
            dynamic in both artifacts).
        atol, rtol: parity tolerance (per model, from the registry); an output
            passes when ``|x - ref| <= atol + rtol * |ref|`` everywhere.
        tolerance_reason: why this tolerance, recorded in the manifest.
        model_config: what built the model (registry name, kwargs, data set, ...),
            recorded in the manifest.
        extra_files: ``{relative path in the artifact: source file}`` copied in
            (vocabularies).
        opset: ONNX opset.
        seed: seed of the parity inputs.
        input_notes: ``{input name: what it holds}`` (a raw id, or an index into
            ``vocab/items.tsv``), recorded in each manifest input's ``meaning``.
        oov_policy: what unknown ids or strings do in this model (default: the
            all-zero embedding of `tfrec.layers.IdEmbedding`).
        catalogue: item-side inputs of every item (``{input: [N, ...]}``) and/or
            ``num_items``, for the ``recommend`` signature (`export.recommend`).

    Returns:
        The path of the new version folder.

    Raises:
        ExportError: conversion or parity failed, or the version exists; nothing
            was written in that case.
    """
    ins, outs = model_io_specs(model)
    for spec in ins:
        if input_notes and spec["name"] in input_notes:
            spec["meaning"] = input_notes[spec["name"]]

    def make_batches():
        rng = np.random.default_rng(seed)
        batches = [dict(example_inputs(int(b), rng)) for b in batch_sizes]
        oov = _out_of_vocabulary_batch(batches[-1])
        if oov is not None:  # the manifest's OOV policy must hold in every runtime
            batches.append(oov)
        return batches

    from export.recommend import saver

    save, recommend_manifest = saver(  # serving_default (+ recommend, its ONNX)
        model, name, model_config, catalogue,
        atol=atol, rtol=rtol, opset=opset, batches_fn=make_batches,
        extra_files=extra_files,
    )  # fmt: skip
    return write_version(
        name,
        base_dir=base_dir,
        version=version,
        save=save,
        extra_manifest=recommend_manifest,
        reference=model,
        reference_name=model.name,
        ins=ins,
        outs=outs,
        make_batches=make_batches,
        batch_sizes=batch_sizes,
        atol=atol,
        rtol=rtol,
        tolerance_reason=tolerance_reason,
        model_config=model_config,
        extra_files=extra_files,
        opset=opset,
        oov_policy=oov_policy
        or (
            "ids outside [0, num_ids) look up all-zero embeddings "
            "(tfrec.layers.IdEmbedding), identically in TF and ONNX"
        ),
    )


def write_version(
    name: str,
    *,
    base_dir: str | os.PathLike,
    version: int | None,
    save: Callable[[Path], None],
    reference: Callable,
    reference_name: str,
    ins: list[dict],
    outs: list[dict],
    make_batches: Callable[[], list[dict]],
    batch_sizes: Sequence[int],
    atol: float,
    rtol: float,
    tolerance_reason: str,
    model_config: Mapping[str, Any] | None,
    extra_files: Mapping[str, str | os.PathLike] | None,
    opset: int,
    oov_policy: str,
    extra_manifest: Callable[[], dict] | None = None,
) -> Path:
    """The versioned, atomic, parity-checked artifact writer behind every export.

    ``save(path)`` writes a SavedModel with signature ``serving_default`` into
    ``path``; it is converted to ONNX, ``extra_files`` are copied in, and
    ``reference`` (called as ``reference(feed, training=False)``) is compared
    with both runtimes on ``make_batches()``. The version folder is built under
    a hidden temporary name and renamed into place only when parity passes.
    """
    from export.golden import write_golden
    from export.parity import check_parity, load_saved_model_tf1
    from export.warmup import write_warmup

    if not (atol >= 0 and rtol >= 0):
        raise ExportError(
            f"Tolerances must be >= 0. Received: atol={atol}, rtol={rtol}"
        )
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExportError(
            f"Model name {name!r} must use letters, digits, '_', '.', '-'."
        )
    model_dir = Path(base_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(model_dir)
    version = int(version) if version is not None else next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise ExportError(f"Version {final} already exists; pick another version.")
    tmp = Path(
        tempfile.mkdtemp(
            prefix=f"{_TMP_PREFIX}{version}-{_HOST}-{os.getpid()}-", dir=model_dir
        )
    )
    try:
        started = time.time()
        save(tmp)
        onnx_path = tmp / ONNX_FILE
        _convert_to_onnx(tmp, onnx_path, ins, outs, opset)
        for rel, src in (extra_files or {}).items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        batches = make_batches()
        warmup = write_warmup(tmp, name, batches[: len(batch_sizes)])
        report = check_parity(
            reference,
            saved_model_dir=tmp,
            onnx_path=onnx_path,
            batches=batches,
            input_specs=ins,
            output_specs=outs,
            atol=atol,
            rtol=rtol,
        )
        report["tolerance"] = {"atol": atol, "rtol": rtol, "reason": tolerance_reason}
        report["batch_sizes"] = list(batch_sizes)
        report["batches"] = len(batches)
        golden = write_golden(  # golden.npz/.json: rows of the last sized batch
            tmp, reference, batches[len(batch_sizes) - 1], ins, atol=atol, rtol=rtol
        )
        manifest = {
            "name": name,
            "version": version,
            "created_unix": int(time.time()),
            "export_seconds": round(time.time() - started, 2),
            "model": dict(model_config or {}),
            "keras_model_name": reference_name,
            "inputs": ins,
            "outputs": outs,
            "signature": "serving_default",
            "onnx": {"file": ONNX_FILE, "opset": opset},
            "oov_policy": oov_policy,
            "warmup": warmup,
            "versions": _versions(),
            "files": sorted(
                str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()
            )
            + [MANIFEST],
            "parity": report,
            "golden": golden,
            **(extra_manifest() if extra_manifest else {}),
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        if not (report["onnx"]["passed"] and report["saved_model"]["passed"]):
            raise ExportError(
                "Parity check failed; no version written. Report: "
                + json.dumps(report, default=jsonable)
            )
        # Re-check the artifact loads the way TF Serving loads it, from its final
        # contents, before it becomes visible.
        load_saved_model_tf1(tmp).close()
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a serving user must read it
        os.replace(tmp, final)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, ExportError) or not isinstance(err, Exception):
            raise
        raise ExportError(
            f"Export of {name!r} failed: {type(err).__name__}: {err}"
        ) from err
    return final


def _out_of_vocabulary_batch(batch: Mapping[str, np.ndarray]) -> dict | None:
    """A copy of ``batch`` whose integer ``*_id`` inputs start with -1 and 10**12
    and whose string inputs start with a value outside every vocabulary."""
    out, changed = {}, False
    for name, value in batch.items():
        value = np.array(value)
        if value.dtype.kind in "OUS" and value.size >= 1:
            # String features: a value no vocabulary holds goes to the OOV bucket.
            value = value.astype(object)
            value.reshape(-1)[0] = "<tfrec-unknown-value>"
            changed = True
        elif (
            name.endswith("_id")
            and np.issubdtype(value.dtype, np.integer)
            and value.size >= 2
        ):
            flat = value.reshape(-1)
            flat[0], flat[1] = (
                -1,
                np.iinfo(value.dtype).max if value.dtype.itemsize < 8 else 10**12,
            )
            changed = True
        out[name] = value
    return out if changed else None


def _convert_to_onnx(saved_model_dir: Path, onnx_path: Path, ins, outs, opset) -> None:
    """Converts the SavedModel's ``serving_default`` signature with tf2onnx.

    Converting the signature (not the Keras object) makes the ONNX graph the same
    computation TF Serving runs.
    """
    import tensorflow as tf
    import tf2onnx

    loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures["serving_default"]
    specs = [
        tf.TensorSpec(
            [None if d is None else d for d in s["shape"]], s["dtype"], name=s["name"]
        )
        for s in ins
    ]
    names = [s["name"] for s in ins]

    @tf.function(input_signature=specs)
    def serve(*args):
        return signature(**dict(zip(names, args, strict=True)))

    if _uses_lookup_tables(signature):
        proto = _convert_with_tables(saved_model_dir, onnx_path, opset)
    else:
        proto, _ = tf2onnx.convert.from_function(
            serve, input_signature=specs, opset=opset, output_path=str(onnx_path)
        )
    got_in = sorted(i.name for i in proto.graph.input)
    got_out = sorted(o.name for o in proto.graph.output)
    want_out = sorted(s["name"] for s in outs)
    if got_in != sorted(names) or got_out != want_out:
        raise ExportError(
            f"ONNX graph names differ from the model's: inputs {got_in} vs {sorted(names)},"
            f" outputs {got_out} vs {want_out}."
        )


def _uses_lookup_tables(concrete_function) -> bool:
    """Whether the graph (or a function it calls) looks up a vocabulary table
    (``StringLookup`` and friends)."""
    graph_def = concrete_function.graph.as_graph_def()
    ops = {n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        ops.update(n.op for n in fn.node_def)
    return any(op.startswith("LookupTableFind") for op in ops)


def _convert_with_tables(saved_model_dir: Path, onnx_path: Path, opset: int):
    """Converts ``serving_default`` through tf2onnx's SavedModel loader, which
    (unlike ``from_function``) recovers the contents of vocabulary tables, so a
    string ``StringLookup`` becomes an ONNX-ML ``CategoryMapper``. This is the path
    of ``python -m tf2onnx.convert --saved-model``."""
    import tensorflow as tf
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        str(saved_model_dir),
        None,
        None,
        tag="serve",
        signatures=["serving_default"],
        return_initialized_tables=True,
        return_tensors_to_rename=True,
    )
    with tf.device("/cpu:0"):
        proto, _ = _convert_common(
            graph_def,
            name="serving_default",
            opset=opset,
            input_names=inputs,
            output_names=outputs,
            initialized_tables=tables,
            tensors_to_rename=renames,
            output_path=str(onnx_path),
            continue_on_error=False,
        )
    return proto


def load_manifest(version_dir: str | os.PathLike) -> dict:
    """Reads and validates ``manifest.json`` of an exported version."""
    path = Path(version_dir)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise ExportError(f"No exported model at {path} (folder missing).")
    if not manifest_path.is_file():
        raise ExportError(
            f"{manifest_path} is missing: {path} is not a complete tfrec export."
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{manifest_path} is corrupt: {err}") from err
    for key in ("inputs", "outputs", "parity", "onnx"):
        if key not in manifest:
            raise ExportError(
                f"{manifest_path} lacks the key {key!r}; re-export the model."
            )
    return manifest
