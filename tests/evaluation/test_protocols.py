import math
from pathlib import Path

import numpy as np
import pytest

from tfrec.evaluation import FullRanking, SampledRanking, popularity_scorer

NCF_DIR = Path("/work/shared/data/ncf-ml-1m")


def table_scorer(table):
    """score_fn from a dense [num_users, num_items] score table."""
    table = np.asarray(table, dtype=np.float32)

    def score_fn(users, items):
        assert users.dtype == np.int64 and items.dtype == np.int64
        return table[users, items]

    return score_fn


# ---------------------------------------------------------------- sampled
def make_sampled(seed=0, n=30, num_items=50, n_neg=9):
    rng = np.random.default_rng(seed)
    users = np.arange(n)
    positives = rng.integers(0, num_items, size=n)
    negatives = np.stack(
        [
            rng.choice(np.setdiff1d(np.arange(num_items), [p]), n_neg, replace=False)
            for p in positives
        ]
    )
    return users, positives, negatives


def oracle_table(users, positives, num_items, sign=1.0, seed=0):
    rng = np.random.default_rng(seed)
    table = rng.random((users.max() + 1, num_items)).astype(np.float32)
    table[users, positives] = 10.0 * sign
    return table


def test_sampled_oracle_and_reversed():
    users, pos, neg = make_sampled()
    protocol = SampledRanking(users, pos, neg, ks=(1, 10))
    perfect = protocol.evaluate(table_scorer(oracle_table(users, pos, 50)))
    for key in ("hr@10", "ndcg@10", "mrr@10", "hr@1", "ndcg@1", "recall@10"):
        assert perfect[key] == pytest.approx(1.0)
    assert perfect["precision@10"] == pytest.approx(0.1)
    worst = protocol.evaluate(table_scorer(oracle_table(users, pos, 50, sign=-1)))
    for key in ("hr@1", "ndcg@1", "mrr@1"):
        assert worst[key] == 0.0
    # Reversed oracle puts the positive last (rank 9 of 10): still inside @10.
    assert worst["ndcg@10"] == pytest.approx(1 / math.log2(11))
    worst5 = SampledRanking(users, pos, neg, ks=(5,)).evaluate(
        table_scorer(oracle_table(users, pos, 50, sign=-1))
    )
    assert worst5["hr@5"] == 0.0 and worst5["ndcg@5"] == 0.0


def test_sampled_constant_model_is_worst():
    users, pos, neg = make_sampled()
    protocol = SampledRanking(users, pos, neg, ks=(9, 10))
    m = protocol.evaluate(lambda u, i: np.zeros(len(u), np.float32))
    assert m["hr@9"] == 0.0 and m["hr@10"] == 1.0  # rank 9 of 10 candidates


def test_sampled_duplicate_positive_dropped():
    users = np.array([0, 1])
    pos = np.array([3, 4])
    neg = np.array([[5, 3, 6], [5, 6, 7]])  # user 0 has its positive as a negative
    protocol = SampledRanking(users, pos, neg, ks=(1,))
    assert protocol.num_dropped == 1
    # Perfect model: positives score highest, the duplicate gets the same score.
    table = np.zeros((2, 8), np.float32)
    table[0, 3] = table[1, 4] = 1.0
    assert protocol.evaluate(table_scorer(table))["hr@1"] == 1.0
    # Without the drop the pessimistic tie would put user 0 at rank 1.
    scores = protocol.scores(table_scorer(table))
    assert scores[0, 2] == -np.inf and np.isfinite(scores[1]).all()


def test_sampled_batch_size_invariance():
    users, pos, neg = make_sampled(seed=3)
    table = np.random.default_rng(1).integers(0, 4, (30, 50)).astype(np.float32)
    calls = []

    def fn(u, i):
        calls.append(len(u))
        return table[u, i]

    big = SampledRanking(users, pos, neg, ks=(1, 5, 10)).evaluate(fn)
    assert calls == [300]
    calls.clear()
    small = SampledRanking(users, pos, neg, ks=(1, 5, 10), batch_size=7).evaluate(fn)
    assert max(calls) == 7 and sum(calls) == 300
    assert big == small


