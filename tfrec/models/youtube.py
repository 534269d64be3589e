"""YouTube's two-stage recommender: candidate generation and ranking DNNs.

Reference:
    Paul Covington, Jay Adams, Emre Sargin. "Deep Neural Networks for YouTube
    Recommendations". RecSys 2016.

Two registered builders (their training lives in `tfrec.recipes.youtube`):

* :func:`youtube_candidate` (Sec. 3): the user's watch history is embedded and
  averaged (a variable-length, masked bag), concatenated with optional genre
  tokens (the MovieLens stand-in for the paper's search tokens: the mean genre
  multi-hot of the watched movies), demographics and the example age, and fed
  through a ReLU tower (1024-512-256 by default) whose output is the user vector
  ``u``. Training is extreme multiclass classification of the next watch with
  sampled softmax (`tfrec.recipes.youtube.SampledSoftmaxTask`; unigram
  sampling with logQ correction by ``tf.nn.sampled_softmax_loss``). Serving is nearest-neighbour
  search of ``u`` among the softmax output embeddings: the model exposes a
  ``query_tower`` (inputs -> ``query_embedding``) and an ``item_tower``
  (``item_id`` -> ``item_embedding``, the softmax weights) as nested functional
  models; :mod:`tfrec.retrieval` indexes them with TFRS ``BruteForce``.
* :func:`youtube_ranking` (Sec. 4): per (user, candidate) features - the
  candidate's embedding, the averaged history embedding (one table shared by
  both, as in the paper), the candidate's genres, the days since the user last
  watched an item of a shared genre (with its square and square root,
  normalised to [0, 1] over `horizon_days`, and a "never" flag), the
  candidate generator's score (Sec. 4.1: the nominating source's score) and
  demographics - through a ReLU tower to a logit. Training is weighted logistic
  regression (`tfrec.recipes.youtube.WeightedLogisticTask`): positives weighted by watch time
  (here the rating as a watch-time proxy), negatives by 1. Serving outputs the
  odds ``exp(logit)`` (``odds``, which approximates the expected watch time
  under that weighting, what the paper serves) and ``score = sigmoid(logit)``.

Empty histories: a history without any valid id (all padding) averages to the
zero vector (the sum is divided by ``max(count, 1)``), so a new user is served
from the other features alone. Left and right padding give identical results.

Deviations from the paper (data-driven):

* no impressions exist in MovieLens: ranking negatives stand in for "impressed
  but not watched" - items the candidate generator ranks in its top 100 for the
  rolled-back request that the user never watched
  (`tfrec.recipes.youtube.impression_negatives`), or by default items drawn in
  proportion to popularity - and the rating stands in for watch time;
* the softmax has no bias term, so serving by dot product ranks exactly as the
  trained softmax does;
* search tokens are replaced by the genre bag of the watched movies.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from tfrec.layers import IdEmbedding, mlp_tower
from tfrec.layers.mlp import check_hidden_units
from tfrec.registry import Tolerance, register_model

DEMOGRAPHICS = ("user_gender", "user_age", "user_occupation")
_EMBEDDING_INIT = {"class_name": "RandomNormal", "config": {"stddev": 0.05}}


def _positive_int(name, value, minimum=1):
    if (
        not isinstance(value, (int, np.integer))
        or isinstance(value, bool)
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


@keras.saving.register_keras_serializable(package="tfrec")
class MaskedHistoryMean(keras.layers.Layer):
    """Mean of history vectors over the valid ids of each row.

    Call with ``[vectors, ids]``: ``vectors`` ``[B, L, D]`` (rows of invalid ids
    may hold anything) and ``ids`` ``[B, L]``. An id is valid when it lies in
    ``[0, num_ids)``; padding (``-1``) and unknown ids are ignored. A row without
    valid ids gives the zero vector.
    """

    def __init__(self, num_ids: int, **kwargs):
        super().__init__(**kwargs)
        self.num_ids = _positive_int("num_ids", num_ids)

    def call(self, inputs):
        vectors, ids = inputs
        ids = ops.cast(ids, "int64")
        valid = ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, self.num_ids))
        mask = ops.expand_dims(ops.cast(valid, vectors.dtype), -1)
        total = ops.sum(vectors * mask, axis=1)
        count = ops.maximum(ops.sum(mask, axis=1), 1.0)
        return total / count

    def compute_output_shape(self, input_shape):
        vec_shape = input_shape[0]
        return (vec_shape[0], vec_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_ids": self.num_ids}


@keras.saving.register_keras_serializable(package="tfrec")
class TimeSinceFeatures(keras.layers.Layer):
    """``days`` -> ``[x, x**2, sqrt(x), never]`` with ``x = min(days, h) / h``.

    Covington et al. Sec. 4.3 feed a normalised continuous feature together with
    its square and square root. A negative input means "never" (x = 1, flag 1).
    """

    def __init__(self, horizon_days: float = 365.0, **kwargs):
        super().__init__(**kwargs)
        if not float(horizon_days) > 0:
            raise ValueError(
                f"`horizon_days` must be > 0. Received: horizon_days={horizon_days!r}"
            )
        self.horizon_days = float(horizon_days)

    def call(self, days):
        days = ops.cast(days, "float32")
        never = ops.cast(ops.less(days, 0.0), "float32")
        x = ops.clip(days / self.horizon_days, 0.0, 1.0)
        x = x * (1.0 - never) + never
        return ops.stack([x, x * x, ops.sqrt(x), never], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (4,)

    def get_config(self):
        return {**super().get_config(), "horizon_days": self.horizon_days}


@keras.saving.register_keras_serializable(package="tfrec")
class ScaleShift(keras.layers.Layer):
    """``x * scale`` reshaped to ``[B, 1]`` (a fixed normalisation of a scalar)."""

    def __init__(self, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, x):
        return ops.expand_dims(ops.cast(x, "float32") * self.scale, -1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (1,)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def _demographic_inputs_and_vectors(
    num_genders, num_ages, num_occupations, dim, prefix
):
    inputs, vectors = {}, []
    for name, size in zip(
        DEMOGRAPHICS, (num_genders, num_ages, num_occupations), strict=True
    ):
        inputs[name] = keras.Input(shape=(), dtype="int64", name=name)
        vectors.append(
            IdEmbedding(
                size,
                dim,
                embeddings_initializer=_EMBEDDING_INIT,
                name=f"{prefix}_{name}_embedding",
            )(inputs[name])
        )
    return inputs, vectors


def _history_input():
    return keras.Input(shape=(None,), dtype="int64", name="item_history")


def _candidate_example_inputs(kwargs, batch_size, rng, *, with_item=True):
    num_items = kwargs["num_items"]
    length = 6
    hist = rng.integers(0, num_items, (batch_size, length), dtype=np.int64)
    lengths = rng.integers(0, length + 1, batch_size)
    left = rng.random(batch_size) < 0.5
    k = np.arange(length)[None, :]
    valid = np.where(
        left[:, None], k >= (length - lengths)[:, None], k < lengths[:, None]
    )
    hist = np.where(valid, hist, -1)
    if batch_size > 2:
        hist[2, -1] = num_items + 5  # an unknown id inside a history is ignored
    x = {"item_history": hist}
    if kwargs.get("num_genres", 19):
        g = (rng.random((batch_size, kwargs.get("num_genres", 19))) < 0.3).astype(
            np.float32
        )
        x["user_genres"] = g / np.maximum(g.sum(1, keepdims=True), 1)
    if kwargs.get("demographics", True):
        x["user_gender"] = rng.integers(0, kwargs.get("num_genders", 2), batch_size)
        x["user_age"] = rng.integers(0, kwargs.get("num_ages", 7), batch_size)
        x["user_occupation"] = rng.integers(
            0, kwargs.get("num_occupations", 21), batch_size
        )
    if kwargs.get("use_example_age", True):
        x["example_age"] = rng.uniform(0, 200, batch_size).astype(np.float32)
    if with_item:
        x["item_id"] = rng.integers(0, num_items, batch_size, dtype=np.int64)
    return {k: np.asarray(v) for k, v in x.items()}


def candidate_query_inputs(model: keras.Model) -> list[str]:
    """Input names of a `youtube_candidate` model's query tower."""
    return sorted(model.get_layer("query_tower").input)


