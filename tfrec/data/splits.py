"""Train/validation/test splits with contiguous index vocabularies.

A `Split` holds index-encoded arrays ready for `tfrec.data.pipelines`: user and
item indices are contiguous ``0..num_users-1`` / ``0..num_items-1`` and
`Split.user_ids` / `Split.item_ids` map them back to raw ids.

Protocols:

- `leave_one_out`: each user's latest interaction is the test item, the one
  before it the validation item (He et al., "Neural Collaborative Filtering",
  WWW 2017), with sampled negatives for the sampled ranking protocol.
- `random_split`: a random split of the rating rows (rating prediction, e.g.
  AutoRec's RMSE protocol).
- `ncf_split`: the exact files published with the NCF paper.

Rules every split function here (and `tfrec.data.userfiles`,
`tfrec.data.recbole`) applies:

* The vocabularies are the users and items of the **training** part. A
  validation or test row whose user or item has no training row is dropped and
  counted in `Split.dropped` (`Split.describe` says how many), never given an
  untrained embedding row. (`ncf_split` keeps the published negatives as they
  are; items among them with no training row are counted too.)
* A (user, item) pair of the validation or test part never also appears in
  training: repeated pairs are merged by `tfrec.data.datasets.merge_duplicates`
  when the data is loaded, and every split checks the parts are disjoint.
* Raw ids are re-indexed through sorted vocabularies, so a stray huge id adds
  one row and never sets `num_users` / `num_items`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tfrec.data.datasets import (
    DataError,
    Interactions,
    _ncf_titles,
    _ncf_train_path,
    _read_ncf_ratings,
    check_id_minimum,
    dataset_dir,
    load_interactions,
    merge_duplicates,
    verify_file,
)

__all__ = [
    "Split",
    "leave_one_out",
    "load_split",
    "ncf_split",
    "ncf_validation",
    "random_split",
]

_KEYS = ("user_id", "item_id", "rating")


@dataclass(kw_only=True)
class Split:
    """An index-encoded train/valid/test split (construct with keywords).

    Args:
        name: Data set name.
        num_users: Number of user indices.
        num_items: Number of item indices.
        train: ``{"user_id": int64, "item_id": int64, "rating": float32}`` arrays.
        test: Same keys.
        valid: Same keys, or None when there is no validation split.
        test_negatives: int64 ``[len(test["user_id"]), n_neg]`` item indices for
            the sampled ranking protocol; row k belongs to test row k.
        valid_negatives: The same for `valid`.
        user_ids: Raw id of each user index, sorted ascending.
        item_ids: Raw id of each item index, sorted ascending.
        item_names: Title of each item index ("" when unknown), or None.
        dropped: What the split left out and why, as counts:
            ``valid_unknown_user`` / ``valid_unknown_item`` /
            ``test_unknown_user`` / ``test_unknown_item`` (rows whose user or
            item has no training row), ``duplicates_merged`` (repeated (user,
            item) rows merged when loading), and for `ncf_split`
            ``negatives_untrained`` (negative slots naming an item with no
            training row).
    """

    name: str
    num_users: int
    num_items: int
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    valid: dict[str, np.ndarray] | None = None
    test_negatives: np.ndarray | None = None
    valid_negatives: np.ndarray | None = None
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_names: list[str] | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    _csr: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def describe(self) -> str:
        """One line: sizes of the parts and every non-zero count in `dropped`.

        Example: ``movielens-100k: 943 users, 1678 items; train 98114, valid
        942, test 940 rows; dropped: 3 test rows (item not in training), ...``
        """
        sizes = [f"train {len(self.train['user_id'])}"]
        if self.valid is not None:
            sizes.append(f"valid {len(self.valid['user_id'])}")
        sizes.append(f"test {len(self.test['user_id'])}")
        text = (
            f"{self.name}: {self.num_users} users, {self.num_items} items; "
            f"{', '.join(sizes)} rows"
        )
        notes = describe_dropped(self.dropped)
        return text + (f"; {notes}" if notes else "")

    def _encode(self, raw_ids, vocab: np.ndarray, what: str) -> np.ndarray:
        raw = np.asarray(raw_ids, dtype=np.int64)
        if vocab.size == 0:
            pos = np.zeros(raw.shape, dtype=np.int64)
            found = np.zeros(raw.shape, dtype=bool)
        else:
            sorter = np.argsort(vocab, kind="stable")
            sorted_vocab = vocab[sorter]
            pos = np.searchsorted(sorted_vocab, raw)
            pos_c = np.minimum(pos, vocab.size - 1)
            found = sorted_vocab[pos_c] == raw
            pos = sorter[pos_c]
        if not found.all():
            unknown = np.unique(raw[~found])
            raise DataError(
                f"{unknown.size} unknown raw {what} id(s) for split {self.name!r}, "
                f"first: {unknown[:5].tolist()}; known ids are {what} ids seen "
                "when the split was built."
            )
        return pos.astype(np.int64)

    def encode_users(self, raw_ids) -> np.ndarray:
        """Maps raw user ids to user indices; unknown ids raise `DataError`."""
        return self._encode(raw_ids, self.user_ids, "user")

    def encode_items(self, raw_ids) -> np.ndarray:
        """Maps raw item ids to item indices; unknown ids raise `DataError`."""
        return self._encode(raw_ids, self.item_ids, "item")

    def train_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Each user's training items in CSR form.

        Returns:
            ``(indptr, indices)``: `indptr` int64 ``[num_users + 1]`` and `indices`
            int64, where ``indices[indptr[u]:indptr[u + 1]]`` are user u's distinct
            training item indices, sorted ascending. Computed once and cached.
        """
        if self._csr is None:
            self._csr = self.csr("train")
        return self._csr

    def csr(self, *parts: str) -> tuple[np.ndarray, np.ndarray]:
        """Distinct items per user over the named parts (``"train"``, ``"valid"``,
        ``"test"``), in the same CSR form as :meth:`train_csr`."""
        chunks = [getattr(self, p) for p in parts if getattr(self, p) is not None]
        keys = np.unique(
            np.concatenate(
                [
                    c["user_id"].astype(np.int64) * self.num_items
                    + c["item_id"].astype(np.int64)
                    for c in chunks
                ]
                or [np.zeros(0, np.int64)]
            )
        )
        users = keys // self.num_items
        indptr = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=self.num_users), out=indptr[1:])
        return indptr, (keys % self.num_items).astype(np.int64)


