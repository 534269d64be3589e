"""The `make bench` driver (scripts/bench.py): plug-in sections, bench.json, the table.

The end-to-end test runs the real driver in a subprocess at smoke sizes with one
real section (``evaluation``), one missing plug-in and one that fails; the rest
check the merge rules and the goal arithmetic on hand-made section results.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench.py"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load(SCRIPT, "bench_driver")


def test_smoke_run_writes_bench_json_with_the_keys(tmp_path):
    (tmp_path / "bench_zz_test_broken.py").write_text(
        "def run(quick, threads, *, smoke=False):\n"
        "    raise RuntimeError('deliberately broken')\n"
    )
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--threads", "1", "--sections",
         "evaluation", "zz_test_missing", "zz_test_broken", "--out", str(out),
         "--plugin-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # one section failed
    report = json.loads(out.read_text())
    ev = report["evaluation"]
    for key in ("full_ranking_ml1m_s", "sampled_ncf_s", "full_ranking_ml1m_mf_s"):
        assert isinstance(ev[key], float) and ev[key] > 0, key
    # The smoke protocol: 60 users x 45 items, scored through the runner's scorer.
    assert ev["users"] == 60 and ev["full_ranking_pairs"] == 60 * 45
    assert ev["models"]["mf"]["with_score_rows"]["row_scorer"][
        "metrics_equal_pair_scorer"]
    sections = report["sections"]
    assert sections["evaluation"]["status"] == "ok"
    assert sections["evaluation"]["peak_rss_mb"] > 0
    assert sections["zz_test_missing"] == {
        "status": "not run", "reason": "bench_zz_test_missing.py missing"}
    assert sections["zz_test_broken"]["status"] == "failed"
    assert "deliberately broken" in sections["zz_test_broken"]["error"]
    meta = report["meta"]
    assert meta["mode"] == "smoke" and meta["threads"]["tensorflow_intra_op"] == 1
    assert {"tensorflow", "keras", "onnxruntime", "tf2onnx"} <= set(meta["versions"])
    assert meta["versions"]["tensorflow"]  # installed here
    assert "--smoke" in meta["command"] and meta["host"]["cpu_count"] >= 1
    goals = {g["key"]: g for g in report["goals"]}
    assert set(goals) >= {
        "neumf.examples_per_s_ratio", "neumf.time_to_hr_ratio",
        "gru4rec.events_per_s_ratio", "evaluation.full_ranking_ml1m_s",
        "serving.all_items_ort_speedup",
    }
    assert goals["evaluation.full_ranking_ml1m_s"]["measured"] == ev[
        "full_ranking_ml1m_s"]
    assert goals["neumf.examples_per_s_ratio"]["measured"] is None  # not run
    # One table on stdout: a row per goal, a line per section.
    assert "full ranking ML-1M, NeuMF (s)" in proc.stdout
    assert "zz_test_missing" in proc.stdout and "not run" in proc.stdout


def test_results_merge_under_their_section_or_at_the_top(bench):
    report: dict = {}
    bench.merge(report, "evaluation", {"full_ranking_ml1m_s": 1.5})
    bench.merge(report, "scaling", {"scaling": [{"interactions": 1}]})
    bench.merge(report, "scaling", [{"interactions": 2}])
    bench.merge(report, "neumf", {"neumf.examples_per_s_ratio": 3.2,
                                  "neumf.time_to_hr_ratio": 2.0})
    bench.merge(report, "extra", {"neumf": {"epochs": 4}})
    assert report["evaluation"] == {"full_ranking_ml1m_s": 1.5}
    assert report["scaling"] == [{"interactions": 2}]
    assert report["neumf"] == {"examples_per_s_ratio": 3.2, "time_to_hr_ratio": 2.0}
    assert report["extra"] == {"neumf": {"epochs": 4}}
    assert bench.lookup(report, "neumf.time_to_hr_ratio") == 2.0
    assert bench.lookup(report, "gru4rec.events_per_s_ratio") is None


def test_goals_compare_in_the_right_direction(bench):
    report = {
        "neumf": {"examples_per_s_ratio": 1.5},
        "evaluation": {"full_ranking_ml1m_s": 1.5, "sampled_ncf_s": 2.0},
        "serving": {"all_items_ort_speedup": 10.0},
        "scaling": [
            {"interactions": 10_000_000, "epoch_s": 120.0},
            {"interactions": 1_000_000, "epoch_s": 10.0},
        ],
    }
    bench.derived(report)
    assert report["scaling_time_per_interaction"] == pytest.approx(1.2)
    # Per (model, optimizer) line, the worst line: never one model over another.
    mixed = {"scaling": [
        {"model": "neumf", "interactions": 1_000_000, "epoch_s": 10.0},
        {"model": "neumf", "interactions": 100_000_000, "epoch_s": 2000.0},
        {"model": "mf", "interactions": 1_000_000, "epoch_s": 5.0},
        {"model": "mf", "interactions": 100_000_000, "epoch_s": 600.0},
    ]}
    bench.derived(mixed)
    assert mixed["scaling_time_per_interaction"] == pytest.approx(2.0)
    goals = {g["key"]: g for g in bench.goal_rows(report)}
    assert goals["neumf.examples_per_s_ratio"]["vs_goal"] == pytest.approx(0.5)
    assert goals["neumf.examples_per_s_ratio"]["met"] is False
    assert goals["evaluation.full_ranking_ml1m_s"]["vs_goal"] == pytest.approx(2.0)
    assert goals["evaluation.full_ranking_ml1m_s"]["met"] is True
    assert goals["evaluation.sampled_ncf_s"]["met"] is False
    assert goals["serving.all_items_ort_speedup"]["met"] is True
    assert goals["scaling_time_per_interaction"]["met"] is True
    assert goals["gru4rec.events_per_s_ratio"]["met"] is None
    report["gru4rec"] = {"events_per_s_ratio": 1.3}  # reported, no target of its own
    row = {g["key"]: g for g in bench.goal_rows(report)}["gru4rec.events_per_s_ratio"]
    assert row["measured"] == 1.3 and row["met"] is None and row["vs_goal"] is None
    goals["gru4rec.events_per_s_ratio"] = row
    report["goals"] = list(goals.values())
    report["sections"] = {"neumf": {"status": "ok", "seconds": 1.0}}
    text = bench.table(report)
    assert "NO" in text and "yes" in text and "not run" in text and "(reported)" in text


def test_a_lower_bound_decides_a_min_goal_and_shows_as_one(bench):
    # The baseline stopped before the target: its seconds over tfrec's bound the ratio.
    report = {"neumf": {"time_to_hr_ratio": None, "time_to_hr_ratio_at_least": 4.2}}
    goals = {g["key"]: g for g in bench.goal_rows(report)}
    row = goals["neumf.time_to_hr_ratio"]
    assert row["measured"] == 4.2 and row["bound"] == ">=" and row["met"] is True
    report["neumf"]["time_to_hr_ratio_at_least"] = 2.1
    row = {g["key"]: g for g in bench.goal_rows(report)}["neumf.time_to_hr_ratio"]
    assert row["met"] is None  # a bound below the target decides nothing
    # An exact figure wins over a bound.
    report["neumf"]["time_to_hr_ratio"] = 3.5
    row = {g["key"]: g for g in bench.goal_rows(report)}["neumf.time_to_hr_ratio"]
    assert row["measured"] == 3.5 and "bound" not in row
    report["goals"] = [{**row, "measured": 4.2, "bound": ">=", "vs_goal": 1.4}]
    report["sections"] = {}
    assert ">=4.2" in bench.table(report)


def test_bad_arguments_fail_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--threads", "0", "--out", str(tmp_path / "b")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "--threads must be a positive int" in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--sections", "../etc", "--out",
         str(tmp_path / "b")], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "bench_NAME.py plug-ins" in proc.stderr


def _plugin(name):
    return _load(ROOT / "scripts" / f"bench_{name}.py", f"bench_{name}_t")


class _Setup:
    """A stand-in for a bench_neumf setup: each fit advances a fake clock."""

    name = "fake"

    def __init__(self, clock, seconds_per_epoch, hrs):
        self.clock, self.step, self.hrs, self.model, self.epochs = (
            clock, seconds_per_epoch, list(hrs), None, 0)

    def fit(self, epoch):
        self.clock[0] += self.step
        self.epochs += 1


def test_neumf_time_to_hr_stops_at_the_target_or_the_budget(monkeypatch):
    neumf = _plugin("neumf")
    import tfrec.evaluation.scoring as scoring

    clock = [0.0]
    monkeypatch.setattr(neumf.time, "perf_counter", lambda: clock[0])

    def run(seconds_per_epoch, hrs, **kw):
        setup = _Setup(clock, seconds_per_epoch, hrs)
        monkeypatch.setattr(scoring, "keras_scorer", lambda model: None)

        class Protocol:
            def evaluate(self, scorer):
                return {"hr@10": setup.hrs[setup.epochs - 1], "ndcg@10": 0.4}

        return neumf.time_to_hr(setup, Protocol(), 20, lambda *a: None, **kw)

    # Reached at epoch 3: 3 epochs of 10 s.
    got = run(10.0, [0.60, 0.67, 0.681, 0.70])
    assert (got["seconds_to_hr"], got["epochs_to_hr"], len(got["curve"])) == (30.0, 3, 3)
    # Never reached: stops once 35 s are spent (4 epochs of 10 s), no figure.
    got = run(10.0, [0.6] * 20, max_seconds=35.0)
    assert got["seconds_to_hr"] is None and len(got["curve"]) == 4
    assert got["curve"][-1]["train_s"] == 40.0
    # Without a budget: the whole 20 epochs.
    assert len(run(1.0, [0.6] * 20)["curve"]) == 20
