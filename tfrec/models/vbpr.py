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

Training lives in `tfrec.recipes.vbpr` (``tfrec train vbpr`` / ``bpr_mf``):
its ``BPRTrainer`` wraps the serving model:
BPR loss ``-mean(ln sigma(x_ui - x_uj))`` on (user, positive, negative)
triples from `tfrec.data.pairwise`, with the paper's L2 regularisation: for
each triple ``l2 * (|gamma_u|^2 + |theta_u|^2 + |gamma_i|^2 + |gamma_j|^2 +
beta_i^2 + beta_j^2)`` (the rows it touches, as in SGD-trained BPR), averaged
over the batch, plus ``l2_visual * (|E|^2 + |beta'|^2)`` per step (the paper's
separate lambda_E for the shared visual parameters).

Deviations: Adam with mini-batches instead of the paper's plain SGD on single
bootstrap-sampled triples (the recipe takes any `make_optimizer` name);
factors are initialised from N(0, 0.01) (the paper does not state its initialisation).

What real deployments feed as ``item_features``: the paper's 4096-d fc7
features of a pre-trained image CNN (Caffe reference network) on each product
image; any fixed per-item embedding (image, text, audio) works. Here
reproductions use MovieLens content vectors (genres, year, title tokens), see
``scripts/reproduce_content.py``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfrec.layers import IdEmbedding
from tfrec.registry import Tolerance, register_model

__all__ = ["RowDot", "bpr_mf", "vbpr"]

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
    Train with ``tfrec train bpr_mf`` (`tfrec.recipes.vbpr`). The user bias and
    global offset cancel in BPR and are left out.

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
