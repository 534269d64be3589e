"""``tfrec export --all`` (`export.zoo`): every exported graph in one table, each
checked in Python onnxruntime, the SavedModel, Node, TF Serving's load path and
(scorers and session models) the browser; a failing check fails its row and the
command exits 1.

The default run checks every registered model's run exports (the rows of
``export --all --runs``), on the runs and exports the session makes once for
every zoo-wide test (tests/zoo_runs.py), without the browser; the browser drives
the pages of mf and gru4rec (the graphs a page can run), and a tampered export
makes the command exit 1 in a real process. The fresh-training end-to-end run
with the browser on every page is ``make test-slow``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tfrec
from export import zoo
from tests.export.js_tools import ROOT, chromium, node, node_package
from tests.zoo_runs import exports_root, zoo_export, zoo_run

BROWSER = ["mf", "gru4rec", "wide_deep"]  # a user-item scorer, 3 graphs, strings


@pytest.fixture(scope="module")
def zoo_versions(tmp_path_factory):
    """Every registered model's run (test settings), every serving graph of each
    exported: the runs and exports tests/recipes/test_zoo_training.py shares
    (tests/zoo_runs.py); a model that is a graph of an earlier run is not trained
    again, as in `export.zoo.train_zoo`."""
    node(), node_package("onnxruntime-node")
    versions, covered = [], set()
    for name in tfrec.list_models():
        if name in covered:
            continue
        got = zoo_export(tmp_path_factory, name)
        covered |= {g for _, g, _ in got} | {name}
        versions += got
    return exports_root(tmp_path_factory), versions


@pytest.fixture(scope="module")
def zoo_result(zoo_versions):
    base, versions = zoo_versions
    lines = []
    started = time.perf_counter()
    rows = zoo.check_exports(versions, base, browser=False, printer=lines.append)
    print(f"checked {len(rows)} graphs in {time.perf_counter() - started:.1f} s")
    return base, rows, "\n".join(lines)


def test_every_registered_model_has_a_row_with_every_check_filled_and_passed(
    zoo_result,
):
    """``tfrec export --all``'s rows over the whole zoo: Python onnxruntime, the
    SavedModel, Node and TF Serving's load path (C API) for every graph."""
    base, rows, table = zoo_result
    assert sorted(r["registry_name"] for r in rows) == tfrec.list_models()
    n = len(rows)
    for r in rows:
        assert r["passed"], r
        assert "serving_default" in r["signatures"]
        assert r["onnx_ops"] > 0 and r["onnx_op_types"]
        assert r["saved_model_bytes"] > 0 and r["onnx_bytes"] > 0
        for check in ("ort", "saved_model", "node", "loader"):
            c = r[check]
            assert c["passed"] and c["max_abs_diff"] is not None, (r["graph"], check, c)
            assert c["max_rel_diff"] is not None
        assert r["browser"] is None
        assert f"| {r['model']}" in table and f" {r['graph']} " in table
    assert f"{n}/{n} exported graphs passed every check" in table
    saved = json.loads((base / zoo.RESULTS).read_text())
    assert [(r["model"], r["graph"], r["passed"]) for r in saved["rows"]] == [
        (r["model"], r["graph"], r["passed"]) for r in rows
    ]
    assert not list(base.glob(f".{zoo.RESULTS}.*"))  # written atomically


def test_every_model_that_ranks_a_catalogue_gets_recommend_from_its_run(zoo_result):
    """A real run's export (not a test catalogue) has the ``recommend`` signature
    exactly where the registry has a catalogue rule; the others say why not."""
    from export.artifact import load_manifest
    from tfrec.registry import model_info

    _, rows, _ = zoo_result
    missing, unexpected = [], []
    for r in rows:
        manifest = load_manifest(r["path"], verify=False)
        kwargs = manifest["model"].get("kwargs") or {}
        ranks = model_info(r["registry_name"]).catalogue(kwargs) is not None
        has = "recommend" in r["signatures"]
        rec = manifest["recommend"]
        assert has == bool(rec["available"]), r["graph"]
        if ranks and not has:
            missing.append((r["graph"], rec["reason"]))
        if has and not ranks:
            unexpected.append(r["graph"])
        if has:
            assert rec["parity"]["onnx"]["passed"] and rec["parity"]["saved_model"][
                "passed"]
        else:
            assert rec["reason"]
    assert not missing and not unexpected, (missing, unexpected)
    with_rec = {r["registry_name"] for r in rows if "recommend" in r["signatures"]}
    assert {"mv_dnn", "autorec", "autoencoder", "cdae"} <= with_rec


@pytest.fixture(scope="module")
def browser_versions(tmp_path_factory):
    node(), node_package("onnxruntime-node")
    versions = [v for name in BROWSER for v in zoo_export(tmp_path_factory, name)]
    return exports_root(tmp_path_factory), versions


