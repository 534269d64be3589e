"""Wide & Deep: wide-part arithmetic, crosses, the two optimisers, FTRL's L1,
OOV handling through export, and input validation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.tabular import check_features
from tfrec.models.wide_deep import (
    _TEST_KWARGS,
    example_inputs,
    is_wide_variable,
    wide_deep,
)
from tfrec.recipes.wide_deep import wide_deep_trainer
from tfrec.training.multi_optimizer import MultiOptimizerTrainer

VOCAB = _TEST_KWARGS["vocabularies"]
GENRES = _TEST_KWARGS["genre_names"]  # Action, Comedy, Drama, Horror


def _rows(**columns):
    """A feature batch from lists of raw values."""
    out = {
        k: np.array(v, dtype=object if isinstance(v[0], str) else None)
        for k, v in columns.items()
    }
    out["genres"] = np.asarray(columns["genres"], np.float32)
    for k in ("user_id", "item_id", "year"):
        out[k] = np.asarray(columns[k], np.int64)
    return out


# Row 0: every value known. Row 1: every categorical value unknown.
HAND_ROWS = _rows(
    user_id=[3, 424242],
    item_id=[13, 7],
    gender=["M", "X"],
    age=["25-34", "99+"],
    occupation=["student", "astronaut"],
    zip_prefix=["5", "Z"],
    genres=[[0, 1, 0, 1], [1, 0, 0, 0]],
    year=[1977, 0],
)


def _tiny(**kwargs):
    return wide_deep(**{**_TEST_KWARGS, **kwargs})


def _set_random_wide_weights(model, rng):
    weights = {}
    for layer in model.layers:
        if layer.name.startswith("wide_") and layer.weights:
            values = [rng.normal(size=w.shape).astype(np.float32) for w in layer.weights]
            layer.set_weights(values)
            weights[layer.name] = values[0]
    return weights


def test_cross_ids_that_fire_on_a_hand_made_row():
    model = _tiny(mode="wide")
    names = ("cross_gender_x_genres", "cross_occupation_x_genres", "cross_age_x_gender")
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    g_x_genre, occ_x_genre, age_x_gender = (np.asarray(t) for t in probe(HAND_ROWS))
    # gender_x_genres pairs: (F, Action..Horror) = 1..4, (M, Action..Horror) = 5..8.
    np.testing.assert_array_equal(g_x_genre[0], [5, 6, 7, 8])
    active = HAND_ROWS["genres"][0] > 0  # Comedy and Horror
    np.testing.assert_array_equal(g_x_genre[0][active], [6, 8])
    # occupation_x_genres: (student, Comedy) = 2 and (student, Horror) = 5 were
    # seen; (student, Action) and (student, Drama) were not -> 0.
    np.testing.assert_array_equal(occ_x_genre[0], [0, 2, 0, 5])
    np.testing.assert_array_equal(age_x_gender, [2, 0])  # (25-34, M) is pair 2
    # Unknown values land in OOV bucket 0 of every cross.
    assert not g_x_genre[1].any() and not occ_x_genre[1].any()


def test_wide_logit_is_the_sum_of_the_active_weights_plus_bias():
    model = _tiny(mode="wide", task="rating")  # identity output: the wide logit
    w = _set_random_wide_weights(model, np.random.default_rng(3))
    got = np.asarray(model(HAND_ROWS)["rating"])

    # Lookup index = 1 + position in the vocabulary; 0 is the OOV bucket.
    g = HAND_ROWS["genres"][0]
    offset = _TEST_KWARGS["logit_offset"]  # the fixed base rate
    expected0 = (
        offset
        + w["wide_bias"]
        + w["wide_user_id"][1 + VOCAB["user_id"].index(3)]
        + w["wide_item_id"][1 + VOCAB["item_id"].index(13)]
        + w["wide_gender"][2]
        + w["wide_age"][2]
        + w["wide_occupation"][3]
        + w["wide_zip_prefix"][3]
        + g @ w["wide_genres"]
        + w["wide_year_bucket"][5]  # 1977 >= 1, 1930, 1950, 1960, 1970
        + w["wide_cross_gender_x_genres"][6]
        + w["wide_cross_gender_x_genres"][8]
        + w["wide_cross_occupation_x_genres"][2]
        + w["wide_cross_occupation_x_genres"][5]
        + w["wide_cross_age_x_gender"][2]
    )
    oov = sum(
        w[f"wide_{f}"][0]
        for f in ("user_id", "item_id", "gender", "age", "occupation", "zip_prefix")
    )
    expected1 = (
        offset
        + w["wide_bias"]
        + oov
        + w["wide_genres"][0]  # Action
        + w["wide_year_bucket"][0]  # unknown year
        + w["wide_cross_gender_x_genres"][0]  # OOV cross, Action active
        + w["wide_cross_occupation_x_genres"][0]
        + w["wide_cross_age_x_gender"][0]
    )
    np.testing.assert_allclose(got, [expected0, expected1], rtol=1e-5, atol=1e-5)


def test_modes_build_only_their_part():
    names = {m: {layer.name for layer in _tiny(mode=m).layers} for m in ("wide", "deep")}
    assert any(n.startswith("wide_") for n in names["wide"])
    assert not any(n.startswith("deep_") for n in names["wide"])
    assert not any(n.startswith("wide_") for n in names["deep"])
    joint = _tiny(mode="joint")
    wide_vars = [v for v in joint.trainable_variables if is_wide_variable(v)]
    # The one bias of Eq. 3 is in the wide part; the deep logit has none.
    assert any(v.path.startswith("wide_bias") for v in wide_vars)
    assert len(joint.get_layer("deep_logit").weights) == 1


def _dense_and_squares(grad, shape):
    """The dense gradient and the per-step sum of squared gradients as Keras
    optimisers accumulate them: for an embedding lookup (``IndexedSlices``) each
    occurrence of a row is squared on its own before summing."""
    if isinstance(grad, tf.IndexedSlices):
        idx, val = grad.indices.numpy(), grad.values.numpy()
        dense, squares = np.zeros(shape, np.float64), np.zeros(shape, np.float64)
        np.add.at(dense, idx, val)
        np.add.at(squares, idx, val.astype(np.float64) ** 2)
        return dense, squares
    dense = np.asarray(grad, np.float64)
    return dense, dense**2


def _numpy_ftrl(var, grad, lr, l1, l2, accum0=0.1):
    """One FTRL-Proximal step (McMahan et al. 2013) from a fresh state."""
    g, sq = _dense_and_squares(grad, var.shape)
    new_accum = accum0 + sq
    linear = g - (np.sqrt(new_accum) - np.sqrt(accum0)) / lr * var
    quadratic = np.sqrt(new_accum) / lr + 2 * l2
    return np.where(np.abs(linear) > l1, (np.sign(linear) * l1 - linear) / quadratic, 0)


def _numpy_adagrad(var, grad, lr, accum0=0.1, eps=1e-7):
    g, sq = _dense_and_squares(grad, var.shape)
    return var - lr * g / np.sqrt(accum0 + sq + eps)


def test_each_optimiser_updates_only_its_own_variables():
    model = _tiny(mode="joint")
    x = example_inputs(_TEST_KWARGS, 32, np.random.default_rng(0))
    y = (np.random.default_rng(1).random(32) < 0.5).astype(np.float32)
    trainer = wide_deep_trainer(
        model, wide_learning_rate=0.3, l1=0.002, l2_wide=0.01, deep_learning_rate=0.2
    )
    ftrl, adagrad = trainer.optimizers
    assert isinstance(ftrl, keras.optimizers.Ftrl)
    assert isinstance(adagrad, keras.optimizers.Adagrad)
    wide = [v for v in model.trainable_variables if is_wide_variable(v)]
    deep = [v for v in model.trainable_variables if not is_wide_variable(v)]
    assert wide and deep and len(wide) + len(deep) == len(model.trainable_variables)

    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        loss = keras.losses.BinaryCrossentropy()(y, model(x, training=True)["score"])
    grads = tape.gradient(loss, model.trainable_variables)
    trainer.train_on_batch(x, y)

    for v, old, g in zip(model.trainable_variables, before, grads, strict=True):
        if is_wide_variable(v):
            want = _numpy_ftrl(old, g, lr=0.3, l1=0.002, l2=0.01)
        else:
            want = _numpy_adagrad(old, g, lr=0.2)
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-4, atol=1e-6, err_msg=v.path)
        assert not np.array_equal(v.numpy(), old), f"{v.path} did not move"
    # Each optimiser holds state for its own variables only, and stepped once.
    assert int(ftrl.iterations) == 1 and int(adagrad.iterations) == 1
    assert len(ftrl._accumulators) == len(wide)
    assert len(adagrad._accumulators) == len(deep)


def test_trainer_rejects_variables_without_or_with_two_optimisers():
    model = _tiny(mode="joint")
    some = model.trainable_variables[:2]
    with pytest.raises(ValueError, match="without an optimiser"):
        MultiOptimizerTrainer(model, [(keras.optimizers.SGD(), some)])
    with pytest.raises(ValueError, match="exactly one optimiser"):
        MultiOptimizerTrainer(
            model,
            [
                (keras.optimizers.SGD(), model.trainable_variables),
                (keras.optimizers.SGD(), some),
            ],
        )


def _toy_gender_data(n, rng):
    """Clicks depend on gender only; every other feature is noise."""
    x = example_inputs(_TEST_KWARGS, n, rng)
    x["gender"] = rng.choice(np.array(["F", "M"], dtype=object), n)
    p = np.where(x["gender"] == "M", 0.9, 0.1)
    return x, (rng.random(n) < p).astype(np.float32)


def test_ftrl_l1_gives_exact_zeros_to_useless_wide_features():
    rng = np.random.default_rng(0)
    x, y = _toy_gender_data(2048, rng)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(128)

    def train(l1):
        keras.utils.set_random_seed(0)
        model = _tiny(mode="wide")
        trainer = wide_deep_trainer(model, wide_learning_rate=0.5, l1=l1)
        trainer.fit(ds, epochs=4, verbose=0)
        return {
            layer.name: layer.get_weights()[0]
            for layer in model.layers
            if layer.name.startswith("wide_") and layer.name != "wide_bias"
            and layer.weights
        }

    sparse, dense = train(l1=1.0), train(l1=0.0)
    noise = [n for n in sparse if n not in ("wide_gender",)]
    # The signal survives: M and F get weights of opposite signs.
    g = sparse["wide_gender"]
    assert g[0] == 0.0 and g[1] * g[2] < 0 and abs(g[1]) > 0.1
    # Every weight of every noise feature is exactly zero with L1...
    for name in noise:
        if name.startswith("wide_cross_gender"):
            continue  # gender x genre carries the gender signal too
        assert np.count_nonzero(sparse[name]) == 0, (name, sparse[name])
    # ... and not without it.
    assert sum(np.count_nonzero(dense[n]) for n in noise) > 20


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from export import export_model

    keras.utils.set_random_seed(0)
    model = _tiny(mode="joint")
    rng = np.random.default_rng(5)
    for layer in model.layers:  # non-zero wide weights, so OOV rows matter
        if layer.name.startswith("wide_") and layer.weights:
            layer.set_weights(
                [rng.normal(size=w.shape).astype(np.float32) for w in layer.weights]
            )
    path = export_model(
        model,
        "wide_deep",
        base_dir=tmp_path_factory.mktemp("export"),
        example_inputs=lambda b, r: example_inputs(_TEST_KWARGS, b, r),
    )
    return model, path


def test_unknown_values_use_the_oov_bucket_in_tf_and_onnx(exported):
    from export.serving import ExportedModel

    model, path = exported
    # Rows 1-2: different unknown values everywhere -> the same OOV buckets, so
    # the same score; row 0 is known.
    rows = _rows(
        user_id=[3, 424242, -5],
        item_id=[13, 7, 10**12],
        gender=["M", "X", ""],
        age=["25-34", "99+", "?"],
        occupation=["student", "astronaut", "pirate"],
        zip_prefix=["5", "Z", "x"],
        genres=[[0, 1, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0]],
        year=[1977, 0, 0],
    )
    ref = np.asarray(model(rows)["score"])
    assert ref[1] == pytest.approx(ref[2], abs=1e-7) and ref[0] != pytest.approx(ref[1])
    lookups = keras.Model(
        model.input,
        [model.get_layer(f"{f}_lookup").output for f in ("user_id", "gender", "age")],
    )
    for idx in lookups(rows):
        np.testing.assert_array_equal(np.asarray(idx)[1:], [0, 0])
    for runtime in ("onnx", "saved_model"):
        got = ExportedModel(path, runtime=runtime)(rows)["score"]
        np.testing.assert_allclose(got, ref, atol=1e-6, err_msg=runtime)


def test_missing_columns_and_wrong_dtypes_give_clear_errors(exported):
    from export.serving import ExportedModel

    _, path = exported
    served = ExportedModel(path, runtime="onnx")
    missing = {k: v for k, v in HAND_ROWS.items() if k != "occupation"}
    with pytest.raises(ValueError, match=r"Missing feature column\(s\) \['occupation'\]"):
        check_features(missing)
    with pytest.raises(ValueError, match=r"missing \['occupation'\]"):
        served(missing)
    wrong = dict(HAND_ROWS, gender=np.array([1, 0]))
    with pytest.raises(TypeError, match="'gender' must hold strings"):
        check_features(wrong)
    with pytest.raises(TypeError, match="'gender' must hold strings"):
        served(wrong)
    as_text = dict(HAND_ROWS, year=np.array(["1977", "0"]))
    with pytest.raises(TypeError, match="'year' must be int64"):
        check_features(as_text)
    with pytest.raises(TypeError, match="'year' must have dtype int64"):
        served(as_text)
    with pytest.raises(ValueError, match="'genres' must have 4 columns"):
        check_features(dict(HAND_ROWS, genres=np.zeros((2, 3), np.float32)), 4)


def test_builder_argument_errors():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        _tiny(mode="both")
    with pytest.raises(ValueError, match="`task` must be one of"):
        _tiny(task="ranking")
    vocab = {k: v for k, v in VOCAB.items() if k != "zip_prefix"}
    with pytest.raises(ValueError, match=r"lacks \['zip_prefix'\]"):
        _tiny(vocabularies=vocab)
    with pytest.raises(ValueError, match="Cross 'genres_x_gender'"):
        _tiny(crosses={"genres_x_gender": []})
    with pytest.raises(ValueError, match="outside the vocabularies"):
        _tiny(crosses={"gender_x_genres": [["M", "Western"]]})
