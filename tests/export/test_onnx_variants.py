"""ONNX speed-up variants (export.optimize) of every registered model: written,
loadable, within their stated tolerance of the float ONNX model, top-10 agreement
for models that rank items; a broken variant fails its report and is deleted."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import tfrec
from export.artifact import ExportError
from export.optimize import (
    VARIANT_FILES,
    VARIANT_TOLERANCE,
    check_variant,
    optimize_onnx,
    quantize_onnx,
    top_k_agreement,
)
from export.serving import ExportedModel
from tfrec.registry import model_info

# Models where a user-item scorer or an all-item output gives a top-10 to compare.
RANKS_ITEMS = {
    n for n in tfrec.list_models()
    if model_info(n).task in ("ranking", "session") or n == "youtube_candidate"
}


def _inputs(name):
    info = model_info(name)
    return lambda b, rng: info.example_inputs(info.test_kwargs, b, rng), info.task


def _num_items(name):
    return model_info(name).test_kwargs.get("num_items")


def _copy(version_dir, tmp_path):
    """A private copy of a shared zoo export (variants write into the folder)."""
    dst = tmp_path / version_dir.parent.name / version_dir.name
    shutil.copytree(version_dir, dst)
    return dst


@pytest.mark.parametrize("name", tfrec.list_models())
def test_variants_pass_their_tolerance(name, zoo_exports, tmp_path):
    _, version_dir = zoo_exports(name)
    path = _copy(version_dir, tmp_path)
    example_inputs, task = _inputs(name)
    before = json.loads((path / "manifest.json").read_text())
    reports = {
        "opt": optimize_onnx(path, "all", example_inputs=example_inputs, task=task,
                             num_items=_num_items(name)),
        "int8": quantize_onnx(path, example_inputs=example_inputs, task=task,
                              num_items=_num_items(name)),
    }
    manifest = json.loads((path / "manifest.json").read_text())
    assert {k: v for k, v in manifest.items() if k != "onnx_variants"} == before
    golden_in = dict(np.load(path / "golden.npz"))
    float_model = ExportedModel(path)
    for variant, report in reports.items():
        tol = VARIANT_TOLERANCE[variant]
        assert report["passed"], (variant, report["problems"])
        assert manifest["onnx_variants"][variant] == json.loads(json.dumps(report))
        assert (path / VARIANT_FILES[variant]).is_file()
        for label in ("golden", "fresh_5", "fresh_64"):
            r = report[label]
            assert r["passed"] and r["max_abs_diff"] <= tol.atol * 1e3 + tol.rtol
        if name in RANKS_ITEMS:
            assert report["top10"]["applicable"], report["top10"]
            assert report["top10"]["agreement"] >= tol.min_agreement
            assert report["top10"]["candidates"] >= 10
        else:
            assert not report["top10"]["applicable"] and report["top10"]["reason"]
        # loads in onnxruntime through ExportedModel, same names/dtypes/shapes
        model = ExportedModel(path, variant=variant)
        feed = {k.split("/", 1)[1]: v for k, v in golden_in.items()
                if k.startswith("input/")}
        ref, got = float_model(feed), model(feed)
        assert sorted(got) == sorted(ref)
        for k in ref:
            assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape
    int8 = reports["int8"]
    assert int8["weight_type"] == "QInt8"
    if int8["applicable"]:
        assert sum(int8["quantized_ops"].values()) >= 1
    else:  # e.g. a model of lookups by string only: still reported, with the reason
        assert int8["note"]


def test_int8_quantizes_embeddings_and_dense_layers(zoo_exports, tmp_path):
    """NeuMF: the four embedding tables (Gather) and four Dense kernels (MatMul)."""
    path = _copy(zoo_exports("neumf")[1], tmp_path)
    example_inputs, task = _inputs("neumf")
    r = quantize_onnx(path, example_inputs=example_inputs, task=task)
    assert r["quantized_ops"] == {"Gather": 4, "MatMul": 4}
    assert r["weight_type"] == "QInt8"
    assert r["golden"]["max_abs_diff"] > 0  # it did change the arithmetic


def test_tampered_variant_fails_and_is_deleted(zoo_exports, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    path = _copy(zoo_exports("neumf")[1], tmp_path)
    example_inputs, task = _inputs("neumf")

    # 1. variants with corrupted weights: embedding tables shifted by +1 and the
    # output kernel all ones (scores near 1, not 0.5), and the output kernel
    # negated (a reversed ranking)
    def shift(name, t):
        return t + 1 if "embedding" in name else (t * 0 + 1 if "prediction" in name else t)

    def tamper(src, dst, change=shift):
        model = onnx.load(str(src))
        for init in model.graph.initializer:
            table = numpy_helper.to_array(init)
            if table.ndim == 2:
                new = change(init.name, table).astype(table.dtype)
                init.CopyFrom(numpy_helper.from_array(new, init.name))
        onnx.save(model, str(dst))

    good = check_variant(path, path / "model.onnx", "int8",
                         example_inputs=example_inputs, task=task)
    assert good["passed"]
    tampered = tmp_path / "tampered.onnx"
    tamper(path / "model.onnx", tampered)
    bad = check_variant(path, tampered, "int8", example_inputs=example_inputs, task=task)
    assert not bad["passed"]
    assert any("beyond atol" in p for p in bad["problems"]), bad["problems"]
    tamper(path / "model.onnx", tampered,
           lambda name, t: -t if "prediction" in name else t)
    bad = check_variant(path, tampered, "int8", example_inputs=example_inputs, task=task)
    assert not bad["passed"]
    assert any(p.startswith("top10: agreement") for p in bad["problems"]), bad
    (tmp_path / "truncated.onnx").write_bytes((path / "model.onnx").read_bytes()[:500])
    broken = check_variant(path, tmp_path / "truncated.onnx", "opt",
                           example_inputs=example_inputs, task=task)
    assert not broken["passed"] and "does not load" in broken["problems"][0]

    # 2. through quantize_onnx: a failing variant is not left behind
    from export import optimize

    monkeypatch.setattr(optimize, "_quantize_file", lambda src, dst: (
        tamper(src, dst), {"weight_type": "QInt8", "quantized_ops": {}}
    )[1])
    r = quantize_onnx(path, example_inputs=example_inputs, task=task)
    assert not r["passed"] and r["problems"]
    assert not (path / "model.int8.onnx").exists()
    assert not list(path.glob(".model.int8.onnx*"))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["onnx_variants"]["int8"]["passed"] is False
    with pytest.raises(ExportError, match="failed its parity check"):
        ExportedModel(path, variant="int8")
    with pytest.raises(ExportError, match="was not written"):
        ExportedModel(path, variant="opt")
    with pytest.raises(ValueError, match="variant"):
        ExportedModel(path, variant="fp16")
    # a passed variant modified afterwards is refused, like the export's own files
    optimize_onnx(path, example_inputs=example_inputs, task=task)
    assert ExportedModel(path, variant="opt")
    with open(path / "model.opt.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ExportError, match="modified or is corrupt"):
        ExportedModel(path, variant="opt")

    # 3. a quantizer that crashes fails the variant, not the float export
    def crash(src, dst):
        dst.write_bytes(b"half")
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(optimize, "_quantize_file", crash)
    r = quantize_onnx(path, example_inputs=example_inputs, task=task)
    assert not r["passed"] and "quantizer crashed" in r["problems"][0]
    assert not (path / "model.int8.onnx").exists()
    assert not list(path.glob(".model.int8.onnx*"))
    assert ExportedModel(path)(ExportedModel(path).validate(
        {"user_id": np.array([1]), "item_id": np.array([2])}))["score"].shape == (1,)


def test_top_k_agreement_by_hand():
    ref = np.arange(20, dtype=np.float32)[None, :]  # top 10: items 10..19
    assert top_k_agreement(ref, ref) == 1.0
    swapped = ref.copy()
    swapped[0, [9, 19]] = swapped[0, [19, 9]]  # item 9 enters, item 19 leaves
    assert top_k_agreement(ref, swapped) == pytest.approx(0.9)
    assert top_k_agreement(ref, -ref) == 0.0


@pytest.mark.parametrize("level", ["basic", "extended"])
def test_optimization_levels(level, zoo_exports, tmp_path):
    path = _copy(zoo_exports("neumf")[1], tmp_path)
    example_inputs, task = _inputs("neumf")
    r = optimize_onnx(path, level, example_inputs=example_inputs, task=task)
    assert r["passed"] and r["level"] == level
    assert r["top10"]["agreement"] == 1.0
    with pytest.raises(ValueError, match="level"):
        optimize_onnx(path, "max", example_inputs=example_inputs, task=task)


def test_cli_export_writes_variants_of_a_trained_run(tmp_path, capsys):
    from tfrec.cli import main

    recipe = model_info("neumf").recipe
    tfrec.train("neumf", recipe.synthetic_data(0), out=tmp_path / "run",
                **dict(recipe.test_config))
    rc = main(["export", str(tmp_path / "run"), "--base-dir", str(tmp_path / "sm"),
               "--optimize", "--int8"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "variant opt  model.opt.onnx level=all" in out
    assert "variant int8 model.int8.onnx quantized={'Gather': 4, 'MatMul': 4}" in out
    path = tmp_path / "sm" / "neumf" / "1"
    variants = json.loads((path / "manifest.json").read_text())["onnx_variants"]
    assert variants["opt"]["passed"] and variants["int8"]["passed"]
    # the trained model's full catalogue (num_items from the run's kwargs)
    n = variants["int8"]["top10"]["candidates"]
    assert n == json.loads((path / "manifest.json").read_text())["model"]["kwargs"][
        "num_items"]
    assert variants["int8"]["top10"]["agreement"] >= VARIANT_TOLERANCE["int8"].min_agreement
    scores = ExportedModel(path.parent, variant="int8")(
        {"user_id": np.zeros(n, np.int64), "item_id": np.arange(n)})["score"]
    assert scores.shape == (n,) and np.all((scores >= 0) & (scores <= 1))
