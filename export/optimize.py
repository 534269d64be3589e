"""Optional ONNX speed-ups beside an export, each with its own parity report.

Two variants of a version's float ``model.onnx``:

- ``opt`` (``model.opt.onnx``): the graph onnxruntime runs after its graph
  optimisations (``SessionOptions.graph_optimization_level`` basic, extended or
  all; saved with ``optimized_model_filepath``). At level ``all`` the file can hold
  hardware-specific rewrites (NCHWc layouts for convolutions): use it on the
  machine type that wrote it.
- ``int8`` (``model.int8.onnx``): dynamic INT8 quantisation
  (``onnxruntime.quantization.quantize_dynamic``): weights of MatMul (Dense) and
  Conv (int8) and embedding tables read by Gather (uint8) are stored as 8-bit
  integers with a scale; activations are quantised per batch at run time. Other
  ops (the GRU's Loop body, LabelEncoder, TopK, ...) stay float.

Each variant is compared with the float ONNX model (not with Keras; run with
onnxruntime's graph optimisations off, so the opt variant's rewrites show) on the export's
golden inputs (``golden.npz``) and on fresh example inputs, at its own, looser
tolerance (`VARIANT_TOLERANCE`), and for models that rank items, by top-10
agreement: the mean overlap of the top-10 items when scoring a whole catalogue for
several users (a user-item scorer fed every candidate; a model's own all-item
``scores`` output). Integer outputs (ids of top-k items) are compared by overlap
too. The report goes into ``manifest.json`` under ``onnx_variants.<variant>``
(read, one key added, written atomically). A variant that fails is deleted and
recorded as failed; the float export is never touched.

    tfrec export RUN --optimize --int8
    ExportedModel("saved_models/neumf", variant="int8")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.artifact import MANIFEST, ONNX_FILE, ExportError, load_manifest
from tfrec.io import atomic_write_json

VARIANT_FILES = {"opt": "model.opt.onnx", "int8": "model.int8.onnx"}
OPT_LEVELS = ("basic", "extended", "all")
TOP_K = 10
CATALOGUE_USERS = 8  # users scored over the whole catalogue for top-10 agreement
FRESH_BATCHES = (5, 64)  # fresh example batches, besides the golden rows
FRESH_SEED = 10_001


@dataclass(frozen=True)
class VariantTolerance:
    """Pass rule of a variant against the float ONNX model: every float output
    within ``|x - ref| <= atol * scale + rtol * |ref|`` (``scale`` is the output's
    largest ``|ref|`` on that batch, at least 1, so a tolerance holds for scores
    of any size), and top-10 / id agreement at least ``min_agreement``."""

    atol: float
    rtol: float
    min_agreement: float
    reason: str


VARIANT_TOLERANCE = {
    "opt": VariantTolerance(
        1e-5,
        1e-4,
        0.9,
        "the same float32 weights; fused and constant-folded ops reorder float32 "
        "sums (the float export's own tolerance class); ties near the 10th item can "
        "swap",
    ),
    "int8": VariantTolerance(
        0.1,
        0.05,
        0.8,
        "8-bit weights (scale = range/255 per tensor) and activations quantised per "
        "batch: ~1% of a tensor's range per layer, adding up over layers; a cosine "
        "of few-dimensional towers (mv_dnn, 4 dims) amplifies it to ~0.08; 8-bit "
        "noise reorders near-ties in the top 10",
    ),
}

# Inputs that describe the user (the query) in the shared input vocabulary; every
# other input describes the candidate item. A catalogue batch repeats one user's
# values over every candidate.
USER_SIDE = {"user_id", "item_history", "gender", "age", "occupation", "zip_prefix",
             "example_age"}


def _is_user_side(name: str) -> bool:
    return name in USER_SIDE or name.startswith("user_")


def variant_path(
    version_dir: str | os.PathLike, manifest: Mapping, variant: str | None
) -> Path:
    """The ONNX file to run: ``model.onnx`` for ``None``, else the file of a passed
    variant recorded in the manifest, its size and sha256 checked (raises
    otherwise)."""
    if variant is None:
        return Path(version_dir) / manifest.get("onnx", {}).get("file", ONNX_FILE)
    if variant not in VARIANT_FILES:
        raise ValueError(
            f"`variant` must be one of {sorted(VARIANT_FILES)} or None. "
            f"Received: variant={variant!r}"
        )
    entry = (manifest.get("onnx_variants") or {}).get(variant)
    if not entry or not entry.get("passed"):
        why = "failed its parity check" if entry else "was not written"
        raise ExportError(
            f"ONNX variant {variant!r} of this version {why}; write it with "
            f"`tfrec export RUN --{'optimize' if variant == 'opt' else 'int8'}` or "
            "export.optimize."
            + ("optimize_onnx" if variant == "opt" else "quantize_onnx")
            + "(version_dir)."
        )
    path = Path(version_dir) / entry["file"]
    if not path.is_file():
        raise ExportError(f"{path} is missing; write the variant again.")
    if path.stat().st_size != entry.get("bytes") or _sha256(path) != entry.get("sha256"):
        raise ExportError(
            f"{path} was modified or is corrupt (its size or sha256 differs from "
            "manifest.json's onnx_variants); write the variant again."
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def session_options(variant: str | None):
    """onnxruntime session options for a variant: ``opt`` was optimised when it was
    written, so it loads with graph optimisations off (they would only be redone),
    as does ``"reference"`` (the float graph exactly as exported, the parity
    reference); ``None`` (onnxruntime's defaults) for the others."""
    if variant not in ("opt", "reference"):
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


# --- writing the variants ----------------------------------------------------


def write_variants(
    version_dir: str | os.PathLike,
    *,
    optimize: bool = False,
    int8: bool = False,
    level: str = "all",
    verbose: bool = True,
) -> dict[str, dict]:
    """`optimize_onnx` and/or `quantize_onnx` on an exported version (inputs from
    the registry via the manifest); prints one line per variant."""
    reports = {}
    if optimize:
        reports["opt"] = optimize_onnx(version_dir, level)
    if int8:
        reports["int8"] = quantize_onnx(version_dir)
    for variant, r in reports.items() if verbose else ():
        top = r.get("top10", {})
        agreement = (
            f" top10_agreement={top['agreement']:.2f}" if top.get("applicable") else ""
        )
        what = (
            f"level={r.get('level')}" if variant == "opt"
            else f"quantized={r.get('quantized_ops') or 'none'}"
        )
        worst = max(
            (v["max_abs_diff"] for v in r.values()
             if isinstance(v, dict) and "max_abs_diff" in v),
            default=float("nan"),
        )
        state = "passed" if r["passed"] else "FAILED, deleted: " + "; ".join(
            r["problems"][:3]
        )
        print(
            f"  variant {variant:<4} {r['file']} {what} max_abs_diff={worst:.2e}"
            f"{agreement} {state}"
        )
    return reports


def optimize_onnx(
    version_dir: str | os.PathLike,
    level: str = "all",
    *,
    example_inputs: Callable[[int, np.random.Generator], dict] | None = None,
    task: str | None = None,
    num_items: int | None = None,
) -> dict:
    """Writes ``model.opt.onnx``: the float model after onnxruntime's graph
    optimisations at ``level``, parity-checked against ``model.onnx``.

    Args:
        version_dir: An export's version folder.
        level: ``basic`` (constant folding, redundant nodes), ``extended``
            (+ fusions such as MatMul+Add -> Gemm, GELU, attention) or ``all``
            (+ layout rewrites).
        example_inputs: ``(batch, rng) -> feed`` for the fresh inputs and the
            catalogue; default: the registry's, from the manifest's
            ``model.registry_name`` and ``model.kwargs``.
        task: The registry task (default: from the registry).
        num_items: Catalogue size of a user-item scorer: its top-10 check scores
            ``item_id`` 0..num_items-1 (default: ``model.kwargs.num_items`` of the
            manifest; without it, up to 128 distinct example candidates).

    Returns:
        The report also stored in ``manifest.json`` under ``onnx_variants.opt``.
    """
    import onnxruntime as ort

    if level not in OPT_LEVELS:
        raise ValueError(
            f"`level` must be one of {OPT_LEVELS}. Received: level={level!r}"
        )
    version_dir = Path(version_dir)
    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }

    def write(src: Path, dst: Path) -> dict:
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(dst)
        options.log_severity_level = 3  # the "hardware specific" notice of level all
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        import onnx

        before = _op_counts(onnx.load(str(src), load_external_data=False).graph)
        after = _op_counts(onnx.load(str(dst), load_external_data=False).graph)
        return {
            "level": level,
            "nodes": {"float": sum(before.values()), "opt": sum(after.values())},
            # op type -> change in node count (fusions remove some, add others)
            "op_changes": {
                op: after.get(op, 0) - before.get(op, 0)
                for op in sorted(set(before) | set(after))
                if after.get(op, 0) != before.get(op, 0)
            },
        }

    return _write_variant(version_dir, "opt", write, example_inputs, task, num_items)


