"""MovieLens rating rows joined with user and movie features, for feature-based
models (Wide & Deep): tables, the CTR and rating-regression splits, vocabularies,
and ``tf.data`` pipelines.

One row per rating, with the raw feature values a serving client has
(``FEATURE_DTYPES``): ``user_id`` and ``item_id`` (raw MovieLens ids), ``gender``,
``age`` (ML-1M age bucket), ``occupation``, ``zip_prefix`` (strings), ``genres``
(multi-hot float32, columns in ``genre_names`` order) and ``year`` (release year,
0 when unknown).

ML-1M: the complete ``ratings.dat`` is used when present. Otherwise (as in the
shared data here) the ratings come from the NCF copy ``ncf-ml-1m`` (all 1,000,209
ratings, without timestamps): NCF user id ``u`` is UserID ``u + 1`` and NCF item
ids map to MovieIDs through ``reconstructed/ncf_item_to_movieid.tsv``; both were
checked against the original ratings of users 1-2999 (identical triples). The 91
items whose MovieID is unknown (150 ratings) keep their ratings with raw id
``UNKNOWN_MOVIE_OFFSET + ncf_item_id``, no genres and an unknown year.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrec.data.content import movielens_items, movielens_users
from tfrec.data.datasets import DataError, dataset_dir, load_interactions, verify_file

FEATURE_DTYPES: dict[str, str] = {
    "user_id": "int64",
    "item_id": "int64",
    "gender": "string",
    "age": "string",
    "occupation": "string",
    "zip_prefix": "string",
    "genres": "float32",
    "year": "int64",
}
STRING_COLUMNS = tuple(k for k, v in FEATURE_DTYPES.items() if v == "string")
CATEGORICAL_COLUMNS = ("user_id", "item_id") + STRING_COLUMNS
UNKNOWN_MOVIE_OFFSET = 100_000
DATASETS = ("movielens-100k", "movielens-1m")


@dataclass(frozen=True)
class Examples:
    """Feature columns and one label per row.

    Attributes:
        features: ``FEATURE_DTYPES`` columns (strings as object arrays of str).
        labels: float32 labels (a rating, or 0/1 for CTR).
        genre_names: the columns of ``features["genres"]``.
        name: data set name.
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray
    genre_names: tuple[str, ...]
    name: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, rows: np.ndarray) -> Examples:
        """The examples at positions ``rows``."""
        return Examples(
            {k: v[rows] for k, v in self.features.items()},
            self.labels[rows],
            self.genre_names,
            self.name,
        )


def encode_genres(genres: Iterable[str], genre_names: Sequence[str], sep="|") -> np.ndarray:
    """``"Comedy|Drama"`` strings -> multi-hot float32 rows in ``genre_names`` order.

    Raises:
        ValueError: a genre is not in ``genre_names``.
    """
    col = {g: j for j, g in enumerate(genre_names)}
    genres = list(genres)
    out = np.zeros((len(genres), len(col)), np.float32)
    for i, text in enumerate(genres):
        for g in filter(None, str(text).split(sep)):
            if g not in col:
                raise ValueError(
                    f"Unknown genre {g!r} in row {i} ({text!r}); expected one of "
                    f"{list(genre_names)}."
                )
            out[i, col[g]] = 1.0
    return out


