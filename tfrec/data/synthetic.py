"""Synthetic interactions with a known structure, for tests and smoke runs.

Users and items get random latent vectors; each user interacts with the items of
highest affinity plus noise, in random time order. A model that learns anything
beats popularity on it, which makes "training helps" testable in seconds.
"""

from __future__ import annotations

import numpy as np

from tfrec.data.datasets import Interactions


def synthetic_interactions(
    num_users: int = 60,
    num_items: int = 40,
    *,
    per_user: int = 12,
    dim: int = 4,
    noise: float = 0.5,
    seed: int = 0,
    name: str = "synthetic",
) -> Interactions:
    """``per_user`` distinct items per user, raw ids starting at 1, with timestamps."""
    if not 0 < per_user < num_items:
        raise ValueError(
            f"`per_user` must be in (0, num_items={num_items}). Received: {per_user!r}"
        )
    rng = np.random.default_rng(seed)
    users_f = rng.normal(size=(num_users, dim))
    items_f = rng.normal(size=(num_items, dim))
    affinity = users_f @ items_f.T + noise * rng.normal(size=(num_users, num_items))
    chosen = np.argsort(-affinity, axis=1)[:, :per_user]
    user = np.repeat(np.arange(num_users), per_user)
    item = chosen.reshape(-1)
    timestamp = 1_000_000 + rng.permutation(len(user)).astype(np.int64)
    rating = np.clip(np.round(3 + affinity[user, item]), 1, 5).astype(np.float32)
    return Interactions(
        name=name,
        user=(user + 1).astype(np.int64),
        item=(item + 1).astype(np.int64),
        rating=rating,
        timestamp=timestamp,
        item_names={int(i) + 1: f"item {i + 1}" for i in range(num_items)},
    )


# ----------------------------------------------------------- power-law, at scale


def _activity(num_interactions: int, num_users: int, cap: int, exponent: float,
              rng: np.random.Generator) -> np.ndarray:
    """Interactions per user, ``~ rank^-exponent``, each in ``[1, cap]``, summing to
    ``num_interactions`` exactly (water-filling under the cap, then rounding)."""
    w = (np.arange(num_users, dtype=np.float64) + 1.0) ** -float(exponent)
    lo, hi = 0.0, float(num_interactions) / w.min()
    for _ in range(100):  # bisection on the scale s: sum(clip(s * w, 1, cap)) = N
        mid = (lo + hi) / 2
        if np.clip(mid * w, 1, cap).sum() < num_interactions:
            lo = mid
        else:
            hi = mid
    exact = np.clip(hi * w, 1, cap)
    counts = np.floor(exact).astype(np.int64)
    short = num_interactions - int(counts.sum())
    if short > 0:  # the largest fractional parts, among users under the cap
        frac = np.where(counts < cap, exact - counts, -1.0)
        counts[np.argsort(-frac, kind="stable")[:short]] += 1
    elif short < 0:
        over = np.flatnonzero(counts > 1)[: -short]
        counts[over] -= 1
    return counts[rng.permutation(num_users)]  # activity rank -> a random user id