def test_sampled_accepts_column_output_and_validates():
    users, pos, neg = make_sampled()
    table = oracle_table(users, pos, 50)
    m = SampledRanking(users, pos, neg).evaluate(lambda u, i: table[u, i][:, None])
    assert m["hr@10"] == 1.0
    with pytest.raises(ValueError, match=r"positives.shape=\(29,\)"):
        SampledRanking(users, pos[:29], neg)
    with pytest.raises(ValueError, match=r"negatives.shape=\(30,\)"):
        SampledRanking(users, pos, neg[:, 0])
    with pytest.raises(ValueError, match="one score per"):
        SampledRanking(users, pos, neg).evaluate(lambda u, i: np.zeros(3))


# ---------------------------------------------------------------- full ranking
def test_full_ranking_exclusion():
    # One user, 5 items; item 1 is a train item with a higher score than the
    # held-out item 3.
    table = np.array([[0.1, 0.9, 0.2, 0.5, 0.3]])
    no_excl = FullRanking(5, [0], [3], ks=(1,)).evaluate(table_scorer(table))
    assert no_excl["hr@1"] == 0.0
    excl = FullRanking(
        5,
        [0],
        [3],
        exclude_indptr=np.array([0, 1]),
        exclude_indices=np.array([1]),
        ks=(1,),
    ).evaluate(table_scorer(table))
    assert excl["hr@1"] == 1.0 and excl["ndcg@1"] == 1.0


def test_full_ranking_heldout_item_also_in_train_stays_candidate():
    table = np.array([[0.1, 0.9, 0.2, 0.5, 0.3]])
    m = FullRanking(
        5, [0], [1], exclude_indptr=[0, 2], exclude_indices=[1, 3], ks=(1,)
    ).evaluate(table_scorer(table))
    assert m["hr@1"] == 1.0


