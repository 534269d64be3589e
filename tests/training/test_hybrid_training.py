"""Training wrappers of the CF + content hybrids on a tiny synthetic cold split."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.coldstart import cold_item_split, evaluate_cold
from tfrec.data.pipelines import implicit_dataset
from tfrec.data.synthetic import synthetic_interactions
from tfrec.models.hybrid import hybrid_regularized
from tfrec.training import hybrid as H

FIT = {"epochs": 1, "batch_size": 256, "seed": 0}
D = 5


@pytest.fixture(scope="module")
def split():
    inter = synthetic_interactions(40, 30, per_user=8, seed=0)
    return cold_item_split(inter, cold_fraction=0.2, test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def content(split):
    return np.random.default_rng(0).random((split.num_items, D)).astype(np.float32)


@pytest.fixture(scope="module")
def baselines(split, content):
    keras.utils.set_random_seed(0)
    cf = H.train_cf(split, content, embedding_dim=4, **FIT)
    cbf = H.train_cbf(split, content, **FIT)
    return cf, cbf


def test_with_item_content_adds_the_items_rows(split, content):
    ds, _ = implicit_dataset(
        split.train["user_id"],
        split.train["item_id"],
        split.num_warm_items,
        num_negatives=1,
        batch_size=16,
    )
    x, y = next(
        iter(H.with_item_content(ds, content, keys=("item_id", "item_content")))
    )
    assert set(x) == {"item_id", "item_content"}
    np.testing.assert_array_equal(
        x["item_content"].numpy(), content[x["item_id"].numpy()]
    )
    assert np.all(x["item_id"].numpy() < split.num_warm_items)  # warm negatives only


def test_item_counts_are_training_counts_of_warm_items(split):
    counts = H.item_counts(split)
    assert counts.shape == (split.num_warm_items,)
    assert counts.sum() == split.train["item_id"].size
    assert counts.min() >= 1  # every warm item is seen in training


def test_weighted_and_switching_reuse_the_trained_baselines(split, content, baselines):
    cf, cbf = baselines
    users = np.repeat(np.arange(3), split.num_items)
    items = np.tile(np.arange(split.num_items), 3)
    s_cf = H.content_scorer(cf, content)(users, items)
    s_cbf = H.content_scorer(cbf, content)(users, items)

    weighted = H.build_weighted(cf, cbf, split, content, cf_weight=0.25)
    got = H.content_scorer(weighted, content)(users, items)
    np.testing.assert_allclose(got, 0.25 * s_cf + 0.75 * s_cbf, rtol=1e-5)

    threshold = float(np.median(H.item_counts(split)))
    switching = H.build_switching(cf, cbf, split, content, threshold=threshold)
    counts = np.r_[H.item_counts(split), np.zeros(split.num_cold_items)][items]
    want = np.where(counts >= threshold, s_cf, s_cbf)
    np.testing.assert_allclose(
        H.content_scorer(switching, content)(users, items), want, rtol=1e-6
    )

    learned = H.build_weighted(
        cf, cbf, split, content, cf_weight=0.5, learn_weight=True, **FIT
    )
    w = float(learned.get_layer("blend").weight_value())
    assert w != 0.5 and 0 < w < 1
    # components stayed frozen while w was fitted
    np.testing.assert_array_equal(
        learned.get_layer("mf_item_embedding").get_weights()[0],
        cf.get_layer("mf_item_embedding").get_weights()[0],
    )


def test_initialisation_equals_content_projection_before_training(split, content):
    from tfrec.models.hybrid import hybrid_initialized

    model = hybrid_initialized(
        split.num_users, split.num_warm_items, D, embedding_dim=3
    )
    warm = content[: split.num_warm_items]
    init = H.initialize_item_factors(model, warm)
    kernel, bias = model.get_layer("content_projection").get_weights()
    np.testing.assert_allclose(init, warm @ kernel + bias, rtol=1e-6)
    np.testing.assert_allclose(model.get_layer("item_factors").get_weights()[0], init)
    # before training, a warm item scores exactly like a cold item of equal content
    users = np.zeros(3, np.int64)
    warm_ids = np.array([0, 1, 2], np.int64)
    score = H.content_scorer(model, content)
    cold_like = model(
        {
            "user_id": users,
            "item_id": np.full(3, -1, np.int64),
            "item_content": content[:3],
        }
    )["score"]
    np.testing.assert_allclose(score(users, warm_ids), np.asarray(cold_like), rtol=1e-6)
    with pytest.raises(ValueError, match="one row per item"):
        H.initialize_item_factors(model, warm[:-1])


def test_train_initialized_keeps_projection_frozen_and_moves_factors(split, content):
    model = H.train_initialized(split, content, embedding_dim=3, pre_epochs=1, **FIT)
    projection = model.get_layer("content_projection")
    assert not projection.trainable_weights
    kernel, bias = projection.get_weights()
    start = content[: split.num_warm_items] @ kernel + bias
    moved = model.get_layer("item_factors").get_weights()[0]
    assert not np.allclose(moved, start)  # trained after the content start
    assert np.abs(moved - start).max() < 1.0  # ... from that start


def test_regularized_trainer_loss_is_log_loss_plus_penalty(split, content):
    model = hybrid_regularized(
        split.num_users, split.num_warm_items, D, embedding_dim=3
    )
    aux = H._penalty_fn(model, 0.5)
    trainer = H.HybridTrainer(model, aux)
    trainer.compile(loss={"score": keras.losses.BinaryCrossentropy()})
    users = np.array([0, 1, 2, 3], np.int64)
    items = np.array([0, 1, 2, 3], np.int64)
    x = {"user_id": users, "item_id": items, "item_content": content[items]}
    y = {"score": np.array([1, 0, 1, 0], np.float32)}
    p = np.asarray(model(x)["score"])
    q = model.get_layer("item_factors").get_weights()[0][items]
    kernel, bias = model.get_layer("content_map").get_weights()
    f = content[items] @ kernel + bias
    yy = y["score"]
    want = -np.mean(yy * np.log(p) + (1 - yy) * np.log(1 - p)) + 0.5 * np.mean(
        np.sum((q - f) ** 2, 1)
    )
    got = trainer.compute_loss(x=x, y=y, y_pred={"score": tf.constant(p)})
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_regularized_training_pulls_factors_towards_content(split, content):
    weak = H.train_regularized(
        split, content, embedding_dim=3, content_weight=0.0, **{**FIT, "epochs": 2}
    )
    strong = H.train_regularized(
        split, content, embedding_dim=3, content_weight=10.0, **{**FIT, "epochs": 2}
    )

    def gap(m):
        q = m.get_layer("item_factors").get_weights()[0]
        k, b = m.get_layer("content_map").get_weights()
        return np.mean(np.sum((q - (content[: len(q)] @ k + b)) ** 2, 1))

    assert gap(strong) < gap(weak)


def test_joint_training_learns_to_reconstruct_content(split, content):
    model = H.train_joint(
        split, content, embedding_dim=3, content_weight=1.0, **{**FIT, "epochs": 2}
    )
    assert np.abs(model.get_layer("item_offset").get_weights()[0]).max() > 0
    scores = H.content_scorer(model, content)(
        np.zeros(3, np.int64), split.cold_items[:3]
    )
    assert np.all(np.isfinite(scores))


def test_mapping_fits_content_map_to_mf_factors(split, content, baselines):
    cf = baselines[0]
    model = H.train_mapping(split, content, cf_model=cf, map_epochs=1)
    mse_1 = np.mean(
        (
            model.get_layer("content_map")(content[: split.num_warm_items]).numpy()
            - H.mf_item_vectors(cf)
        )
        ** 2
    )
    mse = H.fit_content_map(
        model, content[: split.num_warm_items], H.mf_item_vectors(cf), epochs=60
    )
    assert mse < mse_1
    np.testing.assert_allclose(
        model.get_layer("item_factors").get_weights()[0], H.mf_item_vectors(cf)
    )
    # warm items score exactly like the MF they came from
    users, items = np.arange(4), np.arange(4)
    np.testing.assert_allclose(
        H.content_scorer(model, content)(users, items),
        H.content_scorer(cf, content)(users, items),
        rtol=1e-5,
    )
    metrics = evaluate_cold(split, H.content_scorer(model, content), ks=(5,))
    assert 0.0 <= metrics["recall@5"] <= 1.0


def test_content_scorer_and_trainers_reject_bad_content(split, content, baselines):
    cbf_model = baselines[1]
    bad = content.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 row"):
        H.content_scorer(cbf_model, bad)
    with pytest.raises(ValueError, match=r"shape \(batch, 5\)"):
        H.content_scorer(cbf_model, content[:, :4])
    with pytest.raises(ValueError, match="one row per item index"):
        H.train_cbf(split, content[:-1], **FIT)
    with pytest.raises(ValueError, match="NaN or infinite"):
        H.train_regularized(split, bad, **FIT)
    score = H.content_scorer(cbf_model, content)
    with pytest.raises(ValueError, match="Item indices must be in"):
        score(np.array([0]), np.array([split.num_items]))


def test_copy_weights_needs_a_matching_layer(split, content, baselines):
    cf, cbf = baselines
    other = hybrid_regularized(
        split.num_users, split.num_warm_items, D, embedding_dim=4
    )
    with pytest.raises(ValueError, match="No layer"):
        H.copy_weights(cbf, other)
    copied = H.copy_weights(cf, H.build_weighted(cf, cbf, split, content))
    assert {"mf_item_embedding", "mf_item_bias", "global_bias"} <= set(copied)


def test_joint_trainer_loss_matches_joint_loss_in_numpy(split, content):
    from tfrec.models.hybrid import hybrid_joint

    model = hybrid_joint(split.num_users, split.num_warm_items, D, embedding_dim=3)
    rng = np.random.default_rng(2)
    for w in model.trainable_weights:
        w.assign(rng.normal(0, 0.3, w.shape).astype(np.float32))
    decoder = keras.layers.Dense(D, name="content_decoder")
    decoder.build((None, 4))
    trainer = H.HybridTrainer(
        model, H._reconstruction_fn(model, decoder, 0.7), [decoder]
    )
    trainer.compile(loss={"score": keras.losses.BinaryCrossentropy()})
    items = np.array([0, 3, 5, 7, 2], np.int64)
    x = {
        "user_id": np.array([0, 1, 2, 3, 4], np.int64),
        "item_id": items,
        "item_content": content[items],
    }
    y = np.array([1, 0, 0, 1, 1], np.float32)
    p = np.asarray(model(x)["score"])
    k, b = model.get_layer("content_encoder").get_weights()
    v = content[items] @ k + b + model.get_layer("item_offset").get_weights()[0][items]
    dk, db = decoder.get_weights()
    log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    want = log_loss + 0.7 * np.mean((v @ dk + db - content[items]) ** 2)
    got = trainer.compute_loss(x=x, y={"score": y}, y_pred={"score": tf.constant(p)})
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert {w.path for w in decoder.weights} <= {
        w.path for w in trainer.trainable_weights
    }
