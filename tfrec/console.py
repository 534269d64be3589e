"""A quiet console: what the user needs, not C++ start-up lines or converter
warnings. ``tfrec --debug`` (or ``TFREC_DEBUG=1``) shows everything."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def debug_enabled() -> bool:
    return bool(os.environ.get("TFREC_DEBUG"))


def running_command() -> bool:
    """Whether this process is the ``tfrec`` / ``tfrec-export`` command."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return name in ("tfrec", "tfrec-export") or sys.argv[0:1] == ["-m"]


def quiet_environment(*, command_only: bool = False) -> None:
    """Before TensorFlow is imported: hide its C++ log lines. ``command_only``: only
    when this process is the ``tfrec`` command (``import tfrec`` calls it so the
    command is quiet from its first line; a library user's setting is kept)."""
    if "--debug" in sys.argv[1:] and running_command():
        os.environ["TFREC_DEBUG"] = "1"
    if command_only and not running_command():
        return
    if debug_enabled():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        # TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA probe) through
        # absl before its log level applies, so TF_CPP_MIN_LOG_LEVEL cannot hide
        # them (checked); import it once with the stderr descriptor pointed at
        # /dev/null instead. Import errors are re-raised after stderr is back.
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            sys.stderr.flush()
            os.dup2(devnull, 2)
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def quiet() -> None:
    """Python-side: TF / tf2onnx / absl loggers to errors only, library warnings
    (retracing, converter notices, Keras hints) off."""
    quiet_environment()
    if debug_enabled():
        return
    for name in ("tensorflow", "tf2onnx", "absl", "onnx", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    try:
        import tensorflow as tf

        tf.get_logger().setLevel(logging.ERROR)
        tf.autograph.set_verbosity(0)
    except ImportError:  # pragma: no cover
        pass
