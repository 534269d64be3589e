"""Content-to-CF mapping CNN ("deep content-based recommendation").

Reference:
    Aaron van den Oord, Sander Dieleman, Benjamin Schrauwen. "Deep
    content-based music recommendation". NIPS 2013.

Idea: collaborative filtering gives every *warm* item a latent factor vector
``y_i``; a CNN learns to predict ``y_i`` from the item's content (there: a
mel-spectrogram of a 3 s audio clip), so a *new* item with no usage data gets
factors from its content and is scored ``x_u . y_hat_i`` against the users'
CF factors.

Pieces:

* ``wmf_als`` (`tfrec.recipes.content_cnn`, training only): the latent
  factors to regress. Weighted matrix factorisation for implicit feedback (Hu,
  Koren & Volinsky, ICDM 2008), the model the paper uses, solved by
  alternating least squares in numpy. Binary interactions get confidence
  ``1 + alpha`` (the paper's play counts would give ``1 + alpha log(1 + r /
  eps)``; MovieLens has no counts).
* :func:`content_cnn` (registered, ``content -> item_factors``): 1-D
  convolutions over time (ReLU), max-pooling over time between them, global
  temporal pooling (mean, max and L2 norm, concatenated, as in the paper),
  Dense layers, a linear output of the factor size.
* :func:`content_cnn_ranker` (registered, ``user_id + content -> score``):
  the serving scorer, ``score = x_u . cnn(content)`` with the WMF user
  factors ``x_u`` in an id table (ids outside ``[0, num_users)`` look up
  zeros, so unknown users score 0 everywhere).
* Training (`tfrec.recipes.content_cnn`; ``tfrec train content_cnn``): a
  ``wmf`` stage computes the factors, then a ``cnn`` stage fits the CNN with
  the squared error to them (the paper's MSE objective; its alternative
  weighted prediction error objective is not implemented) and assembles the
  ranker from the CNN and the WMF user factors.

Paper architecture for 599 x 128 spectrograms: conv 256 (width 4), max-pool
4, conv 256 (width 4), max-pool 2, conv 512 (width 4), global mean/max/L2
pooling, Dense 2048, output 50 (``filters=(256, 256, 512)``,
``pool_sizes=(4, 2)``, ``hidden_units=(2048,)``, ``embedding_dim=50``; the
defaults). Deviations: Adam by default instead of the paper's SGD with
momentum (any `make_optimizer` name trains); no
dropout by default (the paper does not state any for the MSE model).

Inputs real deployments feed: a time x frequency array per item (log-mel
spectrogram frames of an audio clip, as in the paper) or any sequence of
vectors (frames of a video, word vectors of a description).
:func:`movielens_token_content` builds the MovieLens stand-in used by the
reproduction: a ``max_tokens x vocabulary`` one-hot matrix of the item's
genre, decade and title tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from tfrec.layers import IdEmbedding
from tfrec.layers.mlp import check_hidden_units
from tfrec.registry import Tolerance, register_model

__all__ = [
    "GlobalL2Pooling1D",
    "content_cnn",
    "content_cnn_ranker",
    "movielens_token_content",
    "set_user_factors",
]

POOLINGS = ("mean", "max", "l2")
_PARITY = Tolerance(1e-5, 1e-4, "float32 1-D convolutions, pooling and matmuls")
_L2_EPS = 1e-12


@keras.saving.register_keras_serializable(package="tfrec")
class GlobalL2Pooling1D(keras.layers.Layer):
    """L2 norm over time: ``[batch, time, channels] -> [batch, channels]``.

    ``sqrt(sum_t x_t^2 + 1e-12)`` (the small constant keeps the gradient
    finite where a channel is zero at every step, e.g. after a ReLU).
    """

    def call(self, x):
        return ops.sqrt(ops.sum(ops.square(x), axis=1) + _L2_EPS)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _cnn_example_inputs(kwargs, batch_size, rng) -> dict:
    x = rng.random((batch_size, kwargs["input_length"], kwargs["input_dim"]))
    out = {"content": x.astype(np.float32)}
    if "num_users" in kwargs:
        out = {
            "user_id": rng.integers(
                0, kwargs["num_users"] + 2, batch_size, dtype=np.int64
            ),
            **out,
        }
    return out


_TINY = {
    "input_length": 12,
    "input_dim": 5,
    "embedding_dim": 4,
    "filters": (6, 8),
    "kernel_size": 3,
    "pool_sizes": (2,),
    "hidden_units": (7,),
}


def _cnn_tower(
    content,
    embedding_dim,
    filters,
    kernel_size,
    pool_sizes,
    pooling,
    hidden_units,
    activation,
    dropout,
):
    x = content
    for k, f in enumerate(filters, 1):
        x = keras.layers.Conv1D(
            f, kernel_size, activation=activation, name=f"conv_{k}"
        )(x)
        if k <= len(pool_sizes):
            x = keras.layers.MaxPooling1D(pool_sizes[k - 1], name=f"max_pool_{k}")(x)
    pooled = []
    for mode in pooling:
        if mode == "mean":
            pooled.append(keras.layers.GlobalAveragePooling1D(name="mean_pool")(x))
        elif mode == "max":
            pooled.append(keras.layers.GlobalMaxPooling1D(name="max_pool")(x))
        else:
            pooled.append(GlobalL2Pooling1D(name="l2_pool")(x))
    x = (
        keras.layers.Concatenate(name="temporal_pool")(pooled)
        if len(pooled) > 1
        else pooled[0]
    )
    for k, units in enumerate(hidden_units, 1):
        x = keras.layers.Dense(units, activation=activation, name=f"dense_{k}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{k}")(x)
    return keras.layers.Dense(embedding_dim, name="item_factors")(x)


def _check_cnn_args(
    input_length, input_dim, embedding_dim, filters, kernel_size, pool_sizes, pooling
):
    _check_int("input_length", input_length)
    _check_int("input_dim", input_dim)
    _check_int("embedding_dim", embedding_dim)
    _check_int("kernel_size", kernel_size)
    filters = check_hidden_units(filters, "filters")
    pool_sizes = tuple(pool_sizes)
    if len(pool_sizes) > len(filters) or not all(
        isinstance(p, int) and p >= 1 for p in pool_sizes
    ):
        raise ValueError(
            "`pool_sizes` must hold at most len(filters) positive ints (one max-pool "
            f"after each of the first convolutions). Received: pool_sizes="
            f"{pool_sizes!r}, filters={filters!r}"
        )
    pooling = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    if not pooling or any(p not in POOLINGS for p in pooling) or len(
        set(pooling)
    ) != len(pooling):
        raise ValueError(
            f"`pooling` must be a non-empty tuple of distinct names from {POOLINGS}. "
            f"Received: pooling={pooling!r}"
        )
    length = input_length
    for k in range(len(filters)):
        length = length - kernel_size + 1
        if length < 1:
            break
        if k < len(pool_sizes):
            length //= pool_sizes[k]
        if length < 1:
            break
    if length < 1:
        raise ValueError(
            f"input_length={input_length} is too short for {len(filters)} valid "
            f"convolutions of width {kernel_size} with max-pools {pool_sizes}: the "
            "time axis shrinks to 0. Use a longer input, fewer layers or smaller "
            "kernels/pools."
        )
    return filters, pool_sizes, pooling


@register_model(
    task="embedding",
    example_inputs=_cnn_example_inputs,
    test_kwargs=_TINY,
    parity=_PARITY,
    paper="van den Oord et al. 2013 (content CNN)",
)
def content_cnn(
    input_length: int,
    input_dim: int,
    *,
    embedding_dim: int = 50,
    filters: Sequence[int] = (256, 256, 512),
    kernel_size: int = 4,
    pool_sizes: Sequence[int] = (4, 2),
    pooling: Sequence[str] = POOLINGS,
    hidden_units: Sequence[int] = (2048,),
    activation: str = "relu",
    dropout: float = 0.0,
    name: str = "content_cnn",
) -> keras.Model:
    """CNN mapping an item's 2-D content to its CF latent factors.

    Reference: van den Oord et al., "Deep content-based music
    recommendation", NIPS 2013, Sec. 4-5.

    Args:
        input_length: time steps ``T`` of the content input.
        input_dim: features per step ``D`` (frequency bands, one-hot width).
        embedding_dim: latent factors predicted (the WMF factor size).
        filters: channels of each 1-D convolution (valid padding, over time).
        kernel_size: width of every convolution in time steps.
        pool_sizes: max-pool size after each of the first convolutions.
        pooling: global temporal pooling functions, concatenated.
        hidden_units: Dense layers before the output.
        activation: activation of convolutions and Dense layers.
        dropout: dropout after each Dense hidden layer.
        name: the model's name.

    Returns:
        A functional model ``{content [T, D]} -> {item_factors [embedding_dim]}``.

    Example:
        >>> model = content_cnn(599, 128)  # the paper's spectrogram input
    """
    filters, pool_sizes, pooling = _check_cnn_args(
        input_length, input_dim, embedding_dim, filters, kernel_size, pool_sizes, pooling
    )
    hidden_units = tuple(hidden_units)
    content = keras.Input(shape=(input_length, input_dim), name="content")
    out = _cnn_tower(
        content,
        embedding_dim,
        filters,
        kernel_size,
        pool_sizes,
        pooling,
        hidden_units,
        activation,
        dropout,
    )
    return keras.Model({"content": content}, {"item_factors": out}, name=name)


@register_model(
    task="ranking",
    example_inputs=_cnn_example_inputs,
    test_kwargs={"num_users": 9, **_TINY},
    parity=_PARITY,
    paper="van den Oord et al. 2013 (content CNN scorer)",
)
def content_cnn_ranker(
    num_users: int,
    input_length: int,
    input_dim: int,
    *,
    embedding_dim: int = 50,
    filters: Sequence[int] = (256, 256, 512),
    kernel_size: int = 4,
    pool_sizes: Sequence[int] = (4, 2),
    pooling: Sequence[str] = POOLINGS,
    hidden_units: Sequence[int] = (2048,),
    activation: str = "relu",
    dropout: float = 0.0,
) -> keras.Model:
    """Scores a (user, item content) pair: ``x_u . cnn(content)``.

    The item tower is a nested :func:`content_cnn` named ``item_tower``
    (export it alone for item factors); ``user_factors`` holds the CF user
    factors. Use :func:`set_user_factors` / ``item_tower.set_weights`` to load
    trained parts.

    Args:
        num_users: number of user indices (other ids score 0).
        input_length, input_dim, embedding_dim, filters, kernel_size,
        pool_sizes, pooling, hidden_units, activation, dropout: as in
            :func:`content_cnn`.

    Returns:
        A functional model ``{user_id, content [T, D]} -> {score}``.
    """
    _check_int("num_users", num_users)
    tower = content_cnn(
        input_length,
        input_dim,
        embedding_dim=embedding_dim,
        filters=filters,
        kernel_size=kernel_size,
        pool_sizes=pool_sizes,
        pooling=pooling,
        hidden_units=hidden_units,
        activation=activation,
        dropout=dropout,
        name="item_tower",
    )
    user_id = keras.Input(shape=(), dtype="int64", name="user_id")
    content = keras.Input(shape=(input_length, input_dim), name="content")
    x_u = IdEmbedding(
        num_users,
        embedding_dim,
        embeddings_initializer={"class_name": "RandomNormal", "config": {"stddev": 0.1}},
        name="user_factors",
    )(user_id)
    y_i = tower({"content": content})["item_factors"]
    dot = keras.layers.Dot(axes=1, name="user_item_dot")([x_u, y_i])
    score = keras.layers.Reshape((), name="score")(dot)
    return keras.Model(
        {"user_id": user_id, "content": content},
        {"score": score},
        name="content_cnn_ranker",
    )


def set_user_factors(ranker: keras.Model, user_factors: np.ndarray) -> None:
    """Loads CF user factors ``[num_users, embedding_dim]`` into a ranker."""
    layer = ranker.get_layer("user_factors")
    want = tuple(layer.embeddings.shape)
    got = np.shape(user_factors)
    if got != want:
        raise ValueError(
            f"`user_factors` must have shape {want} (num_users, embedding_dim). "
            f"Received shape {got}."
        )
    layer.embeddings.assign(np.asarray(user_factors, np.float32))


def movielens_token_content(
    items,
    item_ids,
    *,
    max_tokens: int = 16,
    min_df: int = 3,
) -> tuple[np.ndarray, list[str]]:
    """One-hot token matrices of MovieLens items (the CNN's 2-D input here).

    Each item's token sequence is: one ``genre:<name>`` token per genre (in
    the data set's genre order), one ``decade:<199x>`` token (``decade:?``
    when the year is unknown), then its title words (lower-cased, the year
    removed; `tfrec.data.content.ItemContent.title_tokens`), truncated to
    `max_tokens`. The vocabulary is every genre and decade token plus the
    title words found in at least `min_df` titles of the whole catalogue
    (content is known for cold items too); other words are skipped. Row t of
    an item's ``[max_tokens, vocabulary]`` matrix is the one-hot of its t-th
    token; rows past the sequence are zero.

    Args:
        items: a `tfrec.data.content.ItemContent`.
        item_ids: raw ids of the rows to return, in this order.
        max_tokens: time steps ``T``.
        min_df: minimum number of titles a word must occur in.

    Returns:
        ``(content [len(item_ids), max_tokens, V] float32, vocabulary)``.
    """
    _check_int("max_tokens", max_tokens)
    titles = items.title_tokens()
    df: dict[str, int] = {}
    for toks in titles:
        for t in set(toks):
            df[t] = df.get(t, 0) + 1

    def decade(y):
        return f"decade:{(int(y) // 10) * 10}s" if y > 0 else "decade:?"

    vocab = [f"genre:{g}" for g in items.genre_names]
    vocab += sorted({decade(y) for y in items.year})
    vocab += sorted(t for t, c in df.items() if c >= min_df)
    col = {t: j for j, t in enumerate(vocab)}
    rows = items.index(item_ids)
    out = np.zeros((rows.size, max_tokens, len(vocab)), np.float32)
    for n, r in enumerate(rows):
        seq = [
            f"genre:{g}"
            for g, on in zip(items.genre_names, items.genres[r], strict=True)
            if on
        ]
        seq.append(decade(items.year[r]))
        seq += [t for t in titles[r] if t in col]
        for t, token in enumerate(seq[:max_tokens]):
            out[n, t, col[token]] = 1.0
    return out, vocab
