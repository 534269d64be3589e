import math

import numpy as np
import pytest

from tfrec.evaluation import (
    auc,
    log_loss,
    mae,
    ranking_metric_sums,
    ranking_metrics,
    ranks_of_relevant,
    rmse,
)

NAMES = ("hr", "ndcg", "recall", "mrr", "precision")


# ---------------------------------------------------------------- references
def brute_ranks(scores, relevant):
    """Explicit ranking: drop -inf, sort by score desc, non-relevant first on ties."""
    n, m = scores.shape
    out = np.full((n, m), -1)
    for i in range(n):
        cands = [j for j in range(m) if scores[i, j] != -math.inf]
        cands.sort(key=lambda j: (-scores[i, j], bool(relevant[i, j]), j))
        for pos, j in enumerate(cands):
            if relevant[i, j]:
                out[i, j] = pos
    return out


def brute_metrics(scores, relevant, ks):
    ranks = brute_ranks(scores, relevant)
    totals = {f"{name}@{k}": 0.0 for k in ks for name in NAMES}
    rows = 0
    for i in range(scores.shape[0]):
        rel_ranks = [int(r) for r in ranks[i] if r >= 0]
        if not rel_ranks:
            continue
        rows += 1
        for k in ks:
            hits = [r for r in rel_ranks if r < k]
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel_ranks))))
            totals[f"hr@{k}"] += 1.0 if hits else 0.0
            totals[f"recall@{k}"] += len(hits) / len(rel_ranks)
            totals[f"precision@{k}"] += len(hits) / k
            totals[f"ndcg@{k}"] += sum(1 / math.log2(r + 2) for r in hits) / idcg
            best = min(rel_ranks)
            totals[f"mrr@{k}"] += 1 / (best + 1) if best < k else 0.0
    return {key: v / rows for key, v in totals.items()}


def brute_auc(labels, scores):
    total = 0.0
    pairs = 0
    for yi, si in zip(labels, scores, strict=True):
        for yj, sj in zip(labels, scores, strict=True):
            if yi == 1 and yj == 0:
                pairs += 1
                total += 1.0 if si > sj else 0.5 if si == sj else 0.0
    return total / pairs


# ---------------------------------------------------------------- ranks
def test_ranks_simple_and_pessimistic_ties():
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])
    relevant = np.array([[False, False, True, False, False]])
    # Beaten by 0.9 and by both tied non-relevant 0.5s -> rank 3.
    np.testing.assert_array_equal(
        ranks_of_relevant(scores, relevant), [[-1, -1, 3, -1, -1]]
    )


def test_constant_scores_get_worst_rank():
    scores = np.zeros((2, 6))
    relevant = np.zeros((2, 6), bool)
    relevant[0, 0] = True
    relevant[1, [1, 4]] = True
    ranks = ranks_of_relevant(scores, relevant)
    assert ranks[0, 0] == 5
    # Two relevant items share the last two places (ties among them by column).
    assert sorted(ranks[1][ranks[1] >= 0]) == [4, 5]
    m = ranking_metrics(scores, relevant, ks=(1, 4))
    assert m["hr@4"] == 0.0 and m["mrr@4"] == 0.0 and m["ndcg@4"] == 0.0


def test_multiple_relevant_and_strictly_greater_relevant():
    scores = np.array([[0.2, 0.9, 0.8, 0.8, 0.3]])
    relevant = np.array([[True, True, False, True, False]])
    # 0.9 first (nothing above); 0.8 relevant: non-rel 0.8 (>=) + rel 0.9 (>) = 2;
    # 0.2: non-rel 0.8, 0.3 + rel 0.9, 0.8 = 4.
    np.testing.assert_array_equal(
        ranks_of_relevant(scores, relevant), [[4, 0, -1, 2, -1]]
    )


def test_neg_inf_is_excluded():
    scores = np.array([[-np.inf, 0.4, -np.inf, 0.1]])
    relevant = np.array([[False, True, False, False]])
    assert ranks_of_relevant(scores, relevant)[0, 1] == 0
    scores = np.array([[0.5, -np.inf, 0.1]])
    relevant = np.array([[False, False, True]])
    assert ranks_of_relevant(scores, relevant)[0, 2] == 1


def test_ranks_errors():
    rel = np.array([[True, False]])
    with pytest.raises(ValueError, match="scores contain NaN"):
        ranks_of_relevant(np.array([[0.1, np.nan]]), rel)
    with pytest.raises(ValueError, match="-inf"):
        ranks_of_relevant(np.array([[-np.inf, 0.3]]), rel)
    with pytest.raises(
        ValueError, match=r"scores.shape=\(1, 2\).*relevant.shape=\(1, 3\)"
    ):
        ranks_of_relevant(np.zeros((1, 2)), np.zeros((1, 3), bool))


