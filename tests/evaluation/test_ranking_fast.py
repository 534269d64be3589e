"""The fast full-ranking core equals the dense definition, and the row-scorer path.

`full_ranking` ranks each relevant item with one comparison against the raw
chunk and corrects for the excluded and relevant items; the reference below is
the definition written densely (exclusions written into a float64 copy, then
`tfrec.evaluation.metrics.ranking_metric_rows`), as the core computed it before.
With one relevant item per row they agree exactly; with several, NDCG and
recall sum a row's terms in another order (the last bit may differ: relative
1e-12, the tolerance of the pinned tests).
"""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.evaluation.metrics import ranking_metric_rows
from tfrec.evaluation.protocols import FullRanking
from tfrec.evaluation.ranking import full_ranking

KS = (1, 3, 10, 50)  # 50 > items: NDCG sees every rank exactly


def dense_reference(scores, rel, seen, seen_relevant, ks=KS):
    n, m = scores.shape
    chunk = np.array(scores, np.float64)
    is_rel = np.zeros((n, m), bool)
    for r in range(n):
        is_rel[r, rel[1][rel[0][r] : rel[0][r + 1]]] = True
    if seen is not None:
        is_seen = np.zeros((n, m), bool)
        for r in range(n):
            is_seen[r, seen[1][seen[0][r] : seen[0][r + 1]]] = True
        chunk[is_seen & ~is_rel] = -np.inf
        if seen_relevant == "last":
            chunk[is_seen & is_rel] = -np.inf
    if seen_relevant == "last":
        chunk[is_rel & np.isneginf(chunk)] = np.finfo(np.float64).min
    rows = ranking_metric_rows(chunk, is_rel, ks)
    count = next(iter(rows.values())).size
    return {k: float(v.sum() / count) for k, v in rows.items()}


def random_case(seed, dtype, ties):
    rng = np.random.default_rng(seed)
    n, m = 37, 29
    scores = rng.normal(size=(n, m))
    if ties:
        scores = np.round(scores)
    scores = scores.astype(dtype)
    scores[rng.random((n, m)) < 0.05] = -np.inf  # scored -inf by the caller
    scores[rng.random((n, m)) < 0.02] = np.inf
    scores[rng.random((n, m)) < 0.03] = np.finfo(dtype).min  # lowest finite

    def csr(low, high):
        ptr, idx = [0], []
        for _ in range(n):
            ids = rng.integers(0, m, rng.integers(low, high))  # repeats allowed
            idx += ids.tolist()
            ptr.append(len(idx))
        return np.array(ptr), np.array(idx, np.int64)

    return scores, csr(0, 5), csr(0, 9)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_core_equals_the_dense_definition_exactly(seed, dtype):
    scores, rel, seen = random_case(seed, dtype, ties=seed % 2 == 1)
    finite_rel = scores.copy()
    for r in range(scores.shape[0]):  # "keep" rejects a -inf relevant item
        ids = rel[1][rel[0][r] : rel[0][r + 1]]
        finite_rel[r, ids] = np.where(np.isinf(finite_rel[r, ids]), 0.5,
                                      finite_rel[r, ids])
    cases = [("last", scores, seen), ("keep", finite_rel, seen),
             ("keep", finite_rel, None), ("last", scores, None)]
    for mode, s, excl in cases:
        want = dense_reference(s, rel, excl, mode)
        for chunk in (256, 5, 1):
            got = full_ranking(s, rel, seen=excl, ks=KS, row_chunk=chunk,
                               seen_relevant=mode)
            assert got == pytest.approx(want, rel=1e-12, abs=1e-15), (mode, chunk)
    # One relevant item per row (leave-one-out): bit for bit.
    one = (np.arange(s.shape[0] + 1), rel[1][rel[0][1:] - 1])
    one = (one[0], np.where(rel[0][1:] > rel[0][:-1], one[1], 0))
    want = dense_reference(scores, one, seen, "last")
    assert full_ranking(scores, one, seen=seen, ks=KS, seen_relevant="last") == want


def test_fast_core_errors_keep_their_messages():
    scores = np.array([[0.1, np.nan, 0.3], [0.2, 0.1, 0.0]])
    with pytest.raises(ValueError, match="scores contain NaN \\(rows \\[0\\]\\)"):
        full_ranking(scores, np.array([0, 1]))
    scores = np.array([[0.1, -np.inf, 0.3], [0.2, 0.1, 0.0]])
    with pytest.raises(ValueError, match="relevant candidate has score -inf"):
        full_ranking(scores, np.array([1, 1]))
    # "last": a -inf relevant item is ranked below every scored candidate.
    got = full_ranking(scores, np.array([1, 1]), ks=(3,), seen_relevant="last")
    assert got["hr@3"] == 1.0 and got["mrr@3"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_full_ranking_uses_score_rows_when_the_scorer_has_it():
    rng = np.random.default_rng(3)
    table = rng.normal(size=(11, 7)).astype(np.float32)
    users, items = np.arange(11), rng.integers(0, 7, 11)
    protocol = FullRanking(7, users, items, exclude_indptr=np.arange(12),
                           exclude_indices=(items + 1) % 7, ks=KS, user_chunk=4)

    def pairs(u, i):
        return table[u, i]

    def rows_only(u, i):
        raise AssertionError("the pair scorer was called")

    calls = []

    def score_rows(u, num_items):
        calls.append((len(u), num_items))
        return table[u][:, :num_items]

    rows_only.score_rows = score_rows
    assert protocol.evaluate(rows_only) == protocol.evaluate(pairs)
    assert calls == [(4, 7), (4, 7), (3, 7)]


def test_row_scorer_equals_the_pair_scorer_to_the_bit():
    import keras

    from tfrec.evaluation.rows import row_scorer
    from tfrec.evaluation.scoring import keras_scorer
    from tfrec.registry import create_model

    keras.utils.set_random_seed(0)
    model = create_model("neumf", num_users=13, num_items=17)
    rows = row_scorer(model)(np.array([3, 0, 12, 3]), 17)
    u = np.repeat([3, 0, 12, 3], 17)
    i = np.tile(np.arange(17), 4)
    np.testing.assert_array_equal(rows, keras_scorer(model)(u, i).reshape(4, 17))
    with pytest.raises(ValueError, match="row_scorer"):
        row_scorer(create_model("vbpr", num_users=3, num_items=4, feature_dim=5))
