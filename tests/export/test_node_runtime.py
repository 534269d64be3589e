"""Every registered model's ``model.onnx`` in onnxruntime-node, against the golden
inputs and Keras outputs written beside the export (``golden.json``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import tfrec
from export.golden import load_golden
from export.parity import as_input_dtype
from tests.export.js_tools import check_onnx


@pytest.mark.parametrize("name", tfrec.list_models())
def test_node_matches_golden(name, zoo_exports):
    model, path = zoo_exports(name)
    manifest = json.loads((path / "manifest.json").read_text())
    assert {"golden.npz", "golden.json"} <= set(manifest["files"])
    assert manifest["golden"]["outputs"] == sorted(model.output)

    # The golden outputs are Keras' on the golden inputs.
    inputs, outputs = load_golden(path)
    assert sorted(inputs) == sorted(s["name"] for s in manifest["inputs"])
    dtypes = {s["name"]: s["dtype"] for s in manifest["inputs"]}
    ref = model({k: as_input_dtype(v, dtypes[k]) for k, v in inputs.items()},
                training=False)
    assert sorted(outputs) == sorted(ref)
    for key, value in ref.items():
        np.testing.assert_allclose(outputs[key], np.asarray(value), rtol=1e-6, atol=1e-7)

    code, (result,) = check_onnx(path)
    print(json.dumps(result))  # max diffs and timings, in the test log
    tol = manifest["parity"]["tolerance"]
    assert result["passed"], result
    assert code == 0
    assert result["outputs"] == sorted(model.output)
    assert result["tolerance"] == {"atol": tol["atol"], "rtol": tol["rtol"]}


def resign(version_dir, rel):
    """Records ``rel``'s new size and sha256 in the manifest, as if exported so."""
    import hashlib

    manifest = json.loads((version_dir / "manifest.json").read_text())
    data = (version_dir / rel).read_bytes()
    manifest["checksums"][rel] = {
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)
    }
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


def test_node_check_fails_on_an_altered_golden_output(zoo_exports, tmp_path):
    """The check can fail: one golden value moved by 100 x atol (and its checksum
    updated to match) is caught; without the update the checksum check refuses
    the file first (test_serving_contract)."""
    _, path = zoo_exports("neumf")
    copy = shutil.copytree(path, tmp_path / "1")
    doc = json.loads((copy / "golden.json").read_text())
    atol = doc["tolerance"]["atol"]
    doc["outputs"][0]["values"][3] += 100 * atol
    (copy / "golden.json").write_text(json.dumps(doc))
    resign(copy, "golden.json")  # past the checksum check, to the value check
    code, (bad,) = check_onnx(copy)
    assert code == 1 and not bad["passed"]
    assert bad["problems"] == ["score: 1 values beyond tolerance"]
    assert bad["max_abs_diff"] == pytest.approx(100 * atol, rel=0.01)

    code, results = check_onnx(path, copy)  # one bad folder fails the whole run
    assert code == 1 and [r["passed"] for r in results] == [True, False]
