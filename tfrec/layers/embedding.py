"""Embedding lookup with a defined out-of-vocabulary (OOV) policy.

Plain ``keras.layers.Embedding`` behaves differently per runtime for an id outside
``[0, num_ids)``: TF on CPU raises, TF on GPU returns zeros, onnxruntime raises, and an
id of -1 silently returns a real row in both TF and onnxruntime (see NOTES.md). A
serving graph must not depend on the runtime, so :class:`IdEmbedding` states one rule:

    **an id outside [0, num_ids) (negative, too large) looks up an all-zero vector.**

The rule is built from ``where``/``take``/``multiply``, which TF (CPU and GPU) and
ONNX evaluate identically, so an exported model scores an unknown user or item the
same everywhere: as the model's "nobody" representation (for a dot product: only the
biases). Code that has raw ids (data loaders, ``tfrec recommend``) rejects unknown ids
with a clear error before they reach the model; this layer is the safety net.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfrec")
class IdEmbedding(keras.layers.Layer):
    """Embedding of integer ids in ``[0, num_ids)``; other ids map to zeros.

    Args:
        num_ids: size of the vocabulary (valid ids are ``0 .. num_ids - 1``).
        output_dim: width of each embedding vector.
        embeddings_initializer: Keras initializer for the table.
        embeddings_regularizer: optional Keras regularizer on the looked-up rows'
            table (applied to the whole table, as ``keras.layers.Embedding`` does).
    """

    def __init__(
        self,
        num_ids: int,
        output_dim: int,
        *,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_ids) < 1:
            raise ValueError(
                f"`num_ids` must be a positive int. Received: num_ids={num_ids!r}"
            )
        if int(output_dim) < 1:
            raise ValueError(
                f"`output_dim` must be a positive int. Received: output_dim={output_dim!r}"
            )
        self.num_ids = int(num_ids)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_ids, self.output_dim),
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
        )

    def call(self, ids):
        ids = ops.cast(ids, "int64")
        valid = ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, self.num_ids))
        safe = ops.where(valid, ids, ops.zeros_like(ids))
        vectors = ops.take(self.embeddings, safe, axis=0)
        return vectors * ops.expand_dims(ops.cast(valid, vectors.dtype), -1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_ids=self.num_ids,
            output_dim=self.output_dim,
            embeddings_initializer=keras.initializers.serialize(
                self.embeddings_initializer
            ),
            embeddings_regularizer=keras.regularizers.serialize(
                self.embeddings_regularizer
            )
            if self.embeddings_regularizer
            else None,
        )
        return config


@keras.saving.register_keras_serializable(package="tfrec")
class Bias(keras.layers.Layer):
    """Adds one trainable scalar (a global bias) to its input."""

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")

    def call(self, x):
        return x + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