def quantize_onnx(
    version_dir: str | os.PathLike,
    *,
    example_inputs: Callable[[int, np.random.Generator], dict] | None = None,
    task: str | None = None,
    num_items: int | None = None,
) -> dict:
    """Writes ``model.int8.onnx`` (dynamic INT8 quantisation), parity-checked
    against ``model.onnx``; arguments as `optimize_onnx`.

    MatMul and Conv weights become signed 8-bit (``QInt8``, per tensor; the
    activations are quantised to uint8 per batch by ``DynamicQuantizeLinear`` and
    run through ``MatMulInteger`` / ``ConvInteger``, both of which onnxruntime
    1.32's CPU kernels take with int8 weights, checked on content_cnn). Embedding
    tables that are initializers (``Gather``) are stored as uint8 with a scale and
    dequantised after the lookup (quantize_dynamic treats a Gather's table as an
    activation). Ops inside a GRU's Loop body are not quantised (subgraphs are
    off by default). ``quantized_ops`` in the report counts what changed.
    """
    return _write_variant(
        Path(version_dir), "int8", lambda s, d: _quantize_file(s, d), example_inputs,
        task, num_items,
    )


def _quantize_file(src: Path, dst: Path) -> dict:
    """quantize_dynamic ``src`` into ``dst``; returns what was quantised."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    before = _op_counts(onnx.load(str(src), load_external_data=False).graph)
    weight_type = QuantType.QInt8
    with _quiet_output():
        quantize_dynamic(str(src), str(dst), weight_type=weight_type)
    after = onnx.load(str(dst), load_external_data=False).graph
    quantized = _quantized_ops(after)
    return {
        "weight_type": weight_type.name,
        # float op type -> nodes now running on 8-bit weights or tables
        "quantized_ops": quantized,
        "float_ops": {k: v for k, v in before.items() if k in _QUANTIZABLE},
        "applicable": bool(quantized),
        **({} if quantized else {
            "note": "quantize_dynamic found no MatMul, Conv or Gather on a weight "
            "to quantise; the variant computes what the float model does"
        }),
    }


_QUANTIZABLE = ("MatMul", "Gemm", "Conv", "Gather", "LSTM", "Attention")
_INTEGER_OPS = {
    "MatMulInteger": "MatMul",
    "DynamicQuantizeMatMul": "MatMul",
    "ConvInteger": "Conv",
    "DynamicQuantizeLSTM": "LSTM",
    "QAttention": "Attention",
}


@contextlib.contextmanager
def _quiet_output():
    """Silences file descriptors 1 and 2 (the quantizer prints shape-inference
    notes of Loop bodies from C++ and Python); errors still raise."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def _quantized_ops(graph) -> dict[str, int]:
    """Nodes of the quantised graph that run on 8-bit weights, by float op type:
    integer kernels, and Gathers whose table is an 8-bit initializer (followed by
    DequantizeLinear)."""
    import onnx

    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    tables = {i.name for i in graph.initializer if i.data_type in eight_bit}
    counts: dict[str, int] = {}
    for node in graph.node:
        op = _INTEGER_OPS.get(node.op_type)
        if op is None and node.op_type == "Gather" and node.input[0] in tables:
            op = "Gather"
        if op is not None:
            counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items()))


