"""Adapters that turn a model into ``score_fn(users, items) -> scores``.

Evaluation protocols (``tfrec.evaluation``) are model-agnostic: they call a
``score_fn``. These adapters wrap a Keras model (compiled once with a fixed
signature, scored in large batches) or any callable taking the input dict.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf


def output_name(model) -> str:
    """The name of a single-output dict model's output."""
    outputs = model.output
    if not isinstance(outputs, dict) or len(outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} must have exactly one named output to be scored; "
            f"got {list(outputs) if isinstance(outputs, dict) else type(outputs).__name__}."
        )
    return next(iter(outputs))


def keras_scorer(
    model, *, output: str | None = None, batch_size: int = 262_144
) -> Callable:
    """A ``score_fn`` running ``model`` in inference mode on int64 id arrays."""
    name = output or output_name(model)
    spec = tf.TensorSpec((None,), tf.int64)

    @tf.function(input_signature=[spec, spec], reduce_retracing=True)
    def _score(users, items):
        return model({"user_id": users, "item_id": items}, training=False)[name]

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        parts = [
            _score(users[s : s + batch_size], items[s : s + batch_size]).numpy()
            for s in range(0, len(users), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    return score_fn


def feed_scorer(
    predict: Callable[[dict], dict], output: str, *, batch_size: int = 65_536
) -> Callable:
    """A ``score_fn`` for any ``predict(feed_dict) -> output_dict`` (e.g. ONNX)."""

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        parts = [
            np.asarray(
                predict(
                    {
                        "user_id": users[s : s + batch_size],
                        "item_id": items[s : s + batch_size],
                    }
                )[output]
            )
            for s in range(0, len(users), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    return score_fn
