"""The serving contract's bad input and integrity checks (issue 10): an op ONNX
cannot take is named with its Keras layer before anything is written; every
reader of a file (golden files, the warm-up file, the TF Serving loader, the Node
harness, the web demo) refuses a modified one by name; ``--web-demo`` is part of
the published, checksummed version; the CLI's bad targets in real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from export import ExportError, export_model
from export.artifact import load_manifest
from export.golden import GOLDEN_JSON, GOLDEN_NPZ, load_golden
from export.tfserving import LoaderError, run, run_loader
from export.warmup import WARMUP_FILE, read_warmup
from tests.export.js_tools import check_onnx

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")


def _flip(path: Path) -> None:
    """Changes one byte in the middle of ``path``."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _cli(*argv, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfrec.cli", *map(str, argv)], cwd=ROOT, env=ENV,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny finished neumf run."""
    import tfrec
    from tfrec.registry import model_info

    recipe = model_info("neumf").recipe
    run_path = tmp_path_factory.mktemp("runs") / "neumf"
    tfrec.train(
        "neumf", recipe.synthetic_data(0), out=run_path, **dict(recipe.test_config)
    )
    return run_path


@pytest.fixture(scope="module")
def exported(zoo_exports):
    return zoo_exports("neumf")[1]


@pytest.fixture
def copy(exported, tmp_path):
    """A copy of the neumf export to modify."""
    return Path(shutil.copytree(exported, tmp_path / "neumf" / "1"))


# ------------------------------------------------- an op ONNX cannot take


def hashed_model():
    """neumf's inputs and output, with the user id hashed (``keras.layers.Hashing``
    becomes ``StringToHashBucketFast``, which tf2onnx 1.17 cannot convert: it
    only logs it and leaves the TensorFlow op in the graph)."""
    user = keras.Input((), name="user_id", dtype="int64")
    item = keras.Input((), name="item_id", dtype="int64")
    hashed = keras.layers.Hashing(num_bins=16, name="user_hash")(user)
    u = keras.layers.Embedding(16, 4, name="user_embedding")(hashed)
    i = keras.layers.Embedding(50, 4, name="item_embedding")(item)
    dot = keras.layers.Dot(axes=1, name="dot")([u, i])
    score = keras.layers.Activation("sigmoid", name="score")(dot)
    return keras.Model({"user_id": user, "item_id": item}, {"score": score},
                       name="hashed_neumf")  # fmt: skip


def _ids(batch, rng):
    return {"user_id": rng.integers(0, 40, batch), "item_id": rng.integers(0, 50, batch)}


UNSUPPORTED = (
    r"ONNX \(opset 17\) cannot take the TensorFlow op StringToHashBucketFast from "
    r"Keras layer 'user_hash' \(Hashing\), TensorFlow node '[^']*user_hash[^']*'"
)


def test_unsupported_op_names_the_op_and_the_layer(tmp_path, capfd):
    with pytest.raises(ExportError, match=UNSUPPORTED + r".*No version written"):
        export_model(hashed_model(), "hashed", base_dir=tmp_path, example_inputs=_ids)
    assert list((tmp_path / "hashed").iterdir()) == []  # no version, no tmp folder
    assert "is not supported" not in capfd.readouterr().err  # tf2onnx's log kept off


def test_unsupported_op_in_a_nested_tower(tmp_path):
    """The innermost layer is named with its path (``tower/user_hash``)."""
    user = keras.Input((), name="user_id", dtype="int64")
    hashed = keras.layers.Hashing(num_bins=8, name="user_hash")(user)
    emb = keras.layers.Embedding(8, 2, name="user_embedding")(hashed)
    tower = keras.Model({"user_id": user}, emb, name="tower")
    outer_in = keras.Input((), name="user_id", dtype="int64")
    out = keras.layers.Dense(1, name="head")(tower({"user_id": outer_in}))
    model = keras.Model({"user_id": outer_in}, {"score": out}, name="outer")
    with pytest.raises(
        ExportError, match=r"StringToHashBucketFast from Keras layer 'tower/user_hash'"
    ):
        export_model(
            model, "nested", base_dir=tmp_path,
            example_inputs=lambda b, rng: {"user_id": rng.integers(0, 9, b)},
        )  # fmt: skip
    assert list((tmp_path / "nested").iterdir()) == []


def test_unsupported_op_through_the_cli(run_dir, tmp_path):
    """A run whose saved graph holds the hashed model: ``tfrec export`` in a real
    subprocess exits 1 with one line naming the op and the layer (the op is met
    first in the ``recommend`` graph, converted inside the SavedModel save), and
    leaves no version folder."""
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    hashed_model().save(run / "serving" / "neumf.keras")
    base = tmp_path / "sm"
    proc = _cli("export", run, "--base-dir", base)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("tfrec: error: ExportError: ONNX (opset 17)")
    assert "StringToHashBucketFast from Keras layer 'user_hash' (Hashing)" in proc.stderr
    assert [p.name for p in (base / "neumf").iterdir()] == []


# ------------------------------------------------- every reader checks sha256


def test_golden_reader_refuses_a_modified_file(copy):
    load_golden(copy)  # intact: reads
    _flip(copy / GOLDEN_NPZ)
    with pytest.raises(ExportError, match=r"golden\.npz was modified or is corrupt"):
        load_golden(copy)


def test_warmup_reader_refuses_a_modified_file(copy):
    assert len(read_warmup(copy)) >= 2
    _flip(copy / WARMUP_FILE)
    with pytest.raises(
        ExportError, match="tf_serving_warmup_requests was modified or is corrupt"
    ):
        read_warmup(copy)


def test_a_reader_needs_the_file_listed(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["checksums"][GOLDEN_NPZ]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"golden\.npz is not listed in manifest"):
        load_golden(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ExportError, match="manifest.json is missing, so the files"):
        read_warmup(copy)


@pytest.mark.parametrize(
    "rel", ["saved_model.pb", "variables/variables.data-00000-of-00001", WARMUP_FILE]
)
def test_loader_refuses_a_modified_saved_model_file(copy, rel):
    """The Python side of the loader verifies what the C program will read
    before it runs; ``verify=False`` shows the program itself would have run."""
    feed = {"user_id": np.array([1, 2]), "item_id": np.array([3, 4])}
    _flip(copy / rel)
    with pytest.raises(LoaderError, match=f"{rel} was modified or is corrupt"):
        run(copy, inputs=feed, warmup=True)


def test_loader_needs_a_manifest(copy):
    (copy / "manifest.json").unlink()
    with pytest.raises(LoaderError, match="manifest.json is missing, so the SavedModel"):
        run_loader(copy, {"user_id": np.array([1]), "item_id": np.array([1])})


@pytest.mark.parametrize("rel", ["model.onnx", GOLDEN_JSON])
def test_node_harness_refuses_a_modified_file(copy, rel):
    code, (ok,) = check_onnx(copy)
    assert code == 0 and ok["passed"], ok
    _flip(copy / rel)
    code, (bad,) = check_onnx(copy)
    assert code == 1 and not bad["passed"]
    (problem,) = bad["problems"]
    assert f"{copy / rel} was modified or is corrupt: its sha256" in problem
    assert "differs from manifest.json's" in problem


# ------------------------------------------------------ the web demo folder


def test_web_demo_is_published_with_the_version_and_checksummed(run_dir, tmp_path):
    from export.cli import export_run
    from export.webdemo import ORT_FILES, write_web_demo

    path = export_run(run_dir, base_dir=tmp_path, web_demo=True, verbose=False)["neumf"]
    manifest = load_manifest(path)  # verifies every listed file, web/ included
    web = {"web/index.html", "web/demo.mjs", "web/data.json",
           *(f"web/ort/{f}" for f in ORT_FILES)}  # fmt: skip
    assert web <= set(manifest["checksums"]) and web <= set(manifest["files"])
    data = json.loads((path / "web" / "data.json").read_text())
    assert data["version"] == manifest["version"] == int(path.name)
    assert not [p for p in path.iterdir() if p.name.startswith(".")]
    # write_web_demo on the published version keeps the verified page as is.
    before = (path / "web" / "data.json").stat().st_mtime_ns
    assert write_web_demo(path) == path / "web"
    assert (path / "web" / "data.json").stat().st_mtime_ns == before
    _flip(path / "web" / "data.json")
    with pytest.raises(ExportError, match=r"web/data\.json was modified or is corrupt"):
        load_manifest(path)
    with pytest.raises(ExportError, match=r"web/data\.json was modified"):
        write_web_demo(path)


def test_a_failing_web_demo_leaves_no_version(run_dir, tmp_path, monkeypatch):
    """The page is written inside the temporary version folder: when writing it
    fails half-way, neither a version nor a temporary folder is left."""
    import export.webdemo as webdemo
    from export.cli import export_run

    real = shutil.copyfile

    def half(src, dst, *args, **kwargs):
        if Path(dst).name == "demo.mjs":  # index.html is written, then the disk fills
            raise OSError(28, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(webdemo.shutil, "copyfile", half)
    with pytest.raises(ExportError, match="No space left on device"):
        export_run(run_dir, base_dir=tmp_path, web_demo=True, verbose=False)
    assert list((tmp_path / "neumf").iterdir()) == []


# ------------------------------------------------------------- bad input


def test_foreign_and_read_only_targets_in_a_real_subprocess(run_dir, tmp_path):
    foreign = tmp_path / "sm" / "neumf"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("not ours")
    proc = _cli("export", run_dir, "--base-dir", tmp_path / "sm")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "is not a tfrec export folder (it holds notes.txt" in proc.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
    else:  # root writes into any folder; no one writes folders into /proc/sys
        ro = Path("/proc/sys")
        if os.access(ro, os.W_OK):
            pytest.skip("/proc/sys is writable here; test_artifact_integrity covers "
                        "a read-only target with a patched access check")
    try:
        proc = _cli("export", run_dir, "--base-dir", ro / "sm")
    finally:
        if ro != Path("/proc/sys"):
            ro.chmod(0o755)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"Cannot write the export under {ro}" in proc.stderr
    assert "writable --base-dir" in proc.stderr
    assert not (ro / "sm").exists()


def test_recommend_request_checks(exported):
    """``export.recommend.check_request`` (through the Python client): k larger
    than the catalogue, zero or negative; exclusion ids outside the vocabulary."""
    from export.serving import ExportedModel

    manifest = load_manifest(exported)
    n = manifest["recommend"]["catalogue_size"]
    client = ExportedModel(exported)
    query = {"user_id": np.array([0, 1])}
    assert client.recommend(query, n)["item_ids"].shape == (2, n)
    for k in (n + 1, 0, -1):
        with pytest.raises(ValueError, match=rf"`k` must be an int in \[1, {n}\]"):
            client.recommend(query, k)
    for exclude in ([n], [-2], [[0, 1], [2, n + 5]]):
        with pytest.raises(ValueError, match=rf"Exclusion ids must be .*\[0, {n}\)"):
            client.recommend(query, 3, exclude)


def test_corrupt_warmup_file_fails_the_export(tmp_path, monkeypatch):
    """A warm-up file that does not read back (here: truncated as it is written)
    is a clear error, and no version is written."""
    import tensorflow as tf

    from tfrec.registry import model_info

    real = tf.io.TFRecordWriter

    class Truncating(real):
        def __init__(self, path, *args, **kwargs):
            super().__init__(path, *args, **kwargs)
            self._path = path

        def __exit__(self, *exc):
            out = super().__exit__(*exc)
            data = Path(self._path).read_bytes()
            Path(self._path).write_bytes(data[: len(data) - 7])
            return out

    monkeypatch.setattr(tf.io, "TFRecordWriter", Truncating)
    info = model_info("mf")
    with pytest.raises(ExportError, match="tf_serving_warmup_requests is corrupt"):
        export_model(
            info.builder(**info.test_kwargs), "mf", base_dir=tmp_path,
            example_inputs=lambda b, r: info.example_inputs(info.test_kwargs, b, r),
        )  # fmt: skip
    assert list((tmp_path / "mf").iterdir()) == []
