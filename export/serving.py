"""Loading and running an exported version, with input validation.

``ExportedModel`` reads ``manifest.json``, verifies the size and sha256 of every
file the manifest lists (a modified, truncated or missing file is refused by
name), and runs either the ONNX model (onnxruntime) or the SavedModel (TF1
SignatureDef loader, as TF Serving does). Every call validates the feed against
the manifest's input specs first, identically for both runtimes:

* names, dtypes and shapes; an error names the input;
* integer inputs take integers only: floats, booleans and strings are refused,
  and so is any value the input's dtype cannot hold (``2**70``, a ``uint64``
  above ``2**63 - 1``), instead of wrapping around into another id;
* float inputs must be finite (a float64 beyond float32's range is refused);
* an axis of length 0 other than the batch (an empty session or history) is
  refused: give an empty sequence as one padding id per row. A row holding only
  padding is a valid request: the model answers as for a session or history
  without clicks (GRU4Rec: the scores of a new session's zero state; YouTube:
  the other features alone). A batch of 0 rows returns outputs with 0 rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from export.artifact import ExportError, load_manifest
from export.parity import as_input_dtype


def latest_version(model_dir: str | os.PathLike) -> Path:
    """The highest numeric version folder under ``model_dir``."""
    path = Path(model_dir)
    versions = sorted(
        (int(p.name) for p in path.iterdir() if p.name.isdigit())
        if path.is_dir()
        else []
    )
    if not versions:
        raise ExportError(f"No exported versions under {path}.")
    return path / str(versions[-1])


def resolve_version_dir(path: str | os.PathLike) -> Path:
    """Accepts either a version folder or a model folder (then the latest version)."""
    p = Path(path)
    if (p / "manifest.json").is_file() or p.name.isdigit():
        return p
    return latest_version(p)


class ExportedModel:
    """An exported tfrec model, run through ONNX or the SavedModel."""

    def __init__(
        self, path: str | os.PathLike, *, runtime: str = "onnx", variant: str | None = None
    ):
        if runtime not in ("onnx", "saved_model"):
            raise ValueError(
                f"`runtime` must be 'onnx' or 'saved_model'. Received: runtime={runtime!r}"
            )
        self.path = resolve_version_dir(path)
        self.manifest = load_manifest(self.path)  # file checksums verified, once
        self.runtime = runtime
        self.input_specs = {s["name"]: s for s in self.manifest["inputs"]}
        if runtime == "onnx":
            import onnxruntime as ort

            from export.optimize import session_options, variant_path

            onnx_path = variant_path(self.path, self.manifest, variant)
            if not onnx_path.is_file():
                raise ExportError(f"{onnx_path} is missing; re-export the model.")
            try:
                self._session = ort.InferenceSession(
                    str(onnx_path), session_options(variant),
                    providers=["CPUExecutionProvider"],
                )
            except Exception as err:  # onnxruntime raises its own exception types
                raise ExportError(
                    f"{onnx_path} could not be loaded (corrupt?): {err}"
                ) from err
            self._out_names = [o.name for o in self._session.get_outputs()]
        else:
            from export.parity import load_saved_model_tf1

            if not (self.path / "saved_model.pb").is_file():
                raise ExportError(
                    f"{self.path / 'saved_model.pb'} is missing; re-export."
                )
            try:
                self._runner = load_saved_model_tf1(self.path)
            except Exception as err:
                raise ExportError(
                    f"SavedModel at {self.path} could not be loaded (corrupt?): {err}"
                ) from err

    def validate(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Checks names, dtypes, values and shapes against the manifest; returns the
        feed as the runtimes take it (see the module docstring for the rules)."""
        missing = sorted(set(self.input_specs) - set(feed))
        extra = sorted(set(feed) - set(self.input_specs))
        if missing or extra:
            raise ValueError(
                f"Inputs do not match the model's: missing {missing}, unexpected {extra}. "
                f"Expected {sorted(self.input_specs)}."
            )
        out = {}
        batch = None
        for name, spec in sorted(self.input_specs.items()):
            value = _as_spec_dtype(name, feed[name], spec["dtype"])
            if value.ndim != len(spec["shape"]):
                raise ValueError(
                    f"Input {name!r} must have shape {spec['shape']} (None = any); "
                    f"received shape {list(value.shape)}."
                )
            for got, exp in zip(value.shape, spec["shape"], strict=True):
                if exp is not None and got != exp:
                    raise ValueError(
                        f"Input {name!r} must have shape {spec['shape']}; received "
                        f"{list(value.shape)}."
                    )
            if 0 in value.shape[1:]:
                raise ValueError(
                    f"Input {name!r} has an empty axis (shape {list(value.shape)}): an "
                    "empty session or history is given as one padding id per row "
                    f"(see the input's meaning in {self.path / 'manifest.json'})."
                )
            if batch is None:
                batch = value.shape[0] if value.ndim else None
            elif value.ndim and value.shape[0] != batch:
                raise ValueError(
                    f"All inputs need the same batch size; {name!r} has "
                    f"{value.shape[0]}, others {batch}."
                )
            out[name] = value
        return out

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = self.validate(feed)
        if self.runtime == "onnx":
            return dict(
                zip(self._out_names, self._session.run(None, feed), strict=True)
            )
        return self._runner(feed)

    def recommend(
        self, query: Mapping[str, np.ndarray], k: int, exclude=None
    ) -> dict[str, np.ndarray]:
        """Top-``k`` items per query row, ``exclude`` (ids, or ``[batch, n]``
        padded with -1) left out: ``{"item_ids", "scores"}`` (`export.recommend`).
        Raises ``ValueError`` for ``k`` outside ``[1, catalogue size]`` or an
        exclusion id outside the catalogue."""
        from export.recommend import run_recommend

        return run_recommend(self, query, k, exclude)


