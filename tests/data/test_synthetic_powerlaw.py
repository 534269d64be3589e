"""Power-law synthetic interactions: exact size, distinct pairs, Zipf-like
activity and popularity, seeded, the same whichever way they are consumed."""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.data.synthetic import powerlaw_chunks, powerlaw_interactions

N, USERS, ITEMS = 30_000, 1500, 1000  # density 2 %, as in the scaling bench


def _slope(counts, lo, hi):
    """Least-squares slope of log(count) against log(rank), ranks lo..hi-1."""
    c = np.sort(counts)[::-1][lo:hi].astype(float)
    return np.polyfit(np.log(np.arange(lo + 1, hi + 1)), np.log(c), 1)[0]


def test_size_ranges_distinct_and_sorted():
    users, items = powerlaw_interactions(N, USERS, ITEMS, seed=1, block_users=128)
    assert len(users) == len(items) == N and users.dtype == np.int32
    assert users.min() >= 0 and users.max() < USERS
    assert items.min() >= 0 and items.max() < ITEMS
    keys = users.astype(np.int64) * ITEMS + items
    assert np.all(np.diff(keys) > 0)  # sorted by (user, item), no repeated pair
    per_user = np.bincount(users, minlength=USERS)
    assert per_user.min() >= 1 and per_user.max() <= ITEMS // 2


def test_power_law_activity_and_popularity():
    users, items = powerlaw_interactions(
        N, USERS, ITEMS, user_exponent=0.7, item_exponent=0.9, seed=0
    )
    # Users below the per-user cap (the top ones sit at it): the nominal slope.
    u = np.sort(np.bincount(users, minlength=USERS))[::-1]
    assert u[0] == ITEMS // 2 and u[-1] > 1
    free = np.flatnonzero(u < ITEMS // 2)
    assert _slope(u, free[0], USERS) == pytest.approx(-0.7, abs=0.03)
    # Items: Zipf-like, a little flatter than nominal (a user takes an item once,
    # so the heavy users saturate the popular items).
    assert -1.0 < _slope(np.bincount(items, minlength=ITEMS), 10, 500) < -0.65
    flat_u, flat_i = powerlaw_interactions(
        N, USERS, ITEMS, user_exponent=0.0, item_exponent=0.0, seed=0
    )
    assert np.ptp(np.bincount(flat_u)) <= 1  # exponent 0: equal activity
    flat, zipf = (np.bincount(i, minlength=ITEMS) for i in (flat_i, items))
    assert flat.std() / flat.mean() < 0.3 < 1.0 < zipf.std() / zipf.mean()


def test_seeded_and_independent_of_how_it_is_consumed():
    a = powerlaw_interactions(N, USERS, ITEMS, seed=5)
    b = powerlaw_interactions(N, USERS, ITEMS, seed=5)
    c = powerlaw_interactions(N, USERS, ITEMS, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    chunks = list(powerlaw_chunks(N, USERS, ITEMS, seed=5))
    assert len(chunks) == -(-USERS // 1024)
    small = list(powerlaw_chunks(N, USERS, ITEMS, seed=5, block_users=100))
    assert len(small) == 15 and max(len(u) for u, _ in small) < N / 2
    np.testing.assert_array_equal(np.concatenate([i for _, i in chunks]), a[1])


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="num_interactions"):
        powerlaw_interactions(10 * 5 + 1, 10, 10, max_per_user=5)
    with pytest.raises(ValueError, match="num_interactions"):
        powerlaw_interactions(5, 10, 10)
    with pytest.raises(ValueError, match="max_per_user"):
        powerlaw_interactions(100, 10, 10, max_per_user=11)
