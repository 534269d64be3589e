"""A real ``tfrec train`` process killed with SIGKILL mid-run resumes, on the
same command, to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = ["user,item,time"]
    for u in range(150):
        items = rng.choice(120, size=30, replace=False)
        lines += [f"u{u},i{i},{t}" for t, i in enumerate(items)]
    path.write_text("\n".join(lines) + "\n")


def _cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "tfrec.cli", "train", "neumf", "--data", str(data),
            "--epochs", "8", "--batch-size", "32", "--embedding-dim", "4",
            "--eval-negatives", "20", "--seed", "5", "--out", str(out)]


def test_sigkill_mid_run_then_same_command_resumes_exactly(tmp_path):
    data = tmp_path / "events.csv"
    _csv(data)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    straight = tmp_path / "straight"
    done = subprocess.run(_cmd(data, straight), capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(data, run), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    history = run / "history.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if history.is_file() and len(json.loads(history.read_text())["epochs"]) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed"
    assert not (run / "model.keras").exists()

    resumed = subprocess.run(_cmd(data, run), capture_output=True, text=True, env=env,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the unfinished run" in resumed.stdout
    epochs = [r["epoch"] for r in json.loads(history.read_text())["epochs"]]
    assert epochs == list(range(1, 9))
    a = keras.saving.load_model(straight / "model.keras").get_weights()
    b = keras.saving.load_model(run / "model.keras").get_weights()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)
