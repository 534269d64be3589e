"""Golden inputs and outputs beside every export, so any runtime can check itself.

``write_golden`` takes rows of one of the parity batches ``write_version`` already
built, runs the reference (Keras) on them and writes into the version folder:

- ``golden.npz``: ``input/<name>`` and ``output/<name>`` arrays (strings as numpy
  unicode, so ``np.load`` needs no pickle);
- ``golden.json``: the same for JavaScript and other runtimes::

      {"format": "tfrec-golden/1", "rows": 8,
       "tolerance": {"atol": ..., "rtol": ...},
       "inputs":  [{"name", "dtype", "shape", "values"}, ...],
       "outputs": [{"name", "dtype", "shape", "values"}, ...]}

  ``values`` is the array flattened in row-major order. int64 and uint64 values
  are decimal strings (a JavaScript number is exact only up to 2**53; read them
  with ``BigInt``); float values are JSON numbers (the exact value as a double,
  so ``Float32Array.from`` gives back the same float32), non-finite ones the strings ``"NaN"``,
  ``"Infinity"``, ``"-Infinity"``; strings are strings; bools are true/false.

Both files are listed with their sha256 in the manifest; :func:`load_golden` and
``js/check_onnx.mjs`` verify them before use.

An output passes when ``|x - ref| <= atol + rtol * |ref|`` elementwise, with the
manifest's parity tolerance (``export.parity.compare``), and has the same dtype
and shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

GOLDEN_NPZ = "golden.npz"
GOLDEN_JSON = "golden.json"
GOLDEN_FORMAT = "tfrec-golden/1"
GOLDEN_ROWS = 8


def _dtype_name(array: np.ndarray) -> str:
    return "string" if array.dtype.kind in "OUS" else array.dtype.name


def _json_values(array: np.ndarray) -> list:
    flat = array.reshape(-1)
    kind = array.dtype.kind
    if kind in "OUS":
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
    if kind == "b":
        return [bool(v) for v in flat]
    if kind in "iu":
        if array.dtype.itemsize >= 8:
            return [str(int(v)) for v in flat]
        return [int(v) for v in flat]
    if kind == "f":
        out = []
        for v in flat:
            f = float(v)  # a float32 is exact as a double; its repr reads back exactly
            if math.isfinite(f):
                out.append(f)
            else:
                out.append("NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity"))
        return out
    raise TypeError(
        f"golden.json cannot hold dtype {array.dtype.name}; supported: strings, bool, "
        "integers, floats."
    )


def _entry(name: str, array: np.ndarray) -> dict:
    return {
        "name": name,
        "dtype": _dtype_name(array),
        "shape": [int(d) for d in array.shape],
        "values": _json_values(array),
    }


def _npz_array(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind in "OS":
        return np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.flat],
            dtype=str,
        ).reshape(array.shape)
    return array


def write_golden(
    folder: str | Path,
    reference: Callable,
    batch: Mapping[str, np.ndarray],
    input_specs: Sequence[Mapping],
    *,
    atol: float,
    rtol: float,
    rows: int = GOLDEN_ROWS,
) -> dict:
    """Writes ``golden.npz`` and ``golden.json`` for the first ``rows`` rows of
    ``batch`` into ``folder``.

    Args:
        folder: The (temporary) version folder.
        reference: Called as ``reference(feed, training=False)``; returns a dict of
            outputs (the Keras model, or an exported module's reference).
        batch: A parity batch (inputs with the batch axis first).
        input_specs: The manifest's input specs (names and dtypes).
        atol, rtol: The parity tolerance, copied into ``golden.json``.
        rows: Rows taken from the batch.

    Returns:
        The manifest entry: ``{"npz", "json", "rows", "inputs", "outputs"}``.
    """
    from export.parity import as_input_dtype

    folder = Path(folder)
    feed = {}
    for spec in input_specs:
        value = np.asarray(batch[spec["name"]])
        feed[spec["name"]] = as_input_dtype(value[:rows], spec["dtype"])
    n = {int(v.shape[0]) for v in feed.values() if v.ndim}
    outputs = {
        k: np.asarray(v) for k, v in sorted(reference(feed, training=False).items())
    }
    np.savez(
        folder / GOLDEN_NPZ,
        **{f"input/{k}": _npz_array(v) for k, v in feed.items()},
        **{f"output/{k}": _npz_array(v) for k, v in outputs.items()},
    )
    doc = {
        "format": GOLDEN_FORMAT,
        "rows": n.pop() if len(n) == 1 else None,
        "tolerance": {"atol": float(atol), "rtol": float(rtol)},
        "inputs": [_entry(k, v) for k, v in feed.items()],
        "outputs": [_entry(k, v) for k, v in outputs.items()],
    }
    (folder / GOLDEN_JSON).write_text(
        json.dumps(doc, allow_nan=False, separators=(",", ":")), encoding="utf-8"
    )
    return {
        "npz": GOLDEN_NPZ,
        "json": GOLDEN_JSON,
        "format": GOLDEN_FORMAT,
        "rows": doc["rows"],
        "inputs": sorted(feed),
        "outputs": sorted(outputs),
    }


def load_golden(version_dir: str | Path, *, verify: bool = True) -> tuple[dict, dict]:
    """``(inputs, outputs)`` of ``golden.npz`` as dicts of arrays.

    ``verify``: first check the file's size and sha256 against the version's
    ``manifest.json``; a modified file raises `export.artifact.ExportError`
    naming it (so a runtime is never checked against altered references)."""
    if verify:
        from export.artifact import verify_listed

        verify_listed(version_dir, [GOLDEN_NPZ])
    with np.load(Path(version_dir) / GOLDEN_NPZ, allow_pickle=False) as z:
        ins = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("input/")}
        outs = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("output/")}
    return ins, outs
