"""Tests for tfrec.data.pairwise (BPR triples)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tfrec.data.pairwise import TripleSampler, bpr_dataset

# Hand-made 3 users x 5 items: user 0 saw {0, 1}, user 1 saw {1, 2, 3, 4}
# (only item 0 is left as a negative), user 2 saw {4}.
USERS = np.array([0, 0, 1, 1, 1, 1, 2])
ITEMS = np.array([0, 1, 1, 2, 3, 4, 4])
POSITIVE = {(0, 0), (0, 1), (1, 1), (1, 2), (1, 3), (1, 4), (2, 4)}


def test_negatives_are_never_positives_and_cover_the_rest():
    sampler = TripleSampler(USERS, ITEMS, 5, num_negatives=3, seed=0)
    seen_neg = collections.defaultdict(set)
    for epoch in range(30):
        u, i, j = sampler.epoch_arrays(epoch)
        assert u.size == i.size == j.size == 7 * 3
        for uu, ii, jj in zip(u.tolist(), i.tolist(), j.tolist(), strict=True):
            assert (uu, ii) in POSITIVE
            assert (uu, jj) not in POSITIVE, (uu, jj)
            assert 0 <= jj < 5
            seen_neg[uu].add(jj)
        # Each positive appears num_negatives times per epoch.
        counts = collections.Counter(zip(u.tolist(), i.tolist(), strict=True))
        assert set(counts) == POSITIVE and set(counts.values()) == {3}
    # User 1's only negative is item 0; the others' negatives cover all non-positives.
    assert seen_neg[1] == {0}
    assert seen_neg[0] == {2, 3, 4}
    assert seen_neg[2] == {0, 1, 2, 3}


def test_uniform_over_allowed_items():
    sampler = TripleSampler(np.zeros(2, np.int64), np.array([0, 1]), 6, 2000, seed=1)
    _, _, j = sampler.epoch_arrays(0)
    freq = np.bincount(j, minlength=6) / j.size
    assert freq[0] == freq[1] == 0
    np.testing.assert_allclose(freq[2:], 0.25, atol=0.03)


def test_epochs_are_deterministic_and_distinct():
    a = TripleSampler(USERS, ITEMS, 5, seed=4)
    b = TripleSampler(USERS, ITEMS, 5, seed=4)
    for x, y in zip(a.epoch_arrays(2), b.epoch_arrays(2), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(a.epoch_arrays(0), a.epoch_arrays(1), strict=True)
    )


def test_errors():
    with pytest.raises(ValueError, match="interacted with all 2 items"):
        TripleSampler(np.array([0, 0]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match=r"Item indices must be in \[0, 3\)"):
        TripleSampler(np.array([0]), np.array([3]), 3)
    with pytest.raises(ValueError, match="num_negatives"):
        TripleSampler(USERS, ITEMS, 5, num_negatives=0)
    with pytest.raises(ValueError, match="empty"):
        TripleSampler(np.zeros(0, np.int64), np.zeros(0, np.int64), 5)
    with pytest.raises(ValueError, match="integer"):
        TripleSampler(USERS.astype(float), ITEMS, 5)
    with pytest.raises(ValueError, match="batch_size"):
        bpr_dataset(USERS, ITEMS, 5, batch_size=0)


def test_dataset_batches_and_fresh_epochs():
    ds, sampler = bpr_dataset(USERS, ITEMS, 5, num_negatives=2, batch_size=4, seed=0)
    assert int(ds.cardinality()) == 4  # ceil(14 / 4)
    first = list(ds.as_numpy_iterator())
    assert [len(f["user_id"]) for f, _ in first] == [4, 4, 4, 2]
    feats, labels = first[0]
    assert set(feats) == {"user_id", "pos_item_id", "neg_item_id"}
    assert feats["user_id"].dtype == np.int64 and labels.dtype == np.float32
    assert not labels.any()
    u = np.concatenate([f["user_id"] for f, _ in first])
    j = np.concatenate([f["neg_item_id"] for f, _ in first])
    ref = sampler.epoch_arrays(0)
    np.testing.assert_array_equal(u, ref[0])
    np.testing.assert_array_equal(j, ref[2])
    second = list(ds.as_numpy_iterator())
    j2 = np.concatenate([f["neg_item_id"] for f, _ in second])
    np.testing.assert_array_equal(j2, sampler.epoch_arrays(1)[2])