def _as_spec_dtype(name: str, value, dtype: str) -> np.ndarray:
    """``value`` converted to the spec's dtype, or a TypeError/ValueError naming
    the input when the conversion would change a value."""
    if dtype == "string":
        value = np.asarray(value, dtype=object if isinstance(value, list) else None)
        if value.dtype.kind not in "OUS" or not all(
            isinstance(v, (str, bytes)) for v in value.flat
        ):
            raise TypeError(
                f"Input {name!r} must hold strings; received dtype "
                f"{value.dtype.name}. Pass the raw values as str."
            )
        return as_input_dtype(value, "string")
    want = np.dtype(dtype)
    value = np.asarray(value)
    if np.issubdtype(want, np.integer):
        return _as_integers(name, value, want)
    if value.dtype.kind != "f":
        raise TypeError(
            f"Input {name!r} must have dtype {want.name}; received "
            f"{value.dtype.name}. Convert it first."
        )
    with np.errstate(over="ignore", invalid="ignore"):
        cast = value.astype(want)
    if not np.all(np.isfinite(cast)):
        bad = value.reshape(-1)[~np.isfinite(cast.reshape(-1))][0]
        raise ValueError(
            f"Input {name!r} must hold finite {want.name} values; received {bad!r}."
        )
    return cast


def _as_integers(name: str, value: np.ndarray, want: np.dtype) -> np.ndarray:
    info = np.iinfo(want)
    if value.dtype.kind == "O":  # Python ints beyond 64 bits, or mixed objects
        flat = list(value.flat)
        for v in flat:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(
                    f"Input {name!r} must hold integers ({want.name}); received a "
                    f"{type(v).__name__} ({v!r})."
                )
            if not info.min <= int(v) <= info.max:
                raise ValueError(
                    f"Input {name!r} holds {int(v)}, which {want.name} cannot "
                    f"represent (range {info.min}..{info.max}); ids are never wrapped."
                )
        return np.array([int(v) for v in flat], dtype=want).reshape(value.shape)
    if value.dtype.kind not in "iu":
        kind = {"f": "floats", "b": "booleans", "U": "strings", "S": "bytes"}.get(
            value.dtype.kind, value.dtype.name
        )
        first = f" (first value {value.reshape(-1)[0]!r})" if value.size else ""
        raise TypeError(
            f"Input {name!r} must have dtype {want.name} (integer ids); received "
            f"{value.dtype.name} {kind}{first}. Map raw ids to integer indices, and "
            "convert whole-number floats with .astype('int64')."
        )
    if value.dtype != want and value.size:
        low, high = value.min(), value.max()
        if low < info.min or high > info.max:
            bad = high if high > info.max else low
            raise ValueError(
                f"Input {name!r} holds {int(bad)}, which {want.name} cannot represent "
                f"(range {info.min}..{info.max}); ids are never wrapped."
            )
    return value.astype(want)
