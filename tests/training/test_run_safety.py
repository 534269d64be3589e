"""Runs survive crashes and refuse what would lose work or mix definitions,
through the real command line (issue: nothing lost, nothing silently wrong).

Each test drives ``tfrec`` in subprocesses on a small CSV: a finished run is
never overwritten without ``--overwrite``; a command that fails validation never
touches an existing run and leaves no empty directory; resuming with another
definition (model option, data) is refused; a damaged backup falls back to the
previous checkpoint or names the folder; ``evaluate`` and ``export`` refuse data
that changed; repeated ``kill -9`` at random moments still ends with the weights
of an uninterrupted run; a full disk ends with one line and a resumable run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import tfrec  # noqa: F401  (registers the layers model.keras needs)

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _csv(path: Path, users: int = 120) -> Path:
    rng = np.random.default_rng(0)
    lines = ["user,item,time"]
    for u in range(users):
        items = rng.choice(100, size=25, replace=False)
        lines += [f"u{u},i{i},{t}" for t, i in enumerate(items)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(data: Path, out: Path, *extra: str, epochs: int = 8) -> list[str]:
    return [sys.executable, "-m", "tfrec.cli", "train", "neumf", "--data", str(data),
            "--epochs", str(epochs), "--batch-size", "32", "--embedding-dim", "4",
            "--eval-negatives", "20", "--seed", "5", "--out", str(out), *extra]


def _run(cmd, timeout=600):
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def _tfrec(*args):
    return _run([sys.executable, "-m", "tfrec.cli", *args])


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(proc, *needles):
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfrec: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _weights(run: Path):
    return keras.saving.load_model(run / "model.keras").get_weights()


def _kill_after_epochs(cmd, run: Path, epochs: int, extra_delay: float = 0.0) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV)
    history = run / "history.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if len(json.loads(history.read_text())["epochs"]) >= epochs:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.01)
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _csv(tmp_path_factory.mktemp("data") / "events.csv")


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> Path:
    """An uninterrupted run: the reference every resumed run must equal."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    done = _run(_train(data, out))
    assert done.returncode == 0, done.stderr
    return out


def test_a_finished_run_is_never_overwritten_without_the_flag(data, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    before = _digests(run)
    _one_line_error(_run(_train(data, run)), "finished run", "--overwrite")
    # A bad model option with --overwrite fails validation before anything is written.
    _one_line_error(_run(_train(data, run, "--overwrite", "--activation", "nope")),
                    "nope")
    _one_line_error(_run(_train(data, run, "--overwrite", "--embeding-dim", "3")),
                    "embedding_dim")
    assert _digests(run) == before
    again = _run(_train(data, run, "--overwrite", epochs=2))
    assert again.returncode == 0, again.stderr
    assert len(json.loads((run / "history.json").read_text())["epochs"]) == 2


def test_a_failed_start_leaves_no_run_directory(data, tmp_path):
    run = tmp_path / "new"
    _one_line_error(_run(_train(data, run, "--activation", "nope")), "nope")
    assert not run.exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _one_line_error(_run(_train(data, foreign)), "not a tfrec run directory")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_resume_with_another_definition_is_refused(data, tmp_path):
    run = tmp_path / "run"
    _kill_after_epochs(_train(data, run), run, 1)
    assert not (run / "metrics.json").exists()
    before = _digests(run)
    _one_line_error(_run(_train(data, run, "--activation", "tanh")),
                    "another definition", "model_kwargs: activation")
    changed = _csv(tmp_path / "other.csv", users=110)
    os.replace(changed, tmp_path / "events.csv")
    shutil.copy(data, tmp_path / "same.csv")
    # The same settings on a file with other contents: the data fingerprint differs.
    line = _one_line_error(_run(_train(tmp_path / "events.csv", run)), "another definition")
    assert "source" in line or "data" in line
    assert _digests(run) == before


def test_evaluate_and_export_refuse_changed_data(straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    record = json.loads((run / "config.json").read_text())
    source = Path(record["source"]["file"])
    files = record["data"]["files"]
    assert files[0]["path"] == str(source.resolve()) and len(files[0]["sha256"]) == 64
    ok = _tfrec("evaluate", str(run))
    assert ok.returncode == 0, ok.stderr
    original = source.read_bytes()
    try:
        source.write_bytes(original[: len(original) * 9 // 10])  # truncated
        _one_line_error(_tfrec("evaluate", str(run)), "changed since", source.name)
        _one_line_error(_tfrec("export", str(run), "--base-dir", str(tmp_path / "sm")),
                        "changed since")
        assert not (tmp_path / "sm").exists()
    finally:
        source.write_bytes(original)
    again = _tfrec("evaluate", str(run))
    assert again.returncode == 0, again.stderr


def test_a_damaged_backup_falls_back_or_names_the_folder(data, straight, tmp_path):
    run = tmp_path / "run"
    _kill_after_epochs(_train(data, run), run, 3)
    backup = run / "backup" / "neumf"  # the stage of a single-stage recipe
    ckpts = sorted(p for p in backup.iterdir() if p.name.startswith("ckpt-"))
    assert len(ckpts) == 2, ckpts  # the latest and the one before
    latest = backup / (backup / "LATEST").read_text().strip()
    weights = latest / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:96])  # what a torn write leaves
    resumed = _run(_train(data, run))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from the previous one" in resumed.stderr
    for a, b in zip(_weights(straight), _weights(run), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)

    run2 = tmp_path / "run2"
    _kill_after_epochs(_train(data, run2), run2, 2)
    for ckpt in (run2 / "backup" / "neumf").glob("ckpt-*"):
        (ckpt / "latest.weights.h5").write_bytes(b"\0" * 96)
    _one_line_error(_run(_train(data, run2)), "cannot be read", "Delete", "backup")


@pytest.mark.parametrize("kills", [3, pytest.param(12, marks=pytest.mark.slow)])
def test_repeated_sigkill_at_random_moments_then_resume(data, straight, tmp_path, kills):
    run = tmp_path / "run"
    rng = np.random.default_rng(kills)
    cmd = _train(data, run)
    for _ in range(kills):
        done = 0
        if (run / "history.json").is_file():
            done = len(json.loads((run / "history.json").read_text())["epochs"])
        if (run / "metrics.json").is_file():
            break
        # Right after an epoch ends the backup is being written: kill at random
        # delays from 0 to 0.3 s after that moment.
        _kill_after_epochs(cmd, run, min(done + 1, 8), float(rng.uniform(0, 0.3)))
    finished = _run(cmd)
    assert finished.returncode == 0, finished.stderr
    for a, b in zip(_weights(straight), _weights(run), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a small tmpfs")
def test_a_full_disk_ends_with_one_line_and_a_resumable_run(data, straight, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, mounted.stderr
    try:
        run = disk / "run"
        cmd = _train(data, run)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=ENV)
        history = run / "history.json"
        while proc.poll() is None and not history.is_file():
            time.sleep(0.01)
        filler = disk / "filler"
        with open(filler, "wb") as fh:  # take every free byte
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, (proc.returncode, err)  # not a crash (-11)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "no space left on device" in lines[0], err
        assert not (run / "metrics.json").exists()
        filler.unlink()
        resumed = _run(cmd)
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming the unfinished run" in resumed.stdout
        for a, b in zip(_weights(straight), _weights(run), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