def check_features(
    features: Mapping[str, np.ndarray], num_genres: int | None = None
) -> dict[str, np.ndarray]:
    """Validates a feature batch against ``FEATURE_DTYPES``; returns it with the
    canonical dtypes (strings as object arrays of str).

    Raises:
        ValueError: a column is missing, has a wrong shape, or rows differ in
            number; or a value is NaN.
        TypeError: a column has the wrong kind of dtype (e.g. numbers for
            ``gender``, strings for ``year``).
    """
    missing = [k for k in FEATURE_DTYPES if k not in features]
    if missing:
        raise ValueError(
            f"Missing feature column(s) {missing}; Wide & Deep needs "
            f"{list(FEATURE_DTYPES)} (received {sorted(features)})."
        )
    out, n = {}, None
    for name, dtype in FEATURE_DTYPES.items():
        value = np.asarray(features[name])
        if dtype == "string":
            if value.dtype.kind not in "OUS" or not all(
                isinstance(v, (str, bytes)) for v in value.flat
            ):
                raise TypeError(
                    f"Feature {name!r} must hold strings (e.g. 'M', 'technician'); "
                    f"received dtype {value.dtype}."
                )
            value = np.array(
                [v.decode() if isinstance(v, bytes) else v for v in value.flat],
                dtype=object,
            ).reshape(value.shape)
        elif value.dtype.kind not in ("iu" if dtype == "int64" else "fiub"):
            raise TypeError(
                f"Feature {name!r} must be {dtype}; received dtype {value.dtype}."
            )
        else:
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise ValueError(f"Feature {name!r} has NaN or infinite values.")
            value = value.astype(dtype)
        want_ndim = 2 if name == "genres" else 1
        if value.ndim != want_ndim:
            raise ValueError(
                f"Feature {name!r} must have {want_ndim} dimension(s) (batch"
                f"{', num_genres' if want_ndim == 2 else ''}); received shape "
                f"{value.shape}."
            )
        if name == "genres" and num_genres is not None and value.shape[1] != num_genres:
            raise ValueError(
                f"Feature 'genres' must have {num_genres} columns; received "
                f"{value.shape[1]}."
            )
        if n is None:
            n = value.shape[0]
        elif value.shape[0] != n:
            raise ValueError(
                f"Feature {name!r} has {value.shape[0]} rows, others have {n}."
            )
        out[name] = value
    return out


# ------------------------------------------------------------------- loading


def _ml1m_ratings(data_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UserID, MovieID, rating) of all ML-1M ratings."""
    try:
        root = dataset_dir("movielens-1m", data_dir, download=False)
    except DataError:
        root = None  # no complete ratings.dat: use the NCF copy
    if root is not None:  # a damaged file raises, it does not fall back
        inter = load_interactions("movielens-1m", root, download=False)
        return inter.user, inter.item, inter.rating
    root = dataset_dir("ncf-ml-1m")
    inter = load_interactions("ncf-ml-1m", root)
    mapping = next(
        (
            p
            for p in (
                root / "reconstructed" / "ncf_item_to_movieid.tsv",
                root / "ncf_item_to_movieid.tsv",
            )
            if p.is_file()
        ),
        None,
    )
    if mapping is None:
        raise DataError(
            f"{root}: reconstructed/ncf_item_to_movieid.tsv is missing; it maps NCF "
            "item ids to MovieIDs (needed for ML-1M movie features)."
        )
    verify_file("ncf-ml-1m", root, mapping.relative_to(root).as_posix())
    table = pd.read_csv(mapping, sep="\t")
    if table.shape[1] != 2:
        raise DataError(f"{mapping}: expected 2 columns, got {table.shape[1]}")
    # A lookup through the sorted ids (not an array sized by the largest id, which
    # a stray huge id would blow up).
    ncf_ids = table.iloc[:, 0].to_numpy(np.int64)
    order = np.argsort(ncf_ids, kind="stable")
    ncf_sorted = ncf_ids[order]
    movie_col = table.iloc[:, 1]
    movie_sorted = np.where(
        movie_col.notna().to_numpy(), movie_col.fillna(-1).to_numpy(), -1
    ).astype(np.int64)[order]
    item = np.asarray(inter.item, np.int64)
    pos = np.minimum(np.searchsorted(ncf_sorted, item), max(ncf_sorted.size - 1, 0))
    found = ncf_sorted.size > 0 and (ncf_sorted[pos] == item)
    if not np.all(found):
        missing = np.unique(item[~found])
        raise DataError(
            f"{mapping}: NCF item(s) {missing[:5].tolist()} have no row "
            f"({missing.size} in all)"
        )
    raw_item = movie_sorted[pos]
    raw_item = np.where(raw_item < 0, UNKNOWN_MOVIE_OFFSET + item, raw_item)
    return np.asarray(inter.user, np.int64) + 1, raw_item, inter.rating


def movielens_tabular(
    name: str = "movielens-100k",
    data_dir: str | os.PathLike | None = None,
    *,
    zip_digits: int = 1,
) -> Examples:
    """Every rating of ``name`` with its user's and movie's features.

    Args:
        name: ``movielens-100k`` or ``movielens-1m``.
        data_dir: folder of the ratings (ML-100K; content is found like the
            ratings). For ML-1M the data sets are located by name.
        zip_digits: length of the zip-code prefix feature.

    Returns:
        ``Examples`` whose labels are the ratings (1-5).
    """
    if name not in DATASETS:
        raise ValueError(f"`name` must be one of {DATASETS}. Received: {name!r}")
    if name == "movielens-100k":
        inter = load_interactions(name, data_dir)
        user, item, rating = inter.user, inter.item, inter.rating
        content_dir = data_dir
    else:
        user, item, rating = _ml1m_ratings(data_dir)
        content_dir = None
    items = movielens_items(name, content_dir)
    users = movielens_users(name, content_dir)
    features = users.categorical(user, zip_digits=zip_digits)
    features = {k: np.asarray(v, dtype=object) for k, v in features.items()}
    known = np.isin(item, items.item_ids)
    unknown = np.unique(item[~known])
    if unknown.size and (unknown < UNKNOWN_MOVIE_OFFSET).any():
        raise DataError(
            f"{name}: rated item ids without movie metadata: "
            f"{unknown[unknown < UNKNOWN_MOVIE_OFFSET][:5].tolist()}"
        )
    rows = items.index(np.where(known, item, items.item_ids[0]))
    genres = np.where(known[:, None], items.genres[rows], 0.0).astype(np.float32)
    year = np.where(known, items.year[rows], 0).astype(np.int64)
    features.update(
        user_id=np.asarray(user, np.int64),
        item_id=np.asarray(item, np.int64),
        genres=genres,
        year=year,
    )
    features = {k: features[k] for k in FEATURE_DTYPES}
    return Examples(features, np.asarray(rating, np.float32), items.genre_names, name)


# -------------------------------------------------------------------- splits


def _random_parts(n: int, ratios: Sequence[float], seed: int) -> list[np.ndarray]:
    ratios = np.asarray(ratios, np.float64)
    if ratios.ndim != 1 or (ratios <= 0).any() or abs(ratios.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"`ratios` must be positive and sum to 1. Received: {ratios.tolist()}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(ratios)[:-1] * n).astype(np.int64)
    return [np.sort(p) for p in np.split(perm, bounds)]


def ctr_split(
    data: Examples,
    *,
    seed: int = 0,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    positive_min: float = 4.0,
    negative_max: float = 2.0,
) -> dict[str, Examples]:
    """RecBole's context-aware (CTR) protocol on explicit ratings.

    Ratings ``>= positive_min`` become label 1, ``<= negative_max`` label 0, the
    rest (rating 3) are dropped; the remaining rows are shuffled and split at
    random into ``train`` / ``valid`` / ``test`` by ``ratios``.
    """
    rating = data.labels
    keep = (rating >= positive_min) | (rating <= negative_max)
    labelled = data.take(np.flatnonzero(keep))
    labels = (labelled.labels >= positive_min).astype(np.float32)
    labelled = Examples(labelled.features, labels, data.genre_names, data.name)
    parts = _random_parts(len(labelled), ratios, seed)
    names = ("train", "valid", "test")[: len(parts)]
    return {k: labelled.take(rows) for k, rows in zip(names, parts, strict=True)}


def rating_split(
    data: Examples, *, seed: int = 0, test_fraction: float = 0.25
) -> dict[str, Examples]:
    """Random ``train`` / ``test`` split of the rating rows (labels = ratings)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"`test_fraction` must be in (0, 1). Received: {test_fraction!r}"
        )
    train, test = _random_parts(len(data), (1 - test_fraction, test_fraction), seed)
    return {"train": data.take(train), "test": data.take(test)}


