"""Multi-view deep neural network (MV-DNN).

Reference:
    Ali Mamdouh Elkahky, Yang Song, Xiaodong He. "A Multi-View Deep Learning
    Approach for Cross Domain User Modeling in Recommendation Systems". WWW 2015.

MV-DNN maps a *user view* and one *item view per domain* into a shared semantic
space with separate towers; relevance is the cosine similarity between the
user's vector and the item's vector in that view, and training maximises

    P(i | u) = exp(gamma * cos(y_u, y_i)) / sum_{j in {i} + negatives} exp(gamma * cos(y_u, y_j))

over the observed item and sampled negatives (Eq. 4-6; gamma is the smoothing
factor). The user tower is shared by every view (the paper's pivot view).

On MovieLens the "domains" are views of the same movies (the paper's domains
are news, apps and movies/TV, which no data set here has):

* ``genres``: the multi-hot genres (``item_genres``);
* ``title``: a binary bag of title tokens (``item_title_tokens``; the paper
  uses letter-trigram bags of titles);
* ``era``: the release era code (``item_era``).

User view (decided here, as the paper's user features - search queries and
browsing - do not exist): what the user has watched, described by content,
plus who they are: ``user_genres`` (mean genre multi-hot of the watched
movies), ``user_title_tokens`` (mean title-token bag of the watched movies) and
the demographic codes ``user_gender``, ``user_age``, ``user_occupation``. No
user or item ids enter the model, so it scores unseen users and items.

Each observed (user, item) trains every view (the item exists in all of them);
the loss is the sum of the per-view softmax losses
(`tfrec.recipes.mv_dnn.MultiViewSoftmaxTask`).
At serving, the ``score`` output is the mean of the per-view cosines
(``score_genres``, ``score_title``, ``score_era``). Towers use tanh, as in the
paper (DSSM's 300-300-128 layout by default).

Registered models: ``mv_dnn`` (the scoring model, holding the towers as nested
models ``user_tower`` and ``item_tower_<view>``), ``mv_dnn_user_tower`` and
``mv_dnn_item_tower`` (one view, chosen with ``view=``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from tfrec.layers import IdEmbedding, mlp_tower
from tfrec.layers.mlp import check_hidden_units
from tfrec.models.youtube import DEMOGRAPHICS
from tfrec.registry import Tolerance, register_model

VIEWS = ("genres", "title", "era")
VIEW_INPUTS = {
    "genres": "item_genres",
    "title": "item_title_tokens",
    "era": "item_era",
}


@keras.saving.register_keras_serializable(package="tfrec")
class Cosine(keras.layers.Layer):
    """Row-wise cosine similarity of two ``[B, D]`` tensors -> ``[B]``.

    ``epsilon`` keeps a zero vector's similarity at 0 instead of NaN.
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        a, b = inputs
        dot = ops.sum(a * b, axis=-1)
        norms = ops.sqrt(ops.sum(a * a, axis=-1) * ops.sum(b * b, axis=-1))
        return dot / ops.maximum(norms, self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _check_views(views):
    views = tuple(views)
    if not views or any(v not in VIEWS for v in views) or len(set(views)) != len(views):
        raise ValueError(
            f"`views` must be distinct names from {VIEWS}. Received: views={views!r}"
        )
    return views


def _check_pos(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _user_inputs(num_genres, title_vocab, demographics):
    inputs = {
        "user_genres": keras.Input(shape=(num_genres,), name="user_genres"),
        "user_title_tokens": keras.Input(
            shape=(title_vocab,), name="user_title_tokens"
        ),
    }
    if demographics:
        for name in DEMOGRAPHICS:
            inputs[name] = keras.Input(shape=(), dtype="int64", name=name)
    return inputs


def _item_input(view, num_genres, title_vocab):
    if view == "genres":
        return keras.Input(shape=(num_genres,), name="item_genres")
    if view == "title":
        return keras.Input(shape=(title_vocab,), name="item_title_tokens")
    return keras.Input(shape=(), dtype="int64", name="item_era")


def _tower_units(hidden_units, embedding_dim):
    units = check_hidden_units(hidden_units)
    _check_pos("embedding_dim", embedding_dim)
    return units + (int(embedding_dim),)


@register_model(
    task="embedding",
    example_inputs=lambda kw, b, rng: _user_example_inputs(kw, b, rng),
    test_kwargs={"num_genres": 5, "title_vocab": 7, "hidden_units": (8,),
                 "embedding_dim": 4},
    paper="Elkahky et al. 2015 (MV-DNN user view tower)",
)
def mv_dnn_user_tower(
    *,
    num_genres: int = 19,
    title_vocab: int = 300,
    demographics: bool = True,
    num_genders: int = 2,
    num_ages: int = 7,
    num_occupations: int = 21,
    demographics_dim: int = 8,
    hidden_units: Sequence[int] = (300, 300),
    embedding_dim: int = 128,
    activation: str = "tanh",
    name: str = "user_tower",
) -> keras.Model:
    """MV-DNN user-view tower: watched-content bags and demographics -> vector.

    Args:
        num_genres: width of ``user_genres``.
        title_vocab: width of ``user_title_tokens``.
        demographics: whether ``user_gender``, ``user_age``, ``user_occupation``
            are inputs.
        num_genders, num_ages, num_occupations: demographic vocabulary sizes.
        demographics_dim: width of each demographic embedding.
        hidden_units: hidden widths before the semantic layer.
        embedding_dim: width of the semantic space.
        activation: tower activation (tanh in the paper).

    Returns:
        A functional model with output ``query_embedding``.
    """
    _check_pos("num_genres", num_genres)
    _check_pos("title_vocab", title_vocab)
    units = _tower_units(hidden_units, embedding_dim)
    inputs = _user_inputs(num_genres, title_vocab, demographics)
    parts = [inputs["user_genres"], inputs["user_title_tokens"]]
    if demographics:
        for key, size in zip(
            DEMOGRAPHICS, (num_genders, num_ages, num_occupations), strict=True
        ):
            parts.append(
                IdEmbedding(size, demographics_dim, name=f"mv_{key}_embedding")(
                    inputs[key]
                )
            )
    x = keras.layers.Concatenate(name="user_concat")(parts)
    y = mlp_tower(x, units, activation=activation, name="user")
    y = keras.layers.Identity(name="query_embedding")(y)
    return keras.Model(inputs, {"query_embedding": y}, name=name)


@register_model(
    task="embedding",
    example_inputs=lambda kw, b, rng: _item_example_inputs(kw, b, rng),
    test_kwargs={"view": "title", "num_genres": 5, "title_vocab": 7,
                 "hidden_units": (8,), "embedding_dim": 4},
    paper="Elkahky et al. 2015 (MV-DNN item view tower)",
)
def mv_dnn_item_tower(
    *,
    view: str = "genres",
    num_genres: int = 19,
    title_vocab: int = 300,
    num_eras: int = 8,
    era_dim: int = 16,
    hidden_units: Sequence[int] = (300, 300),
    embedding_dim: int = 128,
    activation: str = "tanh",
    name: str | None = None,
) -> keras.Model:
    """MV-DNN item tower of one view.

    Args:
        view: ``genres`` (input ``item_genres``), ``title``
            (``item_title_tokens``) or ``era`` (``item_era`` code).
        num_genres, title_vocab, num_eras: input sizes.
        era_dim: width of the era embedding.
        hidden_units, embedding_dim, activation: as in the user tower.

    Returns:
        A functional model with output ``item_embedding``.
    """
    (view,) = _check_views((view,))
    _check_pos("num_genres", num_genres)
    _check_pos("title_vocab", title_vocab)
    _check_pos("num_eras", num_eras)
    units = _tower_units(hidden_units, embedding_dim)
    inp = _item_input(view, num_genres, title_vocab)
    x = inp
    if view == "era":
        x = IdEmbedding(num_eras, era_dim, name="era_embedding")(inp)
    y = mlp_tower(x, units, activation=activation, name=f"item_{view}")
    y = keras.layers.Identity(name="item_embedding")(y)
    return keras.Model(
        {VIEW_INPUTS[view]: inp}, {"item_embedding": y}, name=name or f"item_tower_{view}"
    )


def _user_example_inputs(kw, batch, rng):
    g, v = kw.get("num_genres", 19), kw.get("title_vocab", 300)
    genres = (rng.random((batch, g)) < 0.3) * rng.random((batch, g))
    x = {
        "user_genres": genres.astype(np.float32),
        "user_title_tokens": ((rng.random((batch, v)) < 0.2) * 0.5).astype(np.float32),
    }
    if kw.get("demographics", True):
        x["user_gender"] = rng.integers(0, kw.get("num_genders", 2), batch)
        x["user_age"] = rng.integers(0, kw.get("num_ages", 7), batch)
        x["user_occupation"] = rng.integers(0, kw.get("num_occupations", 21), batch)
    return x


def _item_example_inputs(kw, batch, rng, views=None):
    views = views or (kw.get("view", "genres"),)
    g, v = kw.get("num_genres", 19), kw.get("title_vocab", 300)
    x = {}
    if "genres" in views:
        x["item_genres"] = (rng.random((batch, g)) < 0.3).astype(np.float32)
    if "title" in views:
        x["item_title_tokens"] = (rng.random((batch, v)) < 0.2).astype(np.float32)
    if "era" in views:
        x["item_era"] = rng.integers(0, kw.get("num_eras", 8), batch)
    return x


def _mv_example_inputs(kw, batch, rng):
    x = _user_example_inputs(kw, batch, rng)
    x.update(_item_example_inputs(kw, batch, rng, views=kw.get("views", VIEWS)))
    return x


@register_model(
    task="ranking",
    example_inputs=_mv_example_inputs,
    test_kwargs={"num_genres": 5, "title_vocab": 7, "hidden_units": (8,),
                 "embedding_dim": 4},
    parity=Tolerance(1e-5, 1e-5, "float32 tanh MLPs and cosine normalisation"),
    paper="Elkahky et al. 2015 (MV-DNN)",
)
def mv_dnn(
    *,
    views: Sequence[str] = VIEWS,
    num_genres: int = 19,
    title_vocab: int = 300,
    num_eras: int = 8,
    demographics: bool = True,
    num_genders: int = 2,
    num_ages: int = 7,
    num_occupations: int = 21,
    hidden_units: Sequence[int] = (300, 300),
    embedding_dim: int = 128,
    activation: str = "tanh",
) -> keras.Model:
    """MV-DNN scoring model: cosine between the user vector and each item view.

    Args:
        views: item views (a subset of ``VIEWS``), one tower each.
        num_genres, title_vocab, num_eras: content sizes.
        demographics: whether the user view has demographic codes.
        num_genders, num_ages, num_occupations: demographic vocabulary sizes.
        hidden_units: hidden widths of every tower.
        embedding_dim: width of the shared semantic space.
        activation: tower activation (tanh in the paper).

    Returns:
        A functional model from the user-view inputs and the item inputs of every
        view to ``score`` (mean cosine over views) and ``score_<view>`` (cosine
        per view). Nested models: ``user_tower``, ``item_tower_<view>``.

    Example:
        >>> model = mv_dnn(views=("genres", "title"), title_vocab=300)
    """
    views = _check_views(views)
    user_tower = mv_dnn_user_tower(
        num_genres=num_genres,
        title_vocab=title_vocab,
        demographics=demographics,
        num_genders=num_genders,
        num_ages=num_ages,
        num_occupations=num_occupations,
        hidden_units=hidden_units,
        embedding_dim=embedding_dim,
        activation=activation,
    )
    inputs = {
        k: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=k)
        for k, t in user_tower.input.items()
    }
    y_u = user_tower(dict(inputs))["query_embedding"]
    outputs = {}
    for view in views:
        tower = mv_dnn_item_tower(
            view=view,
            num_genres=num_genres,
            title_vocab=title_vocab,
            num_eras=num_eras,
            hidden_units=hidden_units,
            embedding_dim=embedding_dim,
            activation=activation,
        )
        key = VIEW_INPUTS[view]
        inputs[key] = _item_input(view, num_genres, title_vocab)
        y_i = tower({key: inputs[key]})["item_embedding"]
        outputs[f"score_{view}"] = Cosine(name=f"score_{view}")([y_u, y_i])
    if len(views) == 1:
        score = keras.layers.Identity(name="score")(outputs[f"score_{views[0]}"])
    else:
        score = keras.layers.Average(name="score")(list(outputs.values()))
    outputs["score"] = score
    return keras.Model(inputs, outputs, name="mv_dnn")


def mv_dnn_views(model: keras.Model) -> tuple[str, ...]:
    """The item views of an `mv_dnn` model, in output order."""
    return tuple(
        k[len("score_"):] for k in model.output if k.startswith("score_")
    )


def item_view_embeddings(model: keras.Model, item_features) -> dict[str, np.ndarray]:
    """``{view: [num_items, D]}`` L2-normalised item vectors of every view."""
    out = {}
    for view in mv_dnn_views(model):
        key = VIEW_INPUTS[view]
        tower = model.get_layer(f"item_tower_{view}")
        e = np.asarray(tower.predict({key: np.asarray(item_features[key])},
                                     batch_size=4096, verbose=0)["item_embedding"])
        out[view] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return out
