"""scripts/gru4rec_vs_official.py: parsing of the official output, the summary.

No torch and no training here: the official code's log lines and the tfrec
child's result line are hand-made, the arithmetic is checked by hand.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gru4rec_vs_official.py"


@pytest.fixture(scope="module")
def vs():
    spec = importlib.util.spec_from_file_location("gru4rec_vs_official", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _official_stdout(epoch_s, cpu_per_epoch, recall=0.68, mrr=0.36):
    lines = ["torch 2.13.0+cpu, threads 1", "Started training",
             "The dataframe is not sorted by SessionId, sorting now",
             "Data is sorted in 0.01"]
    # Clock reads: two for the sort, then a start and an end per epoch.
    reads = [[100.0, 1.0], [100.01, 1.01]]
    wall, cpu = 101.0, 2.0
    for e, (dt, c) in enumerate(zip(epoch_s, cpu_per_epoch, strict=True)):
        reads.append([wall, cpu])
        wall, cpu = wall + dt, cpu + c
        reads.append([wall, cpu])
        lines.append(f"Epoch{e + 1} --> loss: 9.668153 \t({dt:.2f}s) \t"
                     f"[244.05 mb/s | {int(52800 / dt)} e/s]")
    lines += ["Total training time: 70.00s", "Evaluation took 0.19s",
              f"Recall@20: {recall:.6f} MRR@20: {mrr:.6f}",
              "OFFICIAL_CLOCK_READS " + json.dumps(reads)]
    return "\n".join(lines) + "\n"


def test_parse_official_sums_epochs_and_their_cpu_seconds(vs):
    out = vs.parse_official(_official_stdout([7.0, 6.5], [6.0, 5.5]), epochs=2)
    assert out["epoch_s"] == [7.0, 6.5] and out["train_s"] == pytest.approx(13.5)
    assert out["cpu_s"] == pytest.approx(11.5)  # the sort's clock reads left out
    assert out["logged_events_per_s"] == [7542, 8123]
    assert out["recall@20"] == 0.68 and out["mrr@20"] == 0.36


def test_parse_official_names_what_is_missing(vs):
    text = _official_stdout([7.0], [6.0])
    with pytest.raises(ValueError, match="expected 2 'EpochN"):
        vs.parse_official(text, epochs=2)
    with pytest.raises(ValueError, match="Recall@20"):
        vs.parse_official(text.replace("Recall@20", "Recall@10"), epochs=1)
    with pytest.raises(ValueError, match="OFFICIAL_CLOCK_READS"):
        vs.parse_official(text.replace("OFFICIAL_CLOCK", "X"), epochs=1)


def test_parse_tfrec_takes_the_result_line(vs):
    line = vs.TFREC_MARK + json.dumps({"train_s": 40.0, "recall@20": 0.68})
    assert vs.parse_tfrec(f"noise\n{line}\n")["train_s"] == 40.0
    with pytest.raises(ValueError, match="TFREC_RESULT"):
        vs.parse_tfrec("noise only\n")


def test_training_events_are_lines_minus_sessions(vs, tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("SessionId\tItemId\tTime\n1\t5\t0\n1\t6\t1\n1\t5\t2\n2\t7\t0\n"
                 "3\t8\t0\n3\t9\t1\n")
    assert vs.training_events(f) == 6 - 3


def test_summary_ratios_and_relative_differences(vs):
    runs = [
        {"side": "official", "train_s": 80.0, "cpu_s": 70.0, "recall@20": 0.68,
         "mrr@20": 0.36},
        {"side": "tfrec", "train_s": 40.0, "cpu_s": 28.0, "recall@20": 0.6834,
         "mrr@20": 0.3564},
        {"side": "official", "train_s": 100.0, "cpu_s": 70.0, "recall@20": 0.68,
         "mrr@20": 0.36},
        {"side": "tfrec", "train_s": 40.0, "cpu_s": 28.0, "recall@20": 0.6766,
         "mrr@20": 0.3636},
    ]
    s = vs.summarise(runs, events_per_epoch=1000, epochs=10)
    # The median of the runs' rates (125 and 100 events/s).
    assert s["official"]["events_per_s"] == pytest.approx(112.5)
    assert s["tfrec"]["events_per_cpu_s"] == pytest.approx(10000 / 28.0)
    assert s["ratio_wall"] == pytest.approx(250.0 / 112.5)
    assert s["ratio_cpu"] == pytest.approx(2.5)
    assert s["pair_ratios_wall"] == [2.0, 2.5]
    assert s["recall_rel_diff"] == pytest.approx(0.0, abs=1e-12)
    assert s["mrr_rel_diff"] == pytest.approx(0.0, abs=1e-12)
    assert s["tfrec"]["recall@20_sd"] == pytest.approx(0.0034 * 2**0.5)
    assert "2.22x wall, 2.50x CPU" in vs.table(s)