def _op_counts(graph) -> dict[str, int]:
    counts: dict[str, int] = {}

    def walk(g):
        for node in g.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(graph)
    return counts


def _write_variant(
    version_dir: Path,
    variant: str,
    write: Callable[[Path, Path], dict],
    example_inputs,
    task,
    num_items,
) -> dict:
    manifest = load_manifest(version_dir)
    src = version_dir / manifest.get("onnx", {}).get("file", ONNX_FILE)
    if not src.is_file():
        raise ExportError(f"{src} is missing; re-export the model.")
    if num_items is None:
        num_items = ((manifest.get("model") or {}).get("kwargs") or {}).get("num_items")
    example_inputs, task = _registry_defaults(manifest, example_inputs, task)
    dst = version_dir / VARIANT_FILES[variant]
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    started = time.time()
    try:
        details = write(src, tmp)
    except Exception as err:  # a converter crash fails the variant, not the export
        tmp.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
        report = {"file": VARIANT_FILES[variant], "passed": False,
                  "problems": [f"writing failed: {type(err).__name__}: {err}"]}
        record_variant(version_dir, variant, report)
        return report
    try:
        report = check_variant(
            version_dir, tmp, variant, example_inputs=example_inputs, task=task,
            num_items=num_items,
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report = {
        "file": VARIANT_FILES[variant],
        **details,
        **report,
        "bytes": tmp.stat().st_size,
        "float_bytes": src.stat().st_size,
        "seconds": round(time.time() - started, 2),
    }
    if report["passed"]:
        report["sha256"] = _sha256(tmp)
        os.replace(tmp, dst)
    else:
        tmp.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
    record_variant(version_dir, variant, report)
    return report


def record_variant(version_dir: str | os.PathLike, variant: str, report: dict) -> None:
    """Sets ``onnx_variants.<variant>`` in ``manifest.json`` (other fields kept)."""
    path = Path(version_dir) / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.setdefault("onnx_variants", {})[variant] = report
    atomic_write_json(path, manifest)


def _registry_defaults(manifest, example_inputs, task):
    if example_inputs is not None and task is not None:
        return example_inputs, task
    model = manifest.get("model") or {}
    name, kwargs = model.get("registry_name"), model.get("kwargs")
    if name is None or kwargs is None:
        raise ExportError(
            "This export's manifest names no registry model (model.registry_name, "
            "model.kwargs); pass example_inputs= and task= to build the inputs."
        )
    from tfrec.registry import model_info

    info = model_info(name)
    return (
        example_inputs or (lambda b, rng: info.example_inputs(kwargs, b, rng)),
        task or info.task,
    )


# --- checking a variant -------------------------------------------------------


def _session(path: Path, variant: str | None = None):
    import onnxruntime as ort

    return ort.InferenceSession(
        str(path), session_options(variant), providers=["CPUExecutionProvider"]
    )


def _runner(session) -> Callable[[Mapping[str, np.ndarray]], dict]:
    names = [o.name for o in session.get_outputs()]
    return lambda feed: dict(zip(names, session.run(None, dict(feed)), strict=True))


def _cast(feed: Mapping, specs) -> dict:
    from export.parity import as_input_dtype

    return {s["name"]: as_input_dtype(feed[s["name"]], s["dtype"]) for s in specs}


def compare_variant(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    tol: VariantTolerance,
) -> dict:
    """Names, dtypes, shapes; float outputs by the scaled tolerance; integer
    outputs (item ids) by the mean per-row overlap of the id sets."""
    problems, max_abs, max_rel, id_agreement = [], 0.0, 0.0, []
    if sorted(reference) != sorted(candidate):
        problems.append(f"output names {sorted(candidate)} != {sorted(reference)}")
    for key in sorted(set(reference) & set(candidate)):
        ref, got = np.asarray(reference[key]), np.asarray(candidate[key])
        if ref.dtype != got.dtype or ref.shape != got.shape:
            problems.append(
                f"{key}: {got.dtype}{list(got.shape)} != {ref.dtype}{list(ref.shape)}"
            )
            continue
        if ref.size == 0:
            continue
        if ref.dtype.kind in "iub":
            rows_r = ref.reshape(ref.shape[0], -1) if ref.ndim else ref.reshape(1, -1)
            rows_g = got.reshape(rows_r.shape)
            overlap = np.mean([
                len(set(a.tolist()) & set(b.tolist())) / max(1, len(set(a.tolist())))
                for a, b in zip(rows_r, rows_g, strict=True)
            ])
            id_agreement.append(float(overlap))
            if overlap < tol.min_agreement:
                problems.append(f"{key}: id overlap {overlap:.2f} < {tol.min_agreement}")
            continue
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        diff = np.abs(got64 - ref64)
        if not np.all(np.isfinite(diff)):
            problems.append(f"{key}: non-finite values")
            max_abs = float("inf")
            continue
        scale = max(1.0, float(np.abs(ref64).max()))
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float((diff / np.maximum(np.abs(ref64), 1e-12)).max()))
        if np.any(diff > tol.atol * scale + tol.rtol * np.abs(ref64)):
            problems.append(
                f"{key}: max |diff| {diff.max():.3g} beyond atol {tol.atol}*{scale:.3g}"
                f" + rtol {tol.rtol}"
            )
    return {
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "id_agreement": min(id_agreement) if id_agreement else None,
        "passed": not problems,
        "problems": problems,
    }


