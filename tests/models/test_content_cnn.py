"""Tests for tfrec.models.content_cnn (van den Oord et al. 2013)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfrec.data.coldstart import cold_item_split, evaluate_cold, synthetic_content
from tfrec.models.content_cnn import (
    GlobalL2Pooling1D,
    content_cnn,
    content_cnn_ranker,
    movielens_token_content,
    set_user_factors,
)
from tfrec.recipes.content_cnn import train_content_cnn, wmf_als

TINY = dict(filters=(3, 2), kernel_size=2, pool_sizes=(2,), hidden_units=(4,))


def _relu(x):
    return np.maximum(x, 0.0)


def _conv1d(x, kernel, bias):
    """Valid 1-D convolution over time: x [T, C_in], kernel [w, C_in, C_out]."""
    w = kernel.shape[0]
    return np.stack(
        [np.einsum("wc,wco->o", x[t : t + w], kernel) for t in range(len(x) - w + 1)]
    ) + bias


def _numpy_cnn(model, x):
    k1, b1 = model.get_layer("conv_1").get_weights()
    k2, b2 = model.get_layer("conv_2").get_weights()
    d1, c1 = model.get_layer("dense_1").get_weights()
    d2, c2 = model.get_layer("item_factors").get_weights()
    out = []
    for item in x:
        h = _relu(_conv1d(item, k1, b1))
        t = len(h) // 2
        h = h[: 2 * t].reshape(t, 2, -1).max(axis=1)  # max-pool 2 over time
        h = _relu(_conv1d(h, k2, b2))
        pooled = np.concatenate(
            [h.mean(0), h.max(0), np.sqrt((h**2).sum(0) + 1e-12)]
        )
        out.append(_relu(pooled @ d1 + c1) @ d2 + c2)
    return np.stack(out)


def test_cnn_matches_numpy_forward(rng):
    model = content_cnn(9, 3, embedding_dim=2, **TINY)
    x = rng.normal(size=(4, 9, 3)).astype(np.float32)
    got = np.asarray(model({"content": x})["item_factors"])
    assert got.shape == (4, 2)
    np.testing.assert_allclose(got, _numpy_cnn(model, x), atol=1e-5)
    # Temporal pooling: [batch, channels * 3] (mean, max, L2).
    pooled = keras.Model(model.input, model.get_layer("temporal_pool").output)
    assert pooled({"content": x}).shape == (4, 6)


def test_l2_pooling_over_time(rng):
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    got = np.asarray(GlobalL2Pooling1D()(x))
    np.testing.assert_allclose(got, np.sqrt((x**2).sum(axis=1) + 1e-12), rtol=1e-6)
    # Pooling over time makes the output invariant to the order of time steps
    # when the convolutions see one step at a time.
    model = content_cnn(6, 3, embedding_dim=2, filters=(4,), kernel_size=1,
                        pool_sizes=(), hidden_units=(3,))
    x = rng.normal(size=(1, 6, 3)).astype(np.float32)
    a = np.asarray(model({"content": x})["item_factors"])
    b = np.asarray(model({"content": x[:, ::-1]})["item_factors"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_builder_errors():
    with pytest.raises(ValueError, match="too short"):
        content_cnn(5, 3, filters=(4, 4), kernel_size=3, pool_sizes=(2,))
    with pytest.raises(ValueError, match="pooling"):
        content_cnn(9, 3, pooling=("mean", "median"), **TINY)
    with pytest.raises(ValueError, match="pool_sizes"):
        content_cnn(40, 3, filters=(4,), pool_sizes=(2, 2))
    with pytest.raises(ValueError, match="input_dim"):
        content_cnn(9, 0, **TINY)


def test_ranker_scores_user_factors_dot_cnn(rng):
    ranker = content_cnn_ranker(5, 9, 3, embedding_dim=2, **TINY)
    users = rng.normal(size=(5, 2)).astype(np.float32)
    set_user_factors(ranker, users)
    x = rng.normal(size=(3, 9, 3)).astype(np.float32)
    ids = np.array([0, 4, 7])  # 7 is an unknown user: zero factors
    got = np.asarray(ranker({"user_id": ids, "content": x})["score"])
    factors = _numpy_cnn(ranker.get_layer("item_tower"), x)
    ref = (users[np.minimum(ids, 4)] * factors).sum(1) * (ids < 5)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.all(np.isfinite(got))
    with pytest.raises(ValueError, match=r"shape \(5, 2\)"):
        set_user_factors(ranker, np.zeros((4, 2)))


def test_wmf_als_solves_its_normal_equations(rng):
    users = rng.integers(0, 12, 60)
    items = rng.integers(0, 9, 60)
    alpha, reg = 5.0, 0.5
    x, y = wmf_als(users, items, 12, 9, factors=3, alpha=alpha, reg=reg,
                   iterations=4)
    p = np.zeros((12, 9))
    p[users, items] = 1.0
    c = 1.0 + alpha * p
    # The last half-step solved for Y exactly: the gradient in Y is zero.
    resid = c * (p - x.astype(np.float64) @ y.T.astype(np.float64))
    grad_y = -resid.T @ x + reg * y
    np.testing.assert_allclose(grad_y, 0.0, atol=1e-4)
    # And the fit explains the interactions better than chance.
    pred = x @ y.T
    assert pred[p == 1].mean() > pred[p == 0].mean() + 0.3


def test_train_errors(rng):
    model = content_cnn(9, 3, embedding_dim=2, **TINY)
    with pytest.raises(ValueError, match=r"shape \[n, 9, 3\]"):
        train_content_cnn(model, np.zeros((4, 8, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"shape \[4, 2\]"):
        train_content_cnn(model, np.zeros((4, 9, 3)), np.zeros((4, 3)))
    bad = np.zeros((4, 9, 3))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_content_cnn(model, bad, np.zeros((4, 2)))


def test_cold_start_from_synthetic_spectrograms_beats_random():
    data = synthetic_content(150, 120, per_user=12, frames=12, bands=8, seed=1)
    split = cold_item_split(data.interactions, cold_fraction=0.2, seed=0)
    tr, n_warm = split.train, split.num_warm_items
    x, y = wmf_als(tr["user_id"], tr["item_id"], split.num_users, n_warm,
                   factors=6, alpha=5.0, reg=0.1, iterations=8)
    content = data.spectrograms[split.item_ids - 1]
    keras.utils.set_random_seed(0)
    cnn = content_cnn(12, 8, embedding_dim=6, filters=(16,), kernel_size=3,
                      pool_sizes=(), hidden_units=(32,))
    hist = train_content_cnn(cnn, content[:n_warm], y, epochs=40, batch_size=16,
                             learning_rate=3e-3)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    y_hat = np.asarray(cnn.predict({"content": content}, verbose=0)["item_factors"])
    cold = evaluate_cold(split, lambda u, i: (x[u] * y_hat[i]).sum(1), ks=(10,))
    rng = np.random.default_rng(0)
    rand = evaluate_cold(split, lambda u, i: rng.random(len(i)), ks=(10,))
    assert cold["ndcg@10"] > rand["ndcg@10"] + 0.2


def test_movielens_token_content(shared_data):
    from tfrec.data.content import movielens_items

    items = movielens_items("movielens-100k", shared_data / "movielens-100k")
    content, vocab = movielens_token_content(items, [1, 2], max_tokens=16, min_df=3)
    assert content.shape == (2, 16, len(vocab))
    # Every row is one-hot or all zero (padding after the sequence).
    sums = content.sum(axis=2)
    assert set(np.unique(sums)) <= {0.0, 1.0}
    assert np.all(np.diff(sums, axis=1) <= 0)  # no token after a padding row
    # Item 1 is Toy Story (1995): Animation|Children's|Comedy, then 1990s.
    tokens = [vocab[j] for j in content[0].argmax(axis=1)[: int(sums[0].sum())]]
    assert tokens[:4] == [
        "genre:Animation",
        "genre:Children's",
        "genre:Comedy",
        "decade:1990s",
    ]
    # "story" is in >= 3 titles; "toy" is rarer and left out (min_df=3).
    assert tokens[4:] == ["story"] and "toy" not in vocab
