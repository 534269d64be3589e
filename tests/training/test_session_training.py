"""GRU4Rec training: losses and optimiser against numpy, state reset, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfrec
from tfrec.data.sessions import Sessions, session_parallel_batches
from tfrec.models.gru4rec import gru4rec_step
from tfrec.recipes.base import recipe_for
from tfrec.training.session import (
    AdagradMomentum,
    GRU4RecTrainer,
    bpr_max_loss,
    cross_entropy_loss,
    item_counts,
    top1_max_loss,
)

# 3 rows (row 2 invalid), 3 in-batch columns + 2 sampled ones (column 2 invalid).
SCORES = np.array(
    [
        [0.5, -1.0, 0.3, 2.0, 0.1],
        [1.5, 0.2, -0.7, 0.0, -0.4],
        [9.0, 9.0, 9.0, 9.0, 9.0],
    ],
    np.float32,
)
ROW = np.array([1, 1, 0], np.float32)
COL = np.array([1, 1, 0, 1, 1], np.float32)


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _neg_softmax(row, b, cols):
    idx = [j for j in range(len(row)) if j != b and COL[j] > 0]
    e = np.exp(row[idx] - row[idx].max())
    return idx, e / e.sum()


def test_cross_entropy_with_logq_matches_numpy():
    log_pop = np.log(np.array([3.0, 1.0, 2.0, 5.0**0.5, 2.0**0.5], np.float32))
    got = cross_entropy_loss(SCORES, ROW, COL, log_pop, logq=1.0).numpy()
    adj = SCORES - log_pop
    ref = 0.0
    for b in range(2):
        idx = [j for j in range(5) if COL[j] > 0]
        ref -= adj[b, b] - np.log(np.exp(adj[b, idx]).sum())
    assert got == pytest.approx(ref, rel=1e-5)
    plain = cross_entropy_loss(SCORES, ROW, COL).numpy()
    ref_plain = -sum(
        SCORES[b, b] - np.log(np.exp(SCORES[b, [0, 1, 3, 4]]).sum()) for b in range(2)
    )
    assert plain == pytest.approx(ref_plain, rel=1e-5)


@pytest.mark.parametrize("elu", [0.0, 1.0])
def test_bpr_max_with_regularisation_matches_numpy(elu):
    x = SCORES.copy()
    if elu:
        x = np.where(x >= 0, x, elu * (np.exp(x) - 1))
    ref = 0.0
    for b in range(2):
        idx, s = _neg_softmax(x[b], b, COL)
        ref += -np.log((_sig(x[b, b] - x[b, idx]) * s).sum() + 1e-24)
        ref += 0.7 * (x[b, idx] ** 2 * s).sum()
    got = bpr_max_loss(SCORES, ROW, COL, bpreg=0.7, elu_param=elu).numpy()
    assert got == pytest.approx(ref, rel=1e-5)


def test_top1_max_matches_numpy():
    ref = 0.0
    for b in range(2):
        idx, s = _neg_softmax(SCORES[b], b, COL)
        o = SCORES[b, idx]
        ref += (s * (_sig(o - SCORES[b, b]) + _sig(o**2))).sum()
    assert top1_max_loss(SCORES, ROW, COL).numpy() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_adagrad_momentum_dense_and_sparse(nesterov):
    lr, mu, eps = 0.1, 0.5, 1e-6
    dense = tf.Variable(np.ones((2,), np.float32))
    table = tf.Variable(np.arange(8, dtype=np.float32).reshape(4, 2))
    import keras

    dv, tv = keras.Variable(dense), keras.Variable(table)
    opt = AdagradMomentum(lr, momentum=mu, epsilon=eps, nesterov=nesterov)
    g_dense = [np.array([0.5, -1.0], np.float32), np.array([0.2, 0.1], np.float32)]
    # Row 1 twice in step 1 (summed), rows 1 and 3 in step 2; rows 0, 2 untouched.
    g_rows = [([1, 1], [[1.0, 2.0], [0.5, 0.5]]), ([3, 1], [[1.0, 1.0], [-1.0, 0.0]])]
    ref_d = np.ones(2)
    acc_d, v_d = np.zeros(2), np.zeros(2)
    ref_t = np.arange(8, dtype=np.float64).reshape(4, 2)
    acc_t, v_t = np.zeros((4, 2)), np.zeros((4, 2))
    for gd, (rows, vals) in zip(g_dense, g_rows, strict=True):
        sl = tf.IndexedSlices(
            tf.constant(vals, tf.float32), tf.constant(rows, tf.int64), [4, 2]
        )
        opt.apply([tf.constant(gd), sl], [dv, tv])
        acc_d += gd**2
        step = lr * gd / np.sqrt(acc_d + eps)
        v_d = mu * v_d - step
        ref_d += mu * v_d - step if nesterov else v_d
        g = np.zeros((4, 2))
        np.add.at(g, rows, np.array(vals))
        u = np.unique(rows)
        acc_t[u] += g[u] ** 2
        step = lr * g[u] / np.sqrt(acc_t[u] + eps)
        v_t[u] = mu * v_t[u] - step
        ref_t[u] += mu * v_t[u] - step if nesterov else v_t[u]
    np.testing.assert_allclose(dv.numpy(), ref_d, rtol=1e-5)
    np.testing.assert_allclose(tv.numpy(), ref_t, rtol=1e-5)
    np.testing.assert_array_equal(tv.numpy()[[0, 2]], [[0, 1], [4, 5]])


def _tiny_sessions(n_sessions=40, n_items=12, seed=0):
    rng = np.random.default_rng(seed)
    sess, items, times = [], [], []
    t = 0.0
    for s in range(n_sessions):
        start = int(rng.integers(1, n_items + 1))
        for k in range(int(rng.integers(2, 6))):  # a "next item" pattern to learn
            sess.append(s)
            items.append((start + k - 1) % n_items + 1)
            times.append(t)
            t += 1.0
    return Sessions.from_events(sess, items, times)


def test_trainer_resets_state_and_samples_valid_items():
    s = _tiny_sessions()
    step = gru4rec_step(s.num_items, layers=(4,))
    tr = GRU4RecTrainer(
        step, item_counts(s), batch_size=3, n_sample=5, sample_alpha=0.5
    )
    tr.compile(optimizer=AdagradMomentum(1e-30))  # weights stay put
    b = session_parallel_batches(s, 3)
    batch = {
        "item_id": b.inputs[0],
        "target": b.targets[0],
        "reset": np.array([1, 0, 1], np.float32),
        "valid": b.valid[0],
    }
    expected = step({"item_id": b.inputs[0], "hidden_state": np.zeros((3, 4))})
    expected = expected["new_hidden_state"].numpy()
    tr.hidden.assign(np.full((3, 4), 0.9, np.float32))
    tr.train_step(batch)
    got = tr.hidden.numpy()
    # Reset slots start from zero; slot 1 continues from its state 0.9.
    np.testing.assert_allclose(got[[0, 2]], expected[[0, 2]], atol=1e-6)
    assert np.abs(got[1] - expected[1]).max() > 1e-3
    samples = np.concatenate([tr._sample().numpy() for _ in range(50)])
    assert samples.min() >= 1 and samples.max() <= s.num_items
    # Popular items are drawn more often (alpha > 0).
    counts = item_counts(s)
    top, low = np.argmax(counts[1:]) + 1, np.argmin(counts[1:]) + 1
    assert (samples == top).sum() >= (samples == low).sum()


def test_item_counts_and_bad_trainer_args():
    s = _tiny_sessions()
    c = item_counts(s)
    assert c[0] == 0 and c.sum() == s.num_events
    step = gru4rec_step(s.num_items, layers=(4,))
    with pytest.raises(ValueError, match="loss"):
        GRU4RecTrainer(step, c, batch_size=2, loss="bpr")
    with pytest.raises(ValueError, match="item_counts"):
        GRU4RecTrainer(step, c[:-1], batch_size=2)


def _fit(data, seed, **settings):
    """Three epochs of the recipe's trainer (the Keras-native route)."""
    prepared = tfrec.prepare("gru4rec", data, seed=seed, **settings)
    history = prepared.trainer.fit(
        prepared.dataset,
        epochs=3,
        callbacks=prepared.plan.callbacks,
        verbose=0,
        shuffle=False,
    )
    return prepared, history.history["loss"]


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max", "top1-max"])
def test_training_lowers_the_loss_and_is_seeded(loss):
    data = recipe_for("gru4rec").synthetic_data(0)
    settings = dict(
        layers=(8,),
        batch_size=4,
        loss=loss,
        n_sample=6,
        learning_rate=0.1,
        momentum=0.1,
        logq=1.0 if loss == "cross-entropy" else 0.0,
        bpreg=0.5,
        elu_param=0.5 if loss == "bpr-max" else 0.0,
        dropout_hidden=0.1,
    )
    prepared, losses = _fit(data, 3, **settings)
    assert losses[-1] < losses[0]
    # One epoch is every (click, next click) pair of the training sessions once.
    valid = sum(float(b["valid"].numpy().sum()) for b in prepared.dataset)
    assert valid == int((data.train.lengths - 1).sum())
    if loss == "cross-entropy":  # seeded: a second run repeats losses and weights
        again, losses2 = _fit(data, 3, **settings)
        np.testing.assert_allclose(losses2, losses, rtol=1e-5)
        step, step2 = (p.plan.models["gru4rec_step"] for p in (prepared, again))
        for w, w2 in zip(step.get_weights(), step2.get_weights(), strict=True):
            np.testing.assert_allclose(w2, w, atol=1e-6)
        _, other = _fit(data, 4, **settings)  # another seed, another run
        assert not np.allclose(other, losses)
