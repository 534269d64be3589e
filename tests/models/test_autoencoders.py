"""AutoRec, CDAE and the denoising/sparse autoencoder against numpy references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.vectors import rating_vectors, vector_dataset
from tfrec.models.autoencoders import (
    InputCorruption,
    SparsityPenalty,
    autoencoder,
    autorec,
    cdae,
    cdae_scorer,
    check_rating_inputs,
    predict_ratings,
)
from tfrec.recipes.autoencoders import ReconstructionTrainer, fit_reconstruction


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np(x):
    return np.asarray(x, dtype=np.float64)


# Item vectors over 5 users (I-AutoRec orientation); 0 = unobserved.
R = np.array(
    [[5, 0, 3, 0, 1], [0, 4, 0, 0, 2], [1, 1, 0, 5, 0]],
    np.float32,
)


def test_autorec_forward_matches_numpy():
    model = autorec(5, 3, variant="item", hidden_units=(4,))
    v, mu = model.get_layer("encoder_1").get_weights()
    w, b = model.get_layer("reconstruction").get_weights()
    got = model({"ratings": R}, training=False)["reconstruction"].numpy()
    ref = _sigmoid(_np(R) @ v + mu) @ w + b
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert got.shape == (3, 5)
    user_model = autorec(5, 3, variant="user", hidden_units=(4,))
    assert user_model.input["ratings"].shape[-1] == 3  # a user's vector over items


def test_masked_squared_loss_uses_observed_entries_only():
    model = autorec(5, 3, hidden_units=(4,), l2=0.0)
    trainer = ReconstructionTrainer(model)
    pred = np.arange(15, dtype=np.float32).reshape(3, 5) / 7.0
    mask = (R != 0).astype(np.float32)
    ref = ((_np(R) - pred) ** 2 * mask).sum(axis=1).mean()
    got = float(trainer.data_loss(R, mask, tf.constant(pred)))
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # Changing predictions at unobserved entries leaves the loss unchanged.
    pred2 = np.where(mask == 0, 100.0, pred).astype(np.float32)
    assert float(trainer.data_loss(R, mask, tf.constant(pred2))) == pytest.approx(got)
    # num_vectors=N scales the batch mean to the full-data sum (AutoRec's Eq. 3).
    scaled = ReconstructionTrainer(model, num_vectors=3000)
    np.testing.assert_allclose(
        float(scaled.data_loss(R, mask, tf.constant(pred))), 3000 * ref, rtol=1e-6
    )
    # Unmasked log loss (CDAE): binary cross-entropy summed over every entry.
    y = (R != 0).astype(np.float32)
    p = _sigmoid(pred - 1.0).astype(np.float32)
    log_trainer = ReconstructionTrainer(model, loss="log", masked=False)
    ref_log = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1).mean()
    np.testing.assert_allclose(
        float(log_trainer.data_loss(y, y, tf.constant(p))), ref_log, rtol=1e-5
    )


def test_l2_term_is_lambda_over_two_times_squared_kernels():
    model = autorec(5, 3, hidden_units=(4, 2, 4), l2=0.7)
    kernels = [w for w in model.weights if w.path.endswith("kernel")]
    assert len(kernels) == 4  # biases are not penalised
    ref = 0.35 * sum(float(np.sum(_np(k.numpy()) ** 2)) for k in kernels)
    got = float(sum(model.losses))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # The trainer's loss is the data term plus exactly that penalty.
    trainer = ReconstructionTrainer(model, num_vectors=10)
    mask = (R != 0).astype(np.float32)
    pred = trainer({"ratings": R})
    total = float(trainer.compute_loss(y={"target": R, "mask": mask}, y_pred=pred))
    data = float(trainer.data_loss(R, mask, pred))
    np.testing.assert_allclose(total, data + ref, rtol=1e-5)
    assert not autorec(5, 3, hidden_units=(4,), l2=0.0).losses


def test_sparsity_penalty_values_match_numpy():
    a = np.array([[0.1, 0.9, 0.5], [0.3, 0.7, 0.05]], np.float32)
    rho_hat = a.mean(axis=0).astype(np.float64)
    rho = 0.05
    kl = rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))
    layer = SparsityPenalty(0.3, rho, "kl")
    np.testing.assert_allclose(float(layer.penalty(a)), 0.3 * kl.sum(), rtol=1e-5)
    l1 = SparsityPenalty(0.2, kind="l1")
    np.testing.assert_allclose(
        float(l1.penalty(a)), 0.2 * np.abs(a).sum(axis=1).mean(), rtol=1e-6
    )
    # In a model, the penalty enters model.losses for a training call only.
    model = autoencoder(5, 3, hidden_units=(4,), sparsity=0.3, sparsity_target=rho)
    model({"ratings": R}, training=False)
    assert not model.losses
    model({"ratings": R}, training=True)
    v, mu = model.get_layer("encoder_1").get_weights()
    h = _sigmoid(_np(R) @ v + mu)
    rh = h.mean(axis=0)
    ref = 0.3 * np.sum(
        rho * np.log(rho / rh) + (1 - rho) * np.log((1 - rho) / (1 - rh))
    )
    np.testing.assert_allclose(float(sum(model.losses)), ref, rtol=1e-4)


@pytest.mark.parametrize("kind", ["dropout", "mask", "gaussian"])
def test_corruption_acts_only_in_training(kind):
    x = np.ones((200, 50), np.float32)
    layer = InputCorruption(0.4, kind, seed=1)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    noisy = layer(x, training=True).numpy()
    if kind == "gaussian":
        assert abs(noisy.std() - 0.4) < 0.02
        zeros = np.zeros((3, 4), np.float32)  # unobserved entries stay 0
        np.testing.assert_array_equal(layer(zeros, training=True).numpy(), zeros)
    else:
        assert abs((noisy == 0).mean() - 0.4) < 0.02
        survivors = np.unique(noisy[noisy != 0])
        scale = 1 / 0.6 if kind == "dropout" else 1.0
        np.testing.assert_allclose(survivors, [scale], rtol=1e-6)
    with pytest.raises(ValueError, match="corruption"):
        InputCorruption(1.0, kind if kind != "gaussian" else "mask")


def _cdae_ref(model, users, items):
    w, b = model.get_layer("item_encoder").get_weights()
    v = model.get_layer("user_node").get_weights()[0]
    w2, b2 = model.get_layer("scores").get_weights()
    node = np.where((users >= 0)[:, None] & (users < v.shape[0])[:, None], 0.0, 0.0)
    valid = (users >= 0) & (users < v.shape[0])
    node = np.zeros((users.size, v.shape[1]))
    node[valid] = v[users[valid]]
    return _sigmoid(_sigmoid(_np(items) @ w + b + node) @ w2 + b2)


def test_cdae_inference_is_deterministic_and_training_is_corrupted():
    model = cdae(6, 30, embedding_dim=5, corruption=0.5, seed=3)
    users = np.array([0, 1, 2, 3, 4, 5], np.int64)
    items = (np.random.default_rng(0).random((6, 30)) < 0.5).astype(np.float32)
    feed = {"user_id": users, "items": items}
    a = model(feed, training=False)["scores"].numpy()
    b = model(feed, training=False)["scores"].numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, _cdae_ref(model, users, items), atol=1e-5)
    t1 = model(feed, training=True)["scores"].numpy()
    t2 = model(feed, training=True)["scores"].numpy()
    assert np.abs(t1 - a).max() > 1e-3 and np.abs(t1 - t2).max() > 1e-3
    # predict() (Keras inference) equals the clean forward pass too.
    np.testing.assert_allclose(model.predict(feed, verbose=0)["scores"], a, atol=1e-6)


def test_cdae_user_node_changes_scores_and_unknown_users_get_a_zero_node():
    model = cdae(4, 12, embedding_dim=3, corruption=0.0)
    items = np.tile((np.arange(12) % 3 == 0).astype(np.float32), (4, 1))
    users = np.array([0, 1, 4, -1], np.int64)  # 4 and -1 are unknown
    got = model({"user_id": users, "items": items}, training=False)["scores"].numpy()
    np.testing.assert_allclose(got, _cdae_ref(model, users, items), atol=1e-5)
    assert np.abs(got[0] - got[1]).max() > 1e-4  # same items, different users
    np.testing.assert_allclose(got[2], got[3], atol=1e-7)  # both: no user node
    # Zeroing the user node table makes every user score like an unknown one.
    model.get_layer("user_node").set_weights([np.zeros((4, 3), np.float32)])
    flat = model({"user_id": users, "items": items}, training=False)["scores"].numpy()
    np.testing.assert_allclose(flat[0], got[2], atol=1e-6)


def test_cdae_scorer_gathers_the_model_scores():
    model = cdae(5, 9, embedding_dim=3)
    rows = np.array([0, 0, 1, 3, 4, 4], np.int64)
    cols = np.array([1, 2, 8, 0, 4, 5], np.int64)
    vec = rating_vectors(rows, cols, np.ones(6), num_rows=5, num_cols=9)
    score_fn = cdae_scorer(model, vec, batch_size=2)
    users = np.array([4, 0, 4, 2, 1, 0], np.int64)
    items = np.array([0, 8, 3, 2, 5, 1], np.int64)
    full = model({"user_id": np.arange(5), "items": vec.dense()}, training=False)[
        "scores"
    ].numpy()
    np.testing.assert_allclose(score_fn(users, items), full[users, items], atol=1e-6)


def test_predict_ratings_reads_the_reconstruction_and_defaults_unseen_pairs():
    # Users 0..4, items 0..3; item 3 and user 4 have no training rating.
    rows = np.array([0, 0, 1, 2, 2], np.int64)  # items
    cols = np.array([0, 2, 1, 3, 0], np.int64)  # users
    vec = rating_vectors(rows, cols, [5, 3, 4, 2, 1], num_rows=4, num_cols=5)
    model = autorec(5, 4, variant="item", hidden_units=(3,))
    recon = model({"ratings": vec.dense()}, training=False)["reconstruction"].numpy()
    users = np.array([1, 3, 0, 4, 2], np.int64)
    items = np.array([0, 2, 3, 1, 1], np.int64)
    got = predict_ratings(model, vec, users, items, variant="item", clip=None)
    ref = recon[items, users]
    ref[2] = 3.0  # item 3 unseen in training
    ref[3] = 3.0  # user 4 unseen in training
    np.testing.assert_allclose(got, ref, atol=1e-5)
    clipped = predict_ratings(model, vec, users, items, clip=(2.5, 2.6))
    assert clipped.min() >= 2.5 and clipped.max() <= 2.6
    user_model = autorec(5, 4, variant="user", hidden_units=(3,))
    with pytest.raises(ValueError, match="variant='user'"):
        predict_ratings(user_model, vec, users, items, variant="user")


def test_training_reduces_the_masked_loss_and_penalty_is_in_the_loss():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(40, 3))
    v = rng.normal(size=(30, 3))
    full = np.clip(np.round(3 + u @ v.T), 1, 5)
    mask = rng.random(full.shape) < 0.4
    rows, cols = np.nonzero(mask)
    vec = rating_vectors(rows, cols, full[mask], num_rows=40, num_cols=30)
    keras.utils.set_random_seed(0)
    model = autoencoder(
        30, 40, variant="item", hidden_units=(8,), corruption=0.1, l2=0.01
    )
    ds = vector_dataset(vec, batch_size=16, seed=0).repeat(25)  # 75 steps/epoch
    hist = fit_reconstruction(
        model, ds, epochs=4, learning_rate=0.03, num_vectors=vec.num_rows
    )
    losses = hist.history["loss"]
    assert losses[-1] < 0.3 * losses[0]
    pred = predict_ratings(model, vec, cols, rows, variant="item", clip=None)
    # Better than predicting the mean rating on the observed (training) entries.
    assert np.sqrt(np.mean((pred - full[mask]) ** 2)) < 0.8 * full[mask].std()


def test_bad_inputs_raise_clear_errors():
    model = autorec(5, 3, hidden_units=(4,))
    with pytest.raises(ValueError, match=r"shape"):
        model({"ratings": np.ones((2, 7), np.float32)})
    with pytest.raises(
        ValueError, match=r"shape \[batch, 5\]. Received shape \(2, 7\)"
    ):
        check_rating_inputs(np.ones((2, 7)), 5)
    bad = R.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        check_rating_inputs(bad, 5)
    np.testing.assert_array_equal(check_rating_inputs(R, 5), R)
    with pytest.raises(ValueError, match="`variant` must be one of"):
        autorec(5, 3, variant="items")
    with pytest.raises(ValueError, match="hidden_units"):
        autorec(5, 3, hidden_units=())
    with pytest.raises(ValueError, match="num_users"):
        autorec(0, 3)
    with pytest.raises(ValueError, match="KL sparsity needs"):
        autoencoder(5, 3, activation="relu", sparsity=0.1)
    with pytest.raises(ValueError, match="corruption_type"):
        autoencoder(5, 3, corruption=0.1, corruption_type="salt")
    with pytest.raises(ValueError, match="embedding_dim"):
        cdae(5, 3, embedding_dim=0)
    with pytest.raises(ValueError, match="`loss` must be one of"):
        ReconstructionTrainer(model, loss="hinge")