# ------------------------------------------------------------- vocabularies


def fit_vocabularies(
    features: Mapping[str, np.ndarray],
    *,
    columns: Sequence[str] = CATEGORICAL_COLUMNS,
    min_count: int = 1,
) -> dict[str, list]:
    """The values of each categorical column seen at least ``min_count`` times,
    sorted (ids as ints, strings as str); rarer values go to the model's OOV
    bucket."""
    out = {}
    for col in columns:
        values, counts = np.unique(np.asarray(features[col]), return_counts=True)
        kept = values[counts >= min_count]
        if kept.size == 0:
            raise ValueError(f"Column {col!r} has no value seen {min_count}+ times.")
        out[col] = [int(v) for v in kept] if kept.dtype.kind in "iu" else [
            str(v) for v in kept
        ]
    return out


def fit_crosses(
    features: Mapping[str, np.ndarray],
    crosses: Iterable[str],
    genre_names: Sequence[str],
    *,
    min_count: int = 1,
) -> dict[str, list[list]]:
    """The joint values each cross ``"<a>_x_<b>"`` takes in ``features`` at least
    ``min_count`` times: ``{name: [[value_a, value_b], ...]}``. With ``b =
    genres`` every genre of a row forms its own pair."""
    out = {}
    for name in crosses:
        a, sep, b = name.partition("_x_")
        if not sep or a not in CATEGORICAL_COLUMNS or b not in (
            CATEGORICAL_COLUMNS + ("genres",)
        ):
            raise ValueError(
                f"Cross {name!r} must be '<a>_x_<b>' with a in {CATEGORICAL_COLUMNS} "
                f"and b in {CATEGORICAL_COLUMNS + ('genres',)}."
            )
        va = np.asarray(features[a])
        if b == "genres":
            rows, cols = np.nonzero(np.asarray(features["genres"]) > 0)
            left = va[rows]
            right = np.asarray(genre_names, dtype=object)[cols]
        else:
            left, right = va, np.asarray(features[b])
        frame = pd.DataFrame({"a": left, "b": right})
        counts = frame.value_counts(sort=False)
        pairs = sorted(
            (k for k, c in counts.items() if c >= min_count),
            key=lambda p: (str(p[0]), str(p[1])),
        )

        def plain(v):
            return int(v) if isinstance(v, (int, np.integer)) else str(v)

        out[name] = [[plain(x), plain(y)] for x, y in pairs]
    return out


