"""Factor models score every item as one matmul (tfrec/evaluation/factors.py).

The factor scores equal the pair model's within float32 tolerance (the sums run
in another order), for in-vocabulary and out-of-vocabulary users; the runner's
scorer (`keras_scorer`, with its ``score_rows``) gives the same full-ranking
metrics as the pair scorer on a real split (MovieLens-100k, leave-one-out,
seen items excluded).
"""

from __future__ import annotations

import numpy as np
import pytest

FACTOR_MODELS = [
    ("mf", {}), ("mf", {"task": "explicit"}), ("gmf", {}), ("bpr_mf", {}),
    ("neumf", {}), ("ncf_mlp", {}), ("vbpr", {"feature_dim": 6}),
]  # fmt: skip


def _randomised(name, kwargs, seed=0):
    """The model with weights of a spread that makes the score differences large
    (the initial stddev-0.01 tables give near-equal scores)."""
    import keras

    from tfrec.registry import create_model

    keras.utils.set_random_seed(seed)
    model = create_model(name, **kwargs)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0.0, 0.5, w.shape).astype("float32"))
    return model


@pytest.mark.parametrize(("name", "extra"), FACTOR_MODELS,
                         ids=[n + "".join(f"-{v}" for v in e.values())
                              for n, e in FACTOR_MODELS])  # fmt: skip
def test_factor_scores_equal_the_pair_model(name, extra):
    import tensorflow as tf

    from tfrec.evaluation.factors import FactorScores, factor_rule
    from tfrec.evaluation.scoring import output_name

    kwargs = {"num_users": 13, "num_items": 17, **extra}
    model = _randomised(name, kwargs)
    factor = factor_rule(model, name)
    assert factor is not None
    rng = np.random.default_rng(1)
    feats = ({"item_features": rng.normal(size=(17, 6)).astype(np.float32)}
             if name == "vbpr" else {})  # fmt: skip
    out = output_name(model)
    scorer = FactorScores(model, factor, out, feats)
    users = np.array([0, 3, 12, -1, 13, 99], np.int64)  # the last three: OOV
    got = scorer.scores(tf.constant(users), scorer.item_side(17)).numpy()
    feed = {"user_id": np.repeat(users, 17), "item_id": np.tile(np.arange(17), 6)}
    if feats:
        feed["item_features"] = np.tile(feats["item_features"], (6, 1))
    want = np.asarray(model(feed, training=False)[out]).reshape(6, 17)
    assert got.shape == (6, 17) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert np.abs(want).max() > 0.1  # not a degenerate all-zero model


def test_factor_rule_needs_every_layer():
    import keras

    from tfrec.evaluation.factors import factor_rule
    from tfrec.registry import create_model

    model = create_model("mf", num_users=3, num_items=4)
    assert factor_rule(model) is not None
    # A model of another name has no rule; a model missing a named layer neither.
    other = create_model("ncf_mlp", num_users=3, num_items=4)
    assert factor_rule(other, "mf") is None
    plain = keras.Model(model.input, model.output, name="wide_deep")
    assert factor_rule(plain) is None


@pytest.fixture(scope="module")
def ml100k():
    from tfrec.data.datasets import load_interactions
    from tfrec.data.splits import leave_one_out

    return leave_one_out(load_interactions("movielens-100k", download=False),
                         num_negatives=20, seed=0)  # fmt: skip


@pytest.mark.parametrize("name", ["mf", "neumf"])
def test_runner_scorer_metrics_equal_the_pair_scorer(name, ml100k):
    from tfrec.evaluation.factors import factor_rule
    from tfrec.evaluation.protocols import split_protocols
    from tfrec.evaluation.scoring import keras_scorer

    split = ml100k
    model = _randomised(name, {"num_users": split.num_users,
                               "num_items": split.num_items})  # fmt: skip
    assert factor_rule(model) is not None
    full = split_protocols(split, "test", ks=(5, 10), full=True)["full"]
    fast = keras_scorer(model)
    assert fast.score_rows.__qualname__.startswith("factor_rows")
    pairs = keras_scorer(model, rows="none")
    assert not hasattr(pairs, "score_rows")
    want, got = full.evaluate(pairs), full.evaluate(fast)
    assert set(got) == set(want) and want["hr@10"] > 0
    for key in want:
        assert abs(got[key] - want[key]) <= 1e-9, (key, got[key], want[key])


def test_tiled_pairs_rows_for_other_pair_models_and_bad_rows():
    from tfrec.evaluation.scoring import keras_scorer
    from tfrec.registry import create_model

    model = create_model("mf", num_users=5, num_items=7)
    tiled = keras_scorer(model, rows="pairs")
    assert tiled.score_rows.__qualname__.startswith("row_scorer")
    users = np.arange(5)
    np.testing.assert_array_equal(
        tiled.score_rows(users, 7), tiled(np.repeat(users, 7), np.tile(np.arange(7), 5))
        .reshape(5, 7))  # fmt: skip
    with pytest.raises(ValueError, match="rows"):
        keras_scorer(model, rows="matmul")
