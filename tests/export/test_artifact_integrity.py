"""Artifacts are checked, not trusted: file checksums verified by every loader,
versions reserved atomically (concurrent and killed exports), ``--keep``, export
names and targets validated before any work, recommend's ``k`` rules, and feeds
validated alike in both runtimes."""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import export.artifact as artifact
from export import ExportError, export_model
from export.serving import ExportedModel
from tfrec.cli import main

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ("onnx", "saved_model")


# ----------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny finished neumf run: 40 users, 30 items, 10 seen per user."""
    import tfrec
    from tfrec.registry import model_info

    recipe = model_info("neumf").recipe
    run = tmp_path_factory.mktemp("runs") / "neumf"
    tfrec.train("neumf", recipe.synthetic_data(0), out=run, **dict(recipe.test_config))
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    from export.cli import export_run

    base = tmp_path_factory.mktemp("saved_models")
    return export_run(run_dir, base_dir=base, verbose=False)["neumf"]


def _copy(version_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "neumf" / "1"
    shutil.copytree(version_dir, dst)
    return dst


def _flip(path: Path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(mid + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _versions(model_dir: Path) -> list[str]:
    return sorted((p.name for p in model_dir.iterdir() if p.name.isdigit()), key=int)


def _hidden(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if p.name.startswith("."))


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------ checksums


def test_manifest_records_size_and_sha256_of_every_file(exported):
    import hashlib

    manifest = json.loads((exported / "manifest.json").read_text())
    on_disk = sorted(
        p.relative_to(exported).as_posix() for p in exported.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    )
    assert sorted(manifest["checksums"]) == on_disk
    assert {"model.onnx", "saved_model.pb", "variables/variables.index",
            "vocab/items.tsv", "vocab/seen.npz"} <= set(on_disk)
    for rel, entry in manifest["checksums"].items():
        data = (exported / rel).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert manifest["files"] == sorted([*on_disk, "manifest.json"])
    assert manifest["version"] == 1


@pytest.mark.parametrize(
    "rel", ["model.onnx", "variables/variables.data-00000-of-00001", "vocab/items.tsv"]
)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_modified_file_is_refused_by_name(exported, tmp_path, rel, runtime):
    broken = _copy(exported, tmp_path)
    _flip(broken / rel)
    with pytest.raises(ExportError, match=f"{rel}.*modified or is corrupt.*sha256"):
        ExportedModel(broken, runtime=runtime)


def test_a_missing_file_or_a_manifest_without_checksums_is_refused(exported, tmp_path):
    broken = _copy(exported, tmp_path)
    (broken / "variables" / "variables.index").unlink()
    with pytest.raises(ExportError, match=r"variables\.index is missing"):
        ExportedModel(broken, runtime="saved_model")
    shutil.copy(exported / "variables" / "variables.index", broken / "variables")
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["checksums"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="records no file checksums"):
        ExportedModel(broken)


def test_recommend_refuses_a_bit_flipped_onnx_in_one_line(exported, tmp_path, capsys):
    broken = _copy(exported, tmp_path)
    _flip(broken / "model.onnx")
    code, out, err = _run(capsys, "recommend", "--artifact", broken, "--user", "1")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "model.onnx was modified or is corrupt" in err


def test_pipeline_tables_are_verified(tmp_path):
    from export.pipeline import PIPELINE_FILE, ExportedPipeline

    tmp, fd = artifact._make_tmp(tmp_path / "youtube", 1)
    np.savez(tmp / "tables.npz", x=np.arange(5))
    (tmp / PIPELINE_FILE).write_text(json.dumps({"stages": []}))
    final = artifact.publish_version(
        tmp, tmp_path / "youtube", 1, fixed=True, manifest_name=PIPELINE_FILE
    )
    os.close(fd)
    assert set(json.loads((final / PIPELINE_FILE).read_text())["checksums"]) == {
        "tables.npz"
    }
    _flip(final / "tables.npz", 8)
    with pytest.raises(ExportError, match="tables.npz was modified"):
        ExportedPipeline(tmp_path / "youtube")


# ------------------------------------------------------------------- versions

CHILD = r"""
import os, sys, time
mode, base = sys.argv[1], sys.argv[2]
import export.artifact as artifact
import export.parity as parity
import tfrec
from tfrec.registry import model_info

KW = {"num_users": 13, "num_items": 17}
info = model_info("neumf")


def pause(point):
    print("AT", point, flush=True)
    if mode == "barrier":  # wait until the parent lets every exporter go
        while not os.path.exists(os.path.join(base, "go")):
            time.sleep(0.05)
    else:
        time.sleep(600)  # killed here


def hook(module, attr, point, after=False):
    real = getattr(module, attr)

    def wrapped(*args, **kwargs):
        if not after:
            pause(point)
        out = real(*args, **kwargs)
        if after:
            pause(point)
        return out

    setattr(module, attr, wrapped)


point = mode.split(":")[-1]
if mode == "barrier" or point == "publish":   # parity passed, not yet published
    hook(artifact, "publish_version", "publish")
elif point == "convert":                      # SavedModel written, ONNX next
    hook(artifact, "_convert_to_onnx", point)
elif point == "parity":                       # both artifacts written
    hook(parity, "check_parity", point)
elif point == "manifest":                     # manifest written in the temp folder
    hook(artifact, "atomic_write_json", point, after=True)
elif point == "rename":                       # checksums recorded, rename next
    hook(artifact, "_fsync_dir", point, after=True)
print("START", flush=True)
model = tfrec.create_model("neumf", **KW)
path = artifact.export_model(
    model, "m", base_dir=os.path.join(base, "saved_models"),
    example_inputs=lambda b, r: info.example_inputs(KW, b, r),
)
print("DONE", path, flush=True)
"""


class Child:
    """An exporter in its own process; its stdout lines arrive on a queue."""

    def __init__(self, script: Path, mode: str, base: Path):
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), mode, str(base)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = 300) -> str:
        deadline = time.time() + timeout
        while True:
            line = self.lines.get(timeout=max(deadline - time.time(), 0.01))
            assert line is not None, f"exporter exited {self.proc.wait()} before {prefix}"
            if line.startswith(prefix):
                return line

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait() == -signal.SIGKILL


def _check_complete(model_dir: Path) -> list[str]:
    """Every visible version loads (checksums verified) and says its number."""
    versions = _versions(model_dir)
    for v in versions:
        assert json.loads((model_dir / v / "manifest.json").read_text())["version"] == int(v)
        ExportedModel(model_dir / v)
    return versions


def _next_export_cleans_up(model_dir: Path, expect: str) -> None:
    import tfrec
    from tfrec.registry import model_info

    kw = {"num_users": 13, "num_items": 17}
    path = export_model(
        tfrec.create_model("neumf", **kw), "m", base_dir=model_dir.parent,
        example_inputs=lambda b, r: model_info("neumf").example_inputs(kw, b, r),
    )
    assert path.name == expect
    assert _hidden(model_dir) == []  # the dead exports' temporary folders are gone
    _check_complete(model_dir)


def test_concurrent_and_killed_exports(tmp_path):
    """Two exporters that chose the same number finish with distinct, complete
    versions; one killed with -9 at the last moment (checksums recorded, rename
    next) leaves no version; the next export removes its folder. (Every kill
    point, and kills at random times: the slow test below.)"""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    live = [Child(script, "barrier", tmp_path) for _ in range(2)]
    doomed = [Child(script, "kill:rename", tmp_path)]
    try:
        for c in doomed:
            c.wait_for("AT")
            c.kill()
        for c in live:
            c.wait_for("AT publish")  # both built version 1 in a temporary folder
        (tmp_path / "go").touch()
        done = sorted(Path(c.wait_for("DONE").split(" ", 1)[1]).name for c in live)
        assert [c.proc.wait(timeout=120) for c in live] == [0, 0]
    finally:
        for c in live + doomed:
            if c.proc.poll() is None:
                c.proc.kill()
    model_dir = tmp_path / "saved_models" / "m"
    assert done == ["1", "2"]
    assert _check_complete(model_dir) == ["1", "2"]
    assert len(_hidden(model_dir)) == 1  # the killed export's temporary folder
    _next_export_cleans_up(model_dir, "3")


@pytest.mark.slow  # about 14 exporter processes: make test-slow
def test_kill_at_every_point_and_at_random_times(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    points = ("convert", "parity", "manifest", "publish", "rename")
    doomed = [Child(script, f"kill:{p}", tmp_path) for p in points]
    for c in doomed:
        c.wait_for("AT")
        c.kill()
    model_dir = tmp_path / "saved_models" / "m"
    assert _versions(model_dir) == [] and len(_hidden(model_dir)) == len(points)
    # A full export's duration, then kills at random moments within it.
    started = time.time()
    full = Child(script, "kill:none", tmp_path)
    full.wait_for("DONE")
    duration = time.time() - started
    rng = random.Random(0)
    for _ in range(8):
        c = Child(script, "kill:none", tmp_path)
        c.wait_for("START")
        time.sleep(rng.uniform(0, duration))
        if c.proc.poll() is None:
            c.kill()
        _check_complete(model_dir)
    n = len(_versions(model_dir))
    _next_export_cleans_up(model_dir, str(n + 1))


def test_stale_folders_need_a_dead_owner(tmp_path):
    model_dir = tmp_path / "m"
    mine, fd = artifact._make_tmp(model_dir, 1)  # a live export (this process)
    dead = model_dir / f".tmp-1-{artifact._HOST}-999999999-abc"  # no lock, pid gone
    dead.mkdir()
    unlocked = model_dir / f".tmp-1-{artifact._HOST}-{os.getpid()}-def"
    unlocked.mkdir()
    (unlocked / artifact._LOCK_FILE).touch()  # lock file whose owner died
    other = model_dir / ".tmp-1-otherhost-1-ghi"  # another host's, recent: kept
    other.mkdir()
    trash = model_dir / f".trash-3-{artifact._HOST}-1-jkl"  # an interrupted prune
    trash.mkdir()
    artifact._clean_stale_tmp(model_dir)
    assert _hidden(model_dir) == sorted([mine.name, other.name])
    os.close(fd)
    artifact._clean_stale_tmp(model_dir)
    assert _hidden(model_dir) == [other.name]


def test_keep_newest_versions(run_dir, exported, tmp_path, capsys):
    base = tmp_path / "saved_models"
    shutil.copytree(exported.parent, base / "neumf")  # version 1
    code, out, err = _run(capsys, "export", run_dir, "--base-dir", base, "--keep", "1")
    assert code == 0, err
    assert _versions(base / "neumf") == ["2"] and _hidden(base / "neumf") == []
    assert "removed 1" in out
    for bad in ("0", "-2"):
        code, _, err = _run(capsys, "export", run_dir, "--base-dir", base, "--keep", bad)
        assert code == 1 and "`keep` must be a positive int" in err
    assert _versions(base / "neumf") == ["2"]
    assert artifact.prune_versions(base / "neumf", 5) == []


# ------------------------------------------------------- names and export targets


@pytest.mark.parametrize(
    "name, why",
    [("..", "must not start with '.'"), (".", "must not start with '.'"),
     ("a/b", "only letters"), ("", "non-empty"), ("a b", "only letters"),
     ("é", "only letters"), (".hidden", "must not start"), ("12", "all digits")],
)
def test_bad_names_are_refused_before_any_work(run_dir, tmp_path, capsys, name, why):
    base = tmp_path / "base" / "saved_models"
    code, out, err = _run(capsys, "export", run_dir, "--base-dir", base, "--name", name)
    assert code == 1 and why in err and err.count("\n") == 1
    assert not (tmp_path / "base").exists()  # nothing written, not even the base
    with pytest.raises(ValueError, match=why):
        export_model(None, name, base_dir=base, example_inputs=None)


def test_bad_name_in_a_real_subprocess(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tfrec.cli", "export", str(tmp_path / "no-run"),
         "--name", "..", "--base-dir", str(tmp_path / "sm")],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "export name" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_targets_are_refused_clearly(run_dir, tmp_path, capsys, monkeypatch):
    as_file = tmp_path / "file"
    as_file.write_text("x")
    code, _, err = _run(capsys, "export", run_dir, "--base-dir", as_file)
    assert code == 1 and "exists and is not a folder" in err
    foreign = tmp_path / "sm" / "neumf"
    foreign.mkdir(parents=True)
    (foreign / "README.txt").write_text("someone else's")
    (foreign / "7").mkdir()  # a version folder without a manifest
    code, _, err = _run(capsys, "export", run_dir, "--base-dir", tmp_path / "sm")
    assert code == 1 and "is not a tfrec export folder" in err and "7, README.txt" in err
    assert sorted(p.name for p in foreign.iterdir()) == ["7", "README.txt"]
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
    else:  # root writes anywhere: make the access check see a read-only target
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **k: Path(p) != ro and real(p, m))
    code, _, err = _run(capsys, "export", run_dir, "--base-dir", ro / "sm")
    ro.chmod(0o755)
    assert code == 1 and err.count("\n") == 1
    assert f"Cannot write the export under {ro}" in err and "writable --base-dir" in err


def test_unwritable_folder_during_export_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(artifact.tempfile, "mkdtemp", refuse)
    with pytest.raises(ExportError, match="Read-only file system. Choose a writable"):
        artifact._make_tmp(tmp_path / "m", 1)


# ------------------------------------------------------------ recommend and k


def test_top_k_never_returns_an_excluded_item():
    from tfrec.recipes.base import Vocab
    from tfrec.recipes.interactions import top_k

    vocab = Vocab(items=["a", "b", "c", "d"])
    scores = np.array([0.1, 0.9, 0.5, 0.3])
    assert top_k(scores, vocab, 10, exclude=[1, 3]) == [("c", 0.5), ("a", 0.1)]
    assert top_k(scores, vocab, 1, exclude=[1]) == [("c", 0.5)]
    with pytest.raises(ValueError, match="exclude"):  # -1 never wraps to the last
        top_k(scores, vocab, 3, exclude=[-1])
    assert top_k(np.array([0.2, np.nan, 0.1]), vocab, 3) == [("a", 0.2), ("c", 0.1)]
    assert top_k(scores, vocab, 4, exclude=range(4)) == []
    for bad in (0, -1, True, 2.5, "3"):
        with pytest.raises(ValueError, match="`k` must be a positive int"):
            top_k(scores, vocab, bad)


@pytest.mark.parametrize("source", ["run", "artifact"])
def test_recommend_k_above_the_unseen_items(run_dir, exported, capsys, source):
    from tfrec.training.runner import read_vocab

    where = run_dir if source == "run" else exported.parent
    vocab = read_vocab(run_dir)
    indptr, indices = vocab.seen
    seen = {vocab.items[i] for i in indices[indptr[0]:indptr[1]]}
    unseen = len(vocab.items) - len(seen)
    code, out, err = _run(capsys, "recommend", f"--{source}", where, "--user",
                          vocab.users[0], "--k", "500")
    assert code == 0, err
    listed = [line.split()[2] for line in out.splitlines() if ". item " in line]
    assert len(listed) == unseen and not seen & set(listed)
    assert "-inf" not in out
    assert f"Note: only {unseen} item(s) can be returned, not --k 500" in out
    code, out, _ = _run(capsys, "recommend", f"--{source}", where, "--user",
                        vocab.users[0], "--k", "500", "--include-seen")
    assert code == 0 and out.count(". item ") == len(vocab.items)
    assert "can be returned, not --k 500: that is every item" in out
    code, out, _ = _run(capsys, "recommend", f"--{source}", where, "--user",
                        vocab.users[0], "--k", "3")
    assert code == 0 and "Note:" not in out and out.count(". item ") == 3
    code, _, err = _run(capsys, "recommend", f"--{source}", where, "--user",
                        vocab.users[0], "--k", "0")
    assert code == 1 and "--k must be a positive int" in err


# ------------------------------------------------------------- feed validation


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ids_int64_cannot_hold_are_rejected_not_wrapped(exported, runtime):
    model = ExportedModel(exported, runtime=runtime)
    items = np.array([3, 4])
    ok = model({"user_id": np.array([1, 2], np.uint64), "item_id": items})["score"]
    assert ok.shape == (2,)
    cases = [
        (np.array([2**63, 1], np.uint64), ValueError, "user_id.*9223372036854775808"),
        ([2**70, 1], ValueError, "user_id.*1180591620717411303424.*int64 cannot"),
        (np.array([1.5, 2.0]), TypeError, "user_id.*int64.*float"),
        (np.array([1.0, 2.0]), TypeError, "user_id.*int64.*float"),
        (np.array(["1", "2"]), TypeError, "user_id.*int64.*str"),
        (np.array([True, False]), TypeError, "user_id.*int64.*bool"),
        ([1, "2"], TypeError, "user_id.*int64.*str"),
    ]
    for value, error, match in cases:
        with pytest.raises(error, match=match):
            model({"user_id": value, "item_id": items})
    with pytest.raises(ValueError, match=r"item_id.*shape \[None\]"):
        model({"user_id": np.array([1, 2]), "item_id": np.array([[3], [4]])})


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sessions_empty_and_all_padding(zoo_exports, runtime):
    model, path = zoo_exports("gru4rec")
    served = ExportedModel(path, runtime=runtime)
    padding = np.zeros((2, 3), np.int64)  # documented: a new session's scores
    np.testing.assert_allclose(
        served({"session_items": padding})["scores"],
        np.asarray(model({"session_items": padding}, training=False)["scores"]),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match=r"session_items.*empty axis.*\[2, 0\]"):
        served({"session_items": np.zeros((2, 0), np.int64)})
    none = served({"session_items": np.zeros((0, 3), np.int64)})["scores"]
    assert none.shape[0] == 0
    with pytest.raises(ValueError, match="session_items.*int64 cannot represent"):
        served({"session_items": [[1, 2**64]]})


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_float_inputs_must_be_finite(zoo_exports, runtime):
    _, path = zoo_exports("gru4rec_step")
    served = ExportedModel(path, runtime=runtime)
    width = next(s for s in served.manifest["inputs"] if s["name"] == "hidden_state")
    state = np.zeros((1, width["shape"][1]), np.float64)
    assert served({"item_id": [1], "hidden_state": state})["scores"].shape[0] == 1
    for bad in (np.nan, np.inf, 1e300):
        state[0, 0] = bad
        with pytest.raises(ValueError, match="hidden_state.*finite float32"):
            served({"item_id": [1], "hidden_state": state})