_DROP_TEXT = {
    "valid_unknown_user": "validation rows (user not in training)",
    "valid_unknown_item": "validation rows (item not in training)",
    "test_unknown_user": "test rows (user not in training)",
    "test_unknown_item": "test rows (item not in training)",
    "duplicates_merged": "repeated (user, item) rows merged into the latest",
    "negatives_untrained": "negative slots on items with no training row (kept)",
    "valid_untrained_item": "validation rows whose item has no other training row (kept)",
}


def describe_dropped(dropped: dict[str, int]) -> str:
    """``"dropped: 3 test rows (item not in training), ..."`` or ``""``."""
    parts = [
        f"{n} {_DROP_TEXT.get(key, key)}" for key, n in dropped.items() if n
    ]
    return "dropped: " + ", ".join(parts) if parts else ""


def _restrict_to_train(
    name: str,
    user: np.ndarray,
    item: np.ndarray,
    train_rows: np.ndarray,
    held_out: dict[str, np.ndarray | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict, dict[str, int]]:
    """Vocabularies from the training rows; held-out rows outside them dropped.

    Args:
        name: Data set name, for messages.
        user, item: Raw ids of every row.
        train_rows: Rows of the training part.
        held_out: ``{"valid": rows or None, "test": rows}``.

    Returns:
        ``(user_ids, item_ids, u_idx, i_idx, kept, dropped)``: sorted training
        vocabularies, the index of every row (-1 outside the vocabularies), the
        kept rows of each held-out part (in their order) and the counts of
        dropped rows.

    Raises:
        DataError: a held-out (user, item) pair also appears in training.
    """
    user_ids = _unique(user[train_rows])
    item_ids = _unique(item[train_rows])
    u_idx = _lookup(user_ids, user)
    i_idx = _lookup(item_ids, item)
    train_keys = _unique(u_idx[train_rows] * max(item_ids.size, 1) + i_idx[train_rows])
    kept: dict[str, np.ndarray | None] = {}
    dropped: dict[str, int] = {}
    for part, rows in held_out.items():
        if rows is None:
            kept[part] = None
            continue
        no_user = u_idx[rows] < 0
        no_item = (i_idx[rows] < 0) & ~no_user
        dropped[f"{part}_unknown_user"] = int(no_user.sum())
        dropped[f"{part}_unknown_item"] = int(no_item.sum())
        rows = rows[~(no_user | no_item)]
        keys = u_idx[rows] * max(item_ids.size, 1) + i_idx[rows]
        pos = np.minimum(np.searchsorted(train_keys, keys), max(train_keys.size - 1, 0))
        clash = train_keys.size > 0 and (train_keys[pos] == keys)
        if np.any(clash):
            k = int(rows[np.flatnonzero(clash)[0]])
            raise DataError(
                f"{name}: the {part} pair (user {user[k]}, item {item[k]}) also "
                f"appears in training ({int(np.sum(clash))} such {part} rows); a "
                "held-out interaction must not be trained on."
            )
        kept[part] = rows
    return user_ids, item_ids, u_idx, i_idx, kept, dropped


def _unique(x: np.ndarray) -> np.ndarray:
    """Sorted unique values (sort based: numpy 2's hash-based `np.unique` is far
    slower on large int arrays)."""
    a = np.sort(np.asarray(x).ravel())
    return a[np.r_[True, a[1:] != a[:-1]]] if a.size else a


def _lookup(vocab: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Index of each raw id in the sorted `vocab`, -1 when absent."""
    if vocab.size == 0:
        return np.full(raw.shape, -1, np.int64)
    pos = np.minimum(np.searchsorted(vocab, raw), vocab.size - 1)
    return np.where(vocab[pos] == raw, pos, -1).astype(np.int64)


def _part(user, item, rating) -> dict[str, np.ndarray]:
    return {
        "user_id": np.asarray(user, dtype=np.int64),
        "item_id": np.asarray(item, dtype=np.int64),
        "rating": np.asarray(rating, dtype=np.float32),
    }


def _names(inter: Interactions, item_ids: np.ndarray) -> list[str] | None:
    if not inter.item_names:
        return None
    return [inter.item_names.get(int(i), "") for i in item_ids]


def _sample_negatives(
    users: np.ndarray,
    positive_keys: np.ndarray,
    num_items: int,
    num_negatives: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Samples, per row, `num_negatives` distinct items the row's user never saw.

    Uniform without replacement over each user's unseen items: vectorised
    rejection sampling (iid draws, drop seen items and repeats, keep the first
    `num_negatives`), with an exact per-row fallback for crowded rows.

    Args:
        users: User index of each row.
        positive_keys: Sorted unique ``user * num_items + item`` of every
            interaction in any split.
        num_items: Item vocabulary size.
        num_negatives: Samples per row.
        rng: Random generator.

    Returns:
        int64 ``[len(users), num_negatives]``.
    """
    n = users.shape[0]
    out = np.empty((n, num_negatives), dtype=np.int64)
    if n == 0 or num_negatives == 0:
        return out
    seen = np.bincount(positive_keys // num_items, minlength=int(users.max()) + 1)
    free = num_items - seen[users]
    if (free < num_negatives).any():
        bad = int(np.argmax(free < num_negatives))
        raise ValueError(
            f"`num_negatives`={num_negatives} is more than the {int(free[bad])} items "
            f"user index {int(users[bad])} never interacted with. Use a smaller "
            "`num_negatives` or a larger item catalogue."
        )

    def is_seen(rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        if positive_keys.size == 0:
            return np.zeros(cand.shape, dtype=bool)
        keys = users[rows][:, None] * num_items + cand
        pos = np.searchsorted(positive_keys, keys)
        pos = np.minimum(pos, positive_keys.size - 1)
        return positive_keys[pos] == keys

    pending = np.arange(n)
    for _ in range(4):
        if pending.size == 0:
            break
        p_free = free[pending].min() / num_items
        width = int(np.ceil(num_negatives / p_free * 1.5)) + 16
        if width > 8 * num_items:
            break
        chunk = max(1, (1 << 22) // width)
        still = []
        for start in range(0, pending.size, chunk):
            rows = pending[start : start + chunk]
            cand = rng.integers(0, num_items, size=(rows.size, width), dtype=np.int64)
            valid = ~is_seen(rows, cand)
            # First occurrence of each item within its row.
            order = np.argsort(cand, axis=1, kind="stable")
            sorted_c = np.take_along_axis(cand, order, axis=1)
            dup_sorted = np.zeros_like(valid)
            dup_sorted[:, 1:] = sorted_c[:, 1:] == sorted_c[:, :-1]
            dup = np.empty_like(dup_sorted)
            np.put_along_axis(dup, order, dup_sorted, axis=1)
            valid &= ~dup
            rank = np.cumsum(valid, axis=1)
            done = rank[:, -1] >= num_negatives
            take = valid & (rank <= num_negatives) & done[:, None]
            out[rows[done]] = cand[take].reshape(-1, num_negatives)
            still.append(rows[~done])
        pending = np.concatenate(still) if still else pending[:0]
    for row in pending:  # exact fallback: users who saw almost every item
        u = users[row]
        lo, hi = np.searchsorted(positive_keys, [u * num_items, (u + 1) * num_items])
        unseen = np.setdiff1d(
            np.arange(num_items), positive_keys[lo:hi] - u * num_items
        )
        out[row] = rng.choice(unseen, size=num_negatives, replace=False)
    return out


def leave_one_out(
    inter: Interactions,
    *,
    num_negatives: int = 99,
    validation: bool = True,
    seed: int = 0,
    min_interactions: int = 3,
) -> Split:
    """Leave-one-out split by time, with sampled negatives.

    Each user's latest interaction goes to test and, when `validation`, the one
    before it to valid; the rest is train. Ties in time are broken by the
    original row order (a later row counts as later). Repeated (user, item)
    rows are first merged into the latest (`merge_duplicates`); users with
    fewer than `min_interactions` interactions are then dropped. The
    vocabularies are the sorted raw ids of the training rows: a held-out row
    whose item never occurs in training is dropped (counted in
    `Split.dropped`).

    Negatives: for each test (and valid) row, `num_negatives` distinct items
    drawn uniformly from the items the user never interacted with in any split.

    Reference:
        He et al., "Neural Collaborative Filtering", WWW 2017.

    Args:
        inter: Interactions with timestamps.
        num_negatives: Sampled negatives per test/valid row (0 for none).
        validation: Whether to hold out a validation interaction per user.
        seed: Seed of the negative sampling.
        min_interactions: Users with fewer interactions are dropped; at least
            2, or 3 with `validation`.

    Returns:
        A `Split` with one test (and valid) row per kept user (less the dropped
        ones), ordered by user index.
    """
    if inter.timestamp is None:
        raise DataError(
            f"leave_one_out needs timestamps, but data set {inter.name!r} has none; "
            "use random_split, or ncf_split for ncf-ml-1m."
        )
    needed = 3 if validation else 2
    if min_interactions < needed:
        raise ValueError(
            f"`min_interactions` must be at least {needed} with "
            f"validation={validation} so every user keeps a training interaction. "
            f"Received: min_interactions={min_interactions}"
        )
    if num_negatives < 0:
        raise ValueError(
            f"`num_negatives` must be >= 0. Received: num_negatives={num_negatives}"
        )
    inter = merge_duplicates(inter)
    user = np.asarray(inter.user, dtype=np.int64)
    _, inverse, counts = np.unique(user, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= min_interactions
    if not keep.any():
        raise DataError(
            f"No user of {inter.name!r} has {min_interactions} or more interactions."
        )
    user = user[keep]
    item = np.asarray(inter.item, dtype=np.int64)[keep]
    rating = np.asarray(inter.rating, dtype=np.float32)[keep]
    ts = np.asarray(inter.timestamp, dtype=np.int64)[keep]

    order = np.lexsort((np.arange(user.size), ts, user))
    su = user[order]
    last = np.flatnonzero(np.r_[su[1:] != su[:-1], True])  # last row per user
    test_rows = order[last]
    holdout = [test_rows]
    valid_rows = None
    if validation:
        valid_rows = order[last - 1]
        holdout.append(valid_rows)
    train_mask = np.ones(user.size, dtype=bool)
    train_mask[np.concatenate(holdout)] = False
    train_rows = np.flatnonzero(train_mask)

    user_ids, item_ids, u_idx, i_idx, kept, dropped = _restrict_to_train(
        inter.name, user, item, train_rows, {"valid": valid_rows, "test": test_rows}
    )
    test_rows, valid_rows = kept["test"], kept["valid"]
    num_users, num_items = user_ids.size, item_ids.size

    def part(rows):
        return _part(u_idx[rows], i_idx[rows], rating[rows])

    known = np.concatenate([train_rows, test_rows] + ([valid_rows] if validation else []))
    positive_keys = _unique(u_idx[known] * num_items + i_idx[known])
    rng = np.random.default_rng(seed)
    test_neg = _sample_negatives(
        u_idx[test_rows], positive_keys, num_items, num_negatives, rng
    )
    valid_neg = None
    if validation:
        valid_neg = _sample_negatives(
            u_idx[valid_rows], positive_keys, num_items, num_negatives, rng
        )
    return Split(
        name=inter.name,
        num_users=int(num_users),
        num_items=int(num_items),
        train=part(train_rows),
        test=part(test_rows),
        valid=part(valid_rows) if validation else None,
        test_negatives=test_neg if num_negatives else None,
        valid_negatives=valid_neg if num_negatives else None,
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
        item_names=_names(inter, item_ids),
        dropped=dict(dropped, duplicates_merged=inter.duplicates_merged),
    )


def random_split(
    inter: Interactions,
    *,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.0,
    seed: int = 0,
) -> Split:
    """Random split of the rating rows.

    Repeated (user, item) rows are first merged into the latest
    (`merge_duplicates`). The vocabularies are the users and items of the
    training rows; validation and test rows outside them are dropped (counted
    in `Split.dropped`). No negatives are sampled.

    Args:
        inter: Interactions (timestamps not needed).
        test_fraction: Share of rows in test (rounded to whole rows).
        valid_fraction: Share of rows in valid; 0 gives ``valid=None``.
        seed: Seed of the shuffle.

    Returns:
        A `Split` whose train, valid and test rows are disjoint and together
        equal the merged input rows, less the dropped ones.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"`test_fraction` must be in (0, 1). Received: test_fraction={test_fraction}"
        )
    if not 0.0 <= valid_fraction < 1.0 or test_fraction + valid_fraction >= 1.0:
        raise ValueError(
            "`valid_fraction` must be in [0, 1) and test_fraction + valid_fraction "
            f"< 1. Received: test_fraction={test_fraction}, "
            f"valid_fraction={valid_fraction}"
        )
    inter = merge_duplicates(inter)
    n = len(inter)
    if n == 0:
        raise DataError(f"Data set {inter.name!r} has no ratings.")
    user = np.asarray(inter.user, dtype=np.int64)
    item = np.asarray(inter.item, dtype=np.int64)
    rating = np.asarray(inter.rating, dtype=np.float32)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    n_valid = int(round(valid_fraction * n))
    test_rows = np.sort(perm[:n_test])
    valid_rows = np.sort(perm[n_test : n_test + n_valid])
    train_rows = np.sort(perm[n_test + n_valid :])
    user_ids, item_ids, u_idx, i_idx, kept, dropped = _restrict_to_train(
        inter.name,
        user,
        item,
        train_rows,
        {"valid": valid_rows if valid_fraction > 0 else None, "test": test_rows},
    )

    def part(rows):
        return _part(u_idx[rows], i_idx[rows], rating[rows])

    return Split(
        name=inter.name,
        num_users=int(user_ids.size),
        num_items=int(item_ids.size),
        train=part(train_rows),
        test=part(kept["test"]),
        valid=part(kept["valid"]) if valid_fraction > 0 else None,
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
        item_names=_names(inter, item_ids),
        dropped=dict(dropped, duplicates_merged=inter.duplicates_merged),
    )


def _read_ncf_negatives(
    path: pathlib.Path, test_user: np.ndarray, test_item: np.ndarray
) -> np.ndarray:
    """Reads ``ml-1m.test.negative`` and checks line k against test line k."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    lines = path.read_text(encoding="latin-1").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != test_user.size:
        raise DataError(
            f"{path}: expected {test_user.size} lines (one per line of "
            f"ml-1m.test.rating), got {len(lines)}"
        )
    heads = pd.Series([ln.split("\t", 1)[0] for ln in lines])
    pairs = heads.str.extract(r"^\((-?\d+),(-?\d+)\)$")
    bad = pairs.isna().any(axis=1).to_numpy()
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"{path}: line {k + 1}: first field must be '(user,item)', got {heads[k]!r}"
        )
    pu = pairs[0].to_numpy(dtype=np.int64)
    pi = pairs[1].to_numpy(dtype=np.int64)
    mismatch = (pu != test_user) | (pi != test_item)
    if mismatch.any():
        k = int(np.argmax(mismatch))
        raise DataError(
            f"{path}: line {k + 1}: header ({pu[k]},{pi[k]}) does not match line "
            f"{k + 1} of ml-1m.test.rating, which is ({test_user[k]},{test_item[k]})"
        )
    counts = np.fromiter((ln.count("\t") for ln in lines), dtype=np.int64)
    if (counts != counts[0]).any() or counts[0] == 0:
        k = int(np.argmax(counts != counts[0])) if counts[0] else 0
        raise DataError(
            f"{path}: line {k + 1}: expected {counts[0]} tab-separated negative item "
            f"ids like line 1, got {counts[k]}"
        )
    body = "\n".join(ln.split("\t", 1)[1] for ln in lines)
    try:
        neg = np.loadtxt(body.splitlines(), dtype=np.int64, delimiter="\t", ndmin=2)
    except ValueError:
        for k, ln in enumerate(lines):
            for tok in ln.split("\t")[1:]:
                try:
                    int(tok)
                except ValueError:
                    raise DataError(
                        f"{path}: line {k + 1}: negative item id must be an integer, "
                        f"got {tok!r}"
                    ) from None
        raise
    return neg


def ncf_split(
    data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> Split:
    """The NCF paper's leave-one-out split of MovieLens 1M, read from its files.

    Ids in the files are 0-based and contiguous; the vocabularies are every id
    of the train, test and negative files, re-indexed (6,040 users and 3,706
    items, where indices equal ids). ``test`` is ``ml-1m.test.rating``;
    ``test_negatives`` row k holds the 99 items of line k of
    ``ml-1m.test.negative``, whose ``(u,i)`` header is checked against test line
    k. There is no validation split. Every file is verified against the
    catalogue's checksum; a test line whose user or item has no train row is
    dropped (with its negatives) and counted in `Split.dropped`, and a test
    pair that also appears in the train file is an error. Negatives are kept as
    published; slots naming an item with no train row (with the reconstructed
    train file: 2 items) are counted as ``negatives_untrained``.

    Known quirk of the published file: for 156 users the positive test item
    also appears among their 99 negatives. The file is kept as is; the
    evaluation removes such duplicates.

    Reference:
        He et al., "Neural Collaborative Filtering", WWW 2017.

    Args:
        data_dir: Folder holding the files (see `tfrec.data.dataset_dir`); the
            reconstructed train file ``reconstructed/ml-1m.train.rating.
            RECONSTRUCTED.tsv.gz`` stands in for ``ml-1m.train.rating``.
        download: Whether a download may be attempted.

    Returns:
        A `Split` with ``valid=None``.
    """
    name = "ncf-ml-1m"
    root = dataset_dir(name, data_dir, download=download)
    train = _read_ncf_ratings(_ncf_train_path(root), name)
    test_path = root / "ml-1m.test.rating"
    test = _read_ncf_ratings(test_path, name)
    neg_path = verify_file(name, root, "ml-1m.test.negative")
    negatives = _read_ncf_negatives(neg_path, test.user, test.item)
    if negatives.size:
        check_id_minimum(neg_path, negatives.min(axis=1), 0, "negative item id")
    merged = merge_duplicates(train)
    # Users and items: every id of the three files, re-indexed (the published
    # ids are 0-based and contiguous, so indices equal ids; a stray huge id adds
    # one row instead of setting the size).
    user_ids = _unique(np.concatenate([merged.user, test.user]))
    item_ids = _unique(np.concatenate([merged.item, test.item, negatives.ravel()]))
    train_u, train_i = _lookup(user_ids, merged.user), _lookup(item_ids, merged.item)
    test_u, test_i = _lookup(user_ids, test.user), _lookup(item_ids, test.item)
    trained_users = np.zeros(user_ids.size, bool)
    trained_users[train_u] = True
    trained_items = np.zeros(item_ids.size, bool)
    trained_items[train_i] = True
    no_user = ~trained_users[test_u]
    no_item = ~trained_items[test_i] & ~no_user
    keep = ~(no_user | no_item)
    train_keys = _unique(train_u * item_ids.size + train_i)
    test_keys = test_u * item_ids.size + test_i
    pos = np.minimum(np.searchsorted(train_keys, test_keys), train_keys.size - 1)
    clash = train_keys[pos] == test_keys
    if clash.any():
        k = int(np.flatnonzero(clash)[0])
        raise DataError(
            f"{test_path}: line {k + 1}: the test pair (user {int(test.user[k])}, item "
            f"{int(test.item[k])}) also appears in the train file "
            f"({int(clash.sum())} such lines); a test interaction must not be "
            "trained on."
        )
    neg_idx = _lookup(item_ids, negatives)[keep]
    titles = _ncf_titles(root)
    return Split(
        name=name,
        num_users=int(user_ids.size),
        num_items=int(item_ids.size),
        train=_part(train_u, train_i, merged.rating),
        test=_part(test_u[keep], test_i[keep], test.rating[keep]),
        test_negatives=neg_idx,
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
        item_names=[titles.get(int(i), "") for i in item_ids] if titles else None,
        dropped={
            "test_unknown_user": int(no_user.sum()),
            "test_unknown_item": int(no_item.sum()),
            "duplicates_merged": merged.duplicates_merged,
            "negatives_untrained": int((~trained_items[neg_idx]).sum()),
        },
    )


def ncf_validation(split: Split, *, seed: int = 0, num_negatives: int = 99) -> Split:
    """A validation part for a split that has none (the NCF split's case).

    The published NCF split holds out each user's latest interaction as the test
    item and has no validation part, so settings chosen on it would be chosen on
    the test set. This holds out one training interaction per user (users with at
    least two) as that user's validation item, with `num_negatives` items the user
    never interacted with in any part, sampled uniformly (the test protocol's
    99), and trains on the rest. The held-out row is drawn at random (seeded):
    the split keeps no timestamps, and the reconstructed NCF train file has
    none, so "the latest before the test item" cannot be taken. Vocabularies,
    test rows and test negatives are unchanged.

    Args:
        split: A `Split` with ``valid=None``.
        seed: Seed of the held-out rows and the negatives.
        num_negatives: Sampled negatives per validation row.

    Returns:
        A new `Split` with ``valid`` and ``valid_negatives`` set and ``train``
        one row shorter per user; ``dropped["valid_untrained_item"]`` counts
        validation rows whose item is left with no training row.
    """
    if split.valid is not None:
        raise ValueError(f"{split.name}: the split already has a validation part")
    rng = np.random.default_rng(seed)
    users = split.train["user_id"]
    n = users.size
    # One random row per user: the first row of each user in a random order.
    order = rng.permutation(n)
    order = order[np.argsort(users[order], kind="stable")]
    sorted_users = users[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_users[1:] != sorted_users[:-1]
    counts = np.bincount(users, minlength=split.num_users)
    held = order[first & (counts[sorted_users] >= 2)]
    held.sort()
    keep = np.ones(n, dtype=bool)
    keep[held] = False
    items = split.train["item_id"]
    keys = np.concatenate([
        users * split.num_items + items,
        split.test["user_id"] * split.num_items + split.test["item_id"],
    ])
    negatives = _sample_negatives(
        users[held], _unique(keys), split.num_items, num_negatives, rng
    )
    trained = np.zeros(split.num_items, dtype=bool)
    trained[items[keep]] = True
    return dataclasses.replace(
        split,
        train={k: v[keep] for k, v in split.train.items()},
        valid={k: v[held] for k, v in split.train.items()},
        valid_negatives=negatives,
        dropped=dict(split.dropped, valid_untrained_item=int((~trained[items[held]]).sum())),
    )


_PROTOCOLS = ("leave_one_out", "random", "ncf")


def load_split(
    name: str,
    *,
    protocol: str = "leave_one_out",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
    **kw,
) -> Split:
    """Loads a catalogue data set and splits it.

    ``ncf-ml-1m`` with protocol "leave_one_out" (or "ncf") gives `ncf_split`;
    otherwise the interactions are loaded and split with `leave_one_out`
    (protocol "leave_one_out") or `random_split` (protocol "random").

    Args:
        name: Catalogue name.
        protocol: "leave_one_out", "random" or "ncf" (only for ``ncf-ml-1m``).
        data_dir: Folder holding the files (see `tfrec.data.dataset_dir`).
        download: Whether a download may be attempted.
        seed: Seed of the split or negative sampling.
        **kw: Passed to `leave_one_out` or `random_split`.

    Returns:
        A `Split`.
    """
    if protocol == "random_split":
        protocol = "random"
    if protocol not in _PROTOCOLS:
        raise ValueError(
            f"Unknown protocol {protocol!r}. Valid protocols: {list(_PROTOCOLS)}."
        )
    if name == "ncf-ml-1m" and protocol in ("leave_one_out", "ncf"):
        if kw:
            raise ValueError(
                f"ncf_split takes no options; received {sorted(kw)}. The NCF split "
                "is fixed by its published files."
            )
        return ncf_split(data_dir, download=download)
    if protocol == "ncf":
        raise ValueError(
            f"protocol='ncf' is only available for 'ncf-ml-1m'. Received: name={name!r}"
        )
    inter = load_interactions(name, data_dir, download=download)
    if protocol == "random":
        return random_split(inter, seed=seed, **kw)
    return leave_one_out(inter, seed=seed, **kw)
