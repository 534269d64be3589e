"""item2vec training graphs and objective (never exported).

Reference: Barkan & Koenigstein, "Item2Vec: Neural Item Embedding for
Collaborative Filtering", IEEE MLSP 2016 (Eq. 2: skip-gram with negative
sampling over item sets); Mikolov et al. 2013 (negative sampling, CBOW).

* :func:`item2vec_skipgram`: ``{item_id [B], output_item_ids [B, 1 + n]} ->
  {logits [B, 1 + n]}``, ``logits = <u_item, v_output>``, trained with
  :func:`negative_sampling_loss` (the item2vec objective); ``loss="softmax"``:
  ``{item_id} -> {logits [B, num_items]}`` for a full softmax (Eq. 1) on small
  catalogues.
* :func:`item2vec_cbow`: ``{context_item_ids [B, C] (padded with -1),
  output_item_ids [B, 1 + n]} -> {logits}``; the hidden vector is the mean of the
  valid context vectors (word2vec's ``cbow_mean=1``).

Both hold two tables as in word2vec: ``item_embedding`` (the input vectors ``u``,
initialised ``U(-0.5/d, 0.5/d)``, the item representation the serving graphs of
:mod:`tfrec.models.item2vec` copy) and ``output_embedding`` (the output vectors
``v``, initialised to zeros). Examples come from :mod:`tfrec.data.word2vec`; the
recipe (:mod:`tfrec.recipes.item2vec`) wires them together::

    ds, source = skipgram_dataset(sessions, window=5, num_negatives=15)
    model = compile_item2vec(item2vec_skipgram(source.num_items, embedding_dim=64))
    model.fit(ds, epochs=10, callbacks=[SamplerEpochCallback(source)])
    served = serving_models(model, k=10)  # {"item2vec": ..., "item2vec_similar": ...}
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfrec.layers import IdEmbedding
from tfrec.training.optimizers import make_optimizer

LOSSES = ("negative_sampling", "softmax")

__all__ = [
    "LOSSES",
    "BagMean",
    "OutputLogits",
    "compile_item2vec",
    "item2vec_cbow",
    "item2vec_skipgram",
    "negative_sampling_loss",
]


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _check_loss(loss):
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {LOSSES}. Received: loss={loss!r}")


def _input_init(embedding_dim):
    half = 0.5 / embedding_dim
    return keras.initializers.RandomUniform(-half, half)


# ---------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="tfrec")
class OutputLogits(keras.layers.Layer):
    """``logits[b, j] = <hidden[b], outputs[b, j]>`` for ``hidden [B, d]`` and
    ``outputs [B, K, d]``."""

    def call(self, inputs):
        hidden, outputs = inputs
        return ops.einsum("bd,bkd->bk", hidden, outputs)

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[1][:2])


@keras.saving.register_keras_serializable(package="tfrec")
class BagMean(keras.layers.Layer):
    """Mean of the context vectors whose ids lie in ``[0, num_ids)``.

    Inputs ``[vectors [B, C, d], ids [B, C]]``; padding (``-1``) and other
    out-of-range ids are left out. A bag with no valid id gives zeros.
    """

    def __init__(self, num_ids: int, **kwargs):
        super().__init__(**kwargs)
        self.num_ids = int(num_ids)

    def call(self, inputs):
        vectors, ids = inputs
        ids = ops.cast(ids, "int64")
        valid = ops.cast(
            ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, self.num_ids)),
            vectors.dtype,
        )
        total = ops.sum(vectors * ops.expand_dims(valid, -1), axis=1)
        count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
        return total / count

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[0][2])

    def get_config(self):
        return {**super().get_config(), "num_ids": self.num_ids}



@keras.saving.register_keras_serializable(package="tfrec")
def negative_sampling_loss(y_true, logits):
    """word2vec's negative-sampling loss per example:
    ``sum_j [-y_j log s(x_j) - (1 - y_j) log s(-x_j)]`` over the ``1 + n`` output
    items (labels ``[1, 0, ..., 0]``); Keras averages it over the batch."""
    y_true = ops.cast(y_true, logits.dtype)
    # Stable log-sigmoid cross-entropy: max(x, 0) - x y + log(1 + exp(-|x|)).
    per_item = (
        ops.maximum(logits, 0.0)
        - logits * y_true
        + ops.log1p(ops.exp(-ops.abs(logits)))
    )
    return ops.sum(per_item, axis=-1)


def _compile_loss(loss):
    if loss == "negative_sampling":
        return negative_sampling_loss
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


# ---------------------------------------------------------- training graphs


def _output_logits(hidden, inputs, num_items, embedding_dim, loss):
    if loss == "softmax":
        return keras.layers.Dense(
            num_items,
            use_bias=False,
            kernel_initializer="zeros",
            name="output_embedding",
        )(hidden)
    outputs = IdEmbedding(
        num_items,
        embedding_dim,
        embeddings_initializer="zeros",
        name="output_embedding",
    )(inputs["output_item_ids"])
    return OutputLogits(name="output_logits")([hidden, outputs])


def item2vec_skipgram(
    num_items: int,
    *,
    embedding_dim: int = 100,
    loss: str = "negative_sampling",
) -> keras.Model:
    """Skip-gram training graph: predict the context items of an item.

    Reference: Barkan & Koenigstein 2016, Eq. 2 (skip-gram with negative
    sampling over item sets); Mikolov et al. 2013.

    Args:
        num_items: catalogue size (ids ``0..num_items-1``).
        embedding_dim: width of both tables (the paper: 40-100).
        loss: ``negative_sampling`` (inputs ``item_id``, ``output_item_ids``) or
            ``softmax`` (input ``item_id``, logits over all items).

    Returns:
        A functional model with output ``logits``; compile it with
        :func:`compile_item2vec` (or with :func:`negative_sampling_loss`).

    Example:
        >>> model = item2vec_skipgram(num_items=1682, embedding_dim=64)
    """
    _check_positive("num_items", num_items)
    _check_positive("embedding_dim", embedding_dim)
    _check_loss(loss)
    inputs = {"item_id": keras.Input(shape=(), dtype="int64", name="item_id")}
    if loss == "negative_sampling":
        inputs["output_item_ids"] = keras.Input(
            shape=(None,), dtype="int64", name="output_item_ids"
        )
    hidden = IdEmbedding(
        num_items,
        embedding_dim,
        embeddings_initializer=_input_init(embedding_dim),
        name="item_embedding",
    )(inputs["item_id"])
    logits = _output_logits(hidden, inputs, num_items, embedding_dim, loss)
    logits = keras.layers.Identity(name="logits")(logits)
    return keras.Model(inputs, {"logits": logits}, name="item2vec_skipgram")


def item2vec_cbow(
    num_items: int,
    *,
    embedding_dim: int = 100,
    loss: str = "negative_sampling",
) -> keras.Model:
    """CBOW training graph: predict an item from the mean of its context items.

    Reference: Mikolov et al. 2013 (CBOW with ``cbow_mean=1``); item2vec's
    objective with the context bag as the input.

    Args:
        num_items: catalogue size (ids ``0..num_items-1``).
        embedding_dim: width of both tables.
        loss: ``negative_sampling`` (inputs ``context_item_ids``,
            ``output_item_ids``) or ``softmax`` (input ``context_item_ids``).

    Returns:
        A functional model with output ``logits``.
    """
    _check_positive("num_items", num_items)
    _check_positive("embedding_dim", embedding_dim)
    _check_loss(loss)
    inputs = {
        "context_item_ids": keras.Input(
            shape=(None,), dtype="int64", name="context_item_ids"
        )
    }
    if loss == "negative_sampling":
        inputs["output_item_ids"] = keras.Input(
            shape=(None,), dtype="int64", name="output_item_ids"
        )
    vectors = IdEmbedding(
        num_items,
        embedding_dim,
        embeddings_initializer=_input_init(embedding_dim),
        name="item_embedding",
    )(inputs["context_item_ids"])
    hidden = BagMean(num_items, name="context_mean")(
        [vectors, inputs["context_item_ids"]]
    )
    logits = _output_logits(hidden, inputs, num_items, embedding_dim, loss)
    logits = keras.layers.Identity(name="logits")(logits)
    return keras.Model(inputs, {"logits": logits}, name="item2vec_cbow")


def compile_item2vec(
    model: keras.Model, optimizer="adam", *, learning_rate: float | None = None
) -> keras.Model:
    """Compiles a training graph with its loss (negative sampling or softmax).

    Args:
        model: :func:`item2vec_skipgram` / :func:`item2vec_cbow`.
        optimizer: a `tfrec.training.make_optimizer` name or an optimizer.
        learning_rate: step size for a named optimizer (default 0.001).
    """
    loss = "softmax" if "output_item_ids" not in model.input else "negative_sampling"
    if isinstance(optimizer, str):
        optimizer = make_optimizer(
            optimizer, 0.001 if learning_rate is None else learning_rate
        )
    model.compile(optimizer=optimizer, loss={"logits": _compile_loss(loss)})
    return model
