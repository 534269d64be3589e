"""Tests for tfrec.models.vbpr (VBPR, BPR-MF) and its BPR training wrapper
(tfrec.recipes.vbpr)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfrec.data import DataError
from tfrec.data.coldstart import (
    cold_item_split,
    evaluate_cold,
    load_split_features,
    synthetic_content,
)
from tfrec.data.content import save_item_features
from tfrec.evaluation.scoring import keras_scorer
from tfrec.models.vbpr import bpr_mf, vbpr
from tfrec.recipes.vbpr import BPRTrainer, bpr_loss, train_bpr


def _weights(model, rng):
    """Random values for every VBPR weight, by layer name."""
    w = {}
    for layer in model.layers:
        for var in layer.weights:
            value = rng.normal(size=tuple(var.shape)).astype(np.float32)
            var.assign(value)
            w[layer.name] = value
    return w


def _numpy_vbpr(w, u, i, f, num_items):
    valid = (i >= 0) & (i < num_items)
    safe = np.where(valid, i, 0)
    gamma_i = w["item_factors"][safe] * valid[:, None]
    beta_i = w["item_bias"][safe, 0] * valid
    return (
        beta_i
        + (w["user_factors"][u] * gamma_i).sum(1)
        + (w["user_visual_factors"][u] * (f @ w["visual_projection"])).sum(1)
        + f @ w["visual_bias"][:, 0]
    )


def test_vbpr_score_decomposition_matches_numpy(rng):
    model = vbpr(4, 5, 3, embedding_dim=2, visual_dim=3)
    w = _weights(model, rng)
    assert w["visual_projection"].shape == (3, 3)  # E^T: [feature_dim, visual_dim]
    u = np.array([0, 1, 2, 3, 3, 0], np.int64)
    i = np.array([0, 4, 2, 5, 99, -1], np.int64)  # 5, 99, -1: cold / unknown
    f = rng.normal(size=(6, 3)).astype(np.float32)
    got = model({"user_id": u, "item_id": i, "item_features": f})["score"]
    np.testing.assert_allclose(np.asarray(got), _numpy_vbpr(w, u, i, f, 5), atol=1e-5)


def test_cold_items_scored_from_content_alone(rng):
    model = vbpr(3, 4, 2, embedding_dim=2, visual_dim=2)
    w = _weights(model, rng)
    u = np.array([0, 1, 2], np.int64)
    f = rng.normal(size=(3, 2)).astype(np.float32)
    cold = np.asarray(
        model({"user_id": u, "item_id": np.full(3, 4), "item_features": f})["score"]
    )
    assert np.all(np.isfinite(cold))
    visual_only = (w["user_visual_factors"][u] * (f @ w["visual_projection"])).sum(
        1
    ) + f @ w["visual_bias"][:, 0]
    np.testing.assert_allclose(cold, visual_only, atol=1e-5)
    # The score of a cold item moves with its features (content is used).
    f2 = f + 1.0
    cold2 = np.asarray(
        model({"user_id": u, "item_id": np.full(3, 4), "item_features": f2})["score"]
    )
    assert np.abs(cold2 - cold).max() > 1e-3


def test_bpr_mf_score(rng):
    model = bpr_mf(3, 4, embedding_dim=2)
    w = _weights(model, rng)
    u, i = np.array([0, 2, 1]), np.array([3, 0, 7])
    got = np.asarray(model({"user_id": u, "item_id": i})["score"])
    ref = w["item_bias"][np.minimum(i, 3), 0] + (
        w["user_factors"][u] * w["item_factors"][np.minimum(i, 3)]
    ).sum(1)
    ref[2] = 0.0  # item 7 is out of vocabulary: zero factors and bias
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_bpr_loss_and_trainer_regularisation_match_numpy(rng):
    x = np.array([-3.0, -0.2, 0.0, 0.5, 40.0], np.float32)
    np.testing.assert_allclose(
        float(bpr_loss(None, x)), np.mean(-np.log(1 / (1 + np.exp(-x)))), rtol=1e-6
    )
    model = vbpr(3, 4, 2, embedding_dim=2, visual_dim=2)
    w = _weights(model, rng)
    feats = rng.normal(size=(4, 2)).astype(np.float32)
    trainer = BPRTrainer(model, feats, l2=0.1, l2_visual=0.01)
    batch = {
        "user_id": np.array([0, 1, 2]),
        "pos_item_id": np.array([0, 1, 3]),
        "neg_item_id": np.array([2, 3, 0]),
    }
    x_uij = np.asarray(trainer(batch))
    u, i, j = batch["user_id"], batch["pos_item_id"], batch["neg_item_id"]
    ref = _numpy_vbpr(w, u, i, feats[i], 4) - _numpy_vbpr(w, u, j, feats[j], 4)
    np.testing.assert_allclose(x_uij, ref, atol=1e-5)
    reg = (
        (w["user_factors"][u] ** 2).sum(1)
        + (w["user_visual_factors"][u] ** 2).sum(1)
        + (w["item_factors"][i] ** 2).sum(1)
        + (w["item_factors"][j] ** 2).sum(1)
        + w["item_bias"][i, 0] ** 2
        + w["item_bias"][j, 0] ** 2
    )
    expected = 0.1 * reg.mean() + 0.01 * (
        (w["visual_projection"] ** 2).sum() + (w["visual_bias"] ** 2).sum()
    )
    np.testing.assert_allclose(
        sum(float(v) for v in trainer.losses), expected, rtol=1e-5
    )


def test_trainer_input_errors(rng):
    model = vbpr(3, 4, 2)
    with pytest.raises(ValueError, match="item_features"):
        BPRTrainer(model)
    with pytest.raises(ValueError, match=r"shape \[num_items, 2\]"):
        BPRTrainer(model, np.zeros((4, 5)))
    bad = np.zeros((4, 2))
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        BPRTrainer(model, bad)
    with pytest.raises(ValueError, match="num_users"):
        vbpr(0, 4, 2)


@pytest.fixture(scope="module")
def synthetic_split():
    data = synthetic_content(150, 120, per_user=12, seed=0)
    split = cold_item_split(data.interactions, cold_fraction=0.2, seed=0)
    return data, split


def test_feature_file_errors_through_split_path(synthetic_split, tmp_path):
    data, split = synthetic_split
    path = save_item_features(tmp_path / "f.npz", data.item_ids, data.features)
    feats = load_split_features(split, path, shape=(6,))
    np.testing.assert_array_equal(feats, data.features[split.item_ids - 1])
    missing = save_item_features(
        tmp_path / "missing.npz", data.item_ids[1:], data.features[1:]
    )
    with pytest.raises(DataError, match="have no content"):
        load_split_features(split, missing, shape=(6,))
    with pytest.raises(DataError, match=r"expected per-item feature shape \(8,\)"):
        load_split_features(split, path, shape=(8,))
    nan = data.features.copy()
    nan[5, 2] = np.nan
    nan_path = save_item_features(tmp_path / "nan.npz", data.item_ids, nan)
    with pytest.raises(DataError, match="NaN or infinite"):
        load_split_features(split, nan_path, shape=(6,))


def test_vbpr_beats_bpr_mf_and_random_on_cold_items(synthetic_split):
    data, split = synthetic_split
    feats = data.features[split.item_ids - 1]
    n_warm = split.num_warm_items
    tr = split.train
    keras.utils.set_random_seed(0)
    # BPR-MF has no parameters for cold items (ids >= num_warm_items are
    # out of vocabulary), whatever its training: every cold item scores 0.
    mf = bpr_mf(split.num_users, n_warm, embedding_dim=8)
    mf.get_layer("item_bias").embeddings.assign(np.ones((n_warm, 1)))
    vb = vbpr(split.num_users, n_warm, feats.shape[1], embedding_dim=4, visual_dim=4)
    hist = train_bpr(vb, tr["user_id"], tr["item_id"], n_warm, item_features=feats,
                     epochs=4, num_negatives=4, batch_size=256, learning_rate=0.01,
                     seed=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    rng = np.random.default_rng(0)
    cold_vb = evaluate_cold(split, keras_scorer(vb, item_inputs={"item_features": feats}), ks=(10,))
    cold_mf = evaluate_cold(split, keras_scorer(mf), ks=(10,))
    cold_rand = evaluate_cold(split, lambda u, i: rng.random(len(i)), ks=(10,))
    # BPR-MF scores every cold item 0 (ties lose): nothing is ranked.
    assert cold_mf["ndcg@10"] == 0.0
    assert cold_vb["ndcg@10"] > cold_rand["ndcg@10"] + 0.25
    assert cold_vb["recall@10"] > cold_rand["recall@10"] + 0.25
