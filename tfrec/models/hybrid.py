"""The six ways to combine collaborative filtering (CF) with content (CBF).

The lecture's taxonomy of CF + content-based hybrids, each a registered builder
(plus, where the combination lives in the training objective, a training wrapper
in :mod:`tfrec.training.hybrid`), and the pure content baseline:

============================  ===================================================
builder                       combination
============================  ===================================================
:func:`cbf_profile`           pure CBF: a per-user linear profile over the item's
                              content vector (the pure-CF baseline is
                              :func:`tfrec.models.ncf.mf`)
:func:`hybrid_weighted`       score = w * CF score + (1 - w) * CBF score, w fixed
                              or learned
:func:`hybrid_switching`      CF score if the item had at least ``threshold``
                              training interactions, else the CBF score
:func:`hybrid_initialized`    CF item factors initialised with a content
                              projection ``P x_i``, then trained
:func:`hybrid_joint`          one item representation ``v_i = g(x_i) + e_i``
                              trained to score interactions *and* reconstruct its
                              content (CF loss + lambda * content loss)
:func:`hybrid_regularized`    CF loss + lambda * ||q_i - f(x_i)||^2
:func:`hybrid_mapping`        a map f (linear or MLP) from content to the factors
                              of a trained MF; f(x_i) replaces q_i for cold items
============================  ===================================================

References:
    Robin Burke. "Hybrid Recommender Systems: Survey and Experiments". UMUAI 12(4),
    2002 (weighted, switching, feature combination/augmentation, ...).
    Zeno Gantner, Lucas Drumond, Christoph Freudenthaler, Steffen Rendle, Lars
    Schmidt-Thieme. "Learning Attribute-to-Feature Mappings for Cold-Start
    Recommendations". ICDM 2010 (mapping).
    Chong Wang, David Blei. "Collaborative Topic Modeling for Recommending
    Scientific Articles". KDD 2011 (regularising item factors towards content).
    Hao Wang, Naiyan Wang, Dit-Yan Yeung. "Collaborative Deep Learning for
    Recommender Systems". KDD 2015 (joint training with a content reconstruction).
    The deep (CNN) mapping case is ``content_cnn`` (van den Oord et al. 2013).

Serving contract (every builder here):

* inputs ``user_id`` (int64, ``(batch,)``), ``item_id`` (int64, ``(batch,)``;
  :func:`cbf_profile` has none) and ``item_content`` (float32,
  ``(batch, content_dim)``, e.g. ``movielens_items().features(...)``);
* output ``score``: the probability that the user interacts with the item
  (sigmoid), trained with log loss against sampled negatives.

**Cold items.** Models are built with ``num_items`` = the number of *warm* items
(``ColdStartSplit.num_warm_items``); a cold item's id is outside the vocabulary,
so its CF embedding is the zero vector (:class:`tfrec.layers.IdEmbedding`). Each
hybrid then scores it from ``item_content`` alone: the CBF branch (weighted,
switching), the content map ``f(x)`` in place of the item factors
(initialized, regularized, mapping: :class:`ContentFallback`), or the content
encoder ``g(x)`` with a zero offset (joint). Every score is finite for any finite
content, in TF and in ONNX.

**Bad content.** :class:`ContentGuard` opens every graph: a wrong content width
raises ``ValueError`` naming the expected width; NaN/inf content raises
``InvalidArgumentError`` ("item_content contains NaN or infinite values") in TF.
ONNX has no assertion operator, so the exported ONNX graph cannot raise: callers
validate with :func:`check_item_content` (the scorers in
:mod:`tfrec.training.hybrid` do).

Item vectors of the factor models (initialized, regularized, mapping, joint) have
``embedding_dim + 1`` columns: the factors and, last, the item bias; the score is
``sigmoid(<p_u, v_i[:-1]> + v_i[-1] + b_u + b)`` (:class:`FactorScore`), so a
content map predicts an item's bias (popularity) together with its factors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfrec.layers import Bias, IdEmbedding, mlp_tower
from tfrec.layers.mlp import check_hidden_units
from tfrec.registry import Tolerance, register_model

__all__ = [
    "Blend",
    "ContentFallback",
    "ContentGuard",
    "CountSwitch",
    "FactorScore",
    "ItemCounts",
    "cbf_profile",
    "check_item_content",
    "hybrid_initialized",
    "hybrid_joint",
    "hybrid_mapping",
    "hybrid_regularized",
    "hybrid_switching",
    "hybrid_weighted",
    "set_item_counts",
]

_EMBEDDING_INIT = {"class_name": "RandomNormal", "config": {"stddev": 0.01}}


# --------------------------------------------------------------------- checks


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _check_nonneg(name, value):
    if not isinstance(value, (int, float, np.number)) or not value >= 0:
        raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")


def check_item_content(content, content_dim: int, *, name: str = "item_content"):
    """Validates a content matrix; returns it as float32 ``(n, content_dim)``.

    Raises:
        ValueError: not 2-D, a width other than ``content_dim``, or NaN/inf
            values (the message names the first offending rows).
    """
    arr = np.asarray(content)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"`{name}` must be numeric. Received dtype {arr.dtype}.")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim != 2 or arr.shape[1] != content_dim:
        raise ValueError(
            f"`{name}` must have shape (batch, {content_dim}) (content_dim of the "
            f"model). Received shape {arr.shape}."
        )
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise ValueError(
            f"`{name}` contains NaN or infinite values in {rows.size} row(s), e.g. "
            f"rows {rows[:5].tolist()}."
        )
    return arr


# --------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="tfrec")
class ContentGuard(keras.layers.Layer):
    """Checks ``item_content``: width ``content_dim`` and finite values.

    A wrong width raises ``ValueError`` when the model is called; NaN or inf
    values raise ``InvalidArgumentError`` in TF (eager and graph). The check is an
    identity in ONNX (tf2onnx drops ``CheckNumerics``); see
    :func:`check_item_content` for callers of exported models.
    """

    def __init__(self, content_dim: int, **kwargs):
        super().__init__(**kwargs)
        _check_positive("content_dim", content_dim)
        self.content_dim = int(content_dim)

    def _check_width(self, shape):
        width = shape[-1] if len(shape) else None
        if len(shape) != 2 or (width is not None and width != self.content_dim):
            raise ValueError(
                f"`item_content` must have shape (batch, {self.content_dim}). "
                f"Received shape {tuple(shape)}."
            )

    def build(self, input_shape):
        self._check_width(tuple(input_shape))

    def call(self, content):
        self._check_width(tuple(content.shape))
        # TF-specific on purpose: keras.ops has no assertion. Converted to an
        # identity by tf2onnx.
        return tf.debugging.assert_all_finite(
            content, "item_content contains NaN or infinite values"
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "content_dim": self.content_dim}


@keras.saving.register_keras_serializable(package="tfrec")
class Blend(keras.layers.Layer):
    """Weighted hybrid: ``w * cf + (1 - w) * cbf``.

    Args:
        cf_weight: the weight ``w`` of the first input, in ``[0, 1]``; with
            ``learn_weight`` the initial value.
        learn_weight: learn ``w = sigmoid(theta)`` (theta starts at
            ``logit(cf_weight)``; ``cf_weight`` must then be in ``(0, 1)``).
    """

    def __init__(self, cf_weight: float = 0.5, learn_weight: bool = False, **kwargs):
        super().__init__(**kwargs)
        w = float(cf_weight)
        ok = 0.0 < w < 1.0 if learn_weight else 0.0 <= w <= 1.0
        if not ok:
            need = "(0, 1) when learn_weight=True" if learn_weight else "[0, 1]"
            raise ValueError(f"`cf_weight` must be in {need}. Received: {cf_weight!r}")
        self.cf_weight = w
        self.learn_weight = bool(learn_weight)

    def build(self, input_shape):
        if self.learn_weight:
            self.theta = self.add_weight(
                name="theta",
                shape=(),
                initializer=keras.initializers.Constant(
                    math.log(self.cf_weight / (1.0 - self.cf_weight))
                ),
            )

    def weight_value(self):
        """The current ``w`` (a scalar tensor)."""
        if self.learn_weight:
            return ops.sigmoid(self.theta)
        return ops.convert_to_tensor(self.cf_weight, "float32")

    def call(self, inputs):
        cf, cbf = inputs
        w = ops.cast(self.weight_value(), cf.dtype)
        return w * cf + (1.0 - w) * cbf

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "cf_weight": self.cf_weight,
            "learn_weight": self.learn_weight,
        }


@keras.saving.register_keras_serializable(package="tfrec")
class ItemCounts(keras.layers.Layer):
    """A stored, non-trainable table of training-interaction counts per item.

    ``call(item_id)`` returns the count (float32, ``(batch,)``); ids outside
    ``[0, num_items)`` (cold items) count 0. The table is part of the weights, so
    it travels with ``.keras`` files, SavedModels and ONNX graphs; fill it with
    :func:`set_item_counts`.
    """

    def __init__(self, num_items: int, **kwargs):
        super().__init__(**kwargs)
        _check_positive("num_items", num_items)
        self.num_items = int(num_items)

    def build(self, input_shape):
        self.counts = self.add_weight(
            name="counts",
            shape=(self.num_items,),
            initializer="zeros",
            trainable=False,
        )

    def call(self, ids):
        ids = ops.cast(ids, "int64")
        valid = ops.logical_and(
            ops.greater_equal(ids, 0), ops.less(ids, self.num_items)
        )
        safe = ops.where(valid, ids, ops.zeros_like(ids))
        counts = ops.take(self.counts, safe, axis=0)
        return counts * ops.cast(valid, counts.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items}


@keras.saving.register_keras_serializable(package="tfrec")
class CountSwitch(keras.layers.Layer):
    """Switching hybrid: ``cf if count >= threshold else cbf`` per example.

    Inputs ``[count (batch,), cf, cbf]``; ``cf`` and ``cbf`` have equal shapes
    ``(batch,)`` or ``(batch, d)``. Exactly at the threshold the CF branch fires
    ("below the threshold use CBF").
    """

    def __init__(self, threshold: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if not float(threshold) >= 0:
            raise ValueError(f"`threshold` must be >= 0. Received: {threshold!r}")
        self.threshold = float(threshold)

    def call(self, inputs):
        count, cf, cbf = inputs
        use_cf = ops.greater_equal(count, ops.cast(self.threshold, count.dtype))
        while len(use_cf.shape) < len(cf.shape):
            use_cf = ops.expand_dims(use_cf, -1)
        return ops.where(use_cf, cf, cbf)

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="tfrec")
class ContentFallback(keras.layers.Layer):
    """Item vector: the CF row for ids in ``[0, num_items)``, else from content.

    Inputs ``[item_id (batch,), cf_vector (batch, d), content_vector (batch, d)]``.
    Out-of-vocabulary ids (cold items, -1, too large) take the content vector.
    """

    def __init__(self, num_items: int, **kwargs):
        super().__init__(**kwargs)
        _check_positive("num_items", num_items)
        self.num_items = int(num_items)

    def call(self, inputs):
        ids, cf_vector, content_vector = inputs
        ids = ops.cast(ids, "int64")
        valid = ops.logical_and(
            ops.greater_equal(ids, 0), ops.less(ids, self.num_items)
        )
        return ops.where(ops.expand_dims(valid, -1), cf_vector, content_vector)

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items}


@keras.saving.register_keras_serializable(package="tfrec")
class FactorScore(keras.layers.Layer):
    """``<p_u, v_i[:, :-1]> + v_i[:, -1]`` (factors plus the item-bias column)."""

    def call(self, inputs):
        p, v = inputs
        return ops.sum(p * v[:, :-1], axis=-1) + v[:, -1]

    def compute_output_shape(self, input_shape):
        return input_shape[0][:-1]


def set_item_counts(model: keras.Model, counts) -> None:
    """Stores per-item training counts in a model's :class:`ItemCounts` table.

    Raises:
        ValueError: the model has no such table, or ``counts`` has the wrong
            length or negative/non-finite values.
    """
    tables = [layer for layer in model.layers if isinstance(layer, ItemCounts)]
    if not tables:
        raise ValueError(f"Model {model.name!r} has no ItemCounts table.")
    counts = np.asarray(counts, np.float32)
    for table in tables:
        if counts.shape != (table.num_items,):
            raise ValueError(
                f"`counts` must have shape ({table.num_items},) (one per item). "
                f"Received shape {counts.shape}."
            )
        if not (np.isfinite(counts).all() and (counts >= 0).all()):
            raise ValueError("`counts` must be finite and >= 0.")
        table.counts.assign(counts)


# ------------------------------------------------------------ shared pieces


def _inputs(content_dim, with_item=True):
    inputs = {"user_id": keras.Input(shape=(), dtype="int64", name="user_id")}
    if with_item:
        inputs["item_id"] = keras.Input(shape=(), dtype="int64", name="item_id")
    inputs["item_content"] = keras.Input(
        shape=(content_dim,), dtype="float32", name="item_content"
    )
    return inputs


def _embedding(num, dim, l2, name, initializer=_EMBEDDING_INIT):
    return IdEmbedding(
        num,
        dim,
        embeddings_initializer=initializer,
        activity_regularizer=keras.regularizers.L2(l2) if l2 else None,
        name=name,
    )


def _check_common(num_users, num_items, content_dim, embedding_dim, l2):
    _check_positive("num_users", num_users)
    if num_items is not None:
        _check_positive("num_items", num_items)
    _check_positive("content_dim", content_dim)
    if embedding_dim is not None:
        _check_positive("embedding_dim", embedding_dim)
    _check_nonneg("l2", l2)


def _cf_logit(u, i, num_users, num_items, embedding_dim, l2):
    """The MF logit with :func:`tfrec.models.ncf.mf`'s layer names (so trained
    ``mf`` weights copy over by name)."""
    p = _embedding(num_users, embedding_dim, l2, "mf_user_embedding")(u)
    q = _embedding(num_items, embedding_dim, l2, "mf_item_embedding")(i)
    bu = _embedding(num_users, 1, l2, "mf_user_bias")(u)
    bi = _embedding(num_items, 1, l2, "mf_item_bias")(i)
    dot = keras.layers.Dot(axes=1, name="mf_dot")([p, q])
    logit = keras.layers.Add(name="mf_logit")([dot, bu, bi])
    logit = keras.layers.Reshape((), name="mf_logit_flat")(logit)
    return Bias(name="global_bias")(logit)


def _cbf_logit(u, content, num_users, content_dim, l2):
    """The CBF logit ``<a_u, x_i> + g^T x_i + c`` (layer names of cbf_profile)."""
    a = _embedding(num_users, content_dim, l2, "cbf_user_profile")(u)
    affinity = keras.layers.Dot(axes=1, name="cbf_affinity")([a, content])
    content_bias = keras.layers.Dense(1, name="cbf_content_bias")(content)
    logit = keras.layers.Add(name="cbf_logit")([affinity, content_bias])
    return keras.layers.Reshape((), name="cbf_logit_flat")(logit)


def _content_map(x, embedding_dim, hidden_units, name, trainable=True):
    """``f(x)``: optional MLP, then a linear layer to ``embedding_dim + 1``."""
    if hidden_units:
        x = mlp_tower(x, check_hidden_units(hidden_units), name=f"{name}_mlp")
    layer = keras.layers.Dense(embedding_dim + 1, name=name)
    layer.trainable = trainable
    return layer(x)


def _factor_output(u, item_vector, num_users, embedding_dim, l2, name):
    """``sigmoid(<p_u, v[:-1]> + v[-1] + b_u + b)`` as output ``score``."""
    p = _embedding(num_users, embedding_dim, l2, "user_factors")(u)
    bu = _embedding(num_users, 1, l2, "user_bias")(u)
    logit = FactorScore(name="factor_score")([p, item_vector])
    bu = keras.layers.Reshape((), name="user_bias_flat")(bu)
    logit = keras.layers.Add(name="logit")([logit, bu])
    logit = Bias(name="global_bias")(logit)
    score = keras.layers.Activation("sigmoid", name="score")(logit)
    return score


# ------------------------------------------------------------- registration

_TINY = {"num_users": 7, "num_items": 11, "content_dim": 5}
_PARITY = Tolerance(1e-5, 1e-5, "float32 embedding lookups, small dense matmuls")
_TINY_COUNTS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def _example_inputs(kwargs: dict, batch_size: int, rng: np.random.Generator) -> dict:
    """Users and items in range plus ~30 % unseen (cold, out-of-vocabulary) items."""
    num_items = kwargs["num_items"]
    out = {
        "user_id": rng.integers(0, kwargs["num_users"], batch_size, dtype=np.int64),
        "item_id": rng.integers(
            0, num_items + max(num_items // 2, 1), batch_size, dtype=np.int64
        ),
        "item_content": rng.random((batch_size, kwargs["content_dim"])).astype(
            np.float32
        ),
    }
    return out


def _cbf_example_inputs(kwargs: dict, batch_size: int, rng) -> dict:
    return {
        "user_id": rng.integers(0, kwargs["num_users"], batch_size, dtype=np.int64),
        "item_content": rng.random((batch_size, kwargs["content_dim"])).astype(
            np.float32
        ),
    }


# ----------------------------------------------------------------- builders


@register_model(
    task="ranking",
    example_inputs=_cbf_example_inputs,
    test_kwargs={"num_users": 7, "content_dim": 5},
    parity=_PARITY,
    paper="content-based user profile (pure CBF baseline)",
)
def cbf_profile(num_users: int, content_dim: int, *, l2: float = 0.0) -> keras.Model:
    """Pure content-based filtering: a learned user profile over item content.

    ``score = sigmoid(<a_u, x_i> + g^T x_i + c)``: each user's profile ``a_u``
    is a weight per content feature (genre, year, title word), learned by
    logistic regression against the content of the items the user did and did
    not interact with; ``g^T x_i + c`` is a content-only item prior shared by all
    users (it ranks items like "what kind of item is popular"). The item's id is
    never used, so cold items are scored exactly like warm ones. (The other
    classic profile, the cosine to the centroid of liked items' content, needs no
    training; this learned profile is the baseline here.)

    Args:
        num_users: number of user indices.
        content_dim: width of ``item_content``.
        l2: per-example L2 penalty on the looked-up user profiles.

    Returns:
        A functional model ``{user_id, item_content} -> {score}``.
    """
    _check_common(num_users, None, content_dim, None, l2)
    inputs = _inputs(content_dim, with_item=False)
    content = ContentGuard(content_dim, name="content_guard")(inputs["item_content"])
    logit = _cbf_logit(inputs["user_id"], content, num_users, content_dim, l2)
    logit = Bias(name="cbf_global_bias")(logit)
    score = keras.layers.Activation("sigmoid", name="score")(logit)
    return keras.Model(inputs, {"score": score}, name="cbf_profile")


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs={**_TINY, "learn_weight": True},
    parity=_PARITY,
    paper="Burke 2002 (weighted hybrid)",
)
def hybrid_weighted(
    num_users: int,
    num_items: int,
    content_dim: int,
    *,
    embedding_dim: int = 16,
    cf_weight: float = 0.5,
    learn_weight: bool = False,
    l2: float = 0.0,
) -> keras.Model:
    """Weighted hybrid: ``score = w * s_CF + (1 - w) * s_CBF``.

    ``s_CF`` is :func:`~tfrec.models.ncf.mf`'s score and ``s_CBF`` is
    :func:`cbf_profile`'s (same layer names, so trained baselines copy in with
    :func:`tfrec.training.hybrid.copy_weights`). ``w`` is fixed (``cf_weight``)
    or learned (``learn_weight=True``: ``w = sigmoid(theta)``). For a cold item
    ``s_CF`` is the same for every item of a user (zero factors, zero item
    bias), so cold items are ranked by ``s_CBF`` alone.

    Args:
        num_users: number of user indices.
        num_items: number of (warm) item indices.
        content_dim: width of ``item_content``.
        embedding_dim: MF factors.
        cf_weight: ``w``, or its initial value when learned.
        learn_weight: learn ``w``.
        l2: per-example L2 on the looked-up embeddings.

    Returns:
        A functional model ``{user_id, item_id, item_content} -> {score}``.
    """
    _check_common(num_users, num_items, content_dim, embedding_dim, l2)
    inputs = _inputs(content_dim)
    content = ContentGuard(content_dim, name="content_guard")(inputs["item_content"])
    u, i = inputs["user_id"], inputs["item_id"]
    cf = _cf_logit(u, i, num_users, num_items, embedding_dim, l2)
    cbf = Bias(name="cbf_global_bias")(
        _cbf_logit(u, content, num_users, content_dim, l2)
    )
    cf = keras.layers.Activation("sigmoid", name="cf_score")(cf)
    cbf = keras.layers.Activation("sigmoid", name="cbf_score")(cbf)
    blend = Blend(cf_weight, learn_weight, name="blend")
    score = blend([cf, cbf])
    score = keras.layers.Identity(name="score")(score)
    return keras.Model(inputs, {"score": score}, name="hybrid_weighted")


def _switching_builder(
    num_users, num_items, content_dim, embedding_dim, threshold, l2, item_counts
):
    inputs = _inputs(content_dim)
    content = ContentGuard(content_dim, name="content_guard")(inputs["item_content"])
    u, i = inputs["user_id"], inputs["item_id"]
    cf = _cf_logit(u, i, num_users, num_items, embedding_dim, l2)
    cbf = Bias(name="cbf_global_bias")(
        _cbf_logit(u, content, num_users, content_dim, l2)
    )
    cf = keras.layers.Activation("sigmoid", name="cf_score")(cf)
    cbf = keras.layers.Activation("sigmoid", name="cbf_score")(cbf)
    table = ItemCounts(num_items, name="item_counts")
    count = table(i)
    score = CountSwitch(threshold, name="switch")([count, cf, cbf])
    score = keras.layers.Identity(name="score")(score)
    model = keras.Model(inputs, {"score": score}, name="hybrid_switching")
    if item_counts is not None:
        set_item_counts(model, item_counts)
    return model


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs={**_TINY, "threshold": 4, "item_counts": _TINY_COUNTS},
    parity=_PARITY,
    paper="Burke 2002 (switching hybrid)",
)
def hybrid_switching(
    num_users: int,
    num_items: int,
    content_dim: int,
    *,
    embedding_dim: int = 16,
    threshold: float = 10.0,
    l2: float = 0.0,
    item_counts: Sequence[float] | None = None,
) -> keras.Model:
    """Switching hybrid: the CF score for items with ``count >= threshold``
    training interactions, the CBF score otherwise (one graph).

    The rule's input, the count, is a **stored table** (:class:`ItemCounts`,
    non-trainable weights, exported with the model), not a serving input: fill
    it with ``item_counts=`` here or :func:`set_item_counts` after building
    (until then every count is 0 and every item takes the CBF branch). Cold
    items (ids outside the table) count 0 and always use CBF. Exactly at the
    threshold the CF branch fires. The branches are :func:`~tfrec.models.ncf.mf`
    and :func:`cbf_profile` (same layer names), trained separately.

    Args:
        num_users: number of user indices.
        num_items: number of (warm) item indices.
        content_dim: width of ``item_content``.
        embedding_dim: MF factors.
        threshold: minimum training count for the CF branch.
        l2: per-example L2 on the looked-up embeddings.
        item_counts: optional initial table, one count per item.

    Returns:
        A functional model ``{user_id, item_id, item_content} -> {score}``.
    """
    _check_common(num_users, num_items, content_dim, embedding_dim, l2)
    return _switching_builder(
        num_users, num_items, content_dim, embedding_dim, threshold, l2, item_counts
    )


def _fallback_model(
    name,
    num_users,
    num_items,
    content_dim,
    embedding_dim,
    l2,
    hidden_units=None,
    map_trainable=True,
    map_name="content_map",
):
    """MF whose item vector falls back to ``f(item_content)`` for cold items."""
    inputs = _inputs(content_dim)
    content = ContentGuard(content_dim, name="content_guard")(inputs["item_content"])
    u, i = inputs["user_id"], inputs["item_id"]
    q = _embedding(num_items, embedding_dim + 1, l2, "item_factors")(i)
    mapped = _content_map(content, embedding_dim, hidden_units, map_name, map_trainable)
    v = ContentFallback(num_items, name="content_fallback")([i, q, mapped])
    score = _factor_output(u, v, num_users, embedding_dim, l2, name)
    return keras.Model(inputs, {"score": score}, name=name)


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs=_TINY,
    parity=_PARITY,
    paper="content-initialised MF (lecture: initializing hybrid)",
)
def hybrid_initialized(
    num_users: int,
    num_items: int,
    content_dim: int,
    *,
    embedding_dim: int = 16,
    l2: float = 0.0,
) -> keras.Model:
    """Initializing hybrid: item factors start at a content projection ``P x_i``.

    Training (:func:`tfrec.training.hybrid.train_initialized`): (1) a short
    regression of the projection against the interactions, with every item
    represented by ``P x_i`` only (the model's content path); (2)
    :func:`tfrec.training.hybrid.initialize_item_factors` sets each item's
    factors (and bias column) to ``P x_i`` and freezes ``P``; (3) ordinary MF
    training moves the factors away from their content start as the data
    demands. The frozen ``P`` (layer ``content_projection``) scores cold items.

    Args:
        num_users: number of user indices.
        num_items: number of (warm) item indices.
        content_dim: width of ``item_content``.
        embedding_dim: factors.
        l2: per-example L2 on the looked-up embeddings.

    Returns:
        A functional model ``{user_id, item_id, item_content} -> {score}``.
    """
    _check_common(num_users, num_items, content_dim, embedding_dim, l2)
    return _fallback_model(
        "hybrid_initialized",
        num_users,
        num_items,
        content_dim,
        embedding_dim,
        l2,
        map_trainable=False,
        map_name="content_projection",
    )


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs=_TINY,
    parity=_PARITY,
    paper="Wang & Blei 2011 style (regularizing hybrid)",
)
def hybrid_regularized(
    num_users: int,
    num_items: int,
    content_dim: int,
    *,
    embedding_dim: int = 16,
    hidden_units: Sequence[int] | None = None,
    l2: float = 0.0,
) -> keras.Model:
    """Regularizing hybrid: MF with ``lambda * ||q_i - f(x_i)||^2`` in the loss.

    The serving graph is MF whose cold items take ``f(x_i)`` (layer
    ``content_map``); the penalty (:func:`tfrec.training.hybrid.content_penalty`, added by
    :func:`tfrec.training.hybrid.train_regularized` with lambda =
    ``content_weight``) pulls each looked-up ``q_i`` (factors and bias) towards
    its content image and trains ``f`` towards the factors at the same time.
    Deviation from Wang & Blei (2011): their ``f(x_i)`` is a fixed topic vector
    from LDA; here ``f`` is a learned linear map (or MLP with ``hidden_units``).

    Args:
        num_users: number of user indices.
        num_items: number of (warm) item indices.
        content_dim: width of ``item_content``.
        embedding_dim: factors.
        hidden_units: optional MLP widths of ``f`` before its linear output.
        l2: per-example L2 on the looked-up embeddings.

    Returns:
        A functional model ``{user_id, item_id, item_content} -> {score}``.
    """
    _check_common(num_users, num_items, content_dim, embedding_dim, l2)
    return _fallback_model(
        "hybrid_regularized",
        num_users,
        num_items,
        content_dim,
        embedding_dim,
        l2,
        hidden_units=hidden_units,
    )


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs={**_TINY, "hidden_units": (4,)},
    parity=_PARITY,
    paper="Gantner et al. 2010 (attribute-to-feature mapping)",
)
def hybrid_mapping(
    num_users: int,
    num_items: int,
    content_dim: int,
    *,
    embedding_dim: int = 16,
    hidden_units: Sequence[int] | None = None,
    l2: float = 0.0,
) -> keras.Model:
    """Mapping hybrid: a learned map from content to trained MF item factors.

    Training (:func:`tfrec.training.hybrid.train_mapping`): MF first (the
    ``item_factors`` of this graph, or copied from a trained ``mf``), then the
    map ``f`` (layer ``content_map``; linear, or an MLP with ``hidden_units``)
    is fitted by squared error to the warm items' factors and bias
    (Gantner et al. 2010's "linear mapping", optimised for the factors rather
    than for the ranking loss). Cold items take ``f(x_i)``; warm items keep their
    CF factors. The deep (CNN) case is ``content_cnn``.

    Args:
        num_users: number of user indices.
        num_items: number of (warm) item indices.
        content_dim: width of ``item_content``.
        embedding_dim: factors.
        hidden_units: optional MLP widths of ``f``.
        l2: per-example L2 on the looked-up embeddings.

    Returns:
        A functional model ``{user_id, item_id, item_content} -> {score}``.
    """
    _check_common(num_users, num_items, content_dim, embedding_dim, l2)
    return _fallback_model(
        "hybrid_mapping",
        num_users,
        num_items,
        content_dim,
        embedding_dim,
        l2,
        hidden_units=hidden_units,
    )


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs={**_TINY, "hidden_units": (4,)},
    parity=_PARITY,
    paper="Wang et al. 2015 (CDL-style joint training)",
)
def hybrid_joint(
    num_users: int,
    num_items: int,
    content_dim: int,
    *,
    embedding_dim: int = 16,
    hidden_units: Sequence[int] | None = None,
    l2: float = 0.0,
) -> keras.Model:
    """Joint training: one item vector ``v_i = g(x_i) + e_i`` for both objectives.

    ``g`` (layer ``content_encoder``) encodes the content, ``e_i`` (layer
    ``item_offset``, zero-initialised, zero for cold items) is the item's
    collaborative offset. Training (:func:`tfrec.training.hybrid.train_joint`)
    minimises :func:`tfrec.training.hybrid.joint_loss`: the log loss of the interactions scored with
    ``v_i`` plus lambda (the trainer's ``content_weight``) times the squared
    error of reconstructing ``x_i`` from ``v_i`` with a linear decoder that
    lives only in the training wrapper (not in the serving graph). Deviation
    from CDL (Wang et al. 2015): a deterministic (linear or MLP) encoder and a
    linear decoder instead of a stacked denoising autoencoder, log loss with
    sampled negatives instead of weighted squared loss.

    Args:
        num_users: number of user indices.
        num_items: number of (warm) item indices.
        content_dim: width of ``item_content``.
        embedding_dim: factors.
        hidden_units: optional MLP widths of the encoder ``g``.
        l2: per-example L2 on the looked-up embeddings.

    Returns:
        A functional model ``{user_id, item_id, item_content} -> {score}``.
    """
    _check_common(num_users, num_items, content_dim, embedding_dim, l2)
    inputs = _inputs(content_dim)
    content = ContentGuard(content_dim, name="content_guard")(inputs["item_content"])
    u, i = inputs["user_id"], inputs["item_id"]
    encoded = _content_map(content, embedding_dim, hidden_units, "content_encoder")
    offset = _embedding(
        num_items, embedding_dim + 1, l2, "item_offset", initializer="zeros"
    )(i)
    v = keras.layers.Add(name="item_vector")([encoded, offset])
    score = _factor_output(u, v, num_users, embedding_dim, l2, "hybrid_joint")
    return keras.Model(inputs, {"score": score}, name="hybrid_joint")