@register_model(
    task="retrieval",
    example_inputs=_candidate_example_inputs,
    test_kwargs={
        "num_items": 23,
        "embedding_dim": 8,
        "hidden_units": (16, 8),
        "num_genres": 5,
    },
    parity=Tolerance(1e-5, 1e-5, "float32 embedding means and small MLP matmuls"),
    paper="Covington et al. 2016 (candidate generation)",
)
def youtube_candidate(
    num_items: int,
    *,
    embedding_dim: int = 256,
    hidden_units: Sequence[int] = (1024, 512, 256),
    num_genres: int = 19,
    demographics: bool = True,
    num_genders: int = 2,
    num_ages: int = 7,
    num_occupations: int = 21,
    demographics_dim: int = 8,
    use_example_age: bool = True,
    example_age_scale: float = 1.0 / 365.0,
    dropout: float = 0.0,
    l2: float = 0.0,
) -> keras.Model:
    """YouTube candidate generation network (Covington et al. 2016, Fig. 3).

    Args:
        num_items: catalogue size (softmax classes).
        embedding_dim: width of the watch-history item embeddings.
        hidden_units: ReLU tower widths; the last is the width of the user vector
            and of the softmax item embeddings.
        num_genres: width of the ``user_genres`` token bag (0 disables it).
        demographics: whether ``user_gender``, ``user_age``, ``user_occupation``
            (int codes) are inputs.
        num_genders, num_ages, num_occupations: demographic vocabulary sizes.
        demographics_dim: width of each demographic embedding.
        use_example_age: whether ``example_age`` (days before the training
            window's end; serve 0) is an input.
        example_age_scale: multiplies ``example_age`` before the tower.
        dropout: dropout after each hidden layer.
        l2: L2 penalty on the hidden kernels.

    Returns:
        A functional model with the query inputs plus ``item_id`` and outputs
        ``query_embedding`` (the user vector ``u``), ``item_embedding`` (the
        softmax weights of ``item_id``) and ``score = <u, v_item>`` (the logit).
        Its nested models ``query_tower`` and ``item_tower`` serve on their own.

    Example:
        >>> model = youtube_candidate(num_items=1682, hidden_units=(256, 128))
        >>> query = model.get_layer("query_tower")
    """
    _positive_int("num_items", num_items)
    _positive_int("embedding_dim", embedding_dim)
    units = check_hidden_units(hidden_units)
    _positive_int("num_genres", num_genres, minimum=0)
    hist = _history_input()
    q_inputs = {"item_history": hist}
    history_vectors = IdEmbedding(
        num_items,
        embedding_dim,
        embeddings_initializer=_EMBEDDING_INIT,
        name="watch_embedding",
    )(hist)
    parts = [MaskedHistoryMean(num_items, name="watch_mean")([history_vectors, hist])]
    if num_genres:
        q_inputs["user_genres"] = keras.Input(
            shape=(num_genres,), dtype="float32", name="user_genres"
        )
        parts.append(q_inputs["user_genres"])
    if demographics:
        demo_inputs, demo_vectors = _demographic_inputs_and_vectors(
            num_genders, num_ages, num_occupations, demographics_dim, "candidate"
        )
        q_inputs.update(demo_inputs)
        parts.extend(demo_vectors)
    if use_example_age:
        q_inputs["example_age"] = keras.Input(
            shape=(), dtype="float32", name="example_age"
        )
        parts.append(ScaleShift(example_age_scale, name="example_age_scaled")(
            q_inputs["example_age"]
        ))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="query_concat")(
        parts
    )
    u = mlp_tower(x, units, activation="relu", dropout=dropout, l2=l2, name="tower")
    u = keras.layers.Identity(name="query_embedding")(u)
    query_tower = keras.Model(q_inputs, {"query_embedding": u}, name="query_tower")

    item_id = keras.Input(shape=(), dtype="int64", name="item_id")
    v = IdEmbedding(
        num_items,
        units[-1],
        embeddings_initializer=_EMBEDDING_INIT,
        name="softmax_embedding",
    )(item_id)
    v = keras.layers.Identity(name="item_embedding")(v)
    item_tower = keras.Model({"item_id": item_id}, {"item_embedding": v},
                             name="item_tower")

    inputs = {
        name: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name)
        for name, t in q_inputs.items()
    }
    inputs["item_id"] = keras.Input(shape=(), dtype="int64", name="item_id")
    q = query_tower({k: inputs[k] for k in q_inputs})["query_embedding"]
    e = item_tower({"item_id": inputs["item_id"]})["item_embedding"]
    score = keras.layers.Dot(axes=1, name="dot")([q, e])
    score = keras.layers.Reshape((), name="score")(score)
    return keras.Model(
        inputs,
        {"query_embedding": q, "item_embedding": e, "score": score},
        name="youtube_candidate",
    )


