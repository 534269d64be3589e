"""item2vec: word2vec (skip-gram and CBOW) over item sequences; serving graphs.

References:
    Oren Barkan, Noam Koenigstein. "Item2Vec: Neural Item Embedding for
    Collaborative Filtering". IEEE MLSP 2016 (arXiv:1603.04259).
    Tomas Mikolov, Ilya Sutskever, Kai Chen, Greg Corrado, Jeffrey Dean.
    "Distributed Representations of Words and Phrases and their
    Compositionality". NIPS 2013 (negative sampling, subsampling).
    Tomas Mikolov, Kai Chen, Greg Corrado, Jeffrey Dean. "Efficient Estimation of
    Word Representations in Vector Space". ICLR 2013 workshop (CBOW, skip-gram).

Items are words and sequences (sessions, user histories, sets) are sentences.
Item ids are 0-based (``0 .. num_items - 1``); Sessions index ``k`` is item2vec
id ``k - 1``.

**Serving graphs** (registered, exported):

* :func:`item2vec`: ``{item_id} -> {item_embedding}`` (the ``u`` table; OOV ids ->
  zeros, :class:`tfrec.layers.IdEmbedding`).
* :func:`item2vec_similar`: ``{item_id} -> {similar_items [B, k] int64,
  similarity [B, k]}``: cosine similarity over the L2-normalised table,
  ``top_k`` excluding the item itself (ONNX ``TopK``). An id outside
  ``[0, num_items)`` returns ``similar_items = -1`` and ``similarity = 0``.

:func:`serving_models` builds both from a trained table (or any model with an
``item_embedding`` layer). The skip-gram / CBOW **training graphs** and the
negative-sampling objective live in :mod:`tfrec.training.item2vec`; the recipe
that trains them (``tfrec train item2vec``) is :mod:`tfrec.recipes.item2vec`.

Faithfulness notes:

* The paper trains with per-pair SGD and a linearly decaying learning rate
  (word2vec's C code); here mini-batches through Keras ``fit`` with any
  `tfrec.training.make_optimizer` optimiser (the recipe offers word2vec's linear
  decay as ``lr_schedule="linear"``). The loss per pair is the paper's
  ``-log s(u.v+) - sum_neg log s(-u.v-)`` (summed over the noise items, averaged
  over the batch).
* Initialisation follows word2vec: ``u ~ U(-0.5/d, 0.5/d)``, ``v = 0``.
* The paper uses the ``u`` vectors as the item representation (its Section 3
  notes ``u`` or ``u + v`` work); ``u`` is what the serving models export.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfrec.layers import IdEmbedding
from tfrec.registry import Tolerance, register_model


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


# ---------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="tfrec")
class SimilarItems(keras.layers.Layer):
    """Top-``k`` items by cosine similarity to a query item, excluding itself.

    Owns the item table ``embeddings [num_ids, output_dim]``. Rows are
    L2-normalised (a zero row stays zero), the query row is compared with every
    row, the query's own column is pushed below any cosine (-3), and ``top_k``
    returns ids (int64) and similarities. A query id outside ``[0, num_ids)``
    returns ids ``-1`` and similarities ``0``.
    """

    def __init__(self, num_ids: int, output_dim: int, k: int, **kwargs):
        super().__init__(**kwargs)
        _check_positive("num_ids", num_ids)
        _check_positive("output_dim", output_dim)
        _check_positive("k", k)
        if k > num_ids - 1:
            raise ValueError(
                f"`k` must be at most num_items - 1 = {num_ids - 1} (the item itself "
                f"is excluded). Received: k={k}"
            )
        self.num_ids, self.output_dim, self.k = int(num_ids), int(output_dim), int(k)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_ids, self.output_dim),
            initializer="uniform",
        )

    def call(self, ids):
        ids = ops.cast(ids, "int64")
        valid = ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, self.num_ids))
        safe = ops.where(valid, ids, ops.zeros_like(ids))
        table = self.embeddings
        norms = ops.sqrt(ops.sum(ops.square(table), axis=1, keepdims=True))
        unit = table / ops.maximum(norms, 1e-12)
        query = ops.take(unit, safe, axis=0)  # [B, d]
        sims = ops.matmul(query, ops.transpose(unit))  # [B, N]
        is_self = ops.cast(
            ops.equal(
                ops.expand_dims(safe, 1),
                ops.expand_dims(ops.arange(self.num_ids, dtype="int64"), 0),
            ),
            sims.dtype,
        )
        sims = sims * (1.0 - is_self) - 3.0 * is_self
        values, indices = ops.top_k(sims, self.k, sorted=True)
        keep = ops.expand_dims(valid, 1)
        indices = ops.where(
            keep, ops.cast(indices, "int64"), ops.full_like(indices, -1, "int64")
        )
        values = ops.where(keep, values, ops.zeros_like(values))
        return {"similar_items": indices, "similarity": values}

    def compute_output_spec(self, ids):
        shape = (ids.shape[0], self.k)
        return {
            "similar_items": keras.KerasTensor(shape, dtype="int64"),
            "similarity": keras.KerasTensor(shape, dtype=self.compute_dtype),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "num_ids": self.num_ids,
            "output_dim": self.output_dim,
            "k": self.k,
        }


def item_embeddings(training_model: keras.Model) -> np.ndarray:
    """The trained item table ``u`` (``[num_items, embedding_dim]``, float32) of
    a model with an ``item_embedding`` layer (a training graph of
    :mod:`tfrec.training.item2vec`, or the :func:`item2vec` serving graph)."""
    try:
        layer = training_model.get_layer("item_embedding")
    except ValueError as err:
        raise ValueError(
            f"Model {training_model.name!r} has no layer 'item_embedding'; pass an "
            "item2vec training graph (tfrec.training.item2vec) or serving graph."
        ) from err
    return np.asarray(layer.get_weights()[0], np.float32)


# ------------------------------------------------------------ serving graphs


def _example_inputs(kwargs: dict, batch_size: int, rng: np.random.Generator) -> dict:
    return {"item_id": rng.integers(0, kwargs["num_items"], batch_size, dtype=np.int64)}


_TINY = {"num_items": 17, "embedding_dim": 8}


@register_model(
    task="embedding",
    example_inputs=_example_inputs,
    test_kwargs=_TINY,
    parity=Tolerance(1e-6, 0.0, "an embedding lookup copies float32 values exactly"),
    paper="Barkan & Koenigstein 2016 (item2vec)",
)
def item2vec(num_items: int, *, embedding_dim: int = 100) -> keras.Model:
    """item2vec serving graph: the item's embedding.

    Args:
        num_items: catalogue size (ids ``0..num_items-1``).
        embedding_dim: embedding width.

    Returns:
        A functional model ``{item_id} -> {item_embedding [B, embedding_dim]}``;
        ids outside ``[0, num_items)`` give zeros. Fill it from a trained training
        graph with :func:`serving_models`.
    """
    _check_positive("num_items", num_items)
    _check_positive("embedding_dim", embedding_dim)
    item_id = keras.Input(shape=(), dtype="int64", name="item_id")
    vec = IdEmbedding(num_items, embedding_dim, name="item_embedding")(item_id)
    return keras.Model({"item_id": item_id}, {"item_embedding": vec}, name="item2vec")


@register_model(
    task="retrieval",
    example_inputs=_example_inputs,
    test_kwargs={**_TINY, "k": 5},
    parity=Tolerance(
        1e-5, 1e-5, "float32 cosine matmul; ids must match exactly (no near-ties)"
    ),
    paper="Barkan & Koenigstein 2016 (item2vec, similar items)",
)
def item2vec_similar(
    num_items: int, *, embedding_dim: int = 100, k: int = 10
) -> keras.Model:
    """item2vec similar-items graph: the ``k`` most cosine-similar other items.

    Args:
        num_items: catalogue size (ids ``0..num_items-1``).
        embedding_dim: embedding width.
        k: neighbours returned (fixed at build/export time; at most
            ``num_items - 1``).

    Returns:
        A functional model ``{item_id} -> {similar_items [B, k] int64, similarity
        [B, k] float32}``, most similar first; the item itself is never returned.
        An id outside ``[0, num_items)`` returns ids ``-1`` and similarity 0.
    """
    _check_positive("num_items", num_items)
    _check_positive("embedding_dim", embedding_dim)
    item_id = keras.Input(shape=(), dtype="int64", name="item_id")
    out = SimilarItems(num_items, embedding_dim, k, name="similar_items")(item_id)
    return keras.Model(
        {"item_id": item_id},
        {"similar_items": out["similar_items"], "similarity": out["similarity"]},
        name="item2vec_similar",
    )


def serving_models(training_model_or_table, *, k: int = 10) -> dict[str, keras.Model]:
    """Builds the registered serving graphs from a trained training graph.

    Args:
        training_model_or_table: a trained model with an ``item_embedding``
            layer (``tfrec.training.item2vec.item2vec_skipgram`` /
            ``item2vec_cbow``), or the ``[num_items, d]`` item table.
        k: neighbours of the similar-items model.

    Returns:
        ``{"item2vec": item_id -> item_embedding, "item2vec_similar": item_id ->
        similar_items, similarity}``, both holding a copy of the trained ``u``
        table.
    """
    if isinstance(training_model_or_table, keras.Model):
        table = item_embeddings(training_model_or_table)
    else:
        table = np.asarray(training_model_or_table, np.float32)
        if table.ndim != 2 or 0 in table.shape:
            raise ValueError(
                "The item table must be a non-empty 2-D array [num_items, dim]. "
                f"Received shape {table.shape}."
            )
    num_items, dim = (int(d) for d in table.shape)
    embedding = item2vec(num_items, embedding_dim=dim)
    embedding.get_layer("item_embedding").set_weights([table])
    similar = item2vec_similar(num_items, embedding_dim=dim, k=k)
    similar.get_layer("similar_items").set_weights([table])
    return {"item2vec": embedding, "item2vec_similar": similar}
