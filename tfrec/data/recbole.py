"""RecBole's general-recommendation protocol as a :class:`tfrec.data.Split`.

RecBole's benchmark tables for general (top-N) recommenders on MovieLens-1M use:
keep ratings ``>= 3``; iteratively drop users and items with fewer than 10
interactions (10-core); then per user, a random 80/10/10 ordering split
(``split: RS [0.8, 0.1, 0.1]``, ``order: RO``, ``group_by: user``); evaluation by
full ranking over all items, excluding the user's known (train, and for test also
valid) items.

Reference:
    Zhao et al., "RecBole: Towards a Unified, Comprehensive and Efficient Framework
    for Recommendation Algorithms", CIKM 2021 (and its benchmark configuration).
"""

from __future__ import annotations

import numpy as np

from tfrec.data.datasets import DataError, Interactions
from tfrec.data.splits import Split, _names, _part, _restrict_to_train

__all__ = ["k_core_filter", "recbole_split"]


def k_core_filter(
    user: np.ndarray, item: np.ndarray, *, min_user: int = 10, min_item: int = 10
) -> np.ndarray:
    """Boolean mask of the rows kept by iterative k-core filtering.

    Users with fewer than ``min_user`` and items with fewer than ``min_item`` kept
    rows are dropped, repeatedly, until every kept user and item meets its bound.
    """
    keep = np.ones(user.size, dtype=bool)
    while True:
        _, u_inv, u_cnt = np.unique(user[keep], return_inverse=True, return_counts=True)
        _, i_inv, i_cnt = np.unique(item[keep], return_inverse=True, return_counts=True)
        ok = (u_cnt[u_inv] >= min_user) & (i_cnt[i_inv] >= min_item)
        if ok.all():
            return keep
        idx = np.flatnonzero(keep)
        keep[idx[~ok]] = False


def _split_counts(n: np.ndarray, ratios: tuple[float, ...]) -> np.ndarray:
    """Per-user part sizes the way RecBole's ``split_by_ratio`` computes them.

    Each later part gets ``int(ratio * n)`` rows, the first part the rest; a later
    part that would be empty takes one row from the first part when it has more
    than one.
    """
    total = sum(ratios)
    ratios = [r / total for r in ratios]
    counts = np.stack([np.floor(r * n).astype(np.int64) for r in ratios], axis=1)
    counts[:, 0] = n - counts[:, 1:].sum(axis=1)
    for j in range(len(ratios) - 1, 0, -1):
        move = (counts[:, j] == 0) & (counts[:, 0] > 1)
        counts[move, j] += 1
        counts[move, 0] -= 1
    return counts


def recbole_split(
    inter: Interactions,
    *,
    min_rating: float = 3.0,
    core: int = 10,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Split:
    """RecBole general protocol: rating filter, k-core, per-user random split.

    Every kept row becomes an implicit positive (``rating`` 1.0); repeated (user,
    item) rows are merged first. The vocabularies are the training part's users
    and items: a valid/test row whose item has no training row is dropped and
    counted in `Split.dropped` (RecBole itself keeps such items as candidates).

    Args:
        inter: Interactions (timestamps not needed).
        min_rating: keep rows with ``rating >= min_rating`` (None keeps all).
        core: minimum interactions per user and per item (iterative).
        ratios: train / valid / test shares within each user's rows.
        seed: seed of the per-user shuffle.

    Returns:
        A `Split` with train, valid and test parts, no sampled negatives.
    """
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
        raise ValueError(
            "`ratios` must be three non-negative shares (train, valid, test) with a "
            f"positive train share. Received: ratios={ratios!r}"
        )
    if isinstance(core, bool) or not isinstance(core, (int, np.integer)) or core < 1:
        raise ValueError(f"`core` must be a positive int. Received: core={core!r}")
    user = np.asarray(inter.user, np.int64)
    item = np.asarray(inter.item, np.int64)
    rating = np.asarray(inter.rating, np.float32)
    keep = np.ones(user.size, bool) if min_rating is None else rating >= min_rating
    user, item = user[keep], item[keep]
    pairs = np.unique(np.stack([user, item], axis=1), axis=0)
    user, item = pairs[:, 0], pairs[:, 1]
    kept = k_core_filter(user, item, min_user=core, min_item=core)
    user, item = user[kept], item[kept]
    if user.size == 0:
        raise DataError(
            f"No interactions of {inter.name!r} survive rating >= {min_rating} and "
            f"the {core}-core filter."
        )
    user_ids, u_idx = np.unique(user, return_inverse=True)
    item_ids, i_idx = np.unique(item, return_inverse=True)

    rng = np.random.default_rng(seed)
    order = rng.permutation(u_idx.size)
    order = order[np.argsort(u_idx[order], kind="stable")]  # grouped by user
    n_per_user = np.bincount(u_idx, minlength=user_ids.size)
    counts = _split_counts(n_per_user, tuple(float(r) for r in ratios))
    first = np.repeat(np.cumsum(n_per_user) - n_per_user, n_per_user)
    rank = np.arange(u_idx.size) - first  # position within the user's shuffled rows
    su = u_idx[order]
    bound_train = counts[su, 0]
    bound_valid = bound_train + counts[su, 1]
    parts = {
        "train": order[rank < bound_train],
        "valid": order[(rank >= bound_train) & (rank < bound_valid)],
        "test": order[rank >= bound_valid],
    }

    vocab_users, vocab_items, u, i, kept, dropped = _restrict_to_train(
        inter.name,
        user,
        item,
        np.sort(parts["train"]),
        {"valid": np.sort(parts["valid"]), "test": np.sort(parts["test"])},
    )

    def part(rows):
        return _part(u[rows], i[rows], np.ones(rows.size, np.float32))

    return Split(
        name=inter.name,
        num_users=int(vocab_users.size),
        num_items=int(vocab_items.size),
        train=part(np.sort(parts["train"])),
        valid=part(kept["valid"]),
        test=part(kept["test"]),
        user_ids=vocab_users.astype(np.int64),
        item_ids=vocab_items.astype(np.int64),
        item_names=_names(inter, vocab_items),
        dropped=dict(dropped, duplicates_merged=inter.duplicates_merged),
    )
