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
