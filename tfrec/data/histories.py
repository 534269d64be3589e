"""Time-ordered watch histories: time-based splits and rolled-back examples.

Covington et al. (YouTube DNN, RecSys 2016, Sec. 3.5) stress that a training
example must only see what happened *before* its label ("rolled-back"
features): the history of an example labelled with the watch at time ``t`` is
the user's watches strictly before ``t``. This module builds

* :func:`time_split`: a split by time, either per user (each user's latest
  interaction is the test "next item", ``test_fraction=None``) or global (every
  interaction at or after a time cutoff is test data; each user with training
  history gets their first test interaction as the next item);
* :func:`rolled_back_examples`: one example per training interaction with the
  history of strictly earlier interactions (ties in time are *not* history);
* :func:`serving_histories`: the history a served request sees (every training
  interaction of the user strictly before the request time);
* :func:`content_tables`: MovieLens genres, title tokens, release era and
  demographics aligned to the split's indices;
* :func:`history_mean` and :func:`days_since_same_genre`: history-derived
  features (bag of watched genres, time since the last watch of a similar item).

Padding: histories are ``[n, max_length]`` int64 arrays padded with ``-1``
(``PAD``), left-padded by default (most recent watch in the last column): the
package's one convention, :mod:`tfrec.data.sequences`. Right padding is
accepted too; models mask every id outside ``[0, num_items)``, so the side does
not change any result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from tfrec.data.datasets import DataError, Interactions, merge_duplicates
from tfrec.data.sequences import PAD, pad_left

SECONDS_PER_DAY = 86400.0
# Release era buckets (upper bounds, exclusive) of ML-100K movies; the last id is
# "unknown year".
ERA_BOUNDS = (1950, 1960, 1970, 1980, 1990, 1995)
ERA_NAMES = ("<1950", "1950s", "1960s", "1970s", "1980s", "1990-94", ">=1995", "?")


@dataclass(kw_only=True)
class TimeSplit:
    """Index-encoded, time-ordered train events plus one next item per test user.

    Args:
        name: Data set name.
        num_users: Number of user indices (users with training interactions).
        num_items: Number of item indices (items with training interactions).
        user_ids: Raw id of each user index (ascending).
        item_ids: Raw id of each item index (ascending).
        train: ``user_id``, ``item_id``, ``rating``, ``timestamp`` arrays sorted
            by (user, timestamp, original row order).
        test: the same keys, one row per test user (their next item), sorted by
            user.
        protocol: ``"last"`` (per-user latest interaction) or ``"global"``.
        cutoff: The global cutoff time (unix seconds), or None.
        dropped: Counts of what the split left out: ``test_unknown_user`` /
            ``test_unknown_item`` (test-period rows whose user or item has no
            training row), ``duplicates_merged`` (see
            `tfrec.data.datasets.merge_duplicates`).
    """

    name: str
    num_users: int
    num_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    protocol: str
    cutoff: int | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    _starts: np.ndarray | None = field(default=None, init=False, repr=False)

    def describe(self) -> str:
        """One line: sizes and every non-zero count in `dropped`."""
        from tfrec.data.splits import describe_dropped

        text = (
            f"{self.name}: {self.num_users} users, {self.num_items} items; train "
            f"{len(self.train['user_id'])}, test {len(self.test['user_id'])} rows"
        )
        notes = describe_dropped(self.dropped)
        return text + (f"; {notes}" if notes else "")

    def _encode(self, raw, vocab, what):
        raw = np.asarray(raw, dtype=np.int64)
        pos = np.minimum(np.searchsorted(vocab, raw), len(vocab) - 1)
        found = vocab[pos] == raw
        if not found.all():
            bad = np.unique(raw[~found])
            raise DataError(
                f"{bad.size} unknown raw {what} id(s) for split {self.name!r}, first: "
                f"{bad[:5].tolist()}; known {what}s are those with training "
                "interactions."
            )
        return pos.astype(np.int64)

    def encode_users(self, raw_ids) -> np.ndarray:
        """Raw user ids -> user indices; unknown ids raise `DataError`."""
        return self._encode(raw_ids, self.user_ids, "user")

    def encode_items(self, raw_ids) -> np.ndarray:
        """Raw item ids -> item indices; unknown ids raise `DataError`."""
        return self._encode(raw_ids, self.item_ids, "item")

    @property
    def user_starts(self) -> np.ndarray:
        """``[num_users + 1]`` offsets of each user's events in ``train``."""
        if self._starts is None:
            counts = np.bincount(self.train["user_id"], minlength=self.num_users)
            self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return self._starts

    def train_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct training items per user, CSR ``(indptr, indices)``."""
        keys = np.unique(self.train["user_id"] * self.num_items + self.train["item_id"])
        indptr = np.zeros(self.num_users + 1, np.int64)
        np.cumsum(np.bincount(keys // self.num_items, minlength=self.num_users),
                  out=indptr[1:])
        return indptr, (keys % self.num_items).astype(np.int64)


def _check_interactions(inter: Interactions) -> None:
    if inter.timestamp is None:
        raise DataError(
            f"{inter.name}: a time-based split needs timestamps; this data set has "
            "none."
        )
    if len(inter) == 0:
        raise DataError(f"{inter.name}: no interactions to split.")


def time_split(inter: Interactions, *, test_fraction: float | None = None) -> TimeSplit:
    """Splits interactions by time.

    Args:
        inter: Interactions with timestamps (`load_interactions`).
        test_fraction: None for the per-user protocol (each user's latest
            interaction, by timestamp then file order, is their test next item;
            users with a single interaction are training-only). A float in
            (0, 1) for the global protocol: the cutoff is the timestamp quantile
            ``1 - test_fraction``; interactions before it are training data, and
            each user with training history gets their first interaction at or
            after the cutoff whose item is known from training as the next item.

    Repeated (user, item) rows are first merged into the latest
    (`tfrec.data.datasets.merge_duplicates`).

    Returns:
        A `TimeSplit`. Users and items without training interactions are not in
        the vocabularies (their test rows are dropped and counted in
        `TimeSplit.dropped`: cold start is out of this protocol's scope).
    """
    _check_interactions(inter)
    inter = merge_duplicates(inter)
    n = len(inter)
    order = np.lexsort((np.arange(n), inter.timestamp, inter.user))
    user, item = inter.user[order], inter.item[order]
    rating, ts = inter.rating[order], inter.timestamp[order].astype(np.int64)
    cutoff = None
    if test_fraction is None:
        last = np.ones(n, bool)
        last[:-1] = user[1:] != user[:-1]
        first = np.ones(n, bool)
        first[1:] = user[1:] != user[:-1]
        is_test = last & ~first  # single-interaction users stay in training
        is_train = ~is_test
        protocol = "last"
    else:
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(
                f"`test_fraction` must be in (0, 1) or None. Received: {test_fraction!r}"
            )
        cutoff = int(np.quantile(ts, 1.0 - float(test_fraction)))
        is_train = ts < cutoff
        is_test = ~is_train
        protocol = "global"
    user_ids = np.unique(user[is_train])
    item_ids = np.unique(item[is_train])
    if user_ids.size == 0 or item_ids.size == 0:
        raise DataError(f"{inter.name}: the time split left no training data.")
    u = np.searchsorted(user_ids, user)
    i = np.searchsorted(item_ids, item)
    user_known = user_ids[np.minimum(u, user_ids.size - 1)] == user
    item_known = item_ids[np.minimum(i, item_ids.size - 1)] == item
    known = user_known & item_known
    train = {
        "user_id": u[is_train].astype(np.int64),
        "item_id": i[is_train].astype(np.int64),
        "rating": rating[is_train].astype(np.float32),
        "timestamp": ts[is_train],
    }
    cand = np.flatnonzero(is_test & known)
    # First test row per user (rows are in time order within a user).
    _, first_rows = np.unique(u[cand], return_index=True)
    rows = cand[first_rows]
    test = {
        "user_id": u[rows].astype(np.int64),
        "item_id": i[rows].astype(np.int64),
        "rating": rating[rows].astype(np.float32),
        "timestamp": ts[rows],
    }
    if test["user_id"].size == 0:
        raise DataError(f"{inter.name}: the time split left no test users.")
    return TimeSplit(
        name=inter.name,
        num_users=int(user_ids.size),
        num_items=int(item_ids.size),
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
        train=train,
        test=test,
        protocol=protocol,
        cutoff=cutoff,
        dropped={
            "test_unknown_user": int((is_test & ~user_known).sum()),
            "test_unknown_item": int((is_test & user_known & ~item_known).sum()),
            "duplicates_merged": inter.duplicates_merged,
        },
    )


# ------------------------------------------------------------------ histories


@dataclass
class HistoryExamples:
    """Examples with rolled-back histories (one row per label).

    Attributes:
        user_id, item_id, rating, timestamp: the label interaction, ``[n]``.
        item_history: ``[n, max_length]`` int64 item indices strictly before the
            label's time, padded with ``PAD``.
        history_timestamp: ``[n, max_length]`` int64 times of those items (0 at
            padding).
    """

    user_id: np.ndarray
    item_id: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    item_history: np.ndarray
    history_timestamp: np.ndarray

    def __len__(self) -> int:
        return int(self.user_id.shape[0])


def _check_padding(padding: str) -> None:
    if padding not in ("left", "right"):
        raise ValueError(f"`padding` must be 'left' or 'right'. Received: {padding!r}")


def _gather_histories(
    split: TimeSplit, ends: np.ndarray, starts: np.ndarray, max_length: int, padding: str
) -> tuple[np.ndarray, np.ndarray]:
    """History rows ``train[max(starts, ends - L) : ends]`` padded to ``L``
    (:func:`tfrec.data.sequences.pad_left`)."""
    if int(max_length) < 1:
        raise ValueError(f"`max_length` must be a positive int. Received: {max_length!r}")
    _check_padding(padding)
    L = int(max_length)
    items = pad_left(split.train["item_id"], starts, ends, L, pad=PAD, side=padding)
    times = pad_left(split.train["timestamp"], starts, ends, L, pad=0, side=padding)
    return items.astype(np.int64), times.astype(np.int64)


def rolled_back_examples(
    split: TimeSplit,
    *,
    max_length: int = 50,
    min_history: int = 0,
    max_per_user: int | None = None,
    padding: str = "left",
    seed: int = 0,
) -> HistoryExamples:
    """One training example per training interaction, history rolled back to it.

    The history of the interaction at time ``t`` holds the user's last
    `max_length` training interactions with time ``< t`` (same-second
    interactions are not history: they are not known to precede the label).

    Args:
        split: A `TimeSplit`.
        max_length: History window.
        min_history: Drop examples with fewer history items.
        max_per_user: Keep at most this many examples per user (a random subset),
            so heavy users do not dominate (Covington et al. Sec. 3.5).
        padding: ``"left"`` or ``"right"``.
        seed: Seed of the per-user subsampling.
    """
    tr = split.train
    starts = split.user_starts[tr["user_id"]]
    # Events of a user are sorted by time: count those strictly earlier.
    n = len(tr["user_id"])
    ends = np.empty(n, np.int64)
    for u in range(split.num_users):
        a, b = split.user_starts[u], split.user_starts[u + 1]
        ends[a:b] = a + np.searchsorted(tr["timestamp"][a:b], tr["timestamp"][a:b])
    keep = (ends - starts) >= int(min_history)
    if max_per_user is not None:
        if int(max_per_user) < 1:
            raise ValueError(f"`max_per_user` must be >= 1. Received: {max_per_user!r}")
        rng = np.random.default_rng(seed)
        rank = np.empty(n, np.int64)
        noise = rng.random(n)
        order = np.lexsort((noise, ~keep, tr["user_id"]))
        pos = np.arange(n) - split.user_starts[tr["user_id"][order]]
        rank[order] = pos
        keep &= rank < int(max_per_user)
    rows = np.flatnonzero(keep)
    hist, htime = _gather_histories(split, ends[rows], starts[rows], max_length, padding)
    return HistoryExamples(
        user_id=tr["user_id"][rows],
        item_id=tr["item_id"][rows],
        rating=tr["rating"][rows],
        timestamp=tr["timestamp"][rows],
        item_history=hist,
        history_timestamp=htime,
    )


def serving_histories(
    split: TimeSplit,
    users,
    times=None,
    *,
    max_length: int = 50,
    padding: str = "left",
) -> tuple[np.ndarray, np.ndarray]:
    """Histories a request for ``users`` at ``times`` sees.

    Args:
        users: User indices.
        times: Request times (unix seconds), default: after all training data.

    Returns:
        ``(item_history, history_timestamp)``, each ``[len(users), max_length]``.
    """
    users = np.asarray(users, np.int64)
    if users.size and (users.min() < 0 or users.max() >= split.num_users):
        raise DataError(
            f"User indices must be in [0, {split.num_users}); received range "
            f"[{users.min()}, {users.max()}]."
        )
    starts = split.user_starts[users]
    stops = split.user_starts[users + 1]
    if times is None:
        ends = stops
    else:
        times = np.broadcast_to(np.asarray(times, np.int64), users.shape)
        ts = split.train["timestamp"]
        ends = np.array(
            [a + np.searchsorted(ts[a:b], t) for a, b, t in zip(starts, stops, times,
                                                               strict=True)],
            dtype=np.int64,
        ).reshape(users.shape)
    return _gather_histories(split, ends, starts, max_length, padding)


# -------------------------------------------------------------------- content


@dataclass
class ContentTables:
    """Content aligned to a split's indices (row ``i`` is item index ``i``).

    Attributes:
        item_genres: ``[num_items, G]`` float32 multi-hot genres.
        item_title_tokens: ``[num_items, V]`` float32 binary bag of title tokens.
        item_era: ``[num_items]`` int64 release era (``ERA_NAMES``).
        user_gender, user_age, user_occupation: ``[num_users]`` int64 codes into
            ``vocabs["gender"]`` etc.
        vocabs: names of each code.
    """

    item_genres: np.ndarray
    item_title_tokens: np.ndarray
    item_era: np.ndarray
    user_gender: np.ndarray
    user_age: np.ndarray
    user_occupation: np.ndarray
    vocabs: dict[str, tuple[str, ...]]

    def demographics(self, users) -> dict[str, np.ndarray]:
        """``user_gender``, ``user_age``, ``user_occupation`` of user indices."""
        users = np.asarray(users, np.int64)
        return {
            "user_gender": self.user_gender[users],
            "user_age": self.user_age[users],
            "user_occupation": self.user_occupation[users],
        }


def era_of(year: np.ndarray) -> np.ndarray:
    """Release era code of each year (0 = unknown year maps to the last code)."""
    year = np.asarray(year)
    era = np.searchsorted(np.asarray(ERA_BOUNDS), year, side="right")
    return np.where(year > 0, era, len(ERA_NAMES) - 1).astype(np.int64)


def content_tables(
    split: TimeSplit,
    data_dir: str | os.PathLike | None = None,
    *,
    title_vocab: int = 300,
) -> ContentTables:
    """MovieLens content for a split's users and items (ML-100K and ML-1M)."""
    from tfrec.data.content import AGE_BUCKETS, movielens_items, movielens_users

    items = movielens_items(split.name, data_dir)
    users = movielens_users(split.name, data_dir)
    rows = items.index(split.item_ids)
    genres = items.genres[rows].astype(np.float32)
    titles = items.features(genres=False, year=False, title_vocab=title_vocab)[rows]
    era = era_of(items.year[rows])
    urows = users.index(split.user_ids)
    genders = ("F", "M")
    ages = tuple(AGE_BUCKETS[k] for k in sorted(AGE_BUCKETS))
    occupations = tuple(sorted(set(users.occupation.tolist())))

    def codes(values, vocab):
        lookup = {v: j for j, v in enumerate(vocab)}
        return np.array([lookup[v] for v in values], np.int64)

    return ContentTables(
        item_genres=genres,
        item_title_tokens=titles.astype(np.float32),
        item_era=era,
        user_gender=codes(users.gender[urows], genders),
        user_age=codes(users.age[urows], ages),
        user_occupation=codes(users.occupation[urows], occupations),
        vocabs={
            "genre": tuple(items.genre_names),
            "era": ERA_NAMES,
            "gender": genders,
            "age": ages,
            "occupation": occupations,
        },
    )


def history_mean(item_history: np.ndarray, table: np.ndarray, chunk: int = 4096):
    """Mean of ``table`` rows over each history's valid ids (zeros if empty).

    Ids outside ``[0, len(table))`` (padding, unknown items) are ignored.
    """
    hist = np.asarray(item_history, np.int64)
    if hist.ndim != 2:
        raise ValueError(
            f"`item_history` must be 2-D [n, max_length]. Received shape {hist.shape}"
        )
    table = np.asarray(table, np.float32)
    out = np.zeros((hist.shape[0], table.shape[1]), np.float32)
    for a in range(0, hist.shape[0], chunk):
        h = hist[a : a + chunk]
        valid = (h >= 0) & (h < len(table))
        vec = table[np.where(valid, h, 0)] * valid[..., None]
        out[a : a + chunk] = vec.sum(1) / np.maximum(valid.sum(1), 1)[:, None]
    return out


def days_since_same_genre(
    item_history: np.ndarray,
    history_timestamp: np.ndarray,
    now: np.ndarray,
    candidate_genres: np.ndarray,
    item_genres: np.ndarray,
    chunk: int = 8192,
) -> np.ndarray:
    """Days since the user last watched an item sharing a genre with the candidate.

    Covington et al. Sec. 4.1: "time since last watch" of similar items is among
    the strongest ranking features. Returns float32 days, ``-1`` when no history
    item shares a genre (or the history is empty).

    Args:
        item_history: ``[n, L]`` item indices (``PAD`` ignored).
        history_timestamp: ``[n, L]`` their times.
        now: ``[n]`` request times.
        candidate_genres: ``[n, G]`` multi-hot genres of each candidate.
        item_genres: ``[num_items, G]`` genre table.
    """
    hist = np.asarray(item_history, np.int64)
    htime = np.asarray(history_timestamp, np.int64)
    now = np.broadcast_to(np.asarray(now, np.int64), hist.shape[:1])
    cand = np.asarray(candidate_genres, np.float32)
    out = np.empty(hist.shape[0], np.float32)
    for a in range(0, hist.shape[0], chunk):
        h = hist[a : a + chunk]
        valid = (h >= 0) & (h < len(item_genres))
        g = item_genres[np.where(valid, h, 0)]  # [c, L, G]
        share = (np.einsum("clg,cg->cl", g, cand[a : a + chunk]) > 0) & valid
        last = np.where(share, htime[a : a + chunk], np.iinfo(np.int64).min).max(1)
        days = (now[a : a + chunk] - last) / SECONDS_PER_DAY
        out[a : a + chunk] = np.where(share.any(1), np.maximum(days, 0.0), -1.0)
    return out


def examples_dataset(features, labels, *, batch_size: int = 512, seed: int = 0,
                     shuffle: bool = True):
    """``(features, labels)`` in-memory arrays as a shuffled, batched tf.data set.

    ``labels`` may be an array or a dict of arrays; every array needs the same
    first dimension. Reshuffled every epoch (seeded).
    """
    import tensorflow as tf

    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    arrays = dict(features)
    lengths = {k: len(v) for k, v in arrays.items()}
    label_arrays = labels if isinstance(labels, dict) else {"labels": labels}
    lengths.update({f"label {k}": len(v) for k, v in label_arrays.items()})
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Feature and label arrays differ in length: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("No examples: the feature arrays are empty.")
    ds = tf.data.Dataset.from_tensor_slices((arrays, labels))
    if shuffle:
        ds = ds.shuffle(min(n, 200_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
