"""NCF family maths against numpy, pre-training, OOV policy and bad hyperparameters."""

from __future__ import annotations

import numpy as np
import pytest

import tfrec
from tfrec.models.ncf import gmf, load_pretrained_neumf, mf, ncf_mlp, neumf
from tfrec.registry import Tolerance, register_model

NU, NI = 6, 9
IDS = {
    "user_id": np.array([0, 1, 5, 3], np.int64),
    "item_id": np.array([8, 0, 4, 4], np.int64),
}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _randomise(model, seed=1):
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()]
    )


def test_gmf_score_matches_numpy():
    model = gmf(NU, NI, embedding_dim=4)
    _randomise(model)
    P = model.get_layer("gmf_user_embedding").get_weights()[0]
    Q = model.get_layer("gmf_item_embedding").get_weights()[0]
    h, b = model.get_layer("prediction").get_weights()
    want = sigmoid((P[IDS["user_id"]] * Q[IDS["item_id"]]) @ h[:, 0] + b[0])
    got = np.asarray(model(IDS)["score"])
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mf_score_is_dot_plus_biases():
    model = mf(NU, NI, embedding_dim=3)
    _randomise(model)
    P = model.get_layer("mf_user_embedding").get_weights()[0]
    Q = model.get_layer("mf_item_embedding").get_weights()[0]
    bu = model.get_layer("mf_user_bias").get_weights()[0][:, 0]
    bi = model.get_layer("mf_item_bias").get_weights()[0][:, 0]
    b = model.get_layer("global_bias").get_weights()[0]
    u, i = IDS["user_id"], IDS["item_id"]
    want = sigmoid(np.sum(P[u] * Q[i], axis=1) + bu[u] + bi[i] + b)
    np.testing.assert_allclose(np.asarray(model(IDS)["score"]), want, rtol=1e-5)


def test_mlp_tower_sizes_follow_the_paper():
    model = ncf_mlp(NU, NI, embedding_dim=8)
    assert model.get_layer("mlp_user_embedding").output_dim == 32  # 64-wide concat
    widths = [model.get_layer(f"mlp_dense_{k}").units for k in (1, 2, 3)]
    assert widths == [32, 16, 8]


def test_explicit_task_outputs_unbounded_rating():
    model = mf(NU, NI, task="explicit")
    _randomise(model, seed=3)
    model.get_layer("global_bias").set_weights([np.array(3.5, np.float32)])
    out = model(IDS)
    assert list(out) == ["rating"]
    assert np.asarray(out["rating"]).mean() > 1.5  # not squashed into (0, 1)


def test_neumf_pretraining_mixes_logits_with_alpha():
    kwargs = dict(embedding_dim=4)
    g, m, n = gmf(NU, NI, **kwargs), ncf_mlp(NU, NI, **kwargs), neumf(NU, NI, **kwargs)
    _randomise(g, 1)
    _randomise(m, 2)
    alpha = 0.3
    load_pretrained_neumf(n, g, m, alpha=alpha)

    def logit(p):
        p = np.asarray(p, np.float64)
        return np.log(p / (1 - p))

    lg, lm, ln = (logit(x(IDS)["score"]) for x in (g, m, n))
    np.testing.assert_allclose(ln, alpha * lg + (1 - alpha) * lm, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(
        n.get_layer("mlp_dense_2").get_weights()[0],
        m.get_layer("mlp_dense_2").get_weights()[0],
    )


def test_neumf_pretraining_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="same"):
        load_pretrained_neumf(
            neumf(NU, NI), gmf(NU, NI, embedding_dim=16), ncf_mlp(NU, NI)
        )


@pytest.mark.parametrize("builder", [gmf, ncf_mlp, neumf, mf])
def test_out_of_vocabulary_ids_use_zero_embeddings(builder):
    model = builder(NU, NI)
    _randomise(model)
    oov = {
        "user_id": np.array([-1, NU, 10**9], np.int64),
        "item_id": np.array([2, 2, 2], np.int64),
    }
    scores = np.asarray(model(oov)[next(iter(model.output))])
    # Every unknown user gets the same score: the zero-vector "nobody" user.
    np.testing.assert_allclose(scores, scores[0], rtol=1e-6)
    known = np.asarray(
        model({"user_id": np.array([0]), "item_id": np.array([2])})[
            next(iter(model.output))
        ]
    )
    assert not np.allclose(known, scores[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_users=0, num_items=5), "num_users"),
        (dict(num_users=5, num_items=-1), "num_items"),
        (dict(num_users=5, num_items=5, embedding_dim=0), "embedding_dim"),
        (dict(num_users=5, num_items=5, hidden_units=()), "hidden_units"),
        (dict(num_users=5, num_items=5, hidden_units=(8, 0)), "hidden_units"),
        (dict(num_users=5, num_items=5, activation="swishy"), "activation"),
        (dict(num_users=5, num_items=5, dropout=1.5), "dropout"),
        (dict(num_users=5, num_items=5, task="ordinal"), "task"),
    ],
)
def test_invalid_hyperparameters_raise_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tfrec.create_model("neumf", **kwargs)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_lecture_activations_build(activation):
    model = ncf_mlp(NU, NI, activation=activation, dropout=0.2)
    assert model.get_layer("mlp_dense_1").activation.__name__ == activation
    assert model.get_layer("mlp_dropout_1").rate == 0.2


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"Did you mean 'neumf'\?.*gmf"):
        tfrec.create_model("nuemf", num_users=3, num_items=3)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model(
            task="ranking",
            example_inputs=lambda *a: {},
            parity=Tolerance(1, 1, "x"),
            name="gmf",
        )(lambda: None)