# ----------------------------------------------------------------- tf.data


def make_dataset(
    examples: Examples,
    *,
    batch_size: int = 1024,
    shuffle: bool = False,
    seed: int = 0,
    with_labels: bool = True,
) -> tf.data.Dataset:
    """Batches of ``(features, label)`` (or features only) from ``examples``,
    reshuffled every epoch when ``shuffle``."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    features = check_features(examples.features, len(examples.genre_names))
    tensors = {
        k: tf.constant(v.astype(str) if FEATURE_DTYPES[k] == "string" else v)
        for k, v in features.items()
    }
    labels = tf.constant(np.asarray(examples.labels, np.float32))

    def gather(idx):
        x = {k: tf.gather(t, idx) for k, t in tensors.items()}
        return (x, tf.gather(labels, idx)) if with_labels else x

    ds = tf.data.Dataset.range(len(examples))
    if shuffle:  # a fresh permutation of the row indices every epoch
        ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size)).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class TabularEpochs:
    """Row order of each epoch, a function of ``(seed, epoch)`` (like
    :class:`tfrec.data.pipelines.RatingEpochs`), so a resumed run draws the same
    batches as an uninterrupted one. ``fit`` advances ``epoch`` through
    :class:`tfrec.data.pipelines.SamplerEpochCallback`."""

    def __init__(self, num_rows: int, *, seed: int = 0, shuffle: bool = True):
        self.num_rows, self.seed, self.shuffle, self.epoch = int(num_rows), int(seed), shuffle, 0

    def __len__(self) -> int:
        return self.num_rows

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_rows, dtype=np.int64)
        rng = np.random.default_rng([self.seed, int(epoch)])
        return rng.permutation(self.num_rows).astype(np.int64)


def epoch_dataset(
    examples: Examples, *, batch_size: int = 1024, seed: int = 0, shuffle: bool = True
) -> tuple[tf.data.Dataset, TabularEpochs]:
    """``(features, label)`` batches in a fresh order each epoch.

    Returns the dataset and its epoch source; pass
    ``SamplerEpochCallback(source)`` to ``fit`` so the order of epoch ``e`` is
    ``permutation(seed, e)`` also after a resume (``make_dataset``'s
    ``reshuffle_each_iteration`` restarts its sequence on a resume).
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    if len(examples) == 0:
        raise ValueError("No rows to train on: the training part is empty.")
    features = check_features(examples.features, len(examples.genre_names))
    tensors = {
        k: tf.constant(v.astype(str) if FEATURE_DTYPES[k] == "string" else v)
        for k, v in features.items()
    }
    labels = tf.constant(np.asarray(examples.labels, np.float32))
    source = TabularEpochs(len(examples), seed=seed, shuffle=shuffle)

    def next_epoch():
        epoch = source.epoch
        source.epoch += 1
        return source.order(epoch)

    def gather(idx):
        return {k: tf.gather(t, idx) for k, t in tensors.items()}, tf.gather(labels, idx)

    ds = (
        tf.data.Dataset.from_tensors(0)
        .map(lambda _: tf.ensure_shape(tf.numpy_function(next_epoch, [], tf.int64), (None,)))
        .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(int(batch_size)))
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    )
    steps = -(-len(examples) // int(batch_size))
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(tf.data.AUTOTUNE), source
