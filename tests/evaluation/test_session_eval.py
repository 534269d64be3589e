"""Next-click evaluation: ranks with ties, Recall/MRR, session-parallel order."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.sessions import Sessions
from tfrec.evaluation.session import (
    evaluate_next_click,
    item_knn_step,
    popularity_step,
    ranks_from_scores,
    recall_mrr,
)
from tfrec.models.gru4rec import gru4rec_step


def test_ranks_with_ties_in_every_mode():
    scores = np.array(
        [[0.1, 0.5, 0.5, 0.5, 0.9], [3.0, 1.0, 2.0, 0.0, 1.0]], np.float32
    )
    targets = np.array([2, 0])
    # Row 0: one item above the target, two others tied with it.
    assert ranks_from_scores(scores, targets, "conservative").numpy().tolist() == [4, 1]
    assert ranks_from_scores(scores, targets, "standard").numpy().tolist() == [2, 1]
    assert ranks_from_scores(scores, targets, "median").numpy().tolist() == [3, 1]
    with pytest.raises(ValueError, match="mode"):
        ranks_from_scores(scores, targets, "optimistic")


def test_recall_and_mrr_by_hand():
    out = recall_mrr([1, 3, 6, 25], cutoffs=(5, 20))
    assert out["recall@5"] == pytest.approx(2 / 4)
    assert out["mrr@5"] == pytest.approx((1 + 1 / 3) / 4)
    assert out["recall@20"] == pytest.approx(3 / 4)
    assert out["mrr@20"] == pytest.approx((1 + 1 / 3 + 1 / 6) / 4)
    assert out["queries"] == 4


def _test_sessions():
    return Sessions.from_events(
        [1, 1, 1, 2, 2, 3, 3],
        [1, 2, 3, 4, 1, 2, 5],
        [0, 1, 2, 0.5, 1, 3, 4],
        item_vocab=np.arange(1, 7),
    )


def test_evaluate_with_a_hand_made_recommender():
    n = 6

    # Scores: item (last + 1) is best, then every other item by index; the
    # padding column is lowest. Next clicks 1->2, 2->3 are hits (rank 1);
    # 4->1 ranks below (5 higher: 6, 5, 4, 3, 2 -> rank 6); 2->5 ranks 3rd.
    def step(items, state):
        base = tf.cast(tf.range(n + 1), tf.float32)[None, :] * tf.ones(
            [tf.shape(items)[0], 1]
        )
        bonus = tf.one_hot(items + 1, n + 1) * 100.0
        scores = base + bonus
        scores = tf.concat([tf.fill([tf.shape(items)[0], 1], -1e9), scores[:, 1:]], 1)
        return scores, state

    out = evaluate_next_click(
        step, _test_sessions(), batch_size=2, cutoffs=(1, 5), return_ranks=True
    )
    # Queries in session order: s1: 1->2, 2->3; s2: 4->1; s3: 2->5.
    assert out["ranks"].tolist() == [1, 1, 6, 3]
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["recall@5"] == pytest.approx(0.75)
    assert out["mrr@5"] == pytest.approx((1 + 1 + 1 / 3) / 4)
    assert out["mode"] == "conservative"


def test_evaluate_resets_the_state_between_sessions():
    # A step function whose scores depend on the state (number of clicks seen):
    # with batch 1 the slot is reused, so a missing reset would change ranks.
    def step(items, state):
        seen = state + 1.0
        scores = tf.one_hot(tf.cast(seen[:, 0], tf.int64) + 1, 7) * 10.0
        return scores, seen

    a = evaluate_next_click(
        step, _test_sessions(), state_size=1, batch_size=1, return_ranks=True
    )
    b = evaluate_next_click(
        step, _test_sessions(), state_size=1, batch_size=3, return_ranks=True
    )
    np.testing.assert_array_equal(a["ranks"], b["ranks"])
    assert a["ranks"][0] == 1  # first click: state 1 -> item 2 is the next click


def test_evaluate_gru4rec_step_model_matches_stepping_by_hand():
    s = _test_sessions()
    model = gru4rec_step(6, layers=(3,))
    out = evaluate_next_click(model, s, batch_size=2, return_ranks=True)
    ranks = []
    for seq in s.sequences():
        h = np.zeros((1, 3), np.float32)
        for t in range(len(seq) - 1):
            o = model({"item_id": seq[t : t + 1], "hidden_state": h})
            h = o["new_hidden_state"].numpy()
            sc = o["scores"].numpy()[0]
            ranks.append(int((sc >= sc[seq[t + 1]]).sum()))
    assert out["ranks"].tolist() == ranks


def test_baselines():
    train = Sessions.from_events(
        [1, 1, 2, 2, 3, 3], [1, 2, 1, 2, 1, 3], [0, 1, 2, 3, 4, 5]
    )
    pop = popularity_step(train)(tf.constant([1]), tf.zeros((1, 1)))[0].numpy()[0]
    assert pop.tolist()[1:] == [3, 2, 1] and pop[0] < -1e8
    knn = item_knn_step(train, lmbd=0.0, alpha=0.5)
    sim = knn(tf.constant([1, 3]), tf.zeros((2, 1)))[0].numpy()
    # Item 1 is in 3 sessions, item 2 in 2 (2 together), item 3 in 1 (1 together).
    assert sim[0, 2] == pytest.approx(2 / np.sqrt(3 * 2))
    assert sim[0, 3] == pytest.approx(1 / np.sqrt(3 * 1))
    assert sim[0, 1] == 0.0 and sim[1, 2] == 0.0
