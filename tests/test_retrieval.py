"""TFRS BruteForce retrieval index: top-K against numpy, export parity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfrec.models.youtube import item_table, youtube_candidate
from tfrec.registry import model_info
from tfrec.retrieval import RetrievalIndex, topk_reference

KW = {"num_items": 23, "embedding_dim": 8, "hidden_units": (16, 8), "num_genres": 5}


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    return youtube_candidate(**KW)


def _queries(batch, seed=0):
    x = model_info("youtube_candidate").example_inputs(
        KW, batch, np.random.default_rng(seed)
    )
    x.pop("item_id")
    return x


def _q(model, x):
    return np.asarray(model.get_layer("query_tower")(x)["query_embedding"])


def test_top_k_equals_numpy_argsort_without_exclusions(model):
    index = RetrievalIndex(model.get_layer("query_tower"), item_table(model), k=7,
                           exclude_history=False)
    x = _queries(9)
    out = index(x)
    ids, scores = topk_reference(_q(model, x), item_table(model), 7)
    np.testing.assert_array_equal(out["item_ids"], ids)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-5, atol=1e-6)
    assert out["item_ids"].dtype == np.int64 and out["scores"].shape == (9, 7)


def test_history_items_are_excluded(model):
    index = RetrievalIndex(model.get_layer("query_tower"), item_table(model), k=5)
    x = _queries(8, seed=1)
    out = index(x)
    ids, scores = topk_reference(_q(model, x), item_table(model), 5,
                                 exclude=x["item_history"])
    np.testing.assert_array_equal(out["item_ids"], ids)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-5, atol=1e-6)
    for row, hist in zip(out["item_ids"], x["item_history"], strict=True):
        assert not set(row) & set(hist.tolist())


def test_identifiers_are_returned(model):
    raw = np.arange(23, dtype=np.int64) * 10 + 7
    index = RetrievalIndex(model.get_layer("query_tower"), item_table(model), k=3,
                           identifiers=raw, exclude_history=False)
    x = _queries(4)
    ids, _ = topk_reference(_q(model, x), item_table(model), 3)
    np.testing.assert_array_equal(index(x)["item_ids"], raw[ids])


def test_bad_index_arguments(model):
    tower = model.get_layer("query_tower")
    table = item_table(model)
    with pytest.raises(ValueError, match="`k`"):
        RetrievalIndex(tower, table, k=24)
    with pytest.raises(ValueError, match="width"):
        RetrievalIndex(tower, table[:, :3], k=2)
    with pytest.raises(ValueError, match="NaN"):
        RetrievalIndex(tower, np.full_like(table, np.nan), k=2)
    with pytest.raises(ValueError, match="identifiers"):
        RetrievalIndex(tower, table, k=2, identifiers=np.arange(5))
    index = RetrievalIndex(tower, table, k=2)
    x = _queries(2)
    x.pop("user_genres")
    with pytest.raises(ValueError, match="user_genres"):
        index(x)


def test_exported_index_parity_saved_model_and_onnx(model, tmp_path):
    from export.pipeline import export_module
    from export.serving import ExportedModel

    index = RetrievalIndex(model.get_layer("query_tower"), item_table(model), k=6)
    path = export_module(
        index, "index", base_dir=tmp_path,
        example_inputs=lambda b, r: _queries(b, seed=int(r.integers(100))),
        tolerance_reason="test",
    )
    manifest = json.loads((path / "manifest.json").read_text())
    for runtime in ("onnx", "saved_model"):
        assert manifest["parity"][runtime]["passed"], manifest["parity"]
    assert manifest["parity"]["onnx_input_names_match"]
    assert sorted(o["name"] for o in manifest["outputs"]) == ["item_ids", "scores"]
    x = _queries(5, seed=9)
    ref = index(x)
    for runtime in ("onnx", "saved_model"):
        got = ExportedModel(path, runtime=runtime)(x)
        np.testing.assert_array_equal(got["item_ids"], ref["item_ids"])
        np.testing.assert_allclose(got["scores"], ref["scores"], atol=1e-5)


def test_importing_the_index_leaves_tf_keras_and_the_environment_alone():
    """TFRS needs Keras 2: it gets tf_keras through a private view, while the
    user's ``tf.keras`` stays Keras 3 and TF_USE_LEGACY_KERAS stays unset (a
    fresh process, so nothing earlier has resolved ``tf.keras``)."""
    import subprocess
    import sys

    code = (
        "import os, tensorflow as tf, tfrec.retrieval as r\n"
        "import tensorflow_recommenders.layers.factorized_top_k as f\n"
        "assert r.tfrs is not None\n"
        "print(os.environ.get('TF_USE_LEGACY_KERAS'), tf.keras.version(),"
        " f.tf.keras.__name__)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    legacy, version, tfrs_keras = out.stdout.split()
    assert legacy == "None"
    assert version.startswith("3."), version
    assert tfrs_keras == "tf_keras"
