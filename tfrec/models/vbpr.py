"""VBPR: Visual Bayesian Personalized Ranking, and its BPR-MF baseline.

References:
    Ruining He, Julian McAuley. "VBPR: Visual Bayesian Personalized Ranking
    from Implicit Feedback". AAAI 2016.
    Steffen Rendle, Christoph Freudenthaler, Zeno Gantner, Lars Schmidt-Thieme.
    "BPR: Bayesian Personalized Ranking from Implicit Feedback". UAI 2009.

The paper's predictor (Eq. 2) is

    x_ui = alpha + beta_u + beta_i + gamma_u . gamma_i
           + theta_u . (E f_i) + beta' . f_i

with ``f_i`` the item's visual feature vector (4096-d deep CNN features in
the paper), ``E`` a ``visual_dim x feature_dim`` projection, ``theta_u`` the
user's visual factors and ``beta'`` the visual bias vector.

What is kept: ``alpha`` and ``beta_u`` are dropped. They are the same for the
positive and the negative of a BPR triple, so they cancel in
``x_uij = x_ui - x_uj``, get no gradient under the BPR loss, and never change
the ranking of a user's items. Everything else is kept as in Eq. 2.

Serving models (functional, dict in / dict out):

* :func:`vbpr`: ``{user_id, item_id, item_features} -> {score}``;
* :func:`bpr_mf`: ``{user_id, item_id} -> {score}``, ``x_ui = beta_i +
  gamma_u . gamma_i`` (BPR-MF with item bias, VBPR without its visual part).

Item ids outside ``[0, num_items)`` look up zero ``gamma_i`` and ``beta_i``
(`tfrec.layers.IdEmbedding`): a cold item (no training interaction) is scored
from its features alone, ``theta_u . (E f_i) + beta' . f_i``. With
`tfrec.data.coldstart`, build the model with ``num_items=split.num_warm_items``
and every cold item is such an id.

Training (:class:`BPRTrainer`, :func:`train_bpr`) wraps the serving model:
BPR loss ``-mean(ln sigma(x_ui - x_uj))`` on (user, positive, negative)
triples from `tfrec.data.pairwise`, with the paper's L2 regularisation: for
each triple ``l2 * (|gamma_u|^2 + |theta_u|^2 + |gamma_i|^2 + |gamma_j|^2 +
beta_i^2 + beta_j^2)`` (the rows it touches, as in SGD-trained BPR), averaged
over the batch, plus ``l2_visual * (|E|^2 + |beta'|^2)`` per step (the paper's
separate lambda_E for the shared visual parameters).

Deviations: Adam with mini-batches instead of the paper's plain SGD on single
bootstrap-sampled triples (`train_bpr` takes any optimizer name); factors are
initialised from N(0, 0.01) (the paper does not state its initialisation).

What real deployments feed as ``item_features``: the paper's 4096-d fc7
features of a pre-trained image CNN (Caffe reference network) on each product
image; any fixed per-item embedding (image, text, audio) works. Here
reproductions use MovieLens content vectors (genres, year, title tokens), see
``scripts/reproduce_content.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfrec.data.pairwise import bpr_dataset
from tfrec.data.pipelines import SamplerEpochCallback
from tfrec.layers import IdEmbedding
from tfrec.registry import Tolerance, register_model
from tfrec.training.optimizers import make_optimizer

__all__ = ["BPRTrainer", "bpr_loss", "bpr_mf", "content_scorer", "train_bpr", "vbpr"]

_INIT = {"class_name": "RandomNormal", "config": {"stddev": 0.01}}
_PARITY = Tolerance(1e-5, 1e-5, "float32 embedding lookups, dot products, one matmul")


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _example_inputs(kwargs: dict, batch_size: int, rng: np.random.Generator) -> dict:
    out = {
        "user_id": rng.integers(0, kwargs["num_users"], batch_size, dtype=np.int64),
        # Include ids past num_items: cold items are scored from features alone.
        "item_id": rng.integers(0, kwargs["num_items"] + 3, batch_size, dtype=np.int64),
    }
    if "feature_dim" in kwargs:
        out["item_features"] = rng.normal(
            size=(batch_size, kwargs["feature_dim"])
        ).astype(np.float32)
    return out


@keras.saving.register_keras_serializable(package="tfrec")
class RowDot(keras.layers.Layer):
    """Row-wise dot product of two ``[batch, d]`` tensors -> ``[batch]``."""

    def call(self, inputs):
        a, b = inputs
        return ops.sum(a * b, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1])


def _ids():
    return (
        keras.Input(shape=(), dtype="int64", name="user_id"),
        keras.Input(shape=(), dtype="int64", name="item_id"),
    )


def _cf_part(user_id, item_id, num_users, num_items, embedding_dim):
    gamma_u = IdEmbedding(
        num_users, embedding_dim, embeddings_initializer=_INIT, name="user_factors"
    )(user_id)
    gamma_i = IdEmbedding(
        num_items, embedding_dim, embeddings_initializer=_INIT, name="item_factors"
    )(item_id)
    beta_i = IdEmbedding(num_items, 1, embeddings_initializer="zeros", name="item_bias")(
        item_id
    )
    beta_i = keras.layers.Reshape((), name="item_bias_flat")(beta_i)
    return beta_i, RowDot(name="cf_dot")([gamma_u, gamma_i])


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs={"num_users": 13, "num_items": 17},
    parity=_PARITY,
    paper="Rendle et al. 2009 (BPR-MF)",
)
def bpr_mf(num_users: int, num_items: int, *, embedding_dim: int = 20) -> keras.Model:
    """BPR matrix factorisation with item bias: ``x_ui = beta_i + gamma_u . gamma_i``.

    Reference: Rendle et al., "BPR", UAI 2009; the baseline of He & McAuley 2016.
    Train with :func:`train_bpr`. The user bias and global offset cancel in BPR
    and are left out.

    Args:
        num_users: number of user indices.
        num_items: number of item indices (other ids score 0).
        embedding_dim: latent factors ``K``.

    Returns:
        A functional model ``{user_id, item_id} -> {score}`` (an unbounded
        preference score, higher ranks first).

    Example:
        >>> model = bpr_mf(num_users=943, num_items=1346, embedding_dim=20)
    """
    _check_int("num_users", num_users)
    _check_int("num_items", num_items)
    _check_int("embedding_dim", embedding_dim)
    user_id, item_id = _ids()
    beta_i, dot = _cf_part(user_id, item_id, num_users, num_items, embedding_dim)
    score = keras.layers.Add(name="score")([beta_i, dot])
    return keras.Model(
        {"user_id": user_id, "item_id": item_id}, {"score": score}, name="bpr_mf"
    )


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs={"num_users": 13, "num_items": 17, "feature_dim": 6},
    parity=_PARITY,
    paper="He & McAuley 2016 (VBPR)",
)
def vbpr(
    num_users: int,
    num_items: int,
    feature_dim: int,
    *,
    embedding_dim: int = 10,
    visual_dim: int = 10,
) -> keras.Model:
    """VBPR: BPR-MF plus a visual term from each item's feature vector.

    ``x_ui = beta_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i``
    (He & McAuley 2016, Eq. 2 without alpha and beta_u, which cancel in BPR).

    Reference: He & McAuley, "VBPR", AAAI 2016.

    Args:
        num_users: number of user indices.
        num_items: number of item indices with a learned ``gamma_i``/``beta_i``
            (warm items); other ids are scored from `item_features` alone.
        feature_dim: length ``F`` of each item's feature vector ``f_i``.
        embedding_dim: non-visual latent factors ``K`` (gamma).
        visual_dim: visual latent factors ``K'`` (theta, rows of ``E``).

    Returns:
        A functional model ``{user_id, item_id, item_features [F]} -> {score}``.
        Layers: ``user_factors`` (gamma_u), ``user_visual_factors`` (theta_u),
        ``item_factors`` (gamma_i), ``item_bias`` (beta_i),
        ``visual_projection`` (kernel = E^T, ``[F, K']``), ``visual_bias``
        (kernel = beta', ``[F, 1]``).

    Example:
        >>> model = vbpr(num_users=943, num_items=1346, feature_dim=62)
    """
    _check_int("num_users", num_users)
    _check_int("num_items", num_items)
    _check_int("feature_dim", feature_dim)
    _check_int("embedding_dim", embedding_dim)
    _check_int("visual_dim", visual_dim)
    user_id, item_id = _ids()
    features = keras.Input(shape=(feature_dim,), dtype="float32", name="item_features")
    beta_i, cf_dot = _cf_part(user_id, item_id, num_users, num_items, embedding_dim)
    theta_u = IdEmbedding(
        num_users, visual_dim, embeddings_initializer=_INIT, name="user_visual_factors"
    )(user_id)
    visual_i = keras.layers.Dense(
        visual_dim, use_bias=False, kernel_initializer=_INIT, name="visual_projection"
    )(features)
    visual_dot = RowDot(name="visual_dot")([theta_u, visual_i])
    visual_bias = keras.layers.Dense(
        1, use_bias=False, kernel_initializer="zeros", name="visual_bias"
    )(features)
    visual_bias = keras.layers.Reshape((), name="visual_bias_flat")(visual_bias)
    score = keras.layers.Add(name="score")([beta_i, cf_dot, visual_dot, visual_bias])
    inputs = {"user_id": user_id, "item_id": item_id, "item_features": features}
    return keras.Model(inputs, {"score": score}, name="vbpr")


def bpr_loss(y_true, x_uij):
    """BPR loss ``-mean(ln sigma(x_uij))`` (``y_true`` is ignored).

    Computed as ``softplus(-x_uij)``, which is exactly ``-ln sigma(x_uij)`` and
    stable for large ``|x_uij|``.
    """
    del y_true
    return ops.mean(ops.softplus(-x_uij))


_ROW_LAYERS = ("user_factors", "user_visual_factors")
_ITEM_LAYERS = ("item_factors", "item_bias")
_SHARED_LAYERS = ("visual_projection", "visual_bias")


class BPRTrainer(keras.Model):
    """Training wrapper: BPR pairs of a serving model, with VBPR's L2 terms.

    Inputs ``{user_id, pos_item_id, neg_item_id}`` (from
    `tfrec.data.pairwise.bpr_dataset`); output ``x_uij = x_ui - x_uj``.
    Compile with :func:`bpr_loss`. Only the serving model is exported.

    Args:
        model: a serving model with inputs ``user_id``, ``item_id`` (and
            ``item_features`` for VBPR) and output ``score``.
        item_features: ``[n, F]`` features of item indices ``0..n-1`` (every
            item a triple may contain), required when the model takes
            ``item_features``.
        l2: lambda_Theta, on the rows each triple touches (see module doc).
        l2_visual: lambda_E, on ``E`` and ``beta'`` each step.
    """

    def __init__(
        self,
        model: keras.Model,
        item_features: np.ndarray | None = None,
        *,
        l2: float = 0.0,
        l2_visual: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        names = set(model.input) if isinstance(model.input, dict) else set()
        if not {"user_id", "item_id"} <= names or "score" not in model.output:
            raise ValueError(
                "BPRTrainer needs a serving model with dict inputs 'user_id', "
                f"'item_id' and output 'score'. Received inputs {sorted(names)}, "
                f"outputs {list(model.output)}."
            )
        self.model = model
        self.uses_features = "item_features" in names
        if self.uses_features:
            if item_features is None:
                raise ValueError(
                    f"Model {model.name!r} takes 'item_features'; pass "
                    "item_features=[num_items, feature_dim] to BPRTrainer."
                )
            feats = np.asarray(item_features, np.float32)
            want = model.input["item_features"].shape[-1]
            if feats.ndim != 2 or feats.shape[1] != want:
                raise ValueError(
                    f"`item_features` must have shape [num_items, {want}]. Received "
                    f"shape {feats.shape}."
                )
            if not np.isfinite(feats).all():
                raise ValueError("`item_features` contain NaN or infinite values.")
            self._features = tf.constant(feats)
        self.l2 = float(l2)
        self.l2_visual = float(l2_visual)
        self._layers_by_name = {layer.name: layer for layer in model.layers}

    def _score(self, users, items, training):
        feed = {"user_id": users, "item_id": items}
        if self.uses_features:
            feed["item_features"] = ops.take(self._features, items, axis=0)
        return self.model(feed, training=training)["score"]

    def call(self, inputs, training=False):
        users = inputs["user_id"]
        pos, neg = inputs["pos_item_id"], inputs["neg_item_id"]
        x_uij = self._score(users, pos, training) - self._score(users, neg, training)
        if self.l2:
            reg = 0.0
            for name in _ROW_LAYERS:
                if name in self._layers_by_name:
                    reg += ops.sum(ops.square(self._layers_by_name[name](users)), -1)
            for name in _ITEM_LAYERS:
                layer = self._layers_by_name.get(name)
                if layer is not None:
                    for ids in (pos, neg):
                        reg += ops.sum(ops.square(layer(ids)), -1)
            self.add_loss(self.l2 * ops.mean(reg))
        if self.l2_visual:
            for name in _SHARED_LAYERS:
                layer = self._layers_by_name.get(name)
                if layer is not None:
                    self.add_loss(self.l2_visual * ops.sum(ops.square(layer.kernel)))
        return x_uij


def train_bpr(
    model: keras.Model,
    users: np.ndarray,
    items: np.ndarray,
    num_items: int,
    *,
    item_features: np.ndarray | None = None,
    epochs: int = 20,
    batch_size: int = 1024,
    optimizer: str = "adam",
    learning_rate: float = 0.001,
    l2: float = 1e-4,
    l2_visual: float = 0.0,
    num_negatives: int = 1,
    seed: int = 0,
    verbose: int = 0,
    callbacks: list | None = None,
) -> keras.callbacks.History:
    """Trains a serving model (``bpr_mf``, ``vbpr``, ...) with the BPR loss.

    Args:
        model: the serving model (trained in place).
        users: user index of each training positive.
        items: item index of each training positive.
        num_items: negatives are drawn from ``[0, num_items)``.
        item_features: ``[>= num_items, F]`` features by item index (VBPR).
        epochs: passes over the positives.
        batch_size: triples per step.
        optimizer: a `tfrec.training.optimizers` name.
        learning_rate: step size.
        l2: lambda_Theta.
        l2_visual: lambda_E.
        num_negatives: triples per positive per epoch.
        seed: seed of the triples.
        verbose: Keras ``fit`` verbosity.
        callbacks: extra Keras callbacks.

    Returns:
        The Keras ``History`` (key ``loss``: BPR loss plus regularisation).
    """
    ds, sampler = bpr_dataset(
        users,
        items,
        num_items,
        num_negatives=num_negatives,
        batch_size=batch_size,
        seed=seed,
    )
    trainer = BPRTrainer(model, item_features, l2=l2, l2_visual=l2_visual)
    trainer.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=bpr_loss)
    return trainer.fit(
        ds,
        epochs=epochs,
        verbose=verbose,
        shuffle=False,
        callbacks=[SamplerEpochCallback(sampler), *(callbacks or [])],
    )


def content_scorer(
    model: keras.Model,
    item_features: np.ndarray | None = None,
    *,
    batch_size: int = 65_536,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A ``score_fn(user_idx, item_idx)`` for the evaluation protocols.

    Args:
        model: a serving model with output ``score``.
        item_features: ``[num_all_items, F]`` features by item index (cold
            items included), when the model takes ``item_features``.
        batch_size: pairs per model call.
    """
    takes_features = "item_features" in model.input
    if takes_features:
        if item_features is None:
            raise ValueError(
                f"Model {model.name!r} takes 'item_features'; pass item_features."
            )
        feats = tf.constant(np.asarray(item_features, np.float32))
    spec = tf.TensorSpec((None,), tf.int64)

    @tf.function(input_signature=[spec, spec], reduce_retracing=True)
    def _score(users, items):
        feed = {"user_id": users, "item_id": items}
        if takes_features:
            feed["item_features"] = tf.gather(feats, items)
        return model(feed, training=False)["score"]

    def score_fn(users, items):
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        parts = [
            _score(users[s : s + batch_size], items[s : s + batch_size]).numpy()
            for s in range(0, users.size, batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    return score_fn
