"""Warm/cold item split of implicit feedback, and its two ranking protocols.

Content models (VBPR, the content-to-CF mapping CNN, CF+content hybrids) are
judged on two questions: do they rank *warm* items (items with training
interactions) at least as well as pure CF, and can they rank *cold* items
(items with no training interaction at all) from their content alone?
`cold_item_split` builds the data for both:

1. All ratings are implicit positives (optionally only ratings
   ``>= min_rating``); repeated (user, item) pairs are collapsed to one.
2. A seeded random ``cold_fraction`` of the items becomes **cold**: every
   interaction with a cold item is removed from training and forms the
   **cold test** set.
3. Of each user's remaining (warm) interactions a ``test_fraction`` (rounded,
   at least one training interaction kept per user) forms the **warm test**
   set: a random choice (``warm_test="random"``) or the user's latest ones
   (``warm_test="latest"``, needs timestamps). A warm-test pair whose item
   would be left without any training interaction is put back into train, so
   every warm item is seen in training and every cold item is not.

Index layout (the contract every content model relies on)
---------------------------------------------------------
* Users: ``0 .. num_users - 1``, every user of the (filtered) data, ascending
  raw id (`ColdStartSplit.user_ids`). A user whose every interaction is with
  cold items has no training pair.
* Items: warm items first, ``0 .. num_warm_items - 1`` (ascending raw id),
  then cold items ``num_warm_items .. num_items - 1`` (ascending raw id);
  `ColdStartSplit.item_ids` maps an index back to its raw id.
  Hence an id-embedding model built with ``num_items=split.num_warm_items``
  treats every cold item as out-of-vocabulary (`tfrec.layers.IdEmbedding`
  returns zeros), which is exactly "gamma_i and beta_i are zero for cold
  items" without any special casing.

Protocols (full ranking, pessimistic ties, `tfrec.evaluation.metrics`)
----------------------------------------------------------------------
* `evaluate_warm`: for each user with warm-test items, rank **all warm items**
  except the user's training items.
* `evaluate_cold`: for each user with cold-test items, rank **all cold items**
  (none was seen in training, so nothing is excluded).

Both take a ``score_fn(user_idx, item_idx) -> scores`` over the global indices
above and return ``recall@k``, ``ndcg@k``, ``hr@k`` (plus ``mrr@k`` and
``precision@k``) for each cut-off.

Also here: `load_split_features` (a feature file aligned to the split's item
indices, validated by `tfrec.data.content.load_item_features`),
`popularity_scores`, and `synthetic_content` (interactions driven by hidden
item content, with that content observed as a vector and as a 2-D
"spectrogram", for tests of content models).

Example:
    >>> inter = load_interactions("movielens-100k")
    >>> split = cold_item_split(inter, cold_fraction=0.2, test_fraction=0.2, seed=0)
    >>> evaluate_cold(split, score_fn, ks=(10, 20))["recall@20"]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from tfrec.data.datasets import DataError, Interactions, load_interactions
from tfrec.evaluation.protocols import FullRanking

__all__ = [
    "ColdStartSplit",
    "cold_item_split",
    "cold_ranking",
    "evaluate_cold",
    "evaluate_warm",
    "load_cold_split",
    "load_split_features",
    "popularity_scores",
    "synthetic_content",
    "warm_ranking",
]

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(kw_only=True)
class ColdStartSplit:
    """An index-encoded warm/cold item split (see the module docstring).

    Args:
        name: Data set name.
        num_users: Number of user indices.
        num_items: Number of item indices (warm + cold).
        num_warm_items: Warm items are ``0 .. num_warm_items - 1``.
        train: ``{"user_id": int64, "item_id": int64, "rating": float32}``;
            only warm items.
        warm_test: Same keys; only warm items, never a training pair.
        cold_test: Same keys; only cold items (all their interactions).
        user_ids: Raw id of each user index (ascending).
        item_ids: Raw id of each item index (warm block then cold block,
            each ascending).
        item_names: Title of each item index ("" when unknown), or None.
        settings: The arguments that produced the split.
    """

    name: str
    num_users: int
    num_items: int
    num_warm_items: int
    train: dict[str, np.ndarray]
    warm_test: dict[str, np.ndarray]
    cold_test: dict[str, np.ndarray]
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_names: list[str] | None = None
    settings: dict = field(default_factory=dict)
    _csr: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def num_cold_items(self) -> int:
        """Number of cold items."""
        return self.num_items - self.num_warm_items

    @property
    def warm_items(self) -> np.ndarray:
        """Indices of the warm items, ``arange(num_warm_items)``."""
        return np.arange(self.num_warm_items, dtype=np.int64)

    @property
    def cold_items(self) -> np.ndarray:
        """Indices of the cold items, ``arange(num_warm_items, num_items)``."""
        return np.arange(self.num_warm_items, self.num_items, dtype=np.int64)

    def is_cold(self, item_idx) -> np.ndarray:
        """Boolean mask: which of the item indices are cold."""
        return np.asarray(item_idx, np.int64) >= self.num_warm_items

    def _encode(self, raw_ids, vocab: np.ndarray, what: str) -> np.ndarray:
        raw = np.asarray(raw_ids, dtype=np.int64)
        sorter = np.argsort(vocab, kind="stable")
        sorted_vocab = vocab[sorter]
        pos = np.minimum(np.searchsorted(sorted_vocab, raw), max(vocab.size - 1, 0))
        found = (sorted_vocab[pos] == raw) if vocab.size else np.zeros(raw.shape, bool)
        if not found.all():
            unknown = np.unique(raw[~found])
            raise DataError(
                f"{unknown.size} unknown raw {what} id(s) for cold-start split "
                f"{self.name!r}, first: {unknown[:5].tolist()}; known ids are the "
                f"{what} ids seen when the split was built."
            )
        return sorter[pos].astype(np.int64)

    def encode_users(self, raw_ids) -> np.ndarray:
        """Maps raw user ids to user indices; unknown ids raise `DataError`."""
        return self._encode(raw_ids, self.user_ids, "user")

    def encode_items(self, raw_ids) -> np.ndarray:
        """Maps raw item ids to item indices; unknown ids raise `DataError`."""
        return self._encode(raw_ids, self.item_ids, "item")

    def train_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Each user's training items as CSR ``(indptr, indices)`` (cached).

        ``indices[indptr[u]:indptr[u + 1]]`` are user u's distinct training
        item indices, ascending.
        """
        if self._csr is None:
            keys = np.unique(
                self.train["user_id"] * self.num_items + self.train["item_id"]
            )
            indptr = np.zeros(self.num_users + 1, dtype=np.int64)
            np.cumsum(
                np.bincount(keys // self.num_items, minlength=self.num_users),
                out=indptr[1:],
            )
            self._csr = (indptr, (keys % self.num_items).astype(np.int64))
        return self._csr

    def summary(self) -> dict:
        """Sizes of every part, for reports."""
        return {
            "name": self.name,
            "num_users": self.num_users,
            "num_items": self.num_items,
            "num_warm_items": self.num_warm_items,
            "num_cold_items": self.num_cold_items,
            "train_pairs": int(self.train["user_id"].size),
            "warm_test_pairs": int(self.warm_test["user_id"].size),
            "cold_test_pairs": int(self.cold_test["user_id"].size),
            "warm_test_users": int(np.unique(self.warm_test["user_id"]).size),
            "cold_test_users": int(np.unique(self.cold_test["user_id"]).size),
            **self.settings,
        }


def _part(user, item, rating) -> dict[str, np.ndarray]:
    return {
        "user_id": np.asarray(user, dtype=np.int64),
        "item_id": np.asarray(item, dtype=np.int64),
        "rating": np.asarray(rating, dtype=np.float32),
    }


def cold_item_split(
    inter: Interactions,
    *,
    cold_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    warm_test: str = "random",
    min_rating: float | None = None,
) -> ColdStartSplit:
    """Seeded warm/cold item split of implicit feedback.

    Args:
        inter: Interactions with raw ids.
        cold_fraction: Share of the items made cold (rounded; at least one
            item stays warm and at least one becomes cold).
        test_fraction: Share of each user's warm interactions held out as the
            warm test set (rounded per user; one training interaction is kept).
        seed: Seed of both random choices; the same seed gives the same split.
        warm_test: ``"random"`` or ``"latest"`` (by timestamp).
        min_rating: Keep only ratings ``>= min_rating`` as positives (None: all).

    Returns:
        A `ColdStartSplit`. Pairs of each part are sorted by (user, item).

    Raises:
        ValueError: a fraction outside (0, 1) or an unknown `warm_test`.
        DataError: no interactions left, fewer than 2 items, or "latest"
            without timestamps.
    """
    if not 0.0 < cold_fraction < 1.0:
        raise ValueError(
            f"`cold_fraction` must be in (0, 1). Received: cold_fraction={cold_fraction}"
        )
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(
            f"`test_fraction` must be in [0, 1). Received: test_fraction={test_fraction}"
        )
    if warm_test not in ("random", "latest"):
        raise ValueError(
            f"`warm_test` must be 'random' or 'latest'. Received: {warm_test!r}"
        )
    if warm_test == "latest" and inter.timestamp is None:
        raise DataError(
            f"warm_test='latest' needs timestamps, but data set {inter.name!r} has "
            "none; use warm_test='random'."
        )
    user = np.asarray(inter.user, np.int64)
    item = np.asarray(inter.item, np.int64)
    rating = np.asarray(inter.rating, np.float32)
    ts = (
        np.asarray(inter.timestamp, np.int64)
        if inter.timestamp is not None
        else np.zeros(user.size, np.int64)
    )
    if min_rating is not None:
        keep = rating >= min_rating
        user, item, rating, ts = user[keep], item[keep], rating[keep], ts[keep]
    if user.size == 0:
        raise DataError(
            f"Data set {inter.name!r} has no interactions"
            + (f" with rating >= {min_rating}" if min_rating is not None else "")
            + "."
        )
    # Collapse repeated (user, item) pairs, keeping the latest row.
    user_ids, u_idx = np.unique(user, return_inverse=True)
    raw_items, r_idx = np.unique(item, return_inverse=True)
    if raw_items.size < 2:
        raise DataError(
            f"A cold-start split needs at least 2 items; {inter.name!r} has "
            f"{raw_items.size}."
        )
    order = np.lexsort((ts, r_idx, u_idx))
    key = u_idx[order].astype(np.int64) * raw_items.size + r_idx[order]
    last = np.r_[key[1:] != key[:-1], True]
    rows = order[last]
    u_idx, r_idx, rating, ts = u_idx[rows], r_idx[rows], rating[rows], ts[rows]

    rng = np.random.default_rng(seed)
    n_items = raw_items.size
    n_cold = int(min(max(round(cold_fraction * n_items), 1), n_items - 1))
    cold_mask = np.zeros(n_items, dtype=bool)
    cold_mask[rng.choice(n_items, size=n_cold, replace=False)] = True
    # New item index: warm block then cold block, each ascending raw id.
    new_index = np.empty(n_items, dtype=np.int64)
    warm_raw = np.flatnonzero(~cold_mask)
    cold_raw = np.flatnonzero(cold_mask)
    new_index[warm_raw] = np.arange(warm_raw.size)
    new_index[cold_raw] = warm_raw.size + np.arange(cold_raw.size)
    item_ids = np.concatenate([raw_items[warm_raw], raw_items[cold_raw]])
    i_idx = new_index[r_idx]
    num_warm = int(warm_raw.size)

    is_cold = i_idx >= num_warm
    cold_rows = np.flatnonzero(is_cold)
    warm_rows = np.flatnonzero(~is_cold)

    # Per-user warm holdout.
    wu = u_idx[warm_rows]
    if warm_test == "random":
        tiebreak = rng.random(warm_rows.size)
        within = np.lexsort((tiebreak, wu))
    else:  # latest last: sort by time, hold out the tail
        within = np.lexsort((warm_rows, ts[warm_rows], wu))
    sorted_rows = warm_rows[within]
    su = wu[within]
    counts = np.bincount(su, minlength=user_ids.size)
    n_test = np.minimum(
        np.round(test_fraction * counts).astype(np.int64), np.maximum(counts - 1, 0)
    )
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos_in_user = np.arange(sorted_rows.size) - starts[su]
    # "latest": the last n_test rows of each user; "random": the same on a
    # random order.
    test_sel = pos_in_user >= (counts[su] - n_test[su])
    test_rows = sorted_rows[test_sel]
    train_rows = sorted_rows[~test_sel]
    # Warm items left without training pairs: return their test pairs to train.
    seen = np.zeros(num_warm, dtype=bool)
    seen[i_idx[train_rows]] = True
    back = ~seen[i_idx[test_rows]]
    moved = int(back.sum())
    if moved:
        train_rows = np.concatenate([train_rows, test_rows[back]])
        test_rows = test_rows[~back]

    def part(r):
        r = r[np.lexsort((i_idx[r], u_idx[r]))]
        return _part(u_idx[r], i_idx[r], rating[r])

    names = None
    if inter.item_names:
        names = [inter.item_names.get(int(i), "") for i in item_ids]
    return ColdStartSplit(
        name=inter.name,
        num_users=int(user_ids.size),
        num_items=int(n_items),
        num_warm_items=num_warm,
        train=part(train_rows),
        warm_test=part(test_rows),
        cold_test=part(cold_rows),
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
        item_names=names,
        settings={
            "cold_fraction": float(cold_fraction),
            "test_fraction": float(test_fraction),
            "seed": int(seed),
            "warm_test": warm_test,
            "min_rating": min_rating,
            "warm_test_pairs_returned_to_train": moved,
        },
    )


def load_cold_split(
    name: str = "movielens-100k",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    **kw,
) -> ColdStartSplit:
    """Loads a catalogue data set and applies `cold_item_split` (``**kw``)."""
    return cold_item_split(load_interactions(name, data_dir, download=download), **kw)


def load_split_features(
    split: ColdStartSplit, path: str | os.PathLike, *, shape: tuple[int, ...] | None
) -> np.ndarray:
    """Per-item content from a feature file, one row per item index of `split`.

    A thin wrapper of `tfrec.data.content.load_item_features` with
    ``item_ids=split.item_ids``: row k holds the features of item index k
    (warm and cold). A file missing any item of the split, a per-item shape
    other than `shape`, or a NaN/inf value raises `DataError`.

    Args:
        split: the cold-start split.
        path: ``.npz``, ``.npy`` or Parquet feature file.
        shape: expected per-item shape, e.g. ``(feature_dim,)`` for VBPR or
            ``(frames, bands)`` for the content CNN (None: no check).

    Returns:
        float32 ``[num_items, *shape]``.
    """
    from tfrec.data.content import load_item_features

    return load_item_features(path, split.item_ids, shape=shape)


def warm_ranking(
    split: ColdStartSplit, *, ks: Iterable[int] = (10, 20), user_chunk: int = 256
) -> FullRanking:
    """Full ranking over the warm items, excluding each user's training items."""
    indptr, indices = split.train_csr()
    return FullRanking(
        split.num_warm_items,
        split.warm_test["user_id"],
        split.warm_test["item_id"],
        exclude_indptr=indptr,
        exclude_indices=indices,
        ks=ks,
        user_chunk=user_chunk,
    )


def cold_ranking(
    split: ColdStartSplit, *, ks: Iterable[int] = (10, 20), user_chunk: int = 256
) -> FullRanking:
    """Full ranking over the cold items, in *local* cold indices.

    Candidate ``j`` of the returned protocol is item ``num_warm_items + j``;
    `evaluate_cold` does the offset for you.
    """
    return FullRanking(
        split.num_cold_items,
        split.cold_test["user_id"],
        split.cold_test["item_id"] - split.num_warm_items,
        ks=ks,
        user_chunk=user_chunk,
    )


def evaluate_warm(
    split: ColdStartSplit,
    score_fn: ScoreFn,
    *,
    ks: Iterable[int] = (10, 20),
    user_chunk: int = 256,
) -> dict[str, float]:
    """Warm-item metrics (`warm_ranking`) of ``score_fn(user_idx, item_idx)``.

    Returns:
        ``hr@k``, ``ndcg@k``, ``recall@k``, ``mrr@k``, ``precision@k`` means
        over users with warm-test items.
    """
    if split.warm_test["user_id"].size == 0:
        raise ValueError("The split has no warm-test pairs (test_fraction=0?).")
    return warm_ranking(split, ks=ks, user_chunk=user_chunk).evaluate(score_fn)


def evaluate_cold(
    split: ColdStartSplit,
    score_fn: ScoreFn,
    *,
    ks: Iterable[int] = (10, 20),
    user_chunk: int = 256,
) -> dict[str, float]:
    """Cold-item metrics (`cold_ranking`) of ``score_fn(user_idx, item_idx)``.

    `score_fn` receives global item indices (``>= num_warm_items``).

    Returns:
        ``hr@k``, ``ndcg@k``, ``recall@k``, ``mrr@k``, ``precision@k`` means
        over users with cold-test items.
    """
    if split.cold_test["user_id"].size == 0:
        raise ValueError("The split has no cold-test pairs.")
    offset = split.num_warm_items

    def shifted(user_idx, item_idx):
        return score_fn(user_idx, np.asarray(item_idx, np.int64) + offset)

    return cold_ranking(split, ks=ks, user_chunk=user_chunk).evaluate(shifted)


def popularity_scores(split: ColdStartSplit) -> np.ndarray:
    """Training count of every item index (``[num_items]`` float32; 0 for cold),
    from `tfrec.evaluation.item_popularity`."""
    from tfrec.evaluation.protocols import item_popularity

    return item_popularity(split.train["item_id"], split.num_items).astype(np.float32)


@dataclass(frozen=True)
class SyntheticContent:
    """Interactions driven by hidden item content, with that content observed.

    Attributes:
        interactions: the implicit interactions (raw ids from 1).
        item_ids: raw item ids, ``1 .. num_items``.
        features: ``[num_items, feature_dim]`` dense feature vector per item
            (row k is raw id k + 1): the hidden item vector plus noise.
        spectrograms: ``[num_items, frames, bands]`` 2-D input per item: a
            random positive time envelope times a fixed linear mix of the
            hidden vector over the bands, plus noise (a stand-in for an audio
            spectrogram whose time-pooled spectrum carries the content).
    """

    interactions: Interactions
    item_ids: np.ndarray
    features: np.ndarray
    spectrograms: np.ndarray


def synthetic_content(
    num_users: int = 200,
    num_items: int = 150,
    *,
    per_user: int = 15,
    hidden_dim: int = 6,
    feature_noise: float = 0.1,
    frames: int = 16,
    bands: int = 12,
    seed: int = 0,
) -> SyntheticContent:
    """Synthetic data where users prefer items whose hidden content matches theirs.

    User u and item i get hidden vectors ``h_u``, ``h_i`` ~ N(0, I); user u
    interacts with its `per_user` items of highest ``h_u . h_i`` (no other
    signal), so an item's content predicts who likes it and a content model
    can rank cold items well while pure CF cannot score them at all.

    Returns:
        A `SyntheticContent`.
    """
    if not 0 < per_user < num_items:
        raise ValueError(
            f"`per_user` must be in (0, num_items={num_items}). Received: {per_user!r}"
        )
    rng = np.random.default_rng(seed)
    h_user = rng.normal(size=(num_users, hidden_dim))
    h_item = rng.normal(size=(num_items, hidden_dim))
    chosen = np.argsort(-(h_user @ h_item.T), axis=1)[:, :per_user]
    user = np.repeat(np.arange(1, num_users + 1), per_user)
    item = chosen.reshape(-1) + 1
    inter = Interactions(
        name="synthetic-content",
        user=user.astype(np.int64),
        item=item.astype(np.int64),
        rating=np.ones(user.size, np.float32),
        timestamp=rng.permutation(user.size).astype(np.int64),
    )
    features = h_item + feature_noise * rng.normal(size=h_item.shape)
    mix = rng.normal(size=(hidden_dim, bands)) / np.sqrt(hidden_dim)
    envelope = 0.5 + rng.random((num_items, frames, 1))
    spectrograms = envelope * (h_item @ mix)[:, None, :]
    spectrograms += feature_noise * rng.normal(size=spectrograms.shape)
    return SyntheticContent(
        interactions=inter,
        item_ids=np.arange(1, num_items + 1, dtype=np.int64),
        features=features.astype(np.float32),
        spectrograms=spectrograms.astype(np.float32),
    )
