"""tf.data pipelines: fresh negatives per epoch, never a positive, resume-safe."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.pipelines import (
    NegativeSampler,
    SamplerEpochCallback,
    eval_dataset,
    explicit_dataset,
    implicit_dataset,
)

USERS = np.array([0, 0, 0, 1, 1, 2, 3, 3], np.int64)
ITEMS = np.array([0, 1, 2, 2, 3, 4, 0, 5], np.int64)
NUM_ITEMS = 8


def _collect(ds):
    us, its, ys = [], [], []
    for x, y in ds:
        us.append(x["user_id"].numpy())
        its.append(x["item_id"].numpy())
        ys.append(y["score"].numpy())
    return np.concatenate(us), np.concatenate(its), np.concatenate(ys)


def test_negatives_are_never_positives_and_counts_are_right():
    ds, sampler = implicit_dataset(
        USERS, ITEMS, NUM_ITEMS, num_negatives=4, batch_size=5
    )
    u, i, y = _collect(ds)
    assert len(u) == len(USERS) * 5 == len(sampler)
    assert y.sum() == len(USERS)
    positives = set(zip(USERS.tolist(), ITEMS.tolist(), strict=True))
    neg_pairs = [(a, b) for a, b, lab in zip(u, i, y, strict=True) if lab == 0]
    assert len(neg_pairs) == 4 * len(USERS)
    assert not positives & set(neg_pairs)
    # Each positive appears exactly once with label 1; each user keeps 4 negatives
    # per positive.
    pos_pairs = sorted((a, b) for a, b, lab in zip(u, i, y, strict=True) if lab == 1)
    assert pos_pairs == sorted(positives)
    per_user = np.bincount([a for a, _ in neg_pairs], minlength=4)
    np.testing.assert_array_equal(per_user, 4 * np.bincount(USERS))


def test_fresh_negatives_each_epoch_and_reproducible():
    ds, sampler = implicit_dataset(
        USERS, ITEMS, NUM_ITEMS, num_negatives=4, batch_size=64
    )
    first = _collect(ds)
    second = _collect(ds)  # the next pass is the next epoch
    assert not np.array_equal(first[1], second[1])
    # Epoch e is a function of (seed, e): a new sampler reproduces both epochs.
    again = NegativeSampler(USERS, ITEMS, NUM_ITEMS, 4, seed=0)
    for epoch, got in enumerate((first, second)):
        want = again.epoch_arrays(epoch)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_callback_keeps_sampler_in_step_with_fit():
    import keras

    ds, sampler = implicit_dataset(
        USERS, ITEMS, NUM_ITEMS, num_negatives=2, batch_size=64
    )
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sampler.epoch))

    import tfrec

    model = tfrec.create_model("gmf", num_users=4, num_items=NUM_ITEMS)
    model.compile("adam", {"score": "binary_crossentropy"})
    model.fit(
        ds,
        epochs=3,
        initial_epoch=1,
        verbose=0,
        callbacks=[SamplerEpochCallback(sampler), Record()],
    )
    # After epoch e ran, the sampler has moved past e: epoch e drew epoch e's data.
    assert seen == [(1, 2), (2, 3)]


def test_sampler_rejects_users_with_every_item_and_bad_ids():
    with pytest.raises(ValueError, match="every item"):
        NegativeSampler(np.array([0, 0]), np.array([0, 1]), 2, 1)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        NegativeSampler(np.array([0]), np.array([3]), 3, 1)
    with pytest.raises(ValueError, match="empty"):
        NegativeSampler(np.array([], np.int64), np.array([], np.int64), 3, 1)
    with pytest.raises(ValueError, match="batch_size"):
        implicit_dataset(USERS, ITEMS, NUM_ITEMS, batch_size=0)


def test_explicit_dataset_spec_and_bad_ratings():
    ds, source = explicit_dataset(
        USERS, ITEMS, np.arange(8, dtype=np.float32), batch_size=3
    )
    x, y = next(iter(ds))
    assert x["user_id"].dtype == tf.int64 and y["rating"].dtype == tf.float32
    assert x["user_id"].shape == (3,)
    # Epoch 0 was drawn above; every pass holds all rows, in an order that is a
    # function of (seed, epoch).
    order1 = np.concatenate([b[1]["rating"].numpy() for b in ds])
    assert sorted(order1.tolist()) == list(range(8))
    np.testing.assert_array_equal(order1, source.epoch_arrays(1)[2])
    with pytest.raises(ValueError, match="NaN"):
        explicit_dataset(USERS, ITEMS, np.full(8, np.nan, np.float32))
    with pytest.raises(ValueError, match="equal length"):
        explicit_dataset(USERS, ITEMS[:3], np.ones(8, np.float32))


def test_eval_dataset_keeps_order():
    ds = eval_dataset(USERS, ITEMS, batch_size=3)
    got = np.concatenate([b["item_id"].numpy() for b in ds])
    np.testing.assert_array_equal(got, ITEMS)