# ---------------------------------------------------------------- metrics
def test_hand_made_ranking_values():
    # Row 0: one relevant at rank 2. Row 1: relevant at ranks 0 and 3.
    # Row 2: no relevant item (skipped).
    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.1, 0.0],
            [0.9, 0.8, 0.7, 0.6, 0.0],
            [0.9, 0.8, 0.7, 0.6, 0.0],
        ]
    )
    relevant = np.zeros((3, 5), bool)
    relevant[0, 2] = True
    relevant[1, [0, 3]] = True
    m = ranking_metrics(scores, relevant, ks=(1, 3), prefix="val_")
    assert set(m) == {f"val_{n}@{k}" for n in NAMES for k in (1, 3)}
    ln = math.log2
    row0 = {
        "hr@3": 1,
        "ndcg@3": 0.5,
        "recall@3": 1,
        "mrr@3": 1 / 3,
        "precision@3": 1 / 3,
    }
    row1 = {
        "hr@3": 1,
        "ndcg@3": 1 / (1 + 1 / ln(3)),  # hit at rank 0 only; IDCG over 2 slots
        "recall@3": 0.5,  # hits / n_relevant (not min(k, n_rel))
        "mrr@3": 1.0,
        "precision@3": 1 / 3,
    }
    for key in row0:
        assert m[f"val_{key}"] == pytest.approx((row0[key] + row1[key]) / 2)
    assert m["val_hr@1"] == pytest.approx(0.5)
    assert m["val_ndcg@1"] == pytest.approx(0.5)
    assert m["val_recall@1"] == pytest.approx(0.25)
    assert m["val_precision@1"] == pytest.approx(0.5)
    assert m["val_mrr@1"] == pytest.approx(0.5)


def test_ndcg_at_rank_two_is_half():
    m = ranking_metrics([[0.9, 0.8, 0.7, 0.1]], [[False, False, True, False]])
    assert m["ndcg@10"] == pytest.approx(0.5)
    assert m["mrr@10"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(6))
def test_random_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = 40, 25
    # Few distinct values -> many ties; some excluded candidates.
    scores = rng.integers(0, 6, size=(n, m)).astype(np.float64)
    relevant = rng.random((n, m)) < 0.12
    excluded = (rng.random((n, m)) < 0.15) & ~relevant
    scores[excluded] = -np.inf
    relevant[0] = False  # one row without relevant items
    ks = (1, 3, 10, 30)
    np.testing.assert_array_equal(
        ranks_of_relevant(scores, relevant), brute_ranks(scores, relevant)
    )
    got = ranking_metrics(scores, relevant, ks=ks)
    want = brute_metrics(scores, relevant, ks)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
        assert got[key] <= 1.0 + 1e-12


def test_sums_accumulate_over_chunks():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(30, 12))
    relevant = rng.random((30, 12)) < 0.2
    full = ranking_metrics(scores, relevant, ks=(5,))
    s1, c1 = ranking_metric_sums(scores[:13], relevant[:13], (5,))
    s2, c2 = ranking_metric_sums(scores[13:], relevant[13:], (5,))
    assert c1 + c2 == int(relevant.any(1).sum())
    for key in full:
        assert (s1[key] + s2[key]) / (c1 + c2) == pytest.approx(full[key])


def test_ranking_metrics_errors():
    with pytest.raises(ValueError, match="No row of `relevant`"):
        ranking_metrics(np.zeros((2, 3)), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics(np.zeros((1, 3)), [[True, False, False]], ks=(0,))


# ---------------------------------------------------------------- auc & rating
@pytest.mark.parametrize("seed", range(4))
def test_auc_against_pair_counting(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=60)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    assert auc(labels, scores) == pytest.approx(brute_auc(labels, scores), abs=1e-12)


def test_auc_values_and_errors():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both classes"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"labels.shape=\(3,\).*scores.shape=\(2,\)"):
        auc([0, 1, 1], [0.1, 0.2])


def test_rating_metrics():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 3.0, 1.0, 4.0])
    assert rmse(y, p) == pytest.approx(math.sqrt((1 + 4) / 4))
    assert mae(y, p) == pytest.approx(3 / 4)
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(
        -(math.log(0.8) + math.log(0.6)) / 2
    )
    # Clipping keeps a confident wrong prediction finite: -log(1e-7).
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\).*y_pred.shape=\(3,\)"):
        rmse(y, p[:3])
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\).*y_pred.shape=\(2, 2\)"):
        mae(y, p.reshape(2, 2))