def catalogue_feeds(
    input_specs, output_specs, task: str, example_inputs, *, users: int =
    CATALOGUE_USERS, num_items: int | None = None, seed: int = FRESH_SEED,
) -> tuple[dict, str, tuple[int, int]] | None:
    """One feed that ranks a catalogue for several users, with the output to rank
    and the ``(users, candidates)`` shape its scores reshape to; ``None`` for a
    model that ranks nothing (embeddings, rating reconstruction).

    A model with an all-item ``scores`` output ranks that output for ``users``
    example rows. A scorer with a ``score`` output and both user- and item-side
    inputs is fed every candidate beside one user's values, for each of ``users``
    users: ``item_id`` 0..num_items-1 (with example item features) when
    ``num_items`` is given, else up to 128 distinct example candidates.
    """
    names = [s["name"] for s in input_specs]
    outputs = [s["name"] for s in output_specs]
    rng = np.random.default_rng(seed)
    if "scores" in outputs:
        return _cast(example_inputs(users, rng), input_specs), "scores", (users, -1)
    if "score" not in outputs or task not in ("ranking", "retrieval"):
        return None
    user_names = [n for n in names if _is_user_side(n)]
    item_names = [n for n in names if not _is_user_side(n)]
    if not user_names or not item_names:
        return None
    if num_items and "item_id" in item_names:
        pool = example_inputs(int(num_items), rng)
        pool["item_id"] = np.arange(int(num_items))
    else:  # distinct candidates: equal rows tie exactly
        pool = example_inputs(128, rng)
        keys = [
            tuple(np.asarray(pool[n][r]).tobytes() for n in item_names)
            for r in range(len(pool[item_names[0]]))
        ]
        first = sorted({k: r for r, k in reversed(list(enumerate(keys)))}.values())
        pool = {k: np.asarray(v)[first] for k, v in pool.items()}
    n_cand = len(pool[item_names[0]])
    who = example_inputs(users, rng)
    feed = {}
    for n in names:
        if n in user_names:
            feed[n] = np.repeat(np.asarray(who[n]), n_cand, axis=0)
        else:
            feed[n] = np.tile(np.asarray(pool[n]), (users,) + (1,) * (pool[n].ndim - 1))
    return _cast(feed, input_specs), "score", (users, n_cand)


