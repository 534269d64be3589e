"""The ``recommend`` signature from a real run (``tfrec train`` -> ``tfrec export
RUN``) for the models whose catalogue lives in the run's vocabulary: MV-DNN (the
item views, ``vocab/tables.npz``), I-AutoRec (the rating row of every item,
``vocab/seen.npz``), U-AutoRec and CDAE (the request carries the user's vector).

``tfrec recommend --artifact`` goes through that signature for them, and its ids
and scores equal, in ONNX and in the SavedModel, those of ``tfrec recommend
--run`` (the recipe's own Keras scoring), seen items excluded in both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tfrec
from export.cli import export_run
from tfrec.cli import main
from tfrec.registry import model_info
from tfrec.training.runner import read_vocab

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
# (run name, registry name, extra settings)
RUNS = [
    ("mv_dnn", "mv_dnn", {}),
    ("autorec", "autorec", {}),
    ("autorec_user", "autorec", {"variant": "user"}),
    ("cdae", "cdae", {}),
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("recommend-runs")
    out = {}
    for run_name, model, extra in RUNS:
        recipe = model_info(model).recipe
        run = base / "runs" / run_name
        tfrec.train(model, recipe.synthetic_data(0), out=run,
                    **{**dict(recipe.test_config), **extra})
        paths = export_run(run, name=run_name, base_dir=base / "saved_models",
                           verbose=False, graphs=[model])
        out[run_name] = (run, {**paths, run_name: paths[model]})
    return out


def _recs(capsys, argv) -> list[tuple[str, float]]:
    assert main(argv) == 0
    text = capsys.readouterr().out
    return [(m[0], float(m[1])) for m in
            re.findall(r"^\s+\d+\. item (\S+)\s+score=(-?[\d.]+)", text, re.M)]


@pytest.mark.parametrize("run_name", [r[0] for r in RUNS])
def test_the_run_export_has_a_recommend_signature_that_passed_parity(exports,
                                                                     run_name):
    _, paths = exports[run_name]
    manifest = json.loads((paths[run_name] / "manifest.json").read_text())
    rec = manifest["recommend"]
    assert rec["available"], rec.get("reason")
    assert rec["catalogue_size"] == 30  # every item of the synthetic catalogue
    for runtime in ("saved_model", "onnx"):
        assert rec["parity"][runtime]["passed"], rec["parity"]
        assert rec["parity"][runtime]["ids_compared"] > 0
    assert (paths[run_name] / "recommend.onnx").is_file()
    names = [s["name"] for s in rec["inputs"]]
    assert names[-2:] == ["k", "exclude"]
    expected = {
        "mv_dnn": {"user_genres", "user_title_tokens", "user_gender", "user_age",
                   "user_occupation"},
        "autorec": {"user_id"},  # the item rows are constants of the graph
        "autorec_user": {"ratings"},
        "cdae": {"user_id", "items"},
    }[run_name]
    assert set(names[:-2]) == expected
    if run_name in ("mv_dnn", "autorec"):
        assert rec["item_side_constants"] == sorted(
            {"mv_dnn": ["item_genres", "item_title_tokens", "item_era"],
             "autorec": ["ratings"]}[run_name])


def test_the_item_rows_of_i_autorec_are_every_known_rating(exports):
    """The constant equals the ratings the run's vocabulary saved, item-major."""
    from export.recommend import run_catalogue

    run, _ = exports["autorec"]
    vocab = read_vocab(run)
    extra = {f"vocab/{p.name}": p for p in (run / "vocab").iterdir()}
    kwargs = json.loads((run / "serving" / "serving.json").read_text())
    kwargs = kwargs["graphs"]["autorec"]
    rows = run_catalogue("autorec", kwargs, extra)["ratings"]
    indptr, items = vocab.seen
    users = np.repeat(np.arange(len(vocab.users)), np.diff(indptr))
    want = np.zeros((len(vocab.items), len(vocab.users)), np.float32)
    want[items, users] = vocab.seen_values
    np.testing.assert_array_equal(rows, want)
    assert rows.shape == (30, 40) and (rows > 0).sum() == len(items)


@pytest.mark.parametrize("run_name", [r[0] for r in RUNS])
def test_artifact_recommend_equals_the_run_in_both_runtimes(exports, run_name,
                                                            capsys):
    run, paths = exports[run_name]
    vocab = read_vocab(run)
    for user in vocab.users[:2]:
        want = _recs(capsys, ["recommend", "--run", str(run), "--user", user,
                              "--k", "7"])
        assert len(want) == 7
        seen = {vocab.items[i] for i in
                vocab.seen[1][vocab.seen[0][vocab.users.index(user)]:
                              vocab.seen[0][vocab.users.index(user) + 1]]}
        assert not seen & {i for i, _ in want}
        for runtime in ("onnx", "saved_model"):
            got = _recs(capsys, ["recommend", "--artifact", str(paths[run_name].parent),
                                 "--user", user, "--k", "7", "--runtime", runtime])
            assert [i for i, _ in got] == [i for i, _ in want], (runtime, user)
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want],
                                       atol=2e-4)  # printed with 4 decimals


def test_artifact_recommend_in_a_real_subprocess(exports):
    """The CLI end to end (ONNX), k larger than what is left after exclusions."""
    run, paths = exports["cdae"]
    vocab = read_vocab(run)
    user = vocab.users[0]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "tfrec.cli", "recommend", "--artifact",
         str(paths["cdae"].parent), "--user", user, "--k", "30"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ids = re.findall(r"^\s+\d+\. item (\S+)", proc.stdout, re.M)
    u = vocab.users.index(user)
    seen = vocab.seen[1][vocab.seen[0][u]:vocab.seen[0][u + 1]]
    assert len(ids) == 30 - len(seen) and len(set(ids)) == len(ids)
    assert "recommend signature" in proc.stdout
    assert "Note: only" in proc.stdout
