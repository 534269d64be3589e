"""item2vec / word2vec example generation: exact pairs, subsampling, negatives."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfrec.data.word2vec as w2v
from tfrec.data.pipelines import SamplerEpochCallback
from tfrec.data.word2vec import (
    CbowEpochs,
    SkipGramEpochs,
    as_sequences,
    cbow_dataset,
    cbow_examples,
    draw_negatives,
    keep_probabilities,
    negative_distribution,
    skipgram_dataset,
    skipgram_pairs,
    subsample,
)

# Two sequences: [10, 11, 12, 13] and [20, 21]; ids written as their values.
SEQS = [np.array([10, 11, 12, 13]), np.array([20, 21])]


def _pairs(window, seqs=SEQS):
    off, items, _ = as_sequences(seqs)
    t, c = skipgram_pairs(off, items, window)
    return list(zip(t.tolist(), c.tolist(), strict=True))


def test_skipgram_pairs_window_1():
    assert _pairs(1) == [
        (10, 11),
        (11, 10), (11, 12),
        (12, 11), (12, 13),
        (13, 12),
        (20, 21),
        (21, 20),
    ]  # fmt: skip


def test_skipgram_pairs_window_2():
    assert _pairs(2) == [
        (10, 11), (10, 12),
        (11, 10), (11, 12), (11, 13),
        (12, 10), (12, 11), (12, 13),
        (13, 11), (13, 12),
        (20, 21),
        (21, 20),
    ]  # fmt: skip


def test_skipgram_pairs_window_none_is_every_other_item_of_the_set():
    got = _pairs(None)
    want = [(a, b) for s in SEQS for a in s.tolist() for b in s.tolist() if a != b]
    assert got == want
    assert len(got) == 4 * 3 + 2 * 1
    # A window as long as the sequence gives the same pairs.
    assert _pairs(3) == got


def test_repeated_items_pair_by_position_not_by_value():
    # [5, 5, 6]: both occurrences of 5 are separate tokens.
    assert _pairs(1, [np.array([5, 5, 6])]) == [(5, 5), (5, 5), (5, 6), (6, 5)]


def test_shrunk_windows_are_subsets_drawn_uniformly():
    off, items, _ = as_sequences([np.arange(40)], 40)
    rng = np.random.default_rng(0)
    t, c = skipgram_pairs(off, items, 3, shrink_window=True, rng=rng)
    full = set(_pairs(3, [np.arange(40)]))
    assert set(zip(t.tolist(), c.tolist(), strict=True)) <= full
    # Interior targets draw b uniform on {1,2,3}: 2b contexts, mean 4 per target.
    per_target = np.bincount(t, minlength=40)[3:-3]
    assert set(per_target.tolist()) <= {2, 4, 6}
    assert 3.0 < per_target.mean() < 5.0


def test_cbow_examples_windows_and_none():
    off, items, _ = as_sequences(SEQS, 30)
    bags, targets = cbow_examples(off, items, 1)
    np.testing.assert_array_equal(targets, [10, 11, 12, 13, 20, 21])
    np.testing.assert_array_equal(
        bags, [[11, -1], [10, 12], [11, 13], [12, -1], [21, -1], [20, -1]]
    )
    bags, targets = cbow_examples(off, items, None)
    np.testing.assert_array_equal(
        bags,
        [
            [11, 12, 13],
            [10, 12, 13],
            [10, 11, 13],
            [10, 11, 12],
            [21, -1, -1],
            [20, -1, -1],
        ],
    )
    # Each bag is exactly the skip-gram contexts of its target.
    t, c = skipgram_pairs(off, items, 2)
    bags, targets = cbow_examples(off, items, 2)
    for row, target in zip(bags, targets, strict=True):
        assert sorted(row[row >= 0].tolist()) == sorted(c[t == target].tolist())


def test_keep_probabilities_match_the_formula():
    counts = np.array([1000, 100, 10, 1, 0])
    t = 1e-2
    got = keep_probabilities(counts, t)
    freq = counts / counts.sum()
    want = np.minimum(1.0, np.sqrt(t / freq[:4]))
    np.testing.assert_allclose(got[:4], want, rtol=1e-12)
    assert got[4] == 1.0
    # Hand values: f = 1000/1111 -> sqrt(0.01 * 1.111) = 0.105404.
    assert got[0] == pytest.approx(0.105404, abs=1e-6)
    assert np.all(keep_probabilities(counts, None) == 1.0)


def test_subsampling_keeps_each_item_at_its_rate():
    rng = np.random.default_rng(1)
    items = np.repeat([0, 1], [200_000, 20_000])
    offsets = np.array([0, items.size])
    keep = np.array([0.2, 0.9])
    new_off, kept = subsample(offsets, items, keep, rng)
    assert new_off.tolist() == [0, kept.size]
    rates = np.bincount(kept, minlength=2) / np.array([200_000, 20_000])
    # Binomial standard errors are 0.0009 and 0.0021; 5 sigma.
    np.testing.assert_allclose(rates, keep, atol=0.011)
    # Kept items close up within their own sequence.
    off, items, _ = as_sequences([[0, 1, 0], [1, 1]], 2)
    new_off, kept = subsample(off, items, np.array([0.0, 1.0]), rng)
    assert new_off.tolist() == [0, 1, 3] and kept.tolist() == [1, 1, 1]


def test_negatives_follow_count_power_three_quarters():
    counts = np.array([1, 10, 100, 1000, 0])
    probs = negative_distribution(counts)
    want = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(probs, want, rtol=1e-12)
    rng = np.random.default_rng(0)
    positives = np.full(100_000, 4)  # never drawn itself, so no redraws
    neg = draw_negatives(probs, positives, 5, rng)
    freq = np.bincount(neg.ravel(), minlength=5) / neg.size
    # 500k draws: standard errors <= 0.0007; the uniform (0.25) and plain
    # unigram (0.89 for the top item) alternatives are far outside 0.004.
    np.testing.assert_allclose(freq, want, atol=0.004)
    assert freq[4] == 0.0
    # chi-square goodness of fit on the 4 drawable items (3 dof, 99.9%: 16.27).
    expected = want[:4] * neg.size
    chi2 = (((freq[:4] * neg.size) - expected) ** 2 / expected).sum()
    assert chi2 < 16.27


def test_a_negative_never_equals_its_positive():
    probs = negative_distribution(np.array([5, 5, 5]))
    positives = np.array([0, 1, 2] * 1000)
    neg = draw_negatives(probs, positives, 4, np.random.default_rng(0))
    assert not np.any(neg == positives[:, None])


def test_skipgram_dataset_batches_labels_and_fresh_epochs():
    seqs = [np.arange(6), np.arange(3, 9)]
    ds, source = skipgram_dataset(
        seqs, 9, window=2, num_negatives=3, subsample=None, batch_size=7, seed=3
    )
    batches = list(ds)
    x, y = batches[0]
    assert sorted(x) == ["item_id", "output_item_ids"]
    assert x["output_item_ids"].shape == (7, 4)
    np.testing.assert_array_equal(y["logits"][0].numpy(), [1, 0, 0, 0])
    first = np.concatenate([b[0]["output_item_ids"].numpy() for b in batches])
    targets = np.concatenate([b[0]["item_id"].numpy() for b in batches])
    assert len(targets) == len(source) and ds.cardinality() == len(batches)
    # The positives are exactly the window pairs (shrink_window draws subsets).
    off, items, _ = as_sequences(seqs, 9)
    full = set(zip(*skipgram_pairs(off, items, 2), strict=True))
    assert set(zip(targets.tolist(), first[:, 0].tolist(), strict=True)) <= full
    second = np.concatenate([b[0]["output_item_ids"].numpy() for b in ds])
    assert not np.array_equal(first, second)  # next pass = next epoch
    again = SkipGramEpochs(seqs, 9, window=2, num_negatives=3, subsample=None, seed=3)
    np.testing.assert_array_equal(again.epoch_arrays(0)[1], first)
    np.testing.assert_array_equal(again.epoch_arrays(1)[1], second)


def test_every_epoch_has_the_size_of_epoch_zero():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 50, 30) for _ in range(20)]
    source = SkipGramEpochs(seqs, 50, window=3, subsample=1e-2, seed=0)
    sizes = {source.epoch_arrays(e)[0].shape[0] for e in range(4)}
    assert sizes == {len(source)}
    cbow = CbowEpochs(seqs, 50, window=None, subsample=1e-2, seed=0)
    shapes = {cbow.epoch_arrays(e)[0].shape for e in range(3)}
    assert shapes == {(len(cbow), 29)}  # bags as wide as the longest sequence - 1


def test_callback_pins_the_epoch_in_fit():
    import keras

    from tfrec.training.item2vec import compile_item2vec, item2vec_cbow

    seqs = [np.arange(5), np.arange(2, 8)]
    ds, source = cbow_dataset(
        seqs, 8, window=1, num_negatives=2, subsample=None, batch_size=4
    )
    drawn = []
    original = source.epoch_arrays
    source.epoch_arrays = lambda e: (drawn.append(e), original(e))[1]
    model = compile_item2vec(item2vec_cbow(8, embedding_dim=4))
    keras.utils.set_random_seed(0)
    model.fit(ds, epochs=3, callbacks=[SamplerEpochCallback(source)], verbose=0)
    assert drawn == [0, 1, 2]  # each epoch once, in order (0 from the cache)


def test_softmax_pipelines_yield_label_ids():
    ds, _ = skipgram_dataset(
        [[0, 1, 2]], 3, window=1, subsample=None, loss="softmax", batch_size=8
    )
    x, y = next(iter(ds))
    assert list(x) == ["item_id"] and y["logits"].dtype == tf.int64
    pairs = set(zip(x["item_id"].numpy().tolist(), y["logits"].numpy().tolist(),
                    strict=True))  # fmt: skip
    assert pairs <= {(0, 1), (1, 0), (1, 2), (2, 1)}
    ds, _ = cbow_dataset(
        [[0, 1, 2]], 3, window=None, subsample=None, loss="softmax", batch_size=8
    )
    x, y = next(iter(ds))
    assert x["context_item_ids"].shape[1] == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data": []}, "No items to train on"),
        ({"data": [[], []]}, "No items to train on"),
        ({"data": [[0], [1]]}, "fewer than 2 items"),
        ({"data": [[0, 5]], "num_items": 5}, r"\[0, 5\).*\[0, 5\]"),
        ({"data": [[-1, 2]]}, r"found range \[-1, 2\]"),
        ({"data": [[0.5, 1.0]]}, "integer item ids"),
        ({"data": [[[0, 1]]]}, "must be 1-D"),
        ({"data": [[0, 1]], "window": 0}, "`window` must be a positive int"),
        ({"data": [[0, 1]], "window": -2}, "`window` must be a positive int"),
        ({"data": [[0, 1]], "window": 1.5}, "`window` must be a positive int"),
        ({"data": [[0, 1]], "subsample": 2.0}, "threshold"),
        ({"data": [[0, 1]], "num_negatives": 0}, "num_negatives"),
        ({"data": [[0, 1]], "loss": "hinge"}, "`loss` must be one of"),
        ({"data": [[0, 1]], "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input_gives_clear_errors(kwargs, match):
    kwargs = dict(kwargs)
    data = kwargs.pop("data")
    with pytest.raises(ValueError, match=match):
        skipgram_dataset(data, **kwargs)


def test_bad_csr_and_pair_arguments(monkeypatch):
    with pytest.raises(ValueError, match="offsets"):
        as_sequences((np.array([0, 3]), np.array([0, 1])))
    with pytest.raises(ValueError, match="`window` must be a positive int"):
        skipgram_pairs(np.array([0, 2]), np.array([0, 1]), 0)
    with pytest.raises(ValueError, match="needs a random generator"):
        cbow_examples(np.array([0, 2]), np.array([0, 1]), 1, shrink_window=True)
    with pytest.raises(ValueError, match="context_size"):
        cbow_examples(np.array([0, 3]), np.array([0, 1, 2]), 1, context_size=1)
    monkeypatch.setattr(w2v, "MAX_PAIRS", 5)
    with pytest.raises(ValueError, match="use a finite window"):
        skipgram_pairs(np.array([0, 3]), np.array([0, 1, 2]), None)
    with pytest.raises(ValueError, match="use a finite window"):
        cbow_examples(np.array([0, 4]), np.array([0, 1, 2, 3]), None)


def test_sessions_indices_become_zero_based(shared_data):
    from tfrec.data.sessions import user_histories

    sessions = user_histories("movielens-100k", shared_data / "movielens-100k")
    off, items, n = as_sequences(sessions)
    assert n == sessions.num_items == 1682
    np.testing.assert_array_equal(items, sessions.items - 1)
    np.testing.assert_array_equal(off, sessions.offsets)
