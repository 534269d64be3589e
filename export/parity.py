"""Numerical parity between a Keras model and its exported artifacts.

The SavedModel is run the way TF Serving's C++ server runs it: through the TF1
SignatureDef loader (``tf.compat.v1.saved_model.loader.load`` + ``Session.run`` on
the ``serving_default`` tensors), not through the Keras object. The ONNX model is run
with onnxruntime on CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


class Tf1SignatureRunner:
    """Loads a SavedModel with the TF1 loader and runs ``serving_default``."""

    def __init__(self, saved_model_dir: str | Path, signature: str = "serving_default"):
        import tensorflow as tf

        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        verbosity = tf.compat.v1.logging.get_verbosity()
        tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)  # TF1 notice
        try:
            with self._graph.as_default():
                meta = tf.compat.v1.saved_model.loader.load(
                    self._session, ["serve"], str(saved_model_dir)
                )
        finally:
            tf.compat.v1.logging.set_verbosity(verbosity)
        if signature not in meta.signature_def:
            raise ValueError(
                f"{saved_model_dir} has no signature {signature!r}; "
                f"found {sorted(meta.signature_def)}."
            )
        sig = meta.signature_def[signature]
        self.inputs = {k: v.name for k, v in sig.inputs.items()}
        self.outputs = {k: v.name for k, v in sig.outputs.items()}

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self.inputs) - set(feed))
        if missing:
            raise ValueError(
                f"Missing inputs {missing}; the signature takes {sorted(self.inputs)}."
            )
        return self._session.run(
            self.outputs, {self.inputs[k]: np.asarray(v) for k, v in feed.items()}
        )

    def close(self) -> None:
        self._session.close()


def load_saved_model_tf1(saved_model_dir: str | Path) -> Tf1SignatureRunner:
    """Loads ``saved_model_dir`` as TF Serving would (raises if it cannot)."""
    return Tf1SignatureRunner(saved_model_dir)


def compare(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    *,
    atol: float,
    rtol: float,
) -> dict:
    """Compares every named output: names, dtype, shape and values."""
    problems = []
    max_abs = 0.0
    max_rel = 0.0
    if sorted(reference) != sorted(candidate):
        problems.append(f"output names {sorted(candidate)} != {sorted(reference)}")
    for key in sorted(set(reference) & set(candidate)):
        ref = np.asarray(reference[key])
        got = np.asarray(candidate[key])
        if ref.dtype != got.dtype:
            problems.append(f"{key}: dtype {got.dtype} != {ref.dtype}")
        if ref.shape != got.shape:
            problems.append(f"{key}: shape {got.shape} != {ref.shape}")
            continue
        if ref.size == 0:
            continue
        ref64 = ref.astype(np.float64)
        diff = np.abs(got.astype(np.float64) - ref64)
        if not np.all(np.isfinite(diff)):
            problems.append(f"{key}: non-finite values")
            max_abs = float("inf")
            continue
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float((diff / np.maximum(np.abs(ref64), 1e-12)).max()))
        if np.any(diff > atol + rtol * np.abs(ref64)):
            problems.append(f"{key}: max |diff| {diff.max():.3g} beyond tolerance")
    return {
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "passed": not problems,
        "problems": problems,
    }


def _merge(reports: Sequence[dict]) -> dict:
    return {
        "max_abs_diff": max(r["max_abs_diff"] for r in reports),
        "max_rel_diff": max(r["max_rel_diff"] for r in reports),
        "passed": all(r["passed"] for r in reports),
        "problems": [p for r in reports for p in r["problems"]],
    }


def as_input_dtype(value, dtype: str) -> np.ndarray:
    """``value`` as the array a runtime takes for a spec dtype; ``string`` inputs
    become object arrays of ``str`` (what onnxruntime and TF both accept)."""
    if dtype == "string":
        arr = np.asarray(value, dtype=object)
        flat = [v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.flat]
        return np.array(flat, dtype=object).reshape(arr.shape)
    return np.asarray(value, dtype=dtype)


def _cast_inputs(batch: Mapping[str, np.ndarray], input_specs) -> dict[str, np.ndarray]:
    return {s["name"]: as_input_dtype(batch[s["name"]], s["dtype"]) for s in input_specs}


def check_parity(
    model,
    *,
    saved_model_dir: Path,
    onnx_path: Path,
    batches: Sequence[Mapping[str, np.ndarray]],
    input_specs,
    output_specs,
    atol: float,
    rtol: float,
) -> dict:
    """Runs Keras, the SavedModel (TF1 loader) and ONNX on each batch and compares.

    SavedModel vs Keras is held to a tenth of the model's tolerance, but never
    tighter than 1e-6 (the same graph, but the TF1 session runs Grappler, whose
    rewrites reorder float32 sums: a trained GRU4Rec differs by ~2e-6 on scores
    of a few units); ONNX vs Keras to the model's tolerance. Returns ``{"onnx": {...}, "saved_model":
    {...}, "onnx_input_names_match": bool}``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_inputs = sorted(i.name for i in session.get_inputs())
    names_match = onnx_inputs == sorted(s["name"] for s in input_specs)
    runner = load_saved_model_tf1(saved_model_dir)
    onnx_reports, sm_reports = [], []
    try:
        for batch in batches:
            feed = _cast_inputs(batch, input_specs)
            ref = {k: np.asarray(v) for k, v in model(feed, training=False).items()}
            sm = runner(feed)
            onnx_out = dict(
                zip(
                    [o.name for o in session.get_outputs()],
                    session.run(None, feed),
                    strict=True,
                )
            )
            sm_reports.append(
                compare(ref, sm, atol=max(1e-6, atol / 10), rtol=max(1e-6, rtol / 10))
            )
            onnx_reports.append(compare(ref, onnx_out, atol=atol, rtol=rtol))
    finally:
        runner.close()
    onnx_report = _merge(onnx_reports)
    if not names_match:
        onnx_report["passed"] = False
        onnx_report["problems"].append(
            f"ONNX inputs {onnx_inputs} != model inputs {[s['name'] for s in input_specs]}"
        )
    return {
        "onnx": onnx_report,
        "saved_model": _merge(sm_reports),
        "onnx_input_names_match": names_match,
        "outputs_checked": [s["name"] for s in output_specs],
    }