def test_full_ranking_multi_heldout_users():
    # user 0 held out {2, 4}, user 2 held out {0}; user 1 not evaluated.
    table = np.array(
        [
            [0.5, 0.1, 0.9, 0.8, 0.2],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.3, 0.9, 0.8, 0.1, 0.0],
        ]
    )
    indptr = np.array([0, 1, 1, 2])  # user 0 trained on item 3, user 2 on item 1
    indices = np.array([3, 1])
    p = FullRanking(
        5,
        [0, 2, 0],
        [4, 0, 2],
        exclude_indptr=indptr,
        exclude_indices=indices,
        ks=(2,),
    )
    assert p.num_users == 2
    m = p.evaluate(table_scorer(table))
    # user 0: candidates 0.5, 0.1, 0.9(rel), 0.2(rel) -> ranks 0 and 2; 1 hit @2.
    # user 2: candidates 0.3(rel), 0.8, 0.1, 0.0 -> rank 1.
    ln = math.log2
    assert m["hr@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["mrr@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["ndcg@2"] == pytest.approx((1 / (1 + 1 / ln(3)) + 1 / ln(3)) / 2)


def test_full_ranking_chunk_invariance():
    rng = np.random.default_rng(4)
    num_users, num_items = 23, 17
    table = rng.integers(0, 5, (num_users, num_items)).astype(np.float32)
    users = rng.integers(0, num_users, 40)
    items = rng.integers(0, num_items, 40)
    train = [
        np.sort(rng.choice(num_items, rng.integers(0, 6), replace=False))
        for _ in range(num_users)
    ]
    indptr = np.concatenate([[0], np.cumsum([len(t) for t in train])])
    indices = np.concatenate(train)
    kw = dict(exclude_indptr=indptr, exclude_indices=indices, ks=(1, 5, 10))
    base = FullRanking(num_items, users, items, **kw).evaluate(table_scorer(table))
    for chunk in (1, 4, 7):
        other = FullRanking(num_items, users, items, user_chunk=chunk, **kw)
        assert other.evaluate(table_scorer(table)) == pytest.approx(base)
    # Brute-force HR@5 with python loops.
    hr = []
    for u in sorted(set(users.tolist())):
        held = set(items[users == u].tolist())
        excluded = set(train[u].tolist()) - held
        cands = [i for i in range(num_items) if i not in excluded]
        cands.sort(key=lambda i: (-table[u, i], i in held))
        hr.append(any(i in held for i in cands[:5]))
    assert base["hr@5"] == pytest.approx(np.mean(hr))


def test_full_ranking_validation():
    with pytest.raises(ValueError, match="num_items=5"):
        FullRanking(5, [0], [5])
    with pytest.raises(ValueError, match="both"):
        FullRanking(5, [0], [1], exclude_indptr=[0, 1])
    with pytest.raises(ValueError, match="num_users \\+ 1"):
        FullRanking(5, [3], [1], exclude_indptr=[0, 1], exclude_indices=[2])
    with pytest.raises(ValueError, match=r"users.shape=\(2,\).*heldout_items.shape"):
        FullRanking(5, [0, 1], [1])


# ---------------------------------------------------------------- popularity
def test_popularity_scorer_tiny():
    fn = popularity_scorer(np.array([2, 2, 2, 0, 1, 1]), num_items=4)
    np.testing.assert_array_equal(fn(np.array([9, 9]), np.array([3, 2])), [0.0, 3.0])
    p = SampledRanking([0, 1], [1, 3], [[0, 2], [0, 1]], ks=(1, 2))
    m = p.evaluate(fn)
    # user 0: item 1 (2) vs 0 (1), 2 (3) -> rank 1; user 1: item 3 (0) -> rank 2.
    assert m["hr@1"] == 0.0 and m["hr@2"] == 0.5
    assert m["ndcg@2"] == pytest.approx(0.5 / math.log2(3))
    with pytest.raises(ValueError, match="num_items=4"):
        popularity_scorer(np.array([4]), 4)


@pytest.mark.skipif(not NCF_DIR.exists(), reason=f"{NCF_DIR} not available")
def test_itempop_on_ncf_ml1m():
    pd = pytest.importorskip("pandas")
    train = pd.read_csv(
        NCF_DIR / "reconstructed/ml-1m.train.rating.RECONSTRUCTED.tsv.gz",
        sep="\t",
        header=None,
        usecols=[0, 1],
    ).to_numpy()
    test = pd.read_csv(
        NCF_DIR / "ml-1m.test.rating", sep="\t", header=None, usecols=[0, 1]
    ).to_numpy()
    neg = pd.read_csv(NCF_DIR / "ml-1m.test.negative", sep="\t", header=None)
    first = neg[0].str.strip("()").str.split(",", expand=True).astype(np.int64)
    np.testing.assert_array_equal(first.to_numpy(), test)
    negatives = neg.iloc[:, 1:].to_numpy()
    assert negatives.shape == (6040, 99)
    num_items = int(max(train[:, 1].max(), test[:, 1].max(), negatives.max())) + 1
    protocol = SampledRanking(test[:, 0], test[:, 1], negatives, ks=(10,))
    assert protocol.num_dropped == 156
    m = protocol.evaluate(popularity_scorer(train[:, 1], num_items))
    assert m["hr@10"] == pytest.approx(0.4538, abs=0.002)
    assert m["ndcg@10"] == pytest.approx(0.2545, abs=0.002)


def test_item_popularity_is_the_one_popularity_baseline():
    from tfrec.evaluation import item_popularity, popularity_scorer

    counts = item_popularity(np.array([2, 0, 2, 3]), 5)
    np.testing.assert_array_equal(counts, [1, 0, 2, 1, 0])
    score = popularity_scorer(np.array([2, 0, 2, 3]), 5)
    np.testing.assert_array_equal(score(np.zeros(5, np.int64), np.arange(5)), counts)
    with pytest.raises(ValueError, match="num_items=3"):
        item_popularity(np.array([0, 3]), 3)
