"""Writes a versioned, parity-checked artifact: SavedModel + ONNX + manifest.

Layout (TF Serving's model base path convention)::

    <base_dir>/<name>/<version>/
        saved_model.pb, variables/, fingerprint.pb   signature "serving_default"
        model.onnx                                   converted from that signature
        manifest.json                                specs, versions, parity report
        golden.npz, golden.json                      a fixed batch and Keras' outputs
        assets.extra/tf_serving_warmup_requests      TF Serving warm-up, every signature
        vocab/                                       optional id tables (extra_files)
        web/                                         optional browser page (--web-demo)

The version folder is built under ``<base_dir>/<name>/.tmp-<v>-<host>-<pid>-<rand>``
(locked by its export with ``flock``) and renamed into place only after both
parity checks pass, so a half-written, failed or killed export never appears as
a version (TF Serving only loads numeric folders); the next export removes what a
dead one left. The rename reserves the number: when another export took it
first, the next free number is taken, so concurrent exports get distinct
versions. ``manifest.json`` records the size and sha256 of every other file of
the version (``checksums``), and every loader verifies them
(:func:`verify_files`; :func:`verify_listed` for readers of a few files: golden
files, the warm-up file, the TF Serving loader program, and in JavaScript the
Node harness and the web page). A TensorFlow op ONNX cannot take fails the export
with the op and its Keras layer named (:func:`check_onnx_ops`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
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
_TRASH_PREFIX = ".trash-"
_LOCK_FILE = ".export.lock"
_VERSION_MARKERS = (MANIFEST, "pipeline.json")


def _clean_stale_tmp(model_dir: Path) -> None:
    """Removes what dead exports left under ``model_dir``: temporary folders whose
    export no longer runs, and folders of old versions being pruned.

    A live export holds an exclusive ``flock`` on ``<tmp>/.export.lock`` (the
    kernel drops it when the process dies, ``kill -9`` included), so a folder
    whose lock can be taken is stale. Without a lock file, the pid in the name
    decides (same host only). Another host's folder is removed only when its lock
    can be taken and it is untouched for an hour (a shared ``saved_models/`` may
    serve several hosts, and not every network file system shares locks).
    """
    if not model_dir.is_dir():
        return
    for p in model_dir.iterdir():
        if p.name.startswith(_TRASH_PREFIX) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)  # pruned versions: always garbage
            continue
        m = re.match(rf"{re.escape(_TMP_PREFIX)}\d+-([A-Za-z0-9]+)-(\d+)-", p.name)
        if not m or not p.is_dir():
            continue
        same_host, pid = m.group(1) == _HOST, int(m.group(2))
        lock = _lock_is_free(p / _LOCK_FILE)
        if same_host:
            stale = lock if lock is not None else not _pid_alive(pid)
        else:
            stale = bool(lock) and time.time() - p.stat().st_mtime > STALE_SECONDS
        if stale:
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_is_free(path: Path) -> bool | None:
    """Whether nobody holds ``path``'s flock (None: no such file)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return True


