"""The one full-ranking core (`tfrec.evaluation.ranking`).

`full_ranking_pinned.json` holds the metrics the four implementations that the
core replaced gave on the fixed inputs built below (recorded at commit 1e276fc,
before the refactor): `FullRanking.evaluate`, `embeddings.next_item_metrics` /
`popularity_next_item_metrics`, item2vec's chunked `next_item`, and
`histories.evaluate_scores`. The new code must reproduce them; the only
differences allowed are summation-order ulps where the old code summed per
chunk (relative 1e-12 covers them; the measured worst was 4e-16).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tfrec.evaluation import embeddings as E
from tfrec.evaluation import histories as Hs
from tfrec.evaluation.metrics import ranks_of_relevant
from tfrec.evaluation.protocols import FullRanking
from tfrec.evaluation.ranking import csr_rows, full_ranking, top_k

PINNED = json.loads((Path(__file__).parent / "full_ranking_pinned.json").read_text())
KS = (1, 3, 5, 10)


def assert_pinned(got: dict, key: str) -> None:
    want = {m: v for m, v in PINNED[key].items() if not m.startswith("_")}
    assert set(got) >= set(want), key
    for metric, value in want.items():
        assert got[metric] == pytest.approx(value, rel=1e-12, abs=1e-15), (key, metric)


# ------------------------------------------------------------ the fixed inputs


def user_inputs(seed, ties):
    """23 users x 17 items: random scores (coarse when ``ties``), 1-3 held-out
    items for about 80% of the users, random seen sets that may hold them."""
    rng = np.random.default_rng(seed)
    nu, ni = 23, 17
    table = rng.normal(size=(nu, ni))
    if ties:
        table = np.round(table * 2) / 2
    users, items = [], []
    for u in range(nu):
        if rng.random() < 0.8:
            for i in rng.choice(ni, rng.integers(1, 4), replace=False):
                users.append(u)
                items.append(int(i))
    indptr, indices = [0], []
    for _ in range(nu):
        s = rng.choice(ni, rng.integers(0, 7), replace=False)
        indices += sorted(int(x) for x in s)
        indptr.append(len(indices))
    return table, np.array(users), np.array(items), np.array(indptr), np.array(indices)


def sequence_inputs(seed):
    rng = np.random.default_rng(100 + seed)
    ni, d, ns = 15, 4, 19
    emb = rng.normal(size=(ni, d))
    if seed == 1:
        emb = np.round(emb)
    offsets, seqs, targets = [0], [], []
    for _ in range(ns):
        length = int(rng.integers(1, 8))
        perm = rng.permutation(ni)
        seqs += perm[:length].tolist()
        targets.append(int(perm[length]))
        offsets.append(len(seqs))
    return emb, np.array(offsets), np.array(seqs), np.array(targets)


class FakeSplit:
    """What `evaluate_scores` reads of a `TimeSplit`; labels may be seen."""

    def __init__(self, rng, nu, ni):
        self.num_items = ni
        users = np.sort(rng.choice(nu, 14, replace=False))
        self.test = {"user_id": users, "item_id": rng.integers(0, ni, users.size)}
        indptr, indices = [0], []
        for _ in range(nu):
            indices += sorted(int(x) for x in rng.choice(ni, rng.integers(0, 6),
                                                         replace=False))
            indptr.append(len(indices))
        self._csr = (np.array(indptr), np.array(indices, np.int64))

    def train_csr(self):
        return self._csr


def table_scorer(table):
    return lambda u, i: table[np.asarray(u), np.asarray(i)]


# ------------------------------------------------ pinned to the old implementations


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_full_ranking_protocol_keeps_its_numbers(seed, ties):
    table, users, items, indptr, indices = user_inputs(seed, ties)
    key = f"seed{seed}_ties{int(ties)}"
    for chunk in (256, 4):
        got = FullRanking(table.shape[1], users, items, exclude_indptr=indptr,
                          exclude_indices=indices, ks=KS, user_chunk=chunk)
        assert_pinned(got.evaluate(table_scorer(table)), f"full_{key}_chunk{chunk}")
    got = FullRanking(table.shape[1], users, items, ks=KS).evaluate(table_scorer(table))
    assert_pinned(got, f"full_noexcl_{key}")


@pytest.mark.parametrize("seed", [0, 1])
def test_next_item_protocols_keep_their_numbers(seed, monkeypatch):
    import tfrec.recipes.item2vec as R

    emb, offsets, seqs, targets = sequence_inputs(seed)
    for excl in (True, False):
        for recent in (1, 3, 5):
            got = E.next_item_metrics(emb, offsets, seqs, targets, recent=recent,
                                      ks=KS, exclude_history=excl)
            assert_pinned(got, f"next_seed{seed}_excl{int(excl)}_recent{recent}")
    got = E.popularity_next_item_metrics(offsets, seqs, targets, emb.shape[0], ks=KS)
    assert_pinned(got, f"pop_seed{seed}")
    monkeypatch.setattr(R, "_CHUNK", 4)
    cases = R.NextItems(offsets, seqs, targets)
    for excl in (True, False):
        got = R.next_item(emb, cases, recent=3, ks=KS, exclude_history=excl)
        assert got["cases"] == targets.size
        assert_pinned(got, f"recipe_next_seed{seed}_excl{int(excl)}")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_history_evaluation_keeps_its_numbers(seed, ties):
    rng = np.random.default_rng(200 + seed)
    split = FakeSplit(rng, 20, 13)
    scores = rng.normal(size=(14, 13))
    if ties:
        scores = np.round(scores)
    key = f"seed{seed}_ties{int(ties)}"
    assert PINNED[f"hist_{key}"]["_labels_seen"] > 0  # the repeat case is covered
    assert_pinned(Hs.evaluate_scores(scores, split, ks=KS), f"hist_{key}")
    # the pipeline's case: the caller already scored seen items -inf
    indptr, indices = split.train_csr()
    pre = scores.copy()
    for row, u in enumerate(split.test["user_id"]):
        pre[row, indices[indptr[u]:indptr[u + 1]]] = -np.inf
    assert_pinned(Hs.evaluate_scores(pre, split, ks=KS), f"hist_neginf_{key}")


# --------------------------------------------------------- brute-force reference


def brute_force(scores, relevant_sets, seen_sets, ks, seen_relevant="keep"):
    """Per-row python loops over the definitions of `tfrec.evaluation.metrics`."""
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg", "recall", "mrr",
                                                   "precision")}
    rows = 0
    for s, rel, seen in zip(scores, relevant_sets, seen_sets, strict=True):
        rel = sorted(set(rel))
        if not rel:
            continue
        s = [float(x) for x in s]
        last = set()
        for j in seen:
            if j not in rel:
                s[j] = -math.inf
            elif seen_relevant == "last":
                last.add(j)
        ranks = []
        for j in rel:
            own_last = j in last or s[j] == -math.inf
            r = 0
            for c in range(len(s)):
                if c == j:
                    continue
                if c in rel:
                    c_last = c in last or s[c] == -math.inf
                    if own_last and c_last:
                        r += c < j
                    elif own_last:
                        r += 1
                    elif not c_last:
                        r += s[c] > s[j] or (s[c] == s[j] and c < j)
                elif own_last:
                    r += s[c] != -math.inf
                else:
                    r += s[c] >= s[j]
            ranks.append(r)
        rows += 1
        for k in ks:
            hits = [r for r in ranks if r < k]
            idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(rel))))
            sums[f"hr@{k}"] += float(bool(hits))
            sums[f"ndcg@{k}"] += sum(1 / math.log2(r + 2) for r in hits) / idcg
            sums[f"recall@{k}"] += len(hits) / len(rel)
            sums[f"precision@{k}"] += len(hits) / k
            sums[f"mrr@{k}"] += 1 / (min(ranks) + 1) if min(ranks) < k else 0.0
    return {key: value / rows for key, value in sums.items()}


def random_case(seed, rows=31, items=12):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=(rows, items)) * (1 + seed % 3)) / 2
    rel = [list(rng.choice(items, rng.integers(0, 4), replace=False)) for _ in range(rows)]
    seen = [list(rng.choice(items, rng.integers(0, 6), replace=False)) for _ in range(rows)]
    return scores, rel, seen


def as_csr(sets):
    indptr = np.r_[0, np.cumsum([len(s) for s in sets])]
    indices = np.array([i for s in sets for i in s], np.int64)
    return indptr, indices


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("policy", ["keep", "last"])
def test_core_matches_a_brute_force_reference(seed, policy):
    scores, rel, seen = random_case(seed)
    want = brute_force(scores, rel, seen, KS, policy)
    got = full_ranking(scores, as_csr(rel), seen=as_csr(seen), ks=KS,
                       seen_relevant=policy)
    assert got == pytest.approx(want, rel=1e-12)


def test_caller_minus_inf_on_a_label_ranks_it_last_under_last():
    scores, rel, seen = random_case(9)
    rel[0] = [int(rel[0][0]) if rel[0] else 0]
    scores[0, rel[0][0]] = -np.inf
    want = brute_force(scores, rel, seen, KS, "last")
    got = full_ranking(scores, as_csr(rel), seen=as_csr(seen), ks=KS,
                       seen_relevant="last")
    assert got == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="relevant candidate has score -inf"):
        full_ranking(scores, as_csr(rel), seen=as_csr(seen), ks=KS)


def test_results_do_not_depend_on_the_chunk_or_the_scores_form():
    scores, rel, seen = random_case(3, rows=53)
    base = full_ranking(scores, as_csr(rel), seen=as_csr(seen), ks=KS, row_chunk=53)
    for chunk in (1, 4, 7, 256):
        assert full_ranking(scores, as_csr(rel), seen=as_csr(seen), ks=KS,
                            row_chunk=chunk) == base
        fn = full_ranking(lambda lo, hi: scores[lo:hi], as_csr(rel), seen=as_csr(seen),
                          num_rows=53, num_items=12, ks=KS, row_chunk=chunk)
        assert fn == base


def test_one_target_per_row_and_a_hand_made_ranking():
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5]])
    got = full_ranking(scores, np.array([2, 1]), seen=([0, 1, 1], [0]), ks=(1, 2))
    # row 0: item 0 excluded -> item 2 has rank 1; row 1: all tied -> rank 3
    assert got["hr@2"] == 0.5 and got["hr@1"] == 0.0
    assert got["mrr@2"] == pytest.approx(0.25)
    assert got["ndcg@2"] == pytest.approx(0.5 / math.log2(3))


def test_conservative_session_rank_is_the_core_rank_plus_one():
    from tfrec.evaluation.session import ranks_from_scores

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(40, 9))).astype(np.float32)
    targets = rng.integers(0, 9, 40)
    relevant = np.zeros(scores.shape, bool)
    relevant[np.arange(40), targets] = True
    core = ranks_of_relevant(scores, relevant)[relevant]
    session = ranks_from_scores(scores, targets, "conservative").numpy()
    np.testing.assert_array_equal(session, core + 1)


def test_seen_relevant_raise_and_bad_arguments():
    scores = np.zeros((2, 3))
    with pytest.raises(ValueError, match="also occurs in its training history"):
        full_ranking(scores, np.array([1, 2]), seen=([0, 1, 1], [1]),
                     seen_relevant="raise")
    with pytest.raises(ValueError, match="seen_relevant"):
        full_ranking(scores, np.array([1, 2]), seen_relevant="drop")
    with pytest.raises(ValueError, match="One relevant item per row"):
        full_ranking(scores, np.array([1]))
    with pytest.raises(ValueError, match="num_items=3"):
        full_ranking(scores, np.array([1, 3]))
    with pytest.raises(ValueError, match="over 2 rows"):
        full_ranking(scores, np.array([1, 2]), seen=([0, 1], [1]))
    with pytest.raises(ValueError, match="num_rows"):
        full_ranking(lambda lo, hi: scores[lo:hi], np.array([1, 2]))
    with pytest.raises(ValueError, match=r"must have shape \(2, 3\)"):
        full_ranking(lambda lo, hi: scores[:, :2], np.array([1, 2]), num_rows=2,
                     num_items=3)
    with pytest.raises(ValueError, match="nothing to average"):
        full_ranking(scores, ([0, 0, 0], []))


# ------------------------------------------------------------------- top-K


def test_top_k_ties_lower_index_first_and_excluded_last():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.5])
    np.testing.assert_array_equal(top_k(s, 3), [1, 3, 2])
    np.testing.assert_array_equal(top_k(s, 3, exclude=[1, 2]), [3, 4, 0])
    np.testing.assert_array_equal(top_k(s, 5, exclude=[3]), [1, 2, 4, 0, 3])
    rows = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(
        top_k(rows, 2, exclude=([0, 1, 2], [2, 0])), [[1, 0], [1, 2]]
    )
    with pytest.raises(ValueError, match="`k` must be a positive int"):
        top_k(s, 0)


def test_top_k_equals_a_stable_argsort_reference():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=(20, 30)))
    seen = [list(rng.choice(30, rng.integers(0, 10), replace=False)) for _ in range(20)]
    ref = s.copy()
    for r, ids in enumerate(seen):
        ref[r, ids] = -np.inf
    want = np.argsort(-ref, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(top_k(s, 7, exclude=as_csr(seen)), want)


def test_csr_rows_selects_rows_in_order():
    indptr, indices = csr_rows([0, 2, 2, 5], [7, 8, 1, 2, 3], [2, 0, 1, 2])
    np.testing.assert_array_equal(indptr, [0, 3, 5, 5, 8])
    np.testing.assert_array_equal(indices, [1, 2, 3, 7, 8, 1, 2, 3])
    with pytest.raises(ValueError, match="covers 3 rows"):
        csr_rows([0, 2, 2, 5], [7, 8, 1, 2, 3], [3])
