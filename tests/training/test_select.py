"""Selection on validation only (`tfrec.training.select`, ``tfrec select``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tfrec.cli import parse_grid
from tfrec.recipes.base import recipe_for
from tfrec.training.select import grid_points, select

SMALL = dict(batch_size=64, embedding_dim=4, seed=3, epochs=3)


@pytest.fixture(scope="module")
def split():
    return recipe_for("gmf").synthetic_data(1)


def test_select_never_reads_the_test_part(split, monkeypatch, tmp_path):
    recipe = recipe_for("gmf")
    parts = []
    original = type(recipe).evaluate

    def spy(self, model, serving, data, config, part="test"):
        parts.append(part)
        if part == "test":
            raise AssertionError("selection read the test part")
        return original(self, model, serving, data, config, part)

    monkeypatch.setattr(type(recipe), "evaluate", spy)
    trials = select("gmf", split, grid={"learning_rate": [1e-5, 0.05]},
                    report=tmp_path / "sel", **SMALL)
    assert "test" not in parts
    assert [t.settings["learning_rate"] for t in trials] == [0.05, 1e-5]
    best, worst = trials
    assert best.monitor == "val_ndcg@10" and best.mode == "max"
    assert best.best > worst.best  # a learning rate of 1e-5 barely moves in 3 epochs
    assert best.epochs_run == 3 and len(best.curve) == 3
    assert best.best == max(v for _, v in best.curve)
    assert best.curve[best.best_epoch - 1][1] == best.best
    report = json.loads((tmp_path / "sel.json").read_text())
    assert [t["settings"] for t in report["trials"]] == [t.settings for t in trials]
    assert "test part was not read" in (tmp_path / "sel.md").read_text()


def test_an_explicit_monitor_and_its_direction(split):
    trials = select("gmf", split, grid={"learning_rate": [0.05]}, monitor="hr@10", **SMALL)
    assert trials[0].monitor == "val_hr@10" and trials[0].mode == "max"
    with pytest.raises(ValueError, match="No epoch logged 'val_nope'"):
        select("gmf", split, grid={"learning_rate": [0.05]}, monitor="nope", **SMALL)


def test_grid_errors_are_clear():
    assert grid_points({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    with pytest.raises(ValueError, match="empty"):
        grid_points({})
    with pytest.raises(ValueError, match="non-empty list"):
        grid_points({"a": "12"})
    assert parse_grid(["lr=0.001,0.01", "l2=100"]) == {
        "learning_rate": [0.001, 0.01], "l2": [100]
    }
    with pytest.raises(ValueError, match="KEY=V1,V2"):
        parse_grid(["l2"])


def test_select_rejects_an_unknown_grid_key_before_training(split):
    with pytest.raises(ValueError, match="learning_rat"):
        select("gmf", split, grid={"learning_rat": [0.1]}, **SMALL)


def test_cli_select_prints_the_winner_and_the_train_command(tmp_path):
    rows = "\n".join(f"u{u},i{(u * 7 + k) % 40},{1000 * u + k}"
                     for u in range(60) for k in range(12))
    data = tmp_path / "clicks.csv"
    data.write_text("user,item,ts\n" + rows + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tfrec.cli", "select", "gmf", "--data", str(data),
         "--columns", "user=user,item=item,time=ts", "--epochs", "2",
         "--batch-size", "64", "--embedding-dim", "4", "--eval-negatives", "20",
         "--grid", "lr=0.001,0.02"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Best on validation" in proc.stdout
    assert "tfrec train gmf" in proc.stdout and "--learning-rate" in proc.stdout
    assert "Test metrics" not in proc.stdout
    assert not (tmp_path / "runs").exists()  # selection writes no run directory
