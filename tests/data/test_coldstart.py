"""Tests for tfrec.data.coldstart."""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.data import DataError, Interactions, load_interactions
from tfrec.data.coldstart import (
    cold_item_split,
    evaluate_cold,
    evaluate_warm,
    popularity_scores,
)
from tfrec.data.synthetic import synthetic_interactions


def _pairs(part) -> set[tuple[int, int]]:
    return set(zip(part["user_id"].tolist(), part["item_id"].tolist(), strict=True))


def test_invariants_on_synthetic():
    inter = synthetic_interactions(80, 50, per_user=15, seed=3)
    s = cold_item_split(inter, cold_fraction=0.2, test_fraction=0.25, seed=1)
    assert s.num_items == 50 and s.num_cold_items == 10 and s.num_warm_items == 40
    # Index layout: warm block then cold block, each ascending raw id.
    assert np.all(np.diff(s.item_ids[: s.num_warm_items]) > 0)
    assert np.all(np.diff(s.item_ids[s.num_warm_items :]) > 0)
    assert sorted(s.item_ids.tolist()) == sorted(np.unique(inter.item).tolist())
    # No cold item in train or warm test; cold test only cold items.
    assert not s.is_cold(s.train["item_id"]).any()
    assert not s.is_cold(s.warm_test["item_id"]).any()
    assert s.is_cold(s.cold_test["item_id"]).all()
    # Every warm item is seen in training.
    assert np.unique(s.train["item_id"]).size == s.num_warm_items
    # Parts are disjoint and together are all the (deduplicated) pairs.
    tr, wt, ct = _pairs(s.train), _pairs(s.warm_test), _pairs(s.cold_test)
    assert not (tr & wt) and not (tr & ct) and not (wt & ct)
    raw = set(
        zip(
            s.encode_users(inter.user).tolist(),
            s.encode_items(inter.item).tolist(),
            strict=True,
        )
    )
    assert tr | wt | ct == raw
    # The cold test holds every interaction of the cold items.
    cold_raw = set(s.item_ids[s.num_warm_items :].tolist())
    assert len(ct) == sum(int(i) in cold_raw for i in inter.item)
    # Warm test fraction per user: round(0.25 * n_warm) (<= n_warm - 1).
    n_warm = np.bincount(
        np.r_[s.train["user_id"], s.warm_test["user_id"]], minlength=s.num_users
    )
    n_test = np.bincount(s.warm_test["user_id"], minlength=s.num_users)
    expected = np.minimum(np.round(0.25 * n_warm), np.maximum(n_warm - 1, 0))
    moved = s.settings["warm_test_pairs_returned_to_train"]
    assert np.abs(n_test - expected).sum() == moved
    assert abs(n_test.sum() / n_warm.sum() - 0.25) < 0.03


def test_determinism_and_seed_changes_split():
    inter = synthetic_interactions(60, 40, per_user=10, seed=0)
    a = cold_item_split(inter, seed=7)
    b = cold_item_split(inter, seed=7)
    c = cold_item_split(inter, seed=8)
    for key in ("user_id", "item_id", "rating"):
        np.testing.assert_array_equal(a.train[key], b.train[key])
        np.testing.assert_array_equal(a.cold_test[key], b.cold_test[key])
        np.testing.assert_array_equal(a.warm_test[key], b.warm_test[key])
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    assert not np.array_equal(a.item_ids, c.item_ids)


def test_latest_holds_out_latest_and_duplicates_collapse():
    # user 1 sees 10, 11, 12, 13 in this order (13 twice: also at t0);
    # user 2 sees them in the reverse order; user 3 only sees 14.
    inter = Interactions(
        name="toy",
        user=np.array([1, 1, 1, 1, 1, 2, 2, 2, 2, 3]),
        item=np.array([10, 11, 12, 13, 13, 13, 12, 11, 10, 14]),
        rating=np.ones(10, np.float32),
        timestamp=np.array([1, 2, 3, 4, 0, 5, 6, 7, 8, 9]),
    )
    for seed in range(5):
        s = cold_item_split(
            inter, cold_fraction=0.2, test_fraction=0.25, seed=seed, warm_test="latest"
        )
        assert s.num_items == 5 and s.num_cold_items == 1
        n_pairs = sum(p["user_id"].size for p in (s.train, s.warm_test, s.cold_test))
        assert n_pairs == 9  # the repeated (1, 13) counts once
        cold_raw = int(s.item_ids[-1])
        for user, order in ((1, [10, 11, 12, 13]), (2, [13, 12, 11, 10])):
            warm_seq = [i for i in order if i != cold_raw]
            u = s.encode_users([user])[0]
            held = s.item_ids[s.warm_test["item_id"][s.warm_test["user_id"] == u]]
            assert held.tolist() == [warm_seq[-1]], (seed, user)
        u3 = s.encode_users([3])[0]
        assert u3 not in s.warm_test["user_id"]  # a single interaction stays in train


def test_errors():
    inter = synthetic_interactions(10, 8, per_user=3)
    with pytest.raises(ValueError, match="cold_fraction"):
        cold_item_split(inter, cold_fraction=0.0)
    with pytest.raises(ValueError, match="test_fraction"):
        cold_item_split(inter, test_fraction=1.0)
    with pytest.raises(ValueError, match="warm_test"):
        cold_item_split(inter, warm_test="oldest")
    no_ts = Interactions("x", inter.user, inter.item, inter.rating, None)
    with pytest.raises(DataError, match="timestamps"):
        cold_item_split(no_ts, warm_test="latest")
    with pytest.raises(DataError, match="rating >= 9"):
        cold_item_split(inter, min_rating=9)
    s = cold_item_split(inter)
    with pytest.raises(DataError, match="unknown raw item"):
        s.encode_items([12345])


def test_protocols_perfect_and_popularity():
    inter = synthetic_interactions(50, 30, per_user=8, seed=2)
    s = cold_item_split(inter, seed=0)
    truth = np.zeros((s.num_users, s.num_items))
    for part in (s.warm_test, s.cold_test):
        truth[part["user_id"], part["item_id"]] = 1.0

    def oracle(u, i):
        return truth[u, i]

    warm = evaluate_warm(s, oracle, ks=(5,))
    # Training items are excluded from the warm ranking: scoring them highest
    # changes nothing.
    seen = np.zeros((s.num_users, s.num_items))
    seen[s.train["user_id"], s.train["item_id"]] = 10.0
    assert evaluate_warm(s, lambda u, i: truth[u, i] + seen[u, i], ks=(5,)) == warm
    cold = evaluate_cold(s, oracle, ks=(5,))
    assert warm["ndcg@5"] == pytest.approx(1.0) and cold["ndcg@5"] == pytest.approx(1.0)
    # Constant scores lose every tie: all metrics 0 at k smaller than the pool.
    assert evaluate_cold(s, lambda u, i: np.zeros(len(i)), ks=(1,))["hr@1"] == 0.0
    pop = popularity_scores(s)
    assert pop[s.cold_items].sum() == 0
    assert pop.sum() == s.train["user_id"].size


def test_movielens_100k(shared_data):
    inter = load_interactions("movielens-100k", shared_data / "movielens-100k")
    s = cold_item_split(inter, cold_fraction=0.2, test_fraction=0.2, seed=0)
    info = s.summary()
    assert info["num_users"] == 943 and info["num_items"] == 1682
    assert info["num_cold_items"] == 336
    assert (
        info["train_pairs"] + info["warm_test_pairs"] + info["cold_test_pairs"]
        == 100_000
    )
