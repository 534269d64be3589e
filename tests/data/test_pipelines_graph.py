"""Negatives drawn inside tf.data (GraphNegatives): each positive once per epoch,
negatives never positives, a function of (seed, epoch), the residual rate stated."""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.data.pipelines import (
    GraphNegatives,
    SamplerEpochCallback,
    graph_implicit_dataset,
)

RNG = np.random.default_rng(0)
NUM_USERS, NUM_ITEMS = 30, 25
_PAIRS = np.unique(
    RNG.integers(0, NUM_USERS, 400) * NUM_ITEMS + RNG.integers(0, NUM_ITEMS, 400)
)
USERS, ITEMS = _PAIRS // NUM_ITEMS, _PAIRS % NUM_ITEMS
ORDER = RNG.permutation(len(USERS))  # the pipeline must not rely on sorted input
USERS, ITEMS = USERS[ORDER], ITEMS[ORDER]


def _collect(ds):
    parts = [
        (x["user_id"].numpy(), x["item_id"].numpy(), y["score"].numpy()) for x, y in ds
    ]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3)), parts


def test_each_positive_once_negatives_never_positive_counts_per_user():
    ds, sampler = graph_implicit_dataset(
        USERS, ITEMS, NUM_ITEMS, num_negatives=4, batch_size=32, chunk_batches=2,
        rounds=60,
    )
    (u, i, y), parts = _collect(ds)
    assert len(u) == 5 * len(USERS) == len(sampler)
    # Every batch full but the last; as many as the cardinality says.
    sizes = [len(p[0]) for p in parts]
    assert len(sizes) == sampler.steps_per_epoch and set(sizes[:-1]) == {32}
    keys = u * NUM_ITEMS + i
    positives = np.sort(USERS * NUM_ITEMS + ITEMS)
    np.testing.assert_array_equal(np.sort(keys[y == 1]), positives)  # each once
    assert not np.isin(keys[y == 0], positives).any()
    np.testing.assert_array_equal(
        np.bincount(u[y == 0], minlength=NUM_USERS),
        4 * np.bincount(USERS, minlength=NUM_USERS),
    )
    assert y.dtype == np.float32 and u.dtype == np.int64
    # Examples are mixed: labels are not in blocks of positives then negatives.
    assert 0.1 < y[:32].mean() < 0.4


def test_epochs_are_fresh_and_a_function_of_seed_and_epoch():
    ds, sampler = graph_implicit_dataset(USERS, ITEMS, NUM_ITEMS, batch_size=64, seed=3)
    first, _ = _collect(ds)
    second, _ = _collect(ds)  # the next pass is the next epoch
    assert sampler.epoch == 2
    assert not np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], second[0])  # the order changes too
    again = GraphNegatives(USERS, ITEMS, NUM_ITEMS, 4, seed=3, batch_size=64)
    for epoch, got in enumerate((first, second)):
        for a, b in zip(got, again.epoch_arrays(epoch), strict=True):
            np.testing.assert_array_equal(a, b)
    other = GraphNegatives(USERS, ITEMS, NUM_ITEMS, 4, seed=4, batch_size=64)
    assert not np.array_equal(other.epoch_arrays(0)[1], first[1])


def test_callback_pins_the_epoch_fit_starts():
    import keras

    import tfrec

    ds, sampler = graph_implicit_dataset(USERS, ITEMS, NUM_ITEMS, batch_size=128)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sampler.epoch))

    model = tfrec.create_model("gmf", num_users=NUM_USERS, num_items=NUM_ITEMS)
    model.compile("adam", {"score": "binary_crossentropy"})
    model.fit(ds, epochs=3, initial_epoch=1, verbose=0,
              callbacks=[SamplerEpochCallback(sampler), Record()])
    # The pass of epoch e reads e and leaves e + 1 (the next epoch) behind.
    assert seen == [(1, 2), (2, 3)]


def test_residual_collision_rate_matches_what_is_drawn():
    # Dense users (half the catalogue) and no redraws: the stated rate is the
    # density-weighted mean, and the measured share of colliding negatives agrees.
    users = np.repeat(np.arange(20), 10)
    items = np.concatenate([RNG.choice(20, 10, replace=False) for _ in range(20)])
    rates = {}
    for rounds in (0, 2):
        sampler = GraphNegatives(users, items, 20, 8, batch_size=64, rounds=rounds)
        keys = np.sort(users * 20 + items)
        hits = []
        for epoch in range(20):
            u, i, y = sampler.epoch_arrays(epoch)
            hits.append(np.isin(u[y == 0] * 20 + i[y == 0], keys).mean())
        rates[rounds] = (np.mean(hits), sampler.residual_collision_rate())
    assert rates[0][1] == pytest.approx(0.5)
    assert rates[2][1] == pytest.approx(0.125)
    for measured, stated in rates.values():
        assert measured == pytest.approx(stated, rel=0.1)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="every item"):
        GraphNegatives(np.array([0, 0]), np.array([0, 1]), 2, 1)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        GraphNegatives(np.array([0]), np.array([3]), 3, 1)
    with pytest.raises(ValueError, match="empty"):
        GraphNegatives(np.array([], np.int64), np.array([], np.int64), 3, 1)
    with pytest.raises(ValueError, match="batch_size"):
        graph_implicit_dataset(USERS, ITEMS, NUM_ITEMS, batch_size=0)
    with pytest.raises(ValueError, match="rounds"):
        GraphNegatives(USERS, ITEMS, NUM_ITEMS, 4, rounds=-1)


