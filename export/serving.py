"""Loading and running an exported version, with input validation.

``ExportedModel`` reads ``manifest.json`` and runs either the ONNX model
(onnxruntime) or the SavedModel (TF1 SignatureDef loader, as TF Serving does). Every
call validates the feed against the manifest's input specs first, so a wrong name,
dtype or shape gets a clear error instead of a runtime's internal message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from export.artifact import ONNX_FILE, ExportError, load_manifest
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

    def __init__(self, path: str | os.PathLike, *, runtime: str = "onnx"):
        if runtime not in ("onnx", "saved_model"):
            raise ValueError(
                f"`runtime` must be 'onnx' or 'saved_model'. Received: runtime={runtime!r}"
            )
        self.path = resolve_version_dir(path)
        self.manifest = load_manifest(self.path)
        self.runtime = runtime
        self.input_specs = {s["name"]: s for s in self.manifest["inputs"]}
        if runtime == "onnx":
            import onnxruntime as ort

            onnx_path = self.path / ONNX_FILE
            if not onnx_path.is_file():
                raise ExportError(f"{onnx_path} is missing; re-export the model.")
            try:
                self._session = ort.InferenceSession(
                    str(onnx_path), providers=["CPUExecutionProvider"]
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
        """Checks names, dtypes and shapes against the manifest; returns the feed."""
        missing = sorted(set(self.input_specs) - set(feed))
        extra = sorted(set(feed) - set(self.input_specs))
        if missing or extra:
            raise ValueError(
                f"Inputs do not match the model's: missing {missing}, unexpected {extra}. "
                f"Expected {sorted(self.input_specs)}."
            )
        out = {}
        batch = None
        for name, spec in self.input_specs.items():
            value = np.asarray(feed[name])
            if spec["dtype"] == "string":
                if value.dtype.kind not in "OUS" or not all(
                    isinstance(v, (str, bytes)) for v in value.flat
                ):
                    raise TypeError(
                        f"Input {name!r} must hold strings; received dtype "
                        f"{value.dtype.name}. Pass the raw values as str."
                    )
                value = as_input_dtype(value, "string")
                want = value.dtype
            else:
                want = np.dtype(spec["dtype"])
            if value.dtype != want:
                same_kind = (
                    np.issubdtype(value.dtype, np.integer)
                    and np.issubdtype(want, np.integer)
                ) or (
                    np.issubdtype(value.dtype, np.floating)
                    and np.issubdtype(want, np.floating)
                )
                if not same_kind:
                    raise TypeError(
                        f"Input {name!r} must have dtype {want.name}; received "
                        f"{value.dtype.name}. Convert it first (ids are integers)."
                    )
                value = value.astype(want)
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
