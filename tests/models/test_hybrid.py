"""CF + content hybrids: each combination rule against numpy on hand-made inputs,
cold items scored from content alone, and bad content rejected clearly."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrec.models.hybrid import (
    Blend,
    CountSwitch,
    cbf_profile,
    check_item_content,
    hybrid_initialized,
    hybrid_joint,
    hybrid_mapping,
    hybrid_regularized,
    hybrid_switching,
    hybrid_weighted,
    set_item_counts,
)
from tfrec.training.hybrid import content_penalty, joint_loss

NU, NI, D, K = 5, 6, 4, 3
USERS = np.array([0, 1, 4, 2, 3, 0], np.int64)
ITEMS = np.array([0, 5, 2, 3, 6, -1], np.int64)  # 6 and -1 are cold (OOV)
rng0 = np.random.default_rng(3)
CONTENT = rng0.random((6, D)).astype(np.float32)
BATCH = {"user_id": USERS, "item_id": ITEMS, "item_content": CONTENT}
BUILDERS = {
    "cbf_profile": lambda: cbf_profile(NU, D),
    "hybrid_weighted": lambda: hybrid_weighted(NU, NI, D, embedding_dim=K),
    "hybrid_switching": lambda: hybrid_switching(
        NU, NI, D, embedding_dim=K, threshold=2, item_counts=[0, 1, 2, 3, 4, 5]
    ),
    "hybrid_initialized": lambda: hybrid_initialized(NU, NI, D, embedding_dim=K),
    "hybrid_regularized": lambda: hybrid_regularized(NU, NI, D, embedding_dim=K),
    "hybrid_mapping": lambda: hybrid_mapping(
        NU, NI, D, embedding_dim=K, hidden_units=(5,)
    ),
    "hybrid_joint": lambda: hybrid_joint(NU, NI, D, embedding_dim=K),
}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _randomise(model, seed=1):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.trainable or "projection" in w.path:
            w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))


def _feed(model, batch=BATCH):
    return {k: batch[k] for k in model.input}


def _score(model, batch=BATCH):
    return np.asarray(model(_feed(model, batch), training=False)["score"])


def _w(model, name, i=0):
    return model.get_layer(name).get_weights()[i]


def _rows(table, ids):
    """IdEmbedding lookup in numpy: zeros for ids outside the table."""
    ok = (ids >= 0) & (ids < len(table))
    return np.where(ok[:, None], table[np.where(ok, ids, 0)], 0.0)


def _cf_numpy(model, users, items):
    p = _w(model, "mf_user_embedding")
    q = _rows(_w(model, "mf_item_embedding"), items)
    bu = _w(model, "mf_user_bias")[users, 0]
    bi = _rows(_w(model, "mf_item_bias"), items)[:, 0]
    return sigmoid(np.sum(p[users] * q, 1) + bu + bi + _w(model, "global_bias"))


def _cbf_numpy(model, users, content):
    a = _w(model, "cbf_user_profile")[users]
    g, c = model.get_layer("cbf_content_bias").get_weights()
    b = _w(model, "cbf_global_bias")
    return sigmoid(np.sum(a * content, 1) + content @ g[:, 0] + c[0] + b)


def _factor_numpy(model, users, vectors):
    p = _w(model, "user_factors")[users]
    bu = _w(model, "user_bias")[users, 0]
    return sigmoid(
        np.sum(p * vectors[:, :-1], 1) + vectors[:, -1] + bu + _w(model, "global_bias")
    )


# ------------------------------------------------------------- baselines


def test_cbf_profile_is_user_profile_dot_content_plus_content_prior():
    model = cbf_profile(NU, D)
    _randomise(model)
    want = _cbf_numpy(model, USERS, CONTENT)
    np.testing.assert_allclose(_score(model), want, rtol=1e-5)


# --------------------------------------------------------------- weighted


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_weighted_fixed_weight_is_convex_mix_of_cf_and_cbf(w):
    model = hybrid_weighted(NU, NI, D, embedding_dim=K, cf_weight=w)
    _randomise(model)
    cf = _cf_numpy(model, USERS, ITEMS)
    cbf = _cbf_numpy(model, USERS, CONTENT)
    np.testing.assert_allclose(_score(model), w * cf + (1 - w) * cbf, rtol=1e-5)
    assert not model.get_layer("blend").trainable_weights


def test_weighted_learned_weight_is_sigmoid_theta_and_trains():
    model = hybrid_weighted(
        NU, NI, D, embedding_dim=K, cf_weight=0.2, learn_weight=True
    )
    blend = model.get_layer("blend")
    np.testing.assert_allclose(float(blend.weight_value()), 0.2, rtol=1e-6)
    _randomise(model)
    theta = float(blend.theta.numpy())
    w = sigmoid(theta)
    cf = _cf_numpy(model, USERS, ITEMS)
    cbf = _cbf_numpy(model, USERS, CONTENT)
    np.testing.assert_allclose(_score(model), w * cf + (1 - w) * cbf, rtol=1e-5)
    # d mean(score) / d theta = w (1 - w) mean(cf - cbf)
    with tf.GradientTape() as tape:
        s = tf.reduce_mean(model(_feed(model))["score"])
    grad = tape.gradient(s, blend.theta)
    np.testing.assert_allclose(
        float(grad), w * (1 - w) * np.mean(cf - cbf), rtol=1e-4, atol=1e-7
    )


def test_blend_rejects_weights_outside_unit_interval():
    with pytest.raises(ValueError, match="cf_weight"):
        Blend(1.5)
    with pytest.raises(ValueError, match=r"\(0, 1\) when learn_weight"):
        Blend(1.0, learn_weight=True)


# -------------------------------------------------------------- switching


def test_switching_fires_cf_at_and_above_threshold_cbf_below():
    counts = np.array([0, 1, 2, 3, 9, 2], np.float32)
    model = hybrid_switching(
        NU, NI, D, embedding_dim=K, threshold=2, item_counts=counts
    )
    _randomise(model)
    users = np.array([0, 1, 2, 3, 4, 0, 1, 2], np.int64)
    items = np.array([0, 1, 2, 3, 4, 5, 6, -1], np.int64)
    content = np.random.default_rng(0).random((8, D)).astype(np.float32)
    batch = {"user_id": users, "item_id": items, "item_content": content}
    cf = _cf_numpy(model, users, items)
    cbf = _cbf_numpy(model, users, content)
    # counts 0, 1 -> CBF; exactly 2 (items 2, 5) and above -> CF; OOV -> count 0.
    use_cf = np.array([0, 0, 1, 1, 1, 1, 0, 0], bool)
    want = np.where(use_cf, cf, cbf)
    got = _score(model, batch)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert not np.allclose(cf, cbf)  # the branches really differ


def test_count_switch_layer_exact_threshold():
    out = CountSwitch(3.0)(
        [
            np.array([2.0, 3.0, 4.0], np.float32),
            np.array([1.0, 1.0, 1.0], np.float32),
            np.array([0.0, 0.0, 0.0], np.float32),
        ]
    )
    np.testing.assert_array_equal(np.asarray(out), [0.0, 1.0, 1.0])


def test_switching_counts_are_a_stored_table_not_an_input():
    model = hybrid_switching(NU, NI, D, embedding_dim=K)
    assert set(model.input) == {"user_id", "item_id", "item_content"}
    np.testing.assert_array_equal(_w(model, "item_counts"), np.zeros(NI))
    set_item_counts(model, np.arange(NI))
    np.testing.assert_array_equal(_w(model, "item_counts"), np.arange(NI))
    assert not model.get_layer("item_counts").trainable_weights
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        set_item_counts(model, np.arange(NI + 1))
    with pytest.raises(ValueError, match=">= 0"):
        set_item_counts(model, -np.ones(NI))
    with pytest.raises(ValueError, match="no ItemCounts"):
        set_item_counts(cbf_profile(NU, D), np.arange(NI))


# ------------------------------------------------ factor models (init/reg/map)


@pytest.mark.parametrize(
    "builder", ["hybrid_initialized", "hybrid_regularized", "hybrid_mapping"]
)
def test_warm_items_use_cf_factors_cold_items_use_content_map(builder):
    model = BUILDERS[builder]()
    _randomise(model)
    map_name = (
        "content_projection" if builder == "hybrid_initialized" else "content_map"
    )
    x = CONTENT
    if builder == "hybrid_mapping":  # MLP (relu) then linear
        k1, b1 = model.get_layer("content_map_mlp_dense_1").get_weights()
        x = np.maximum(x @ k1 + b1, 0.0)
    kernel, bias = model.get_layer(map_name).get_weights()
    mapped = x @ kernel + bias
    table = _w(model, "item_factors")
    warm = (ITEMS >= 0) & (ITEMS < NI)
    vectors = np.where(warm[:, None], _rows(table, ITEMS), mapped)
    np.testing.assert_allclose(
        _score(model), _factor_numpy(model, USERS, vectors), rtol=1e-5
    )


def test_content_penalty_matches_numpy():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 4)).astype(np.float32)
    f = rng.normal(size=(7, 4)).astype(np.float32)
    want = 0.3 * np.mean(np.sum((q - f) ** 2, axis=1))
    np.testing.assert_allclose(float(content_penalty(q, f, 0.3)), want, rtol=1e-6)
    assert float(content_penalty(q, q, 5.0)) == 0.0


def test_joint_loss_is_log_loss_plus_lambda_reconstruction_error():
    rng = np.random.default_rng(1)
    y = np.array([1, 0, 0, 1, 0], np.float32)
    p = np.array([0.9, 0.2, 0.6, 0.4, 0.01], np.float32)
    x = rng.random((5, 3)).astype(np.float32)
    r = rng.random((5, 3)).astype(np.float32)
    log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    want = log_loss + 0.7 * np.mean((x - r) ** 2)
    np.testing.assert_allclose(float(joint_loss(y, p, x, r, 0.7)), want, rtol=1e-5)


def test_joint_item_vector_is_encoder_plus_offset_and_cold_offset_is_zero():
    model = hybrid_joint(NU, NI, D, embedding_dim=K)
    np.testing.assert_array_equal(_w(model, "item_offset"), 0.0)  # zero start
    _randomise(model)
    kernel, bias = model.get_layer("content_encoder").get_weights()
    vectors = CONTENT @ kernel + bias + _rows(_w(model, "item_offset"), ITEMS)
    np.testing.assert_allclose(
        _score(model), _factor_numpy(model, USERS, vectors), rtol=1e-5
    )


# ----------------------------------------------------------- cold & bad input


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_cold_items_get_finite_content_driven_scores(name):
    model = BUILDERS[name]()
    _randomise(model)
    users = np.zeros(4, np.int64)
    cold = {
        "user_id": users,
        "item_id": np.array([NI, NI + 1, 10**9, -5], np.int64),
        "item_content": np.random.default_rng(5).random((4, D)).astype(np.float32),
    }
    scores = _score(model, cold)
    assert np.all(np.isfinite(scores))
    assert np.all((scores > 0) & (scores < 1))
    # same user, different content -> different scores: content drives cold items
    assert np.unique(np.round(scores, 6)).size == 4


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_wrong_content_width_is_a_clear_error(name):
    model = BUILDERS[name]()
    batch = dict(BATCH, item_content=np.zeros((6, D + 1), np.float32))
    # Keras' input check or ContentGuard: both name the input and the width.
    with pytest.raises(ValueError, match=r"item_content.*(\(batch, 4\)|\(None, 4\))"):
        model(_feed(model, batch))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_nan_content_is_a_clear_error(name):
    model = BUILDERS[name]()
    content = CONTENT.copy()
    content[2, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
        model(_feed(model, dict(BATCH, item_content=content)))


def test_check_item_content_messages():
    with pytest.raises(ValueError, match=r"shape \(batch, 4\).*\(3, 5\)"):
        check_item_content(np.zeros((3, 5)), 4)
    bad = np.zeros((4, 4))
    bad[1, 0] = np.inf
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"2 row\(s\), e.g. rows \[1, 3\]"):
        check_item_content(bad, 4)
    with pytest.raises(ValueError, match="numeric"):
        check_item_content(np.array([["a"]]), 1)
    out = check_item_content(np.ones((2, 4), np.float64), 4)
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: hybrid_weighted(0, NI, D), "num_users"),
        (lambda: hybrid_switching(NU, NI, 0), "content_dim"),
        (lambda: hybrid_mapping(NU, NI, D, embedding_dim=-1), "embedding_dim"),
        (lambda: hybrid_regularized(NU, NI, D, l2=-1.0), "l2"),
        (lambda: hybrid_switching(NU, NI, D, threshold=-1), "threshold"),
        (lambda: hybrid_joint(NU, NI, D, hidden_units=(0,)), "hidden_units"),
    ],
)
def test_bad_hyperparameters_raise_with_the_argument_name(call, match):
    with pytest.raises(ValueError, match=match):
        call()
