"""Export: TF Serving layout, atomic versions, failure paths, serving-time validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

import export.artifact as artifact
from export import ExportError, export_model, load_manifest
from export.parity import compare, load_saved_model_tf1
from export.serving import ExportedModel
from tfrec.registry import model_info

KW = {"num_users": 13, "num_items": 17}


def _example(b, rng):
    return model_info("neumf").example_inputs(KW, b, rng)


@pytest.fixture(scope="module")
def neumf_model():
    import tfrec

    return tfrec.create_model("neumf", **KW)


@pytest.fixture(scope="module")
def exported(neumf_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    return export_model(neumf_model, "neumf", base_dir=base, example_inputs=_example)


def _visible(model_dir):
    return sorted(p.name for p in model_dir.iterdir())


def test_layout_manifest_and_tf1_loader(exported, neumf_model):
    assert exported.name == "1"
    manifest = load_manifest(exported)
    for key in ("max_abs_diff", "max_rel_diff", "passed"):
        assert (
            key in manifest["parity"]["onnx"]
            and key in manifest["parity"]["saved_model"]
        )
    assert manifest["onnx"]["opset"] == artifact.ONNX_OPSET
    assert {"tensorflow", "keras", "tf2onnx", "onnxruntime", "tfrec"} <= set(
        manifest["versions"]
    )
    assert manifest["inputs"] == [
        {"name": "item_id", "dtype": "int64", "shape": [None]},
        {"name": "user_id", "dtype": "int64", "shape": [None]},
    ]
    assert manifest["outputs"] == [
        {"name": "score", "dtype": "float32", "shape": [None]}
    ]
    runner = load_saved_model_tf1(exported)  # TF Serving's loading path
    assert sorted(runner.inputs) == ["item_id", "user_id"]
    assert list(runner.outputs) == ["score"]
    x = _example(6, np.random.default_rng(3))
    np.testing.assert_allclose(
        runner(x)["score"], np.asarray(neumf_model(x)["score"]), atol=1e-6
    )
    runner.close()


def test_versions_increment_and_never_overwrite(neumf_model, tmp_path):
    first = export_model(neumf_model, "m", base_dir=tmp_path, example_inputs=_example)
    second = export_model(neumf_model, "m", base_dir=tmp_path, example_inputs=_example)
    assert (first.name, second.name) == ("1", "2")
    with pytest.raises(ExportError, match="already exists"):
        export_model(
            neumf_model, "m", base_dir=tmp_path, version=2, example_inputs=_example
        )
    assert _visible(tmp_path / "m") == ["1", "2"]


def test_failed_parity_writes_no_version(neumf_model, tmp_path, monkeypatch):
    import export.parity as parity

    real = parity.check_parity

    def broken(*args, **kwargs):
        report = real(*args, **kwargs)
        report["onnx"]["passed"] = False
        return report

    monkeypatch.setattr(parity, "check_parity", broken)
    with pytest.raises(ExportError, match="Parity check failed"):
        export_model(neumf_model, "m", base_dir=tmp_path, example_inputs=_example)
    assert _visible(tmp_path / "m") == []


def test_tolerance_is_enforced(neumf_model, tmp_path, monkeypatch):
    # Perturb what onnxruntime returns by 1e-3: beyond the 1e-5 tolerance, the
    # export must fail; the same perturbation at 1e-7 must pass.
    import onnxruntime as ort

    real_run = ort.InferenceSession.run

    def perturbed(delta):
        def run(self, names, feed, *args, **kwargs):
            return [
                o + np.float32(delta)
                for o in real_run(self, names, feed, *args, **kwargs)
            ]

        return run

    monkeypatch.setattr(ort.InferenceSession, "run", perturbed(1e-3))
    with pytest.raises(ExportError, match="Parity check failed"):
        export_model(neumf_model, "m", base_dir=tmp_path, example_inputs=_example)
    assert _visible(tmp_path / "m") == []
    monkeypatch.setattr(ort.InferenceSession, "run", perturbed(1e-7))
    path = export_model(neumf_model, "m", base_dir=tmp_path, example_inputs=_example)
    assert load_manifest(path)["parity"]["onnx"]["max_abs_diff"] >= 5e-8
    with pytest.raises(ExportError, match="Tolerances must be >= 0"):
        export_model(
            neumf_model, "m", base_dir=tmp_path, example_inputs=_example, atol=-1
        )


def test_parity_includes_an_out_of_vocabulary_batch(exported):
    manifest = load_manifest(exported)
    # Two sizes of valid inputs plus one batch of -1 / 10**12 ids.
    assert manifest["parity"]["batches"] == 3


def test_interrupted_export_leaves_nothing(neumf_model, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifact, "_convert_to_onnx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(neumf_model, "m", base_dir=tmp_path, example_inputs=_example)
    assert _visible(tmp_path / "m") == []


def test_stale_tmp_of_dead_process_is_cleaned(neumf_model, tmp_path):
    import os

    stale = tmp_path / "m" / f".tmp-1-{artifact._HOST}-999999999-abc"
    stale.mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"half")
    old = artifact.time.time() - 2 * artifact.STALE_SECONDS
    os.utime(stale, (old, old))
    fresh = tmp_path / "m" / ".tmp-1-otherhost-999999999-abc"  # another host's: kept
    fresh.mkdir()
    path = export_model(neumf_model, "m", base_dir=tmp_path, example_inputs=_example)
    assert path.name == "1"
    assert _visible(tmp_path / "m") == [fresh.name, "1"]


def test_out_of_vocabulary_ids_agree_across_runtimes(exported, neumf_model):
    x = {
        "user_id": np.array([-1, 13, 10**12, 2], np.int64),
        "item_id": np.array([3, -7, 17, 99], np.int64),
    }
    ref = np.asarray(neumf_model(x)["score"])
    for runtime in ("onnx", "saved_model"):
        got = ExportedModel(exported, runtime=runtime)(x)["score"]
        np.testing.assert_allclose(got, ref, atol=1e-6)


@pytest.mark.parametrize("runtime", ["onnx", "saved_model"])
def test_bad_feeds_get_clear_errors(exported, runtime):
    model = ExportedModel(exported, runtime=runtime)
    ok = {"user_id": np.array([1, 2]), "item_id": np.array([3, 4])}
    assert model(ok)["score"].shape == (2,)  # int32 -> int64 is accepted
    with pytest.raises(TypeError, match="user_id.*int64.*float"):
        model({"user_id": np.array([1.5, 2.0]), "item_id": np.array([3, 4])})
    with pytest.raises(ValueError, match=r"missing \['item_id'\]"):
        model({"user_id": np.array([1])})
    with pytest.raises(ValueError, match=r"shape \[None\].*\[2, 1\]"):
        model({"user_id": np.array([[1], [2]]), "item_id": np.array([3, 4])})
    with pytest.raises(ValueError, match="same batch size"):
        model({"user_id": np.array([1, 2, 3]), "item_id": np.array([3, 4])})


def test_corrupt_or_missing_artifacts_fail_clearly(exported, tmp_path):
    import shutil

    broken = tmp_path / "neumf" / "1"
    shutil.copytree(exported, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ExportError, match="corrupt"):
        ExportedModel(broken)
    (broken / "manifest.json").write_text("{truncated")
    with pytest.raises(ExportError, match="manifest.json is corrupt"):
        ExportedModel(broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(ExportError, match="manifest.json is missing"):
        ExportedModel(broken)
    with pytest.raises(ExportError, match="No exported versions"):
        ExportedModel(tmp_path / "nothing")


def test_compare_reports_dtype_shape_and_value_problems():
    ref = {"score": np.array([0.5, 0.25], np.float32)}
    assert compare(ref, {"score": np.array([0.5, 0.25], np.float32)}, atol=0, rtol=0)[
        "passed"
    ]
    r = compare(ref, {"score": np.array([0.5, 0.26], np.float32)}, atol=1e-3, rtol=0)
    assert not r["passed"] and r["max_abs_diff"] == pytest.approx(0.01, rel=1e-3)
    r = compare(ref, {"score": np.array([0.5, 0.25], np.float64)}, atol=1, rtol=0)
    assert not r["passed"] and "dtype" in r["problems"][0]
    r = compare(ref, {"score": np.array([0.5], np.float32)}, atol=1, rtol=0)
    assert not r["passed"] and "shape" in r["problems"][0]
    r = compare(ref, {"rating": np.array([0.5, 0.25], np.float32)}, atol=1, rtol=0)
    assert not r["passed"] and "names" in r["problems"][0]


def test_manifest_is_valid_json_with_files_listed(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert "model.onnx" in manifest["files"] and "saved_model.pb" in manifest["files"]
