"""LazyAdam: sparse gradients move only their rows (lazy Adam moments); dense
gradients, and sparse ones that touch every row, follow Keras's Adam."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrec.training.lazy_adam import LazyAdam

RNG = np.random.default_rng(0)
ROWS, DIM = 6, 3
B1, B2, EPS, LR = 0.9, 0.999, 1e-7, 0.01


def _reference(table, steps):
    """numpy lazy Adam: per step (indices, values), duplicates summed."""
    w, m, v = table.copy(), np.zeros_like(table), np.zeros_like(table)
    for t, (idx, vals) in enumerate(steps, start=1):
        g = np.zeros_like(table)
        np.add.at(g, idx, vals)
        rows = np.unique(idx)
        m[rows] = B1 * m[rows] + (1 - B1) * g[rows]
        v[rows] = B2 * v[rows] + (1 - B2) * g[rows] ** 2
        alpha = LR * np.sqrt(1 - B2**t) / (1 - B1**t)
        w[rows] -= alpha * m[rows] / (np.sqrt(v[rows]) + EPS)
    return w, m, v


def _run(opt, table, steps, sparse=True):
    var = keras.Variable(table.copy())
    opt.build([var])
    for idx, vals in steps:
        if sparse:
            grad = tf.IndexedSlices(
                tf.constant(vals), tf.constant(idx), tf.constant([ROWS, DIM])
            )
        else:
            dense = np.zeros_like(table)
            np.add.at(dense, idx, vals)
            grad = tf.constant(dense)
        opt.apply([grad], [var])
    return var.numpy(), opt._momentums[0].numpy(), opt._velocities[0].numpy()


def _steps(n, rows_per_step):
    out = []
    for _ in range(n):
        idx = RNG.choice(ROWS, rows_per_step, replace=True).astype(np.int64)
        idx = np.concatenate([idx, idx[:1]])  # always a duplicate
        out.append((idx, RNG.normal(size=(len(idx), DIM)).astype(np.float32)))
    return out


def test_sparse_gradients_update_only_their_rows_as_lazy_adam():
    table = RNG.normal(size=(ROWS, DIM)).astype(np.float32)
    steps = _steps(4, 3)  # duplicates and untouched rows in each step
    got = _run(LazyAdam(LR, epsilon=EPS), table, steps)
    want = _reference(table, steps)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    untouched = np.setdiff1d(np.arange(ROWS), np.concatenate([s[0] for s in steps]))
    np.testing.assert_array_equal(got[0][untouched], table[untouched])
    # Dense Adam differs: it moves rows whose gradient was zero this step.
    dense = _run(keras.optimizers.Adam(LR, epsilon=EPS), table, steps)
    assert not np.allclose(dense[0], got[0])


def test_equals_dense_adam_when_every_row_is_in_every_step_and_for_dense_grads():
    table = RNG.normal(size=(ROWS, DIM)).astype(np.float32)
    steps = []
    for idx, vals in _steps(3, 4):
        steps.append((np.concatenate([np.arange(ROWS), idx]),
                      np.concatenate([RNG.normal(size=(ROWS, DIM)), vals]).astype(
                          np.float32)))
    lazy = _run(LazyAdam(LR, epsilon=EPS), table, steps)
    # Keras's Adam given the same gradient as a dense tensor (given the
    # IndexedSlices it squares duplicate rows before summing them).
    dense = _run(keras.optimizers.Adam(LR, epsilon=EPS), table, steps, sparse=False)
    for a, b in zip(lazy, dense, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    steps = _steps(3, 3)
    lazy = _run(LazyAdam(LR, epsilon=EPS), table, steps, sparse=False)
    dense = _run(keras.optimizers.Adam(LR, epsilon=EPS), table, steps, sparse=False)
    for a, b in zip(lazy, dense, strict=True):
        np.testing.assert_array_equal(a, b)


def test_embedding_model_trains_and_amsgrad_is_refused():
    inp = keras.Input((1,), dtype="int64")
    out = keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Embedding(50, 4)(inp)))
    model = keras.Model(inp, out)
    model.compile(LazyAdam(0.05), "mse")
    x = RNG.integers(0, 10, (256, 1))
    y = (x[:, 0] % 2).astype("float32")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.5 * first
    table = model.layers[1].embeddings.numpy()
    assert np.all(model.optimizer._momentums[0].numpy()[10:] == 0)  # rows never seen
    assert table.shape == (50, 4)
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)


def test_ncf_lazy_adam_setting_trains_through_the_runner(tmp_path):
    import json

    import tfrec
    from tfrec.recipes.ncf import NCFRecipe

    recipe = NCFRecipe()
    run = tmp_path / "run"
    tfrec.train("neumf", recipe.synthetic_data(0), out=run, lazy_adam=True,
                **{**recipe.test_config, "epochs": 3})
    assert json.loads((run / "config.json").read_text())["config"]["lazy_adam"] is True
    losses = [r["loss"] for r in json.loads((run / "history.json").read_text())["epochs"]]
    assert losses[-1] < losses[0]
    model = keras.saving.load_model(run / "model.keras")
    assert type(model.optimizer).__name__ == "LazyAdam"
