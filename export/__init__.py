"""Export layer: SavedModel (TF Serving layout) + ONNX, verified for numerical parity.

``export`` depends on ``tfrec``; ``tfrec`` never imports ``export``. tf2onnx and
onnxruntime are imported lazily, inside the functions that need them.

Main entry point: :func:`export_model`.
"""

from export.artifact import (
    ONNX_OPSET,
    ExportError,
    export_model,
    load_manifest,
    next_version,
)

__all__ = ["ONNX_OPSET", "ExportError", "export_model", "load_manifest", "next_version"]
