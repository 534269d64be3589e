"""Top-K retrieval index over item embeddings, built on TFRS ``BruteForce``.

This is the only tfrec module that imports TensorFlow Recommenders (TFRS). TFRS
0.7 needs ``tf.keras`` to be Keras 2 (``tf_keras``), and the documented switch,
``TF_USE_LEGACY_KERAS=1``, would turn ``tf.keras`` into Keras 2 for the whole
process, the user's own code included. Instead TFRS is imported against a private
view of the ``tensorflow`` module whose ``keras`` is ``tf_keras``
(:func:`_import_tfrs`): TFRS's modules bind that view as their ``tf``, while
``tf.keras`` everywhere else stays what it was (Keras 3) and the environment is
not touched. No tf_keras layer ever enters a Keras 3 model: the index is a
``tf.Module`` that calls the Keras 3 query tower, then the TFRS index on its
output.

:class:`RetrievalIndex` serves Covington et al.'s candidate generation: the query
tower's ``query_embedding`` is scored against every indexed item embedding by
dot product (exact nearest-neighbour search), the items in the request's own
``item_history`` are excluded (already watched), and the top ``k`` (fixed when
the index is built) are returned as ``item_ids`` (int64 item indices) and
``scores`` (float32, descending). Its ``serve`` ``tf.function`` is the
SavedModel signature; ``export/pipeline.py`` writes it and checks ONNX parity.

Exclusion detail: the index retrieves ``min(k + L, N)`` items, where ``L`` is
the history width of the request, and drops the history's ids (the rule of
TFRS's ``query_with_exclusions``, here with a dynamic ``L``). If a request
excludes so many items that fewer than ``k`` remain, excluded items fill the
tail with their scores lowered by ``EXCLUSION_PENALTY``.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import tensorflow as tf


def _import_tfrs():
    """``tensorflow_recommenders``, imported with ``tf.keras`` = ``tf_keras`` for
    its own modules only (they do ``import tensorflow as tf`` at import time and
    keep that binding): ``sys.modules["tensorflow"]`` is a delegating view while
    TFRS imports, then the real module again."""
    if "tensorflow_recommenders" in sys.modules:
        return sys.modules["tensorflow_recommenders"]
    import tf_keras  # first, so it binds the real tensorflow

    class _LegacyKerasView(types.ModuleType):
        def __getattr__(self, name):
            return tf_keras if name == "keras" else getattr(tf, name)

    view = _LegacyKerasView("tensorflow")
    view.__path__ = tf.__path__  # `import tensorflow.x` still finds submodules
    real = sys.modules["tensorflow"]
    sys.modules["tensorflow"] = view
    try:
        import tensorflow_recommenders
    finally:
        sys.modules["tensorflow"] = real
    return tensorflow_recommenders


tfrs = _import_tfrs()

EXCLUSION_PENALTY = 1.0e5
OUTPUTS = ("item_ids", "scores")


def _input_specs(query_tower) -> dict[str, tf.TensorSpec]:
    specs = {}
    for name, tensor in sorted(query_tower.input.items()):
        shape = [None] + [None if d is None else int(d) for d in tensor.shape[1:]]
        specs[name] = tf.TensorSpec(shape, tensor.dtype, name=name)
    return specs


class RetrievalIndex(tf.Module):
    """Query tower + TFRS ``BruteForce`` index with history exclusion.

    Args:
        query_tower: functional Keras 3 model with dict inputs and a
            ``query_embedding`` output.
        item_embeddings: ``[N, D]`` float32 candidate embeddings.
        k: results per query (at most ``N``).
        identifiers: ``[N]`` int64 ids returned for the rows (default 0..N-1).
        exclude_history: whether ids in the request's ``item_history`` input are
            excluded.
    """

    def __init__(
        self,
        query_tower,
        item_embeddings,
        *,
        k: int = 100,
        identifiers=None,
        exclude_history: bool = True,
        name: str = "retrieval_index",
    ):
        super().__init__(name=name)
        emb = np.asarray(item_embeddings, np.float32)
        if emb.ndim != 2 or emb.shape[0] < 1:
            raise ValueError(
                "`item_embeddings` must be a non-empty [num_items, dim] array. "
                f"Received shape {emb.shape}."
            )
        if not np.all(np.isfinite(emb)):
            raise ValueError("`item_embeddings` contain NaN or infinite values.")
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= emb.shape[0]:
            raise ValueError(
                f"`k` must be an int in [1, {emb.shape[0]}] (the number of items). "
                f"Received: k={k!r}"
            )
        ids = (
            np.arange(emb.shape[0], dtype=np.int64)
            if identifiers is None
            else np.asarray(identifiers, np.int64)
        )
        if ids.shape != (emb.shape[0],):
            raise ValueError(
                f"`identifiers` must have one id per row ({emb.shape[0]}). Received "
                f"shape {ids.shape}."
            )
        if "query_embedding" not in query_tower.output:
            raise ValueError(
                "The query tower must output 'query_embedding'; it outputs "
                f"{sorted(query_tower.output)}."
            )
        width = int(query_tower.output["query_embedding"].shape[-1])
        if width != emb.shape[1]:
            raise ValueError(
                f"Query embeddings have width {width} but item embeddings "
                f"{emb.shape[1]}; index the matching item tower."
            )
        self.k = int(k)
        self.num_items = int(emb.shape[0])
        self.exclude_history = bool(exclude_history) and (
            "item_history" in query_tower.input
        )
        self.query_tower = query_tower
        self.index = tfrs.layers.factorized_top_k.BruteForce(k=self.k)
        self.index.index(tf.constant(emb), tf.constant(ids))
        self.input_specs = _input_specs(query_tower)
        self.serve = tf.function(self._serve, input_signature=[self.input_specs])
        # Keras 3 layers are not tracked as SavedModel children of a tf.Module:
        # track the variables the traced signature reads, as Keras' own
        # ExportArchive does, so the SavedModel (and the TF1 loader) has them.
        concrete = self.serve.get_concrete_function()
        self.serving_variables = list(concrete.variables)

    def _serve(self, features):
        query = self.query_tower(features, training=False)["query_embedding"]
        if not self.exclude_history:
            scores, ids = self.index(query, k=self.k)
            return {"item_ids": ids, "scores": scores}
        history = tf.cast(features["item_history"], tf.int64)
        fetch = tf.minimum(self.k + tf.shape(history)[1], self.num_items)
        scores, ids = self.index(query, k=fetch)
        hit = tf.reduce_any(tf.equal(ids[:, :, None], history[:, None, :]), axis=-1)
        adjusted = scores - tf.cast(hit, scores.dtype) * EXCLUSION_PENALTY
        top, order = tf.math.top_k(adjusted, k=self.k)
        return {"item_ids": tf.gather(ids, order, batch_dims=1), "scores": top}

    def __call__(self, features, training=False):
        """Runs the index on a dict of numpy arrays; returns numpy arrays."""
        del training
        missing = sorted(set(self.input_specs) - set(features))
        if missing:
            raise ValueError(
                f"Missing query features {missing}; the index takes "
                f"{sorted(self.input_specs)}."
            )
        feed = {
            k: tf.convert_to_tensor(np.asarray(features[k]), dtype=s.dtype)
            for k, s in self.input_specs.items()
        }
        return {k: np.asarray(v) for k, v in self.serve(feed).items()}


def topk_reference(query, item_embeddings, k, exclude=None) -> tuple[np.ndarray, ...]:
    """Numpy reference: ``argsort(-(query @ items.T))[:, :k]`` (ids, scores)."""
    scores = np.asarray(query, np.float64) @ np.asarray(item_embeddings, np.float64).T
    if exclude is not None:
        for row, ids in enumerate(exclude):
            ids = [i for i in ids if 0 <= i < scores.shape[1]]
            scores[row, ids] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)