def powerlaw_chunks(
    num_interactions: int,
    num_users: int,
    num_items: int,
    *,
    user_exponent: float = 0.7,
    item_exponent: float = 0.9,
    max_per_user: int | None = None,
    seed: int = 0,
    block_users: int = 1024,
    rounds: int = 12,
):
    """Distinct (user, item) interactions with Zipf-like activity and popularity,
    one block of ``block_users`` consecutive users at a time.

    User ``u`` gets ``n_u ~ rank(u)^-user_exponent`` interactions (at least 1, at
    most ``max_per_user``, default half the catalogue), ``n_u`` summing to
    ``num_interactions`` exactly; each is an item drawn with probability
    ``~ rank(item)^-item_exponent`` (ranks randomly assigned to ids), without
    repeats within a user: a repeat is redrawn by popularity twice, then uniformly
    (up to ``rounds`` redraws; a heavy user's tail is thus a little flatter than
    Zipf), and any still missing are drawn among the user's unseen items. Each
    block has its own generator (``seed``, block index), so the data do not depend
    on how they are consumed, and temporaries stay the size of one block. At the
    density of the scaling bench (2 %) the realised item slope is about -0.6 to
    -0.8 for ``item_exponent=0.9`` (heavy users saturate the popular items).

    Yields:
        ``(users, items)``, int32, sorted by user then item.
    """
    num_interactions, num_users, num_items = (
        int(num_interactions), int(num_users), int(num_items)
    )
    cap = int(max_per_user or max(1, num_items // 2))
    if min(num_users, num_items, cap, block_users) < 1 or cap > num_items:
        raise ValueError(
            "`num_users`, `num_items`, `block_users` and `max_per_user` must be "
            f"positive, `max_per_user` <= num_items. Received: num_users={num_users}, "
            f"num_items={num_items}, max_per_user={cap}, block_users={block_users}"
        )
    if not num_users <= num_interactions <= num_users * cap:
        raise ValueError(
            f"`num_interactions` must be in [num_users, num_users * max_per_user] = "
            f"[{num_users}, {num_users * cap}] (every user has 1 to max_per_user "
            f"distinct items). Received: num_interactions={num_interactions}"
        )
    rng = np.random.default_rng([seed, 0])
    counts = _activity(num_interactions, num_users, cap, user_exponent, rng)
    pop = (np.arange(num_items, dtype=np.float64) + 1.0) ** -float(item_exponent)
    cdf = np.cumsum(pop / pop.sum())
    cdf[-1] = 1.0
    item_of_rank = rng.permutation(num_items).astype(np.int64)

    for block, start in enumerate(range(0, num_users, block_users)):
        brng = np.random.default_rng([seed, 1, block])
        n_b = counts[start : start + block_users]
        local = np.repeat(np.arange(len(n_b), dtype=np.int64), n_b)
        first = _draw(brng, cdf, item_of_rank, len(local))
        keys = _sorted_unique(local * num_items + first)
        for r in range(rounds):
            missing = n_b - np.bincount(keys // num_items, minlength=len(n_b))
            if not missing.any():
                break
            extra_u = np.repeat(np.arange(len(n_b), dtype=np.int64), missing)
            # Popularity for the first redraws, then uniform: a heavy user's
            # repeats of popular items would otherwise never resolve.
            extra = (
                _draw(brng, cdf, item_of_rank, len(extra_u)) if r < 2
                else brng.integers(0, num_items, len(extra_u))
            )
            keys = _sorted_unique(np.concatenate([keys, extra_u * num_items + extra]))
        missing = n_b - np.bincount(keys // num_items, minlength=len(n_b))
        fill = []
        for u in np.flatnonzero(missing):  # rare: still short after all rounds
            lo, hi = np.searchsorted(keys, [u * num_items, (u + 1) * num_items])
            unseen = np.setdiff1d(
                np.arange(num_items), keys[lo:hi] % num_items, assume_unique=True
            )
            fill.append(u * num_items + brng.choice(unseen, missing[u], replace=False))
        if fill:
            keys = _sorted_unique(np.concatenate([keys, *fill]))
        yield (
            (keys // num_items + start).astype(np.int32),
            (keys % num_items).astype(np.int32),
        )


def _sorted_unique(keys):
    # np.unique's hash path is slow on int64 here; a sort and a mask are not.
    keys = np.sort(keys)
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys


def _draw(rng, cdf, item_of_rank, n):
    return item_of_rank[np.searchsorted(cdf, rng.random(n), side="right")]


def powerlaw_interactions(
    num_interactions: int, num_users: int, num_items: int, **kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """All of :func:`powerlaw_chunks` in two preallocated int32 arrays (8 bytes per
    interaction; the only full-size allocation), sorted by user then item.

    Example:
        >>> users, items = powerlaw_interactions(1_000_000, 14_000, 3_000, seed=0)
    """
    users = np.empty(int(num_interactions), np.int32)
    items = np.empty(int(num_interactions), np.int32)
    at = 0
    for u, i in powerlaw_chunks(num_interactions, num_users, num_items, **kwargs):
        users[at : at + len(u)], items[at : at + len(u)] = u, i
        at += len(u)
    assert at == len(users), (at, len(users))  # counts sum to num_interactions
    return users, items
