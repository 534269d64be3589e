"""Zoo-wide tests: every registered model gets these for free."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrec
from tfrec.registry import model_info

MODELS = tfrec.list_models()


def _build(name):
    info = model_info(name)
    return info, info.builder(**info.test_kwargs)


def _inputs(info, batch, seed=0):
    return info.example_inputs(info.test_kwargs, batch, np.random.default_rng(seed))


def _np(outputs):
    return {k: np.asarray(v) for k, v in outputs.items()}


def test_registry_has_the_ncf_family():
    assert {"gmf", "ncf_mlp", "neumf", "mf"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_forward_pass_shapes_and_finite(name):
    info, model = _build(name)
    out = _np(model(_inputs(info, 9), training=False))
    assert out, "model returned no outputs"
    for key, value in out.items():
        assert value.shape[0] == 9, key
        assert np.all(np.isfinite(value)), key
    assert isinstance(model.input, dict) and isinstance(model.output, dict)


@pytest.mark.parametrize("name", MODELS)
def test_every_trainable_weight_gets_a_gradient(name):
    info, model = _build(name)
    x = _inputs(info, 64)
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        # Integer outputs (ids from a top-k) carry no gradient; the float ones do.
        floats = [v for v in out.values() if v.dtype.is_floating]
        loss = tf.add_n([tf.reduce_mean(tf.square(v - 0.3)) for v in floats])
    grads = tape.gradient(loss, model.trainable_weights)
    assert model.trainable_weights
    for w, g in zip(model.trainable_weights, grads, strict=True):
        assert g is not None, f"{w.path} got no gradient"
        g = tf.convert_to_tensor(g)
        assert float(tf.reduce_max(tf.abs(g))) > 0, f"{w.path} got a zero gradient"


@pytest.mark.parametrize("name", MODELS)
def test_config_and_keras_file_round_trip(name, tmp_path):
    info, model = _build(name)
    x = _inputs(info, 11)
    ref = _np(model(x, training=False))

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    for k, v in _np(clone(x, training=False)).items():
        np.testing.assert_allclose(v, ref[k], atol=1e-6)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for k, v in _np(loaded(x, training=False)).items():
        np.testing.assert_allclose(v, ref[k], atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_predict_on_tf_data(name):
    info, model = _build(name)
    x = _inputs(info, 50)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(16)
    pred = model.predict(ds, verbose=0)
    ref = _np(model(x, training=False))
    for k in ref:
        np.testing.assert_allclose(np.asarray(pred[k]), ref[k], atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_export_parity_saved_model_and_onnx(name, zoo_exports):
    from export.serving import ExportedModel

    info = model_info(name)
    model, path = zoo_exports(name)
    assert path == zoo_exports.base / name / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    manifest = json.loads((path / "manifest.json").read_text())
    for runtime in ("onnx", "saved_model"):
        report = manifest["parity"][runtime]
        assert report["passed"] is True, report
        assert report["max_abs_diff"] <= info.parity.atol + 1e-12
    assert manifest["parity"]["onnx_input_names_match"] is True
    assert sorted(s["name"] for s in manifest["inputs"]) == sorted(model.input)
    # Both artifacts reproduce Keras on fresh inputs, through the serving loaders.
    x = _inputs(info, 5, seed=7)
    ref = _np(model(x, training=False))
    for runtime in ("onnx", "saved_model"):
        got = ExportedModel(path, runtime=runtime)(x)
        for k in ref:
            np.testing.assert_allclose(
                got[k], ref[k], atol=info.parity.atol, rtol=info.parity.rtol
            )