def test_membership_check_is_exact_for_every_pair():
    # Power-law degrees: users with no positives, with one, and one with every
    # item but one (the longest binary search); every (user, item) pair asked.
    rng = np.random.default_rng(5)
    num_users, num_items = 40, 70
    degree = np.minimum((rng.pareto(0.8, num_users) * 3).astype(int), num_items - 1)
    degree[:3] = 0, 1, num_items - 1
    users = np.repeat(np.arange(num_users), degree)
    items = np.concatenate([rng.choice(num_items, d, replace=False) for d in degree])
    sampler = GraphNegatives(users, items, num_items, 2)
    qu, qi = np.divmod(np.arange(num_users * num_items), num_items)
    got = sampler._is_positive(qu, qi).numpy()
    want = np.isin(qu * num_items + qi, users * num_items + items)
    np.testing.assert_array_equal(got, want)
    assert want.sum() == degree.sum()


@pytest.mark.parametrize("slice_size", [1 << 22, 7])  # 7: pairs across slices
def test_bitset_and_search_agree_and_repeated_pairs_set_one_bit(
    slice_size, monkeypatch
):
    # Power-law users (a few heavy, many light), repeated pairs, unsorted input:
    # every split between bitset rows and binary search draws the same epoch,
    # and membership answers equal a numpy set lookup on every (user, item).
    from tfrec.data import pipelines
    from tfrec.data.synthetic import powerlaw_interactions

    monkeypatch.setattr(pipelines, "_SLICE", slice_size)
    users, items = powerlaw_interactions(6_000, 300, 120, seed=1)
    again = RNG.integers(0, len(users), 700)
    users, items = np.concatenate([users, users[again]]), np.concatenate(
        [items, items[again]]
    )
    order = RNG.permutation(len(users))
    users, items = users[order], items[order]
    keys = np.unique(users.astype(np.int64) * 120 + items)
    all_u, all_i = np.divmod(np.arange(300 * 120), 120)
    truth = np.isin(all_u * 120 + all_i, keys)
    epochs = {}
    for budget in (0.0, 0.02, 100.0):
        s = GraphNegatives(users, items, 120, 4, batch_size=256, bitset_budget=budget)
        got = s._is_positive(all_u, all_i).numpy()
        np.testing.assert_array_equal(got, truth)
        epochs[budget] = s.epoch_arrays(2)
        assert (s.bitset_users == 0) == (budget == 0)
    assert 0 < GraphNegatives(users, items, 120, 4, bitset_budget=0.02).bitset_users < 300
    for budget in (0.02, 100.0):
        for a, b in zip(epochs[0.0], epochs[budget], strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="bitset_budget"):
        GraphNegatives(users, items, 120, 4, bitset_budget=-1)


def test_grouped_negatives_same_examples_each_positive_with_its_own():
    plain = GraphNegatives(USERS, ITEMS, NUM_ITEMS, 4, batch_size=32, seed=5)
    grouped = GraphNegatives(USERS, ITEMS, NUM_ITEMS, 4, batch_size=32, seed=5,
                             group_negatives=True)
    (u, i, y), (gu, gi, gy) = plain.epoch_arrays(1), grouped.epoch_arrays(1)

    def rows(u, i, y):
        return np.sort((u * NUM_ITEMS + i) * 2 + y.astype(np.int64))

    np.testing.assert_array_equal(rows(u, i, y), rows(gu, gi, gy))  # same epoch
    groups_u, groups_y = gu.reshape(-1, 5), gy.reshape(-1, 5)
    np.testing.assert_array_equal(groups_y[:, 0], 1)  # a positive, then ...
    np.testing.assert_array_equal(groups_y[:, 1:], 0)  # ... its four negatives
    np.testing.assert_array_equal(groups_u, np.repeat(groups_u[:, :1], 5, axis=1))
    # The groups are shuffled: the positives do not come in sorted order.
    assert not np.all(np.diff(gu[::5] * NUM_ITEMS + gi[::5]) > 0)
    # The plain order mixes a positive's negatives across the epoch.
    assert not np.array_equal(u.reshape(-1, 5), np.repeat(u.reshape(-1, 5)[:, :1], 5, 1))
