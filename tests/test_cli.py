"""The tfrec command end to end: catalogue data, the user's own CSV with string
ids (through a real subprocess, whose console must stay clean), and failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfrec.cli import main, parse_model_kwargs
from tfrec.data.synthetic import synthetic_interactions

ROOT = Path(__file__).resolve().parents[1]
TFREC = [sys.executable, "-m", "tfrec.cli"]


@pytest.fixture(scope="module")
def tiny_ml100k(tmp_path_factory):
    """A MovieLens-100K-layout folder (u.data, u.item) with 30 users."""
    inter = synthetic_interactions(num_users=30, num_items=25, per_user=8, seed=4)
    root = tmp_path_factory.mktemp("ml-100k")
    rows = zip(
        inter.user, inter.item, inter.rating.astype(int), inter.timestamp, strict=True
    )
    (root / "u.data").write_text(
        "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    )
    items = sorted(set(inter.item.tolist()))
    (root / "u.item").write_text(
        "".join(
            f"{i}|Movie {i} (1990)|01-Jan-1990||http://x|{'|'.join('0' * 19)}\n"
            for i in items
        ),
        encoding="latin-1",
    )
    return root


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def ml100k_unverified(monkeypatch):
    """tiny_ml100k is synthetic: its u.data cannot match the catalogue checksum."""
    from tfrec.data import datasets

    monkeypatch.setattr(datasets, "_expected_digest", lambda name, rel: None)


def test_train_export_recommend_evaluate(tiny_ml100k, ml100k_unverified, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = _run(
        capsys, "train", "neumf", "--dataset", "movielens-100k",
        "--data-dir", str(tiny_ml100k), "--epochs", "2", "--batch-size", "64",
        "--out", str(run), "--eval-negatives", "10", "--embedding-dim", "4",
        "--hidden-units", "16,8",
    )
    assert code == 0, err
    assert "Test metrics, read once at the end" in out
    assert "sampled" in out and "full" in out and "hr@10=" in out
    # Validation each epoch, the test set only at the end; then the next commands.
    epoch_lines = [ln for ln in out.splitlines() if "] epoch " in ln]
    assert len(epoch_lines) == 2 and all("val_ndcg@10=" in ln for ln in epoch_lines)
    assert not any("test" in ln for ln in epoch_lines)
    assert f"tfrec export {run}" in out and f"tfrec recommend --run {run} --user" in out
    record = json.loads((run / "config.json").read_text())
    assert record["model_kwargs"]["hidden_units"] == [16, 8]
    assert record["source"]["data_dir"] == str(tiny_ml100k)

    base = tmp_path / "saved_models"
    code, out, err = _run(capsys, "export", str(run), "--base-dir", str(base))
    assert code == 0, err
    assert "parity onnx" in out and "passed=True" in out
    version = base / "neumf" / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["parity"]["onnx"]["passed"] and manifest["parity"]["saved_model"]["passed"]
    assert (version / "vocab" / "items.tsv").is_file()
    meanings = {s["name"]: s["meaning"] for s in manifest["inputs"]}
    assert "index" in meanings["user_id"] and "users.tsv" in meanings["user_id"]

    code, out, err = _run(capsys, "recommend", "--artifact", str(base / "neumf"),
                          "--user", "3", "--k", "5")
    assert code == 0, err
    lines = [line for line in out.splitlines() if "score=" in line]
    assert len(lines) == 5 and "Movie" in lines[0]
    code, out_run, err = _run(capsys, "recommend", "--run", str(run), "--user", "3",
                              "--k", "5")
    assert code == 0, err
    # Keras run and ONNX artifact recommend the same items in the same order.
    items = lambda text: [ln.split()[2] for ln in text.splitlines() if "score=" in ln]  # noqa: E731
    assert items(out_run) == items(out)

    code, out, err = _run(capsys, "evaluate", str(run))
    assert code == 0, err
    assert "ndcg@10=" in out


def test_own_csv_with_string_ids_end_to_end_in_a_subprocess(tmp_path):
    """``tfrec train --data FILE --columns ...``; raw string ids in the run, the
    export and ``recommend``; a console without TensorFlow's start-up lines."""
    lines = ["customer,sku,stars,ts"]
    for u in range(25):
        for j in range(8):
            lines.append(f"c-{u},sku_{(u * 5 + j * 3) % 31},{1 + (u + j) % 5},{1000 + u * 10 + j}")
    data = tmp_path / "orders.csv"
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    train = subprocess.run(
        [*TFREC, "train", "gmf", "--data", str(data), "--columns",
         "user=customer,item=sku,rating=stars,time=ts", "--epochs", "2",
         "--eval-negatives", "5", "--embedding-dim", "4", "--out", str(run)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert train.returncode == 0, train.stderr
    assert train.stderr == "", train.stderr  # no C++ lines, no warnings
    assert "Data: orders.csv: 25 users" in train.stdout
    users = (run / "vocab" / "users.tsv").read_text().splitlines()
    assert users[1] == "0\tc-0"
    rec = subprocess.run(
        [*TFREC, "recommend", "--run", str(run), "--user", "c-7", "--k", "4"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert rec.returncode == 0 and rec.stderr == "", rec.stderr
    recs = re.findall(r"item (sku_\d+)", rec.stdout)
    assert len(recs) == 4 and len(set(recs)) == 4
    seen = {ln.split(",")[1] for ln in lines[1:] if ln.startswith("c-7,")}
    assert not seen & set(recs)
    bad = subprocess.run(
        [*TFREC, "recommend", "--run", str(run), "--user", "c-999"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        bad.stderr.strip()
    ] and "Unknown user 'c-999'" in bad.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "nuemf", "--epochs", "1"], "Did you mean 'neumf'"),
        (["train", "gmf", "--dataset", "movielens-10m"], "Unknown data set 'movielens-10m'"),
        (["train", "gmf", "--data-dir", "/nonexistent/dir"], "nonexistent"),
        (["train", "gmf", "--epochs", "0"], "epochs"),
        (["train", "gmf", "--embeding-dim", "4"], "Did you mean 'embedding_dim'"),
        (["train", "gmf", "--data", "/nonexistent/x.csv"], "no such file"),
        (["train", "gmf", "--dataset", "movielens-100k", "--data", "x.csv"], "not both"),
        (["train", "neumf", "--preset", "nope"], "Unknown preset 'nope'"),
        (["export", "/nonexistent/run"], "not a finished tfrec run"),
        (["recommend", "--artifact", "/nonexistent/x", "--user", "1"], "No exported versions"),
        (["recommend", "--run", "/x", "--user", "1", "--item", "2"], "exactly one of"),
    ],
)
def test_failures_exit_non_zero_with_one_line(argv, message, capsys, tmp_path):
    os.chdir(tmp_path)
    code, out, err = _run(capsys, *argv)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfrec: error:"), err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "runs").exists()  # nothing written for a bad command


def test_unknown_user_is_rejected(tiny_ml100k, ml100k_unverified, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = _run(
        capsys, "train", "gmf", "--dataset", "movielens-100k", "--data-dir",
        str(tiny_ml100k), "--epochs", "1", "--out", str(run), "--eval-negatives", "10",
    )
    assert code == 0, err
    code, _, err = _run(capsys, "recommend", "--run", str(run), "--user", "424242")
    assert code == 1 and "Unknown user '424242'" in err
    code, _, err = _run(capsys, "recommend", "--run", str(run), "--item", "1")
    assert code == 1 and "recommends from --user" in err


def test_models_datasets_and_presets_listings(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert {"gmf", "mf", "ncf_mlp", "neumf"} <= set(rows)
    assert rows["neumf"][2] == "ncf" and rows["neumf"][3] == "movielens-100k"
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "ncf-ml-1m" in out and "movielens-100k" in out and "--data FILE" in out
    assert main(["presets", "neumf"]) == 0
    out = capsys.readouterr().out
    assert "ncf_paper" in out and "source: He et al. 2017" in out
    assert "rendle_mf" not in out


def test_model_kwargs_parsing():
    assert parse_model_kwargs(
        ["--embedding-dim", "16", "--hidden-units=64,32", "--dropout", "0.1",
         "--activation", "leaky_relu"]
    ) == {
        "embedding_dim": 16,
        "hidden_units": (64, 32),
        "dropout": 0.1,
        "activation": "leaky_relu",
    }
    with pytest.raises(ValueError, match="needs a value"):
        parse_model_kwargs(["--embedding-dim"])
