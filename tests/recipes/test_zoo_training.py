"""Zoo-wide training: every registered model trains through the one runner on its
recipe's tiny synthetic data, its loss falls, the run directory is complete, every
serving graph exports with parity, and every saved model loads in a fresh process
after nothing but ``import tfrec``. A model registered without a recipe fails here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import tfrec
from tfrec.registry import model_info

MODELS = tfrec.list_models()
ROOT = Path(__file__).resolve().parents[2]
_RUNS: dict[str, Path] = {}


def _train(name: str, base) -> Path:
    """The session's shared run of ``name`` (tests/zoo_runs.py: trained once,
    also for tests/export/test_export_all.py)."""
    from tests.zoo_runs import zoo_run

    if name not in _RUNS:
        _RUNS[name] = zoo_run(base, name)
    return _RUNS[name]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory


def test_every_model_has_a_recipe():
    missing = []
    for name in MODELS:
        try:
            recipe = model_info(name).recipe
        except ValueError:
            missing.append(name)
            continue
        assert name in recipe.models
        assert recipe.test_config, f"{recipe.name} has no test_config"
        assert recipe.default_dataset in __import__("tfrec.data", fromlist=["DATASETS"]).DATASETS
    assert not missing, f"models without a training recipe: {missing}"


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_through_the_runner(name, base):
    run = _train(name, base)
    for rel in ("config.json", "history.json", "metrics.json", "model.keras",
                "serving/serving.json", "vocab/items.tsv"):
        assert (run / rel).is_file(), rel
    assert not (run / "backup").exists()
    graphs = json.loads((run / "serving" / "serving.json").read_text())
    assert name in graphs["graphs"], f"{name} is not among its run's serving graphs"
    for graph in graphs["graphs"]:
        assert (run / "serving" / f"{graph}.keras").is_file()
    rows = json.loads((run / "history.json").read_text())["epochs"]
    assert rows, "no Keras training epochs recorded"
    by_stage: dict[str, list[float]] = {}
    for row in rows:
        by_stage.setdefault(row["stage"], []).append(row["loss"])
    for stage, losses in by_stage.items():
        assert all(math.isfinite(v) for v in losses), (stage, losses)
        assert len(losses) >= 2, f"stage {stage} ran {len(losses)} epoch(s)"
        assert losses[-1] < losses[0], f"stage {stage}: loss did not fall {losses}"
    metrics = json.loads((run / "metrics.json").read_text())
    values = [
        v for part in metrics.values() if isinstance(part, dict)
        for v in part.values() if isinstance(v, (int, float))
    ]
    assert values and all(math.isfinite(v) for v in values)


@pytest.mark.parametrize("name", MODELS)
def test_every_serving_graph_of_the_run_exports_with_parity(name, base, tmp_path):
    from tests.zoo_runs import zoo_export

    _train(name, base)
    paths = {graph: path for _, graph, path in zoo_export(base, name)}
    assert name in paths
    for graph, path in paths.items():
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["parity"]["onnx"]["passed"], graph
        assert manifest["parity"]["saved_model"]["passed"], graph
        assert manifest["model"]["registry_name"] == graph
        assert (path / "vocab" / "items.tsv").is_file()
        assert all("meaning" in s or s["name"] not in ("user_id", "item_id")
                   for s in manifest["inputs"])


def test_every_saved_model_loads_in_a_fresh_process_after_import_tfrec(base):
    paths = [str(_train(name, base) / "model.keras") for name in MODELS]
    paths += [
        str(p) for name in MODELS for p in sorted((_RUNS[name] / "serving").glob("*.keras"))
    ]
    code = (
        "import sys, keras, tfrec\n"
        "for p in sys.argv[1:]:\n"
        "    keras.saving.load_model(p)\n"
        "print('loaded', len(sys.argv) - 1)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *paths], capture_output=True, text=True,
        cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"loaded {len(paths)}" in out.stdout
