"""YouTube DNN: history averaging, losses and serving outputs against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrec.models.youtube import (
    MaskedHistoryMean,
    TimeSinceFeatures,
    item_table,
    youtube_candidate,
    youtube_ranking,
)
from tfrec.recipes.youtube import (
    SampledSoftmaxTask,
    sampled_softmax_loss,
    weighted_logistic_loss,
)

KW = {"num_items": 11, "embedding_dim": 4, "hidden_units": (8, 6), "num_genres": 3}


def _query(model, hist, n=None):
    n = len(hist) if n is None else n
    x = {
        "item_history": np.asarray(hist, np.int64),
        "user_genres": np.full((n, 3), 0.25, np.float32),
        "user_gender": np.zeros(n, np.int64),
        "user_age": np.ones(n, np.int64),
        "user_occupation": np.full(n, 2, np.int64),
        "example_age": np.zeros(n, np.float32),
    }
    return np.asarray(model.get_layer("query_tower")(x)["query_embedding"])


def test_masked_history_mean_matches_numpy():
    vectors = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    ids = np.array([[-1, 0, 2, 9], [-1, -1, -1, -1]])
    got = np.asarray(MaskedHistoryMean(5)([vectors, ids]))
    np.testing.assert_allclose(got[0], vectors[0, 1:3].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(got[1], np.zeros(3))  # empty history -> zeros


def test_padding_side_and_length_do_not_change_the_query_embedding():
    model = youtube_candidate(**KW)
    unpadded = _query(model, [[3, 5, 7]])
    left = _query(model, [[-1, -1, 3, 5, 7]])
    right = _query(model, [[3, 5, 7, -1, -1]])
    unknown = _query(model, [[3, 5, 7, 11, 10**9]])  # ids >= num_items ignored
    for other in (left, right, unknown):
        np.testing.assert_allclose(other, unpadded, atol=1e-6)
    assert not np.allclose(_query(model, [[3, 5, -1]]), unpadded)


def test_empty_history_is_defined_and_equals_zero_watch_vector():
    model = youtube_candidate(**KW)
    empty_short = _query(model, [[-1]])
    empty_long = _query(model, [[-1] * 7])
    zero_width = _query(model, np.zeros((1, 0), np.int64))
    assert np.all(np.isfinite(empty_short))
    np.testing.assert_allclose(empty_long, empty_short, atol=1e-7)
    np.testing.assert_allclose(zero_width, empty_short, atol=1e-7)
    # Same as zeroing the averaged watch vector: feed the tower by hand.
    watch = model.get_layer("query_tower").get_layer("watch_mean")
    assert np.allclose(
        np.asarray(watch([np.ones((1, 2, 4), np.float32), np.array([[-1, -1]])])), 0
    )


def test_candidate_score_is_query_dot_item_embedding():
    model = youtube_candidate(**KW)
    rng = np.random.default_rng(0)
    from tfrec.registry import model_info

    x = model_info("youtube_candidate").example_inputs(KW, 6, rng)
    out = {k: np.asarray(v) for k, v in model(x).items()}
    table = item_table(model)
    np.testing.assert_allclose(out["item_embedding"], table[x["item_id"]], atol=1e-7)
    np.testing.assert_allclose(
        out["score"], (out["query_embedding"] * table[x["item_id"]]).sum(1), rtol=1e-5,
        atol=1e-6,
    )
    assert out["query_embedding"].shape == (6, 6)


def _np_sampled_softmax(u, table, labels, sampled, q_true, q_sampled):
    logits_true = (u * table[labels]).sum(1) - np.log(q_true[:, 0])
    logits_s = u @ table[sampled].T - np.log(q_sampled)[None, :]
    logits_s = np.where(sampled[None, :] == labels[:, None], -np.inf, logits_s)
    logits = np.concatenate([logits_true[:, None], logits_s], axis=1)
    m = logits.max(1, keepdims=True)
    return -(logits[:, 0] - (m[:, 0] + np.log(np.exp(logits - m).sum(1))))


def test_sampled_softmax_loss_matches_numpy_with_a_fixed_sample():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(4, 3)).astype(np.float32)
    table = rng.normal(size=(9, 3)).astype(np.float32)
    labels = np.array([0, 3, 5, 8])
    sampled = np.array([1, 3, 6])  # 3 collides with the label of row 1
    q_true = np.array([[0.5], [0.2], [0.1], [0.3]], np.float32)
    q_sampled = np.array([0.4, 0.2, 0.25], np.float32)
    got = sampled_softmax_loss(
        tf.constant(u), tf.constant(table), tf.constant(labels),
        (tf.constant(sampled, tf.int64), tf.constant(q_true), tf.constant(q_sampled)),
    )
    want = _np_sampled_softmax(u, table, labels, sampled, q_true, q_sampled)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_sampled_softmax_training_lowers_the_loss():
    model = youtube_candidate(**KW)
    rng = np.random.default_rng(0)
    from tfrec.registry import model_info

    x = model_info("youtube_candidate").example_inputs(KW, 64, rng)
    x.pop("item_id")
    labels = x["user_gender"] * 5 + 1  # a target the features determine
    task = SampledSoftmaxTask(model, num_sampled=5, unigrams=np.arange(11) + 1.0)
    import keras

    task.compile(optimizer=keras.optimizers.Adam(0.02))
    hist = task.fit(x, labels, batch_size=64, epochs=30, verbose=0).history["loss"]
    assert hist[-1] < 0.7 * hist[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_sampled": 11}, "num_sampled"),
        ({"num_sampled": 0}, "num_sampled"),
        ({"num_sampled": 3, "unigrams": np.ones(3)}, "unigrams"),
    ],
)
def test_sampled_softmax_task_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SampledSoftmaxTask(youtube_candidate(**KW), **kwargs)


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="hidden_units"):
        youtube_candidate(11, hidden_units=())
    with pytest.raises(ValueError, match="num_items"):
        youtube_candidate(0)
    with pytest.raises(ValueError, match="num_genres"):
        youtube_ranking(5, num_genres=0)
    with pytest.raises(ValueError, match="horizon_days"):
        TimeSinceFeatures(0.0)


def test_time_since_features_match_numpy():
    days = np.array([0.0, 36.5, 365.0, 1000.0, -1.0], np.float32)
    got = np.asarray(TimeSinceFeatures(365.0)(days))
    x = np.array([0.0, 0.1, 1.0, 1.0, 1.0])
    want = np.stack([x, x**2, np.sqrt(x), [0, 0, 0, 0, 1]], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_weighted_logistic_loss_matches_numpy():
    labels = np.array([1, 0, 1, 0], np.float32)
    logits = np.array([2.0, -1.0, -0.5, 3.0], np.float32)
    weights = np.array([4.0, 1.0, 2.5, 1.0], np.float32)
    got = np.asarray(weighted_logistic_loss(labels, logits, weights))
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    want = -weights * (labels * np.log(p) + (1 - labels) * np.log(1 - p))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_weighted_logistic_odds_estimate_expected_watch_time():
    """With positives weighted by T, the optimal odds are E[T] * P / (1 - P)...
    exactly: sum_pos T / n_neg for a constant-feature model (Sec. 4.2)."""
    w_pos = np.array([3.0, 5.0, 1.0])
    n_neg = 4
    logit = tf.Variable(0.0)
    labels = np.r_[np.ones(3), np.zeros(n_neg)].astype(np.float32)
    weights = np.r_[w_pos, np.ones(n_neg)].astype(np.float32)
    for _ in range(500):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(weighted_logistic_loss(labels, logit * labels**0, weights))
        logit.assign_sub(0.1 * tape.gradient(loss, logit))
    np.testing.assert_allclose(np.exp(logit.numpy()), w_pos.sum() / n_neg, rtol=1e-3)


def test_ranking_outputs_are_odds_and_probability_of_one_logit():
    from tfrec.registry import model_info

    kw = {"num_items": 9, "embedding_dim": 4, "hidden_units": (5,), "num_genres": 3}
    model = youtube_ranking(**kw)
    x = model_info("youtube_ranking").example_inputs(kw, 8, np.random.default_rng(3))
    out = {k: np.asarray(v) for k, v in model(x).items()}
    np.testing.assert_allclose(out["score"], out["odds"] / (1 + out["odds"]), rtol=1e-5)
    # The candidate and the history share one embedding table (Sec. 4.1).
    names = [w.path for w in model.weights if "embedding" in w.path]
    assert sum("ranking_item_embedding" in n for n in names) == 1