def test_the_browser_drives_every_page_it_can_and_matches_python(browser_versions):
    """The web demo of user-item scorers and session models in headless chromium
    against Python onnxruntime's top-10 (the other graphs have no page)."""
    node_package("playwright-core"), chromium()
    base, versions = browser_versions
    dirs = [Path(p) for _, _, p in versions]
    checks = zoo.browser_checks(dirs, base, base / ".export_all_screenshots")
    by_graph = {g: c for (_, g, _), c in zip(versions, checks, strict=True)}
    assert sorted(by_graph) == ["gru4rec", "gru4rec_step", "gru4rec_topk", "mf",
                                "wide_deep"]
    assert {g for g, c in by_graph.items() if c is not None} == {
        "mf", "gru4rec", "gru4rec_topk"}
    for c in by_graph.values():
        if c is not None:
            assert c["passed"] and c["max_abs_diff"] <= 1e-5, c


def test_a_wrong_golden_output_fails_the_loader_check_and_the_row(browser_versions,
                                                                  monkeypatch,
                                                                  tmp_path):
    base, versions = browser_versions
    real = zoo_load_golden = __import__("export.golden", fromlist=["x"]).load_golden

    def tampered(path):
        ins, outs = real(path)
        if "wide_deep" in str(path):
            outs = {k: v + np.float32(0.5) if v.dtype.kind == "f" else v
                    for k, v in outs.items()}
        return ins, outs

    monkeypatch.setattr("export.golden.load_golden", tampered)
    lines = []
    rows = zoo.check_exports(versions, tmp_path, browser=False, printer=lines.append)
    by_graph = {r["graph"]: r for r in rows}
    bad = by_graph["wide_deep"]
    assert not bad["passed"] and not bad["loader"]["passed"]
    assert bad["loader"]["max_abs_diff"] == pytest.approx(0.5, abs=1e-3)
    assert all(r["passed"] for g, r in by_graph.items() if g != "wide_deep")
    assert "4/5 exported graphs passed" in "\n".join(lines)
    assert "wide_deep loader:" in "\n".join(lines)
    assert zoo_load_golden is real


TAMPER = """
import sys
from pathlib import Path
import numpy as np
import export.zoo as zoo
from tfrec.cli import main

real = zoo.export_runs

def export_runs(runs, base_dir):  # a real export, then its golden outputs edited
    out = real(runs, base_dir)
    path = Path(out[0][2]) / "golden.json"
    text = path.read_text()
    import json
    golden = json.loads(text)
    for spec in golden["outputs"]:
        spec["values"] = (np.asarray(spec["values"], float) + 0.5).tolist()
    path.write_text(json.dumps(golden))
    return out

zoo.export_runs = export_runs
sys.exit(main(sys.argv[1:]))
"""


def test_cli_exits_1_when_an_export_is_tampered(tmp_path_factory, tmp_path):
    """``tfrec export --all --runs RUN`` in a real process: the export's
    ``golden.json`` altered after the export, the row fails (its checksum), the
    table says so and the exit status is 1; untampered, the same command exits 0
    (in this process). A check failing in one runtime fails its row the same way
    (the wrong-golden test above)."""
    from tfrec.cli import main

    run = zoo_run(tmp_path_factory, "mf")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", TAMPER, "export", "--all", "--runs", str(run),
         "--base-dir", str(tmp_path / "bad"), "--no-browser"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0/1 exported graphs passed" in proc.stdout
    assert "| mf " in proc.stdout and " NO " in proc.stdout
    # the manifest's checksums catch the edit before any runtime is asked
    assert "mf/mf: ExportError:" in proc.stdout
    assert "golden.json was modified or is corrupt" in proc.stdout
    rows = json.loads((tmp_path / "bad" / zoo.RESULTS).read_text())["rows"]
    assert [(r["graph"], r["passed"], r.get("node")) for r in rows] == [
        ("mf", False, None)]
    assert main(["export", "--all", "--runs", str(run), "--base-dir",
                 str(tmp_path / "good"), "--no-browser"]) == 0


def test_export_needs_a_run_or_all():
    from tfrec.cli import main

    with pytest.raises(SystemExit, match="give a run directory, or --all"):
        main(["export"])


@pytest.mark.slow  # the default run checks the same rows on the shared zoo runs
def test_the_whole_zoo_exports_and_passes_every_check(tmp_path):
    """``tfrec export --all`` end to end in a real process: every registered model
    trained afresh at its test sizes, all 29 graphs checked in every runtime, the
    browser on every page included. 175 s wall, 119 s of CPU on the 2-core
    machine at load 2-3 (measured 2026-12-01); the default run's whole-zoo rows
    above reuse the session's zoo runs instead (tests/zoo_runs.py)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tfrec.cli", "export", "--all", "--base-dir",
         str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600, check=False,
    )
    print(f"tfrec export --all: {time.perf_counter() - started:.0f} s\n{proc.stdout}")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    rows = json.loads((tmp_path / zoo.RESULTS).read_text())["rows"]
    assert {r["registry_name"] for r in rows} == set(tfrec.list_models())
    assert len(rows) == len(tfrec.list_models())
    assert all(r["passed"] for r in rows)
