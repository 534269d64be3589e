"""The tfrec command end to end on a tiny MovieLens-format data set."""

from __future__ import annotations

import json

import pytest

from tfrec.cli import main, parse_model_kwargs
from tfrec.data.synthetic import synthetic_interactions


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


def test_train_export_recommend_evaluate(tiny_ml100k, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = _run(
        capsys,
        "train",
        "neumf",
        "--dataset",
        "movielens-100k",
        "--data-dir",
        str(tiny_ml100k),
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--out",
        str(run),
        "--verbose",
        "0",
        "--eval-negatives",
        "10",
        "--embedding-dim",
        "4",
        "--hidden-units",
        "16,8",
    )
    assert code == 0, err
    assert "sampled" in out and "full" in out and "hr@10=" in out
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["model_kwargs"]["hidden_units"] == [16, 8]
    assert config["data_dir"] == str(tiny_ml100k)

    base = tmp_path / "saved_models"
    code, out, err = _run(capsys, "export", str(run), "--base-dir", str(base))
    assert code == 0, err
    assert "parity onnx" in out and "passed=True" in out
    version = base / "neumf" / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    assert (
        manifest["parity"]["onnx"]["passed"]
        and manifest["parity"]["saved_model"]["passed"]
    )
    assert (version / "vocab" / "items.tsv").is_file()

    code, out, err = _run(
        capsys,
        "recommend",
        "--artifact",
        str(base / "neumf"),
        "--user",
        "3",
        "--k",
        "5",
    )
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip()[:2].strip(".").isdigit()]
    assert len(lines) == 5 and "Movie" in lines[0]
    code, out_run, err = _run(
        capsys, "recommend", "--run", str(run), "--user", "3", "--k", "5"
    )
    assert code == 0, err
    # Keras run and ONNX artifact recommend the same items in the same order.
    items = lambda text: [ln.split()[2] for ln in text.splitlines() if "score=" in ln]  # noqa: E731
    assert items(out_run) == items(out)

    code, out, err = _run(capsys, "evaluate", str(run))
    assert code == 0, err
    assert "ndcg@10=" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "nuemf", "--epochs", "1"], "Did you mean 'neumf'"),
        (
            ["train", "gmf", "--dataset", "movielens-10m"],
            "Unknown data set|movielens-10m",
        ),
        (["train", "gmf", "--data-dir", "/nonexistent/dir"], "nonexistent"),
        (["train", "gmf", "--epochs", "0"], "epochs"),
        (["export", "/nonexistent/run"], "not a finished tfrec run"),
        (
            ["recommend", "--artifact", "/nonexistent/x", "--user", "1"],
            "No exported versions",
        ),
    ],
)
def test_failures_exit_non_zero_with_one_line(argv, message, capsys):
    code, out, err = _run(capsys, *argv)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfrec: error:")
    import re

    assert re.search(message, lines[0]), lines[0]


def test_unknown_user_is_rejected(tiny_ml100k, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = _run(
        capsys,
        "train",
        "gmf",
        "--dataset",
        "movielens-100k",
        "--data-dir",
        str(tiny_ml100k),
        "--epochs",
        "1",
        "--out",
        str(run),
        "--verbose",
        "0",
        "--no-full-ranking",
        "--eval-negatives",
        "10",
    )
    assert code == 0, err
    code, _, err = _run(capsys, "recommend", "--run", str(run), "--user", "424242")
    assert code == 1 and "Unknown user '424242'" in err


def test_models_and_datasets_listings(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert {"gmf", "mf", "ncf_mlp", "neumf"} <= {
        line.split()[0] for line in out.splitlines()
    }
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "ncf-ml-1m" in out and "movielens-100k" in out


def test_model_kwargs_parsing():
    assert parse_model_kwargs(
        [
            "--embedding-dim",
            "16",
            "--hidden-units=64,32",
            "--dropout",
            "0.1",
            "--activation",
            "leaky_relu",
        ]
    ) == {
        "embedding_dim": 16,
        "hidden_units": (64, 32),
        "dropout": 0.1,
        "activation": "leaky_relu",
    }
    with pytest.raises(ValueError, match="needs a value"):
        parse_model_kwargs(["--embedding-dim"])
