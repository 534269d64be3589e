"""MV-DNN: cosine scores and the smoothed softmax against numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrec.models.mv_dnn import (
    Cosine,
    item_view_embeddings,
    mv_dnn,
    mv_dnn_item_tower,
    mv_dnn_views,
)
from tfrec.recipes.mv_dnn import MultiViewSoftmaxTask, smoothed_softmax_loss
from tfrec.registry import model_info

KW = {"num_genres": 5, "title_vocab": 7, "hidden_units": (8,), "embedding_dim": 4}


def _np_cos(a, b):
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(norms, 1e-12)  # zero vector -> 0


def test_cosine_layer_matches_numpy_and_handles_zero_vectors():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 3)).astype(np.float32)
    b = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(Cosine()([a, b])), _np_cos(a, b), rtol=1e-5)
    zero = np.asarray(Cosine()([np.zeros((1, 3), np.float32), b[:1]]))
    assert zero[0] == 0.0


def test_scores_are_per_view_cosines_of_the_towers_and_their_mean():
    model = mv_dnn(**KW)
    assert mv_dnn_views(model) == ("genres", "title", "era")
    x = model_info("mv_dnn").example_inputs(KW, 6, np.random.default_rng(1))
    out = {k: np.asarray(v) for k, v in model(x).items()}
    user_in = {k: x[k] for k in model.get_layer("user_tower").input}
    u = np.asarray(model.get_layer("user_tower")(user_in)["query_embedding"])
    per_view = []
    for view, key in (("genres", "item_genres"), ("title", "item_title_tokens"),
                      ("era", "item_era")):
        tower = model.get_layer(f"item_tower_{view}")
        v = np.asarray(tower({key: x[key]})["item_embedding"])
        np.testing.assert_allclose(out[f"score_{view}"], _np_cos(u, v), rtol=1e-5,
                                   atol=1e-6)
        per_view.append(out[f"score_{view}"])
    np.testing.assert_allclose(out["score"], np.mean(per_view, axis=0), rtol=1e-6)
    assert np.all(np.abs(out["score"]) <= 1 + 1e-6)


def test_user_tower_is_shared_by_every_view():
    model = mv_dnn(**KW)
    users = [layer for layer in model.layers if layer.name == "user_tower"]
    assert len(users) == 1
    assert len([n for n in model.output if n.startswith("score_")]) == 3


def test_smoothed_softmax_loss_matches_numpy():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(3, 4)).astype(np.float32)
    pos = rng.normal(size=(3, 4)).astype(np.float32)
    neg = rng.normal(size=(3, 2, 4)).astype(np.float32)
    gamma = 5.0
    got = np.asarray(smoothed_softmax_loss(u, pos, neg, gamma))
    cos = np.concatenate(
        [_np_cos(u, pos)[:, None], _np_cos(u[:, None, :], neg)], axis=1
    ) * gamma
    want = -(cos[:, 0] - np.log(np.exp(cos).sum(1)))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def _item_tables(n=12, rng=None):
    rng = rng or np.random.default_rng(0)
    return {
        "item_genres": (rng.random((n, 5)) < 0.4).astype(np.float32),
        "item_title_tokens": (rng.random((n, 7)) < 0.3).astype(np.float32),
        "item_era": rng.integers(0, 8, n),
    }


def test_training_lowers_the_loss_and_item_embeddings_are_unit_vectors():
    model = mv_dnn(**KW)
    items = _item_tables()
    rng = np.random.default_rng(3)
    x = model_info("mv_dnn_user_tower").example_inputs(KW, 64, rng)
    labels = x["user_gender"] * 3 + 2  # learnable from the user view
    task = MultiViewSoftmaxTask(model, items, num_negatives=3, gamma=10.0)
    task.compile(optimizer=keras.optimizers.Adam(0.02))
    loss = task.fit(x, labels, batch_size=64, epochs=25, verbose=0).history["loss"]
    assert loss[-1] < 0.7 * loss[0]
    emb = item_view_embeddings(model, items)
    assert sorted(emb) == ["era", "genres", "title"]
    np.testing.assert_allclose(np.linalg.norm(emb["title"], axis=1), 1.0, rtol=1e-5)


def test_bad_arguments_are_rejected_with_names():
    with pytest.raises(ValueError, match="views"):
        mv_dnn(views=("genres", "audio"))
    with pytest.raises(ValueError, match="views"):
        mv_dnn(views=())
    with pytest.raises(ValueError, match="title_vocab"):
        mv_dnn_item_tower(view="title", title_vocab=0)
    model = mv_dnn(views=("genres", "era"), **KW)
    with pytest.raises(ValueError, match="item_era"):
        MultiViewSoftmaxTask(model, {"item_genres": np.zeros((3, 5), np.float32)})
    with pytest.raises(ValueError, match="gamma"):
        MultiViewSoftmaxTask(model, _item_tables(), gamma=0.0)


def test_single_view_model_scores_with_that_view():
    model = mv_dnn(views=("genres",), **KW)
    x = model_info("mv_dnn").example_inputs({**KW, "views": ("genres",)}, 4,
                                             np.random.default_rng(0))
    out = model(x)
    np.testing.assert_allclose(np.asarray(out["score"]),
                               np.asarray(out["score_genres"]))
    assert "item_era" not in model.input and tf.is_tensor(out["score"])
