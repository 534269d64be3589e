"""GRU4Rec's fast training step against the reference step (the tape over Keras
layers and variables), chunked inputs, the bucketed sampler and row updates."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.sessions import Sessions, session_parallel_batches
from tfrec.models.gru4rec import gru4rec_step
from tfrec.training.session import AdagradMomentum, GRU4RecTrainer, item_counts


def _sessions(n_sessions=60, n_items=15, seed=0):
    rng = np.random.default_rng(seed)
    sess, items, times = [], [], []
    t = 0.0
    for s in range(n_sessions):
        start = int(rng.integers(1, n_items + 1))
        for k in range(int(rng.integers(2, 7))):
            sess.append(s)
            # Skewed popularity, so samples repeat and targets collide with them.
            items.append(int((start + k * k) % n_items + 1) if k % 3 else 1)
            times.append(t)
            t += 1.0
    return Sessions.from_events(sess, items, times)


def _step_data(batches, t):
    return {
        "item_id": batches.inputs[t],
        "target": batches.targets[t],
        "reset": batches.reset[t],
        "valid": batches.valid[t],
    }


def _trainer(s, *, fast, optimizer=None, arch=None, **kwargs):
    keras.utils.set_random_seed(7)
    step = gru4rec_step(s.num_items, **(arch or {"layers": (6,)}))
    tr = GRU4RecTrainer(step, item_counts(s), batch_size=5, fast=fast, **kwargs)
    tr.compile(optimizer=optimizer() if optimizer else AdagradMomentum(0.1, 0.3))
    return tr


CASES = {
    "xe-logq-samples": ({}, {"loss": "cross-entropy", "n_sample": 12, "logq": 1.0}),
    "xe-no-samples": ({}, {"loss": "cross-entropy", "n_sample": 0, "logq": 0.5}),
    "bpr-max": ({}, {"loss": "bpr-max", "n_sample": 9, "bpreg": 0.5, "elu_param": 1}),
    "top1-max": ({}, {"loss": "top1-max", "n_sample": 9}),
    "two-layers-dropout": (
        {"layers": (5, 4), "dropout_hidden": 0.3, "dropout_embed": 0.2},
        {"n_sample": 12, "logq": 1.0},
    ),
    "own-embedding": (
        {"layers": (6,), "constrained_embedding": False, "embedding_dim": 3},
        {"n_sample": 12, "logq": 1.0},
    ),
    "one-hot": (
        {"layers": (6,), "constrained_embedding": False, "embedding_dim": 0},
        {"loss": "bpr-max", "n_sample": 7},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_step_equals_the_reference_step(case):
    arch, settings = CASES[case]
    s = _sessions()
    b = session_parallel_batches(s, 5)
    trainers = [_trainer(s, fast=f, arch=arch, **settings) for f in (False, True)]
    for t in range(4):
        losses = [float(tr.train_step(_step_data(b, t))["loss"]) for tr in trainers]
        assert losses[1] == pytest.approx(losses[0], rel=1e-5, abs=1e-6)
    ref, fast = trainers
    for w_ref, w_fast in zip(ref.weights, fast.weights, strict=True):
        np.testing.assert_allclose(w_fast.numpy(), w_ref.numpy(), atol=2e-5)
    for v_ref, v_fast in zip(
        ref.optimizer.variables, fast.optimizer.variables, strict=True
    ):
        np.testing.assert_allclose(v_fast.numpy(), v_ref.numpy(), atol=2e-5)
    # Training moved the weights (the comparison is not between two no-ops).
    keras.utils.set_random_seed(7)
    fresh = gru4rec_step(s.num_items, **(arch or {"layers": (6,)}))
    moved = [
        np.abs(a.numpy() - w).max()
        for a, w in zip(fast.step_model.weights, fresh.get_weights(), strict=True)
    ]
    assert min(moved) > 1e-4


def test_fast_step_with_a_keras_optimizer_equals_the_reference():
    s = _sessions()
    b = session_parallel_batches(s, 5)

    def optimizer():
        return keras.optimizers.SGD(0.05, momentum=0.5)

    trainers = [
        _trainer(s, fast=f, optimizer=optimizer, n_sample=12, logq=1.0)
        for f in (False, True)
    ]
    for t in range(4):
        for tr in trainers:
            tr.train_step(_step_data(b, t))
    for w_ref, w_fast in zip(trainers[0].weights, trainers[1].weights, strict=True):
        np.testing.assert_allclose(w_fast.numpy(), w_ref.numpy(), atol=2e-5)


def test_unscored_bias_rows_keep_their_momentum():
    # With the shared table, a clicked item's embedding row is read and
    # updated, but its bias is not scored, so its bias (and momentum) stay put.
    s = _sessions()
    b = session_parallel_batches(s, 5)
    tr = _trainer(s, fast=True, n_sample=0, logq=0.0)
    tr.train_step(_step_data(b, 0))
    bias = tr.out_table.bias.numpy().copy()
    batch = _step_data(b, 1)
    scored = set(batch["target"].tolist())
    only_clicked = sorted(set(batch["item_id"].tolist()) - scored - {0})
    assert only_clicked, "the case needs an item clicked but not scored"
    tr.train_step(batch)
    after = tr.out_table.bias.numpy()
    np.testing.assert_array_equal(after[only_clicked], bias[only_clicked])
    assert np.abs(after[sorted(scored - {0})] - bias[sorted(scored - {0})]).max() > 0


def test_chunked_inputs_equal_step_by_step_and_skip_padding():
    s = _sessions()
    b = session_parallel_batches(s, 5)
    n = b.num_steps
    k = 4
    pad = -n % k
    assert pad, "the case needs a padded last chunk"

    def chunks(x):
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
        return tf.constant(x.reshape(-1, k, x.shape[1]))

    one = _trainer(s, fast=True, n_sample=12, logq=1.0)
    for t in range(n):
        one.train_step(_step_data(b, t))
    many = _trainer(s, fast=True, n_sample=12, logq=1.0)
    data = {
        "item_id": chunks(b.inputs),
        "target": chunks(b.targets),
        "reset": chunks(b.reset),
        "valid": chunks(b.valid),
    }
    step = tf.function(many.train_step)
    for c in range(data["item_id"].shape[0]):
        step({key: v[c] for key, v in data.items()})
    assert int(many.sample_step.numpy()) == n == int(one.sample_step.numpy())
    for w1, w2 in zip(one.weights, many.weights, strict=True):
        np.testing.assert_allclose(w2.numpy(), w1.numpy(), atol=1e-4)
    assert float(many.loss_tracker.result()) == pytest.approx(
        float(one.loss_tracker.result()), rel=1e-4
    )


def test_bucketed_sampler_equals_searchsorted():
    s = _sessions()
    counts = item_counts(s)
    counts[3] = 5000.0  # one item spans many buckets, others share one
    tr = GRU4RecTrainer(
        gru4rec_step(s.num_items, layers=(4,)), counts, batch_size=2, n_sample=8
    )
    m = tr._BUCKETS
    edges = np.arange(0, m, 97, dtype=np.float64) / m
    u = np.concatenate(
        [
            np.random.default_rng(0).uniform(size=20000),
            edges,
            np.nextafter(edges.astype(np.float32), np.float32(0)),
            tr._cdf.numpy(),  # exactly on a CDF step
            np.nextafter(tr._cdf.numpy(), np.float32(0)),
        ]
    ).astype(np.float32)
    u = u[(u >= 0) & (u < 1)]
    got = tr._inverse_cdf(tf.constant(u)).numpy()
    want = np.searchsorted(tr._cdf.numpy(), u, side="right")
    np.testing.assert_array_equal(got, want)
    draws = np.concatenate([tr._sample().numpy() for _ in range(20)])
    assert draws.min() >= 1 and draws.max() <= s.num_items


@pytest.mark.parametrize("nesterov", [False, True])
def test_apply_rows_equals_the_indexed_slices_update(nesterov):
    rows = tf.constant([4, 0, 2], tf.int64)
    grad = tf.constant(np.arange(6, dtype=np.float32).reshape(3, 2) - 2.0)
    touched = tf.constant([True, False, True])
    init = np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2)
    out = []
    for mode in ("slices", "rows"):
        var = keras.Variable(init.copy())
        opt = AdagradMomentum(0.3, momentum=0.4, nesterov=nesterov)
        opt.build([var])
        for _ in range(3):
            if mode == "slices":  # the untouched row is simply absent
                keep = tf.boolean_mask(rows, touched)
                opt.apply([tf.IndexedSlices(tf.boolean_mask(grad, touched), keep)], [var])
            else:
                opt.apply_rows(var, rows, grad, touched=touched)
                opt.iterations.assign_add(1)
        out.append(var.numpy())
    np.testing.assert_allclose(out[1], out[0], rtol=1e-6)
    np.testing.assert_array_equal(out[1][[0, 1, 3]], init[[0, 1, 3]])