def item_table(model: keras.Model) -> np.ndarray:
    """The softmax item embeddings of a `youtube_candidate` model, ``[N, D]``."""
    layer = model.get_layer("item_tower").get_layer("softmax_embedding")
    return np.asarray(layer.embeddings)


# --------------------------------------------------------------------- ranking


def _ranking_example_inputs(kwargs, batch_size, rng):
    x = _candidate_example_inputs(
        {**kwargs, "use_example_age": False, "num_genres": 0}, batch_size, rng
    )
    g = kwargs.get("num_genres", 19)
    x["item_genres"] = (rng.random((batch_size, g)) < 0.3).astype(np.float32)
    days = rng.uniform(0, 500, batch_size).astype(np.float32)
    days[rng.random(batch_size) < 0.2] = -1.0
    x["days_since_same_genre"] = days
    if kwargs.get("use_candidate_score", True):
        x["candidate_score"] = rng.normal(0, 3, batch_size).astype(np.float32)
    return x


@register_model(
    task="ranking",
    example_inputs=_ranking_example_inputs,
    test_kwargs={
        "num_items": 23,
        "embedding_dim": 8,
        "hidden_units": (16, 8),
        "num_genres": 5,
    },
    parity=Tolerance(1e-5, 1e-5, "float32 embedding means, small MLP, exp of logit"),
    paper="Covington et al. 2016 (ranking)",
)
def youtube_ranking(
    num_items: int,
    *,
    embedding_dim: int = 32,
    hidden_units: Sequence[int] = (1024, 512, 256),
    num_genres: int = 19,
    demographics: bool = True,
    num_genders: int = 2,
    num_ages: int = 7,
    num_occupations: int = 21,
    demographics_dim: int = 8,
    horizon_days: float = 365.0,
    use_candidate_score: bool = True,
    dropout: float = 0.0,
    l2: float = 0.0,
) -> keras.Model:
    """YouTube ranking network (Covington et al. 2016, Fig. 7).

    Args:
        num_items: catalogue size.
        embedding_dim: width of the item embedding shared by ``item_id`` (the
            impressed candidate) and ``item_history`` (watched items).
        hidden_units: ReLU tower widths.
        num_genres: width of ``item_genres`` (the candidate's multi-hot genres).
        demographics: whether the demographic codes are inputs.
        num_genders, num_ages, num_occupations: demographic vocabulary sizes.
        demographics_dim: width of each demographic embedding.
        horizon_days: normalises ``days_since_same_genre`` (negative = never).
        use_candidate_score: whether ``candidate_score`` (the candidate
            generator's dot-product score for this candidate) is an input; Sec.
            4.1: "which sources nominated this video candidate and what scores
            did they assign" helps ranking.
        dropout: dropout after each hidden layer.
        l2: L2 penalty on the hidden kernels.

    Returns:
        A functional model with inputs ``item_id``, ``item_history``,
        ``item_genres``, ``days_since_same_genre`` (and ``candidate_score``,
        demographics) and outputs
        ``odds`` (``exp(logit)``, the expected-watch-time estimate served by the
        paper) and ``score`` (``sigmoid(logit)``).
    """
    _positive_int("num_items", num_items)
    _positive_int("embedding_dim", embedding_dim)
    _positive_int("num_genres", num_genres)
    units = check_hidden_units(hidden_units)
    inputs = {
        "item_id": keras.Input(shape=(), dtype="int64", name="item_id"),
        "item_history": _history_input(),
        "item_genres": keras.Input(
            shape=(num_genres,), dtype="float32", name="item_genres"
        ),
        "days_since_same_genre": keras.Input(
            shape=(), dtype="float32", name="days_since_same_genre"
        ),
    }
    table = IdEmbedding(
        num_items,
        embedding_dim,
        embeddings_initializer=_EMBEDDING_INIT,
        name="ranking_item_embedding",
    )
    candidate = table(inputs["item_id"])
    watched = MaskedHistoryMean(num_items, name="ranking_watch_mean")(
        [table(inputs["item_history"]), inputs["item_history"]]
    )
    parts = [
        candidate,
        watched,
        inputs["item_genres"],
        TimeSinceFeatures(horizon_days, name="time_since_features")(
            inputs["days_since_same_genre"]
        ),
    ]
    if use_candidate_score:
        inputs["candidate_score"] = keras.Input(
            shape=(), dtype="float32", name="candidate_score"
        )
        parts.append(ScaleShift(1.0, name="candidate_score_column")(
            inputs["candidate_score"]
        ))
    if demographics:
        demo_inputs, demo_vectors = _demographic_inputs_and_vectors(
            num_genders, num_ages, num_occupations, demographics_dim, "ranking"
        )
        inputs.update(demo_inputs)
        parts.extend(demo_vectors)
    x = keras.layers.Concatenate(name="ranking_concat")(parts)
    x = mlp_tower(x, units, activation="relu", dropout=dropout, l2=l2, name="tower")
    logit = keras.layers.Dense(1, name="ranking_dense_logit")(x)
    logit = keras.layers.Reshape((), name="ranking_logit")(logit)
    odds = keras.layers.Activation("exponential", name="odds")(logit)
    score = keras.layers.Activation("sigmoid", name="score")(logit)
    return keras.Model(inputs, {"odds": odds, "score": score}, name="youtube_ranking")
