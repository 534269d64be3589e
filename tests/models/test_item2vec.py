"""item2vec training graphs (losses against numpy) and serving graphs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfrec.data.pipelines import SamplerEpochCallback
from tfrec.data.word2vec import skipgram_dataset
from tfrec.models.item2vec import (
    item2vec,
    item2vec_similar,
    item_embeddings,
    serving_models,
)
from tfrec.training.item2vec import (
    compile_item2vec,
    item2vec_cbow,
    item2vec_skipgram,
    negative_sampling_loss,
)


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _set_tables(model, rng, n, d):
    u = rng.normal(size=(n, d)).astype(np.float32)
    v = rng.normal(size=(n, d)).astype(np.float32)
    model.get_layer("item_embedding").set_weights([u])
    out = model.get_layer("output_embedding")
    out.set_weights([v.T.copy() if isinstance(out, keras.layers.Dense) else v])
    return u, v


def test_skipgram_negative_sampling_loss_matches_numpy(rng):
    n, d = 7, 3
    model = compile_item2vec(item2vec_skipgram(n, embedding_dim=d))
    u, v = _set_tables(model, rng, n, d)
    x = {
        "item_id": np.array([0, 3, 6], np.int64),
        "output_item_ids": np.array([[1, 2, 4], [2, 5, 0], [5, 5, 1]], np.int64),
    }
    logits = np.einsum("bd,bkd->bk", u[x["item_id"]], v[x["output_item_ids"]])
    got = model(x)["logits"].numpy()
    np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-6)
    # word2vec's objective: -log s(u.v+) - sum_neg log s(-u.v-), batch mean.
    per_pair = -_log_sigmoid(logits[:, 0]) - _log_sigmoid(-logits[:, 1:]).sum(axis=1)
    labels = np.zeros((3, 3), np.float32)
    labels[:, 0] = 1
    np.testing.assert_allclose(
        negative_sampling_loss(labels, got).numpy(), per_pair, rtol=1e-5
    )
    loss = model.evaluate(x, {"logits": labels}, verbose=0, batch_size=3)
    assert loss == pytest.approx(per_pair.mean(), rel=1e-5)


def test_negative_sampling_loss_is_stable_for_large_logits():
    logits = np.array([[80.0, -80.0], [-80.0, 80.0]], np.float32)
    got = negative_sampling_loss(np.array([[1, 0], [1, 0]]), logits).numpy()
    np.testing.assert_allclose(got, [0.0, 160.0], atol=1e-4)


def test_cbow_hidden_is_the_mean_of_valid_contexts(rng):
    n, d = 6, 4
    model = compile_item2vec(item2vec_cbow(n, embedding_dim=d))
    u, v = _set_tables(model, rng, n, d)
    bags = np.array([[1, 2, -1, -1], [0, 3, 4, 5], [-1, -1, -1, -1]], np.int64)
    outs = np.array([[0, 5], [1, 2], [3, 4]], np.int64)
    got = model({"context_item_ids": bags, "output_item_ids": outs})["logits"]
    hidden = np.stack(
        [u[[1, 2]].mean(0), u[[0, 3, 4, 5]].mean(0), np.zeros(d, np.float32)]
    )
    want = np.einsum("bd,bkd->bk", hidden, v[outs])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_softmax_variant_matches_numpy_cross_entropy(rng):
    n, d = 5, 3
    model = compile_item2vec(item2vec_skipgram(n, embedding_dim=d, loss="softmax"))
    u, v = _set_tables(model, rng, n, d)
    x = {"item_id": np.array([0, 4], np.int64)}
    y = np.array([2, 1], np.int64)
    logits = u[x["item_id"]] @ v.T
    np.testing.assert_allclose(model(x)["logits"].numpy(), logits, rtol=1e-5)
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    want = -logp[np.arange(2), y].mean()
    assert model.evaluate(x, {"logits": y}, verbose=0) == pytest.approx(want, rel=1e-5)
    assert list(item2vec_cbow(n, embedding_dim=d, loss="softmax").input) == [
        "context_item_ids"
    ]


def test_word2vec_initialisation():
    model = item2vec_skipgram(50, embedding_dim=10)
    u = item_embeddings(model)
    assert np.abs(u).max() <= 0.05 and u.std() > 0.01  # U(-0.5/d, 0.5/d)
    assert not model.get_layer("output_embedding").get_weights()[0].any()


def _cluster_sequences(rng, num=200, length=6):
    # Items 0..9 and 10..19 never share a sequence.
    seqs = []
    for s in range(num):
        base = 0 if s % 2 == 0 else 10
        seqs.append(base + rng.integers(0, 10, length))
    return seqs


def test_training_learns_co_occurrence_and_serving_copies_the_table(rng):
    keras.utils.set_random_seed(0)
    ds, source = skipgram_dataset(
        _cluster_sequences(rng), 20, window=None, num_negatives=5,
        subsample=None, batch_size=256, seed=0,
    )  # fmt: skip
    model = compile_item2vec(
        item2vec_skipgram(20, embedding_dim=8), "adam", learning_rate=0.05
    )
    model.fit(ds, epochs=3, callbacks=[SamplerEpochCallback(source)], verbose=0)
    table = item_embeddings(model)
    served = serving_models(model, k=3)
    emb = served["item2vec"]
    got = emb({"item_id": np.array([0, 7, 19, -1, 20], np.int64)})["item_embedding"]
    np.testing.assert_array_equal(got.numpy()[:3], table[[0, 7, 19]])
    assert not got.numpy()[3:].any()  # OOV -> zeros
    sim = served["item2vec_similar"]({"item_id": np.arange(20, dtype=np.int64)})
    same_cluster = (sim["similar_items"].numpy() // 10) == (np.arange(20) // 10)[
        :, None
    ]
    assert same_cluster.all()


def _numpy_top_k(table, ids, k):
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    sims = unit[ids] @ unit.T
    sims[np.arange(len(ids)), ids] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def test_similar_items_top_k_matches_numpy(rng):
    table = rng.normal(size=(30, 6)).astype(np.float32)
    model = serving_models(table, k=4)["item2vec_similar"]
    ids = np.array([0, 5, 29, 13, 13], np.int64)
    out = model({"item_id": ids})
    want_ids, want_sims = _numpy_top_k(table.astype(np.float64), ids, 4)
    assert out["similar_items"].dtype == "int64"
    np.testing.assert_array_equal(out["similar_items"].numpy(), want_ids)
    np.testing.assert_allclose(out["similarity"].numpy(), want_sims, atol=1e-6)
    assert not np.any(out["similar_items"].numpy() == ids[:, None])


def test_similar_items_out_of_vocabulary_and_zero_rows():
    table = np.array([[1, 0], [0.9, 0.1], [-1, 1], [0, 0]], np.float32)
    model = serving_models(table, k=2)["item2vec_similar"]
    out = model({"item_id": np.array([-1, 4, 10**12, 0], np.int64)})
    np.testing.assert_array_equal(out["similar_items"].numpy()[:3], -1)
    np.testing.assert_array_equal(out["similarity"].numpy()[:3], 0.0)
    # A zero row (never trained) has cosine 0 with everything, no NaN.
    np.testing.assert_array_equal(out["similar_items"].numpy()[3], [1, 3])
    np.testing.assert_allclose(
        out["similarity"].numpy()[3], [0.9 / np.hypot(0.9, 0.1), 0.0], atol=1e-6
    )


def test_serving_builders_validate_arguments():
    with pytest.raises(ValueError, match="num_items"):
        item2vec(0)
    with pytest.raises(ValueError, match="embedding_dim"):
        item2vec_skipgram(10, embedding_dim=-3)
    with pytest.raises(ValueError, match=r"`k` must be at most num_items - 1 = 4"):
        item2vec_similar(5, embedding_dim=2, k=5)
    with pytest.raises(ValueError, match="`loss` must be one of"):
        item2vec_cbow(5, loss="hinge")
    with pytest.raises(ValueError, match=r"non-empty 2-D array.*\(3,\)"):
        serving_models(np.zeros(3))
    with pytest.raises(ValueError, match="no layer 'item_embedding'"):
        item_embeddings(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