def _make_tmp(model_dir: Path, version: int) -> tuple[Path, int]:
    """A hidden temporary version folder, locked by this process (see
    `_clean_stale_tmp`); returns the folder and the lock's file descriptor."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(
                prefix=f"{_TMP_PREFIX}{version}-{_HOST}-{os.getpid()}-", dir=model_dir
            )
        )
    except OSError as err:
        raise _write_error(model_dir, err) from err
    fd = os.open(tmp / _LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return tmp, fd


def _write_error(where: Path, err: OSError) -> ExportError:
    reason = err.strerror or type(err).__name__
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ExportError(
            f"Cannot write the export under {where}: {reason}. Choose a writable "
            "--base-dir (base_dir)."
        )
    return ExportError(f"Cannot write the export under {where}: {reason}.")


def file_checksums(version_dir: str | os.PathLike) -> dict[str, dict]:
    """``{relative path: {"sha256", "size"}}`` of every file under ``version_dir``
    (the tree walked), except ``manifest.json``/``pipeline.json`` and the export
    lock. Files are flushed to disk as they are read."""
    root = Path(version_dir)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel in _VERSION_MARKERS or rel == _LOCK_FILE or p.is_dir():
            continue
        if not p.is_file():  # a link or a special file has no place in an export
            raise ExportError(f"{p} is not a regular file; an export holds only files.")
        digest, size = hashlib.sha256(), 0
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(fh.fileno())
        out[rel] = {"sha256": digest.hexdigest(), "size": size}
    return out


def verify_files(version_dir: str | os.PathLike, manifest: Mapping,
                 manifest_name: str = MANIFEST) -> None:
    """Checks every file the manifest lists against its recorded size and sha256.

    Raises:
        ExportError: naming the first file that is missing, modified or corrupt,
            or the manifest when it records no checksums.
    """
    root = Path(version_dir)
    listed = manifest.get("checksums")
    if not isinstance(listed, dict) or not listed:
        raise ExportError(
            f"{root / manifest_name} records no file checksums (an export older than "
            "tfrec's artifact checks, or an edited manifest); re-export the model."
        )
    for rel, want in sorted(listed.items()):
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not isinstance(want, dict):
            raise ExportError(f"{root / manifest_name} is corrupt: bad entry {rel!r}.")
        path = root / rel
        if not path.is_file():
            raise ExportError(
                f"{path} is missing (listed in {manifest_name}); the export is "
                "incomplete: re-export the model."
            )
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        if size != want.get("size") or digest.hexdigest() != want.get("sha256"):
            raise ExportError(
                f"{path} was modified or is corrupt: its sha256 {digest.hexdigest()[:12]}"
                f"... ({size} bytes) differs from {manifest_name}'s "
                f"{str(want.get('sha256'))[:12]}... ({want.get('size')} bytes); "
                "re-export the model."
            )


def verify_listed(version_dir: str | os.PathLike, rels: Sequence[str],
                  manifest: Mapping | None = None,
                  manifest_name: str = MANIFEST) -> dict:
    """Checks only the files ``rels`` (paths relative to ``version_dir``) against
    the size and sha256 its manifest records; each must be listed there. Returns
    the manifest. For readers of one or two files (golden files, the warm-up
    file, the SavedModel before the TF Serving loader runs).

    Raises:
        ExportError: the manifest is missing or corrupt, a file is not listed,
            missing, or modified (naming the file).
    """
    root = Path(version_dir)
    if manifest is None:
        path = root / manifest_name
        if not path.is_file():
            raise ExportError(
                f"{path} is missing, so the files of {root} cannot be verified; "
                "re-export the model."
            )
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ExportError(f"{path} is corrupt: {err}") from err
    listed = manifest.get("checksums")
    if not isinstance(listed, dict) or not listed:
        raise ExportError(
            f"{root / manifest_name} records no file checksums (an export older than "
            "tfrec's artifact checks, or an edited manifest); re-export the model."
        )
    unlisted = [r for r in rels if r not in listed]
    if unlisted:
        raise ExportError(
            f"{root / unlisted[0]} is not listed in {manifest_name}'s checksums, so "
            "it cannot be verified; re-export the model."
        )
    verify_files(root, {"checksums": {r: listed[r] for r in rels}}, manifest_name)
    return dict(manifest)


def publish_version(
    tmp: Path,
    model_dir: Path,
    version: int,
    *,
    fixed: bool,
    manifest_name: str = MANIFEST,
) -> Path:
    """Moves the finished ``tmp`` folder to ``model_dir/<version>`` atomically.

    Records the checksums of every file in the manifest first. The version is
    reserved by the rename itself: a rename onto an existing (never empty)
    version fails, and then the next free number is taken (unless the version was
    ``fixed`` by the caller), so concurrent exports get distinct versions and a
    reader never sees a partial one.
    """
    checksums = file_checksums(tmp)
    manifest_path = tmp / manifest_name
    manifest = json.loads(manifest_path.read_text())
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a serving user must read it
    (tmp / _LOCK_FILE).unlink(missing_ok=True)  # an open descriptor keeps the lock
    for _ in range(10_000):
        final = model_dir / str(version)
        if final.exists():  # fast path; the rename below is what decides
            error = OSError(errno.EEXIST, "exists")
        else:
            manifest.update(version=version, checksums=checksums,
                            files=sorted([*checksums, manifest_name]))
            atomic_write_json(manifest_path, manifest)
            _fsync_dir(tmp)
            try:
                os.rename(tmp, final)
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise
                error = err
            else:
                _fsync_dir(model_dir)
                return final
        if fixed:
            raise ExportError(
                f"Version {final} already exists; pick another version."
            ) from error
        version = max(version + 1, next_version(model_dir))
    raise ExportError(f"No free version number under {model_dir}.")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune_versions(model_dir: str | os.PathLike, keep: int) -> list[int]:
    """Removes all but the newest ``keep`` versions of ``model_dir``; returns the
    removed version numbers. Each goes to a hidden name first, so a server never
    sees half a version (a kill leaves a hidden folder the next export removes)."""
    path = Path(model_dir)
    ours = sorted(
        int(p.name) for p in path.iterdir()
        if p.name.isdigit() and p.is_dir()
        and any((p / m).is_file() for m in _VERSION_MARKERS)
    )
    removed = []
    for v in ours[: max(len(ours) - keep, 0)]:
        trash = path / f"{_TRASH_PREFIX}{v}-{_HOST}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            os.rename(path / str(v), trash)
        except FileNotFoundError:  # pruned by a concurrent export
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(v)
    return removed


def check_keep(keep) -> int | None:
    """``keep`` (newest versions to keep) as an int >= 1, or None."""
    if keep is None:
        return None
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ValueError(
            f"`keep` must be a positive int (how many newest versions to keep). "
            f"Received: keep={keep!r}"
        )
    return int(keep)


def check_export_name(name) -> str:
    """Refuses a model folder name that could leave ``base_dir`` or be mistaken
    for a version or a temporary folder."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"The export name must be a non-empty string. Received: {name!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(
            f"The export name may use only letters, digits, '_', '.' and '-' (it is "
            f"a folder under the base dir). Received: {name!r}"
        )
    if name.startswith("."):
        raise ValueError(
            f"The export name must not start with '.' ('.' and '..' leave the base "
            f"dir; hidden names are tfrec's temporary folders). Received: {name!r}"
        )
    if name.isdigit():
        raise ValueError(
            f"The export name must not be all digits (that reads as a version "
            f"number). Received: {name!r}"
        )
    return name


def check_export_target(base_dir: str | os.PathLike, name: str | None = None) -> None:
    """Validates where an export will go, writing nothing: ``base_dir`` must be
    (or become) a writable folder, and ``base_dir/name``, when it exists, a folder
    of tfrec versions (numeric folders with a manifest, hidden temporary ones).

    Raises:
        ValueError: a bad name. ExportError: a bad or unwritable target.
    """
    base = Path(base_dir)
    if base.exists() and not base.is_dir():
        raise ExportError(
            f"The base dir {base} exists and is not a folder; give --base-dir "
            "(base_dir) a folder."
        )
    targets = [base]
    if name is not None:
        model_dir = base / check_export_name(name)
        if model_dir.exists() and not model_dir.is_dir():
            raise ExportError(
                f"{model_dir} exists and is not a folder; choose another --name or "
                "--base-dir."
            )
        if model_dir.is_dir():
            foreign = [
                p.name for p in sorted(model_dir.iterdir())
                if not p.name.startswith(".")
                and not (p.name.isdigit() and p.is_dir()
                         and any((p / m).is_file() for m in _VERSION_MARKERS))
            ]
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise ExportError(
                    f"{model_dir} exists and is not a tfrec export folder (it holds "
                    f"{shown}, which are not versions with a {MANIFEST}); choose "
                    "another --name or --base-dir."
                )
        targets.insert(0, model_dir)
    existing = next((p for p in (*targets, *base.absolute().parents) if p.exists()),
                    None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(
            f"Cannot write the export under {existing}: permission denied or "
            "read-only file system. Choose a writable --base-dir (base_dir)."
        )


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
    before_publish: Callable[[Path, dict], None] | None = None,
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
        before_publish: ``(version folder being built, manifest)`` -> None, run
            after parity passed and before the version is renamed into place;
            what it writes there is checksummed into the manifest with the rest
            (``tfrec export --web-demo`` writes ``web/`` this way).

    Returns:
        The path of the new version folder.

    Raises:
        ExportError: conversion or parity failed (a TensorFlow op ONNX cannot
            take is named with its Keras layer), or the version exists; nothing
            was written in that case.
        ValueError: a bad ``name`` (checked before any work).
    """
    check_export_target(base_dir, name)
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
        before_publish=before_publish,
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
    before_publish: Callable[[Path, dict], None] | None = None,
) -> Path:
    """The versioned, atomic, parity-checked artifact writer behind every export.

    ``save(path)`` writes a SavedModel with signature ``serving_default`` into
    ``path``; it is converted to ONNX, ``extra_files`` are copied in, and
    ``reference`` (called as ``reference(feed, training=False)``) is compared
    with both runtimes on ``make_batches()``. The version folder is built under
    a hidden temporary name and renamed into place only when parity passes;
    ``before_publish(folder, manifest)`` may add files just before (they are
    checksummed with the rest). The warm-up file holds records for every
    signature (`export.warmup`).
    """
    from export.golden import write_golden
    from export.parity import check_parity, load_saved_model_tf1
    from export.warmup import write_warmup

    if not (atol >= 0 and rtol >= 0):
        raise ExportError(
            f"Tolerances must be >= 0. Received: atol={atol}, rtol={rtol}"
        )
    check_export_target(base_dir, name)
    model_dir = Path(base_dir) / name
    fixed = version is not None
    version = int(version) if fixed else next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise ExportError(f"Version {final} already exists; pick another version.")
    tmp, lock_fd = _make_tmp(model_dir, version)
    _clean_stale_tmp(model_dir)
    try:
        started = time.time()
        try:
            with _unsupported_op_logs():
                save(tmp)
        except Exception:
            # save() may convert extra graphs (recommend.onnx) and fail on them in
            # onnxruntime; an op ONNX cannot take is the error worth reporting.
            for path in sorted(tmp.glob("*.onnx")):
                check_onnx_ops(path, reference)
            raise
        onnx_path = tmp / ONNX_FILE
        _convert_to_onnx(tmp, onnx_path, ins, outs, opset, reference=reference)
        for rel, src in (extra_files or {}).items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        batches = make_batches()
        extra = extra_manifest() if extra_manifest else {}
        warmup = write_warmup(  # every signature, recommend's with k and exclude
            tmp, name, batches[: len(batch_sizes)], recommend=extra.get("recommend")
        )
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
            **extra,
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        if not (report["onnx"]["passed"] and report["saved_model"]["passed"]):
            raise ExportError(
                "Parity check failed; no version written. Report: "
                + json.dumps(report, default=jsonable)
            )
        if before_publish is not None:
            before_publish(tmp, manifest)
        # Re-check the artifact loads the way TF Serving loads it, from its final
        # contents, before it becomes visible.
        load_saved_model_tf1(tmp).close()
        final = publish_version(tmp, model_dir, version, fixed=fixed)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, ExportError) or not isinstance(err, Exception):
            raise
        raise ExportError(
            f"Export of {name!r} failed: {type(err).__name__}: {err}"
        ) from err
    finally:
        os.close(lock_fd)  # releases the lock of the temporary folder
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


def _convert_to_onnx(
    saved_model_dir: Path, onnx_path: Path, ins, outs, opset, *, reference=None
) -> None:
    """Converts the SavedModel's ``serving_default`` signature with tf2onnx.

    Converting the signature (not the Keras object) makes the ONNX graph the same
    computation TF Serving runs. tf2onnx leaves a TensorFlow op it has no
    conversion for in the graph (and only logs it); :func:`check_onnx_ops` turns
    that into an `ExportError` naming the op and the Keras layer of ``reference``
    it came from.
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

    with _unsupported_op_logs():
        if _uses_lookup_tables(signature):
            proto = _convert_with_tables(saved_model_dir, onnx_path, opset)
        else:
            proto, _ = tf2onnx.convert.from_function(
                serve, input_signature=specs, opset=opset, output_path=str(onnx_path)
            )
    check_onnx_ops(proto, reference, opset=opset)
    got_in = sorted(i.name for i in proto.graph.input)
    got_out = sorted(o.name for o in proto.graph.output)
    want_out = sorted(s["name"] for s in outs)
    if got_in != sorted(names) or got_out != want_out:
        raise ExportError(
            f"ONNX graph names differ from the model's: inputs {got_in} vs {sorted(names)},"
            f" outputs {got_out} vs {want_out}."
        )


# Domains onnxruntime's CPU build runs besides standard ONNX (checked against
# onnx.defs): its own contrib ops. Anything else (tf2onnx's "ai.onnx.contrib" for
# onnxruntime-extensions, or a TF op left as is) does not load.
_RUNTIME_DOMAINS = ("com.microsoft",)


def unsupported_onnx_ops(proto) -> list[tuple[str, str, str]]:
    """``(op_type, domain, node name)`` of every node of ``proto`` (subgraphs of
    ``Loop``/``If``/``Scan`` included) that is neither a standard ONNX / ONNX-ML
    op of the model's opset nor an onnxruntime contrib op."""
    import onnx

    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    bad = []

    def walk(graph):
        for node in graph.node:
            domain = node.domain or "ai.onnx"
            if domain in ("ai.onnx", "ai.onnx.ml"):
                version = opsets.get(domain, 1)
                try:
                    onnx.defs.get_schema(node.op_type, version, node.domain)
                except onnx.defs.SchemaError:
                    bad.append((node.op_type, domain, node.name))
            elif domain not in _RUNTIME_DOMAINS:
                bad.append((node.op_type, domain, node.name))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(proto.graph)
    return bad


def keras_layer_of(node_name: str, model) -> tuple[str, str] | None:
    """``(layer path, class name)`` of the innermost Keras layer of ``model``
    (nested models and layers included) whose name scope holds the TensorFlow
    node ``node_name`` (``neumf_1/user_hash_1/hash`` -> ``user_hash``); None when
    the node is outside every layer (the export's own graph code)."""
    found: dict[str, tuple[str, str]] = {}

    def walk(layer, prefix):
        children = getattr(layer, "layers", None)
        if children is None and hasattr(layer, "_flatten_layers"):
            children = list(layer._flatten_layers(include_self=False, recursive=False))
        for child in children or []:
            path = f"{prefix}{child.name}"
            found.setdefault(child.name, (path, type(child).__name__))
            walk(child, path + "/")

    if model is None:
        return None
    walk(model, "")
    scopes = node_name.split("/")[:-1]  # the last part names the op itself
    for scope in reversed(scopes):
        for candidate in (scope, re.sub(r"_\d+$", "", scope)):
            if candidate in found:
                return found[candidate]
    return None


def check_onnx_ops(proto_or_path, reference=None, *, opset: int | None = None) -> None:
    """Raises `ExportError` when the converted graph holds an op ONNX cannot take,
    naming each op, its TensorFlow node and the Keras layer of ``reference``
    (the model being exported) it came from."""
    import onnx

    if isinstance(proto_or_path, (str, os.PathLike)):
        where = Path(proto_or_path).name
        try:
            proto = onnx.load(str(proto_or_path), load_external_data=False)
        except Exception:  # an unreadable file is reported by its own error
            return
    else:
        where, proto = ONNX_FILE, proto_or_path
    bad = unsupported_onnx_ops(proto)
    if not bad:
        return
    opset = opset or next(
        (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None
    )
    parts = []
    for op, domain, node in bad:
        tf_node = re.sub(r"^(StatefulPartitionedCall/)+", "", node)
        layer = keras_layer_of(tf_node, reference)
        origin = (
            f"Keras layer {layer[0]!r} ({layer[1]})"
            if layer
            else "no Keras layer (the export's own graph code)"
        )
        extra = "" if domain == "ai.onnx" else f" (domain {domain})"
        parts.append(f"{op}{extra} from {origin}, TensorFlow node {tf_node!r}")
    raise ExportError(
        f"ONNX (opset {opset}) cannot take the TensorFlow op "
        + "; ".join(dict.fromkeys(parts))
        + f" ({where}: tf2onnx has no conversion for it). No version written. "
        "Replace that layer with ONNX-convertible ops (for hashing, a "
        "StringLookup/IntegerLookup vocabulary), or keep it outside the model."
    )


class _unsupported_op_logs:
    """Keeps tf2onnx's "op is not supported" log lines off the console: the
    export raises a clearer error naming the op and its layer instead."""

    _NAMES = ("tf2onnx.tfonnx",)

    def filter(self, record) -> bool:
        text = record.getMessage()
        return not ("is not supported" in text or text.startswith("Unsupported ops"))

    def __enter__(self):
        import logging

        for name in self._NAMES:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc):
        import logging

        for name in self._NAMES:
            logging.getLogger(name).removeFilter(self)
        return False


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


def load_manifest(version_dir: str | os.PathLike, *, verify: bool = True) -> dict:
    """Reads and validates ``manifest.json`` of an exported version and (unless
    ``verify=False``) the size and sha256 of every file it lists
    (:func:`verify_files`), so every loader built on it refuses a modified file."""
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
    if verify:
        verify_files(path, manifest)
    return manifest