def top_k_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = TOP_K) -> float:
    """Mean over rows of ``|top_k(reference) & top_k(candidate)| / k``."""
    ref, got = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    k = min(k, ref.shape[1])
    top_r = np.argsort(-ref, axis=1, kind="stable")[:, :k]
    top_g = np.argsort(-got, axis=1, kind="stable")[:, :k]
    return float(np.mean([
        len(set(a.tolist()) & set(b.tolist())) / k
        for a, b in zip(top_r, top_g, strict=True)
    ]))


def check_variant(
    version_dir: str | os.PathLike,
    variant_path: str | os.PathLike,
    variant: str,
    *,
    example_inputs: Callable[[int, np.random.Generator], dict],
    task: str,
    num_items: int | None = None,
) -> dict:
    """The parity report of ``variant_path`` against the version's float ONNX
    model: golden inputs, fresh example batches, and top-10 agreement."""
    from export.golden import GOLDEN_NPZ, load_golden

    version_dir = Path(version_dir)
    manifest = load_manifest(version_dir)
    tol = VARIANT_TOLERANCE[variant]
    ins, outs = manifest["inputs"], manifest["outputs"]
    # The float graph as exported, without onnxruntime's load-time rewrites (with
    # them it would be the opt variant itself).
    reference = _runner(_session(version_dir / manifest.get("onnx", {}).get(
        "file", ONNX_FILE), "reference"))
    report: dict[str, Any] = {
        "tolerance": {
            "atol": tol.atol, "rtol": tol.rtol, "min_agreement": tol.min_agreement,
            "rule": "|x - ref| <= atol * max(1, max|ref|) + rtol * |ref|, ref = "
            "the float model.onnx in onnxruntime with graph optimisations off",
            "reason": tol.reason,
        },
    }
    try:
        candidate = _runner(_session(Path(variant_path), variant))
    except Exception as err:  # onnxruntime raises its own exception types
        return {**report, "passed": False,
                "problems": [f"does not load in onnxruntime: {err}"]}
    batches = {}
    if (version_dir / GOLDEN_NPZ).is_file():  # exports from before golden files
        batches["golden"] = _cast(load_golden(version_dir)[0], ins)
    rng = np.random.default_rng(FRESH_SEED)
    for b in FRESH_BATCHES:
        batches[f"fresh_{b}"] = _cast(example_inputs(b, rng), ins)
    problems = []
    for label, feed in batches.items():
        try:
            r = compare_variant(reference(feed), candidate(feed), tol)
        except Exception as err:
            r = {"passed": False, "problems": [f"run failed: {err}"]}
        report[label] = r
        problems += [f"{label}: {p}" for p in r["problems"]]
    cat = catalogue_feeds(ins, outs, task, example_inputs, num_items=num_items)
    if cat is None:
        report["top10"] = {"applicable": False, "reason": "the model ranks no items "
                           "(no all-item 'scores' output, no user-item 'score')"}
    else:
        feed, out, shape = cat
        candidates = None
        try:
            ref = np.asarray(reference(feed)[out]).reshape(shape)
            got = np.asarray(candidate(feed)[out]).reshape(shape)
            candidates = int(ref.shape[1])
            agreement = top_k_agreement(ref, got)
        except Exception as err:
            agreement = 0.0
            problems.append(f"top10: run failed: {err}")
        report["top10"] = {
            "applicable": True, "output": out, "users": shape[0],
            "candidates": candidates, "k": TOP_K, "agreement": agreement,
        }
        if agreement < tol.min_agreement:
            problems.append(
                f"top10: agreement {agreement:.2f} < {tol.min_agreement}"
            )
    report["passed"] = not problems
    report["problems"] = problems
    return report
