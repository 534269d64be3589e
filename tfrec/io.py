"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj):
    """``json.dump`` default for numpy scalars/arrays, tuples, sets and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    """Writes JSON to a temporary file beside ``path``, then renames it (0644)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=jsonable) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes UTF-8 text to a temporary file beside ``path``, then renames it (0644)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes bytes to a temporary file beside ``path``, then renames it (0644).

    Plain Python writes: a full disk is an ``OSError`` (ENOSPC) and the temporary
    file is removed, never a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def weights_bytes(model) -> bytes:
    """``model.save_weights`` (weights and optimizer state, HDF5) into memory.

    HDF5 itself never writes to disk: on a full disk, h5py's file close crashes
    the process (a segmentation fault in ``ObjectID.__dealloc__``, seen here), so
    every weights file is built in memory and written by `atomic_write_bytes`.
    The result loads with ``model.load_weights(path)``.
    """
    import io

    from keras.src.saving import saving_lib  # Keras' own H5 store (BytesIO-capable)

    buf = io.BytesIO()
    store = saving_lib.H5IOStore(buf, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None,
                           inner_path="", visited_saveables=set())
    store.close()
    return buf.getvalue()


def keras_bytes(model) -> bytes:
    """``model.save(...keras)`` into memory (see `weights_bytes` for why)."""
    import io

    from keras.src.saving import saving_lib

    buf = io.BytesIO()
    saving_lib.save_model(model, buf)
    return buf.getvalue()


def save_weights_atomic(model, path: str | os.PathLike) -> None:
    """A ``.weights.h5`` file, built in memory, written atomically."""
    atomic_write_bytes(path, weights_bytes(model))


def save_keras_atomic(model, path: str | os.PathLike) -> None:
    """A ``.keras`` file, built in memory, written atomically."""
    atomic_write_bytes(path, keras_bytes(model))
