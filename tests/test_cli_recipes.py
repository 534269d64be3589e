"""The tfrec command end to end for one model of every training recipe.

For each recipe registered at test time: ``tfrec train`` on tiny files written
here (the user's own-file route, string ids, ``--content`` where the recipe needs
item content) with the recipe's ``test_config`` as settings, then ``evaluate``
(the same test metrics as training printed), ``export`` (every serving graph gets
a version whose manifest passed parity) and ``recommend --run`` with the recipe's
query kind (k distinct known items, the query's own items left out). A recipe
with no case below fails, so a new recipe cannot slip through untested.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tfrec.cli import main
from tfrec.recipes.base import recipes
from tfrec.training.runner import read_vocab

K = 5
NUM_USERS, NUM_ITEMS, PER_USER = 30, 24, 10
GENRES = ("Action", "Comedy", "Drama")
T0 = 1_700_000_000  # Unix seconds of the first interaction


@dataclass(frozen=True)
class Case:
    """One model of a recipe and the files it trains on.

    Attributes:
        model: The model to train (one per recipe).
        data: Key of the interactions file in the ``files`` fixture.
        columns: ``--columns`` mapping of that file.
        content: Key of the ``--content`` file, or None.
        settings: Settings on top of the recipe's ``test_config``.
    """

    model: str
    data: str = "ratings"
    columns: str = "user=customer,item=sku,rating=stars,time=ts"
    content: str | None = None
    settings: dict = field(default_factory=dict)


CASES = {
    "ncf": Case("gmf", settings={"eval_negatives": 10}),
    "autorec": Case("autorec"),
    "cdae": Case("cdae", settings={"core": 2}),
    "vbpr": Case("vbpr", content="vectors"),
    "content_cnn": Case("content_cnn_ranker", content="frames"),
    "hybrid": Case("hybrid_mapping", content="tags"),
    "item2vec": Case("item2vec", columns="user=customer,item=sku,time=ts"),
    "mv_dnn": Case("mv_dnn", content="genres"),
    "youtube": Case("youtube_ranking", content="genres"),
    "gru4rec": Case(
        "gru4rec", data="sessions", columns="session=visit,item=sku,time=ts"
    ),
    "wide_deep": Case(
        "wide_deep", data="tabular", columns="user=customer,item=sku,rating=stars"
    ),
}


def _recipes_by_name() -> dict:
    return {r.name: r for r in recipes().values()}


# --------------------------------------------------------------------------- data


def _item(i: int) -> str:
    return f"sku-{i:02d}"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Tiny own files with string ids: interactions, sessions, tabular rows and
    the content files of the content recipes."""
    root = tmp_path_factory.mktemp("own-files")
    rng = np.random.default_rng(7)
    cluster = np.arange(NUM_ITEMS) % len(GENRES)

    # Users mostly pick items of their own cluster, one every few hours.
    rows = []
    for u in range(NUM_USERS):
        own = np.flatnonzero(cluster == u % len(GENRES))
        other = np.flatnonzero(cluster != u % len(GENRES))
        picks = np.concatenate([rng.permutation(own)[:7], rng.permutation(other)[:3]])
        for j, i in enumerate(rng.permutation(picks)[:PER_USER]):
            stars = 5 if cluster[i] == u % len(GENRES) else 1 + int(rng.integers(0, 3))
            ts = T0 + u * 600 + j * 7200
            rows.append((f"c-{u:02d}", _item(i), stars, ts))
    (root / "ratings.csv").write_text(
        "customer,sku,stars,ts\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    )

    # Wide & Deep rows: the ratings with user and item features beside them.
    lines = ["customer,sku,stars,gender,age,occupation,zip,genres,year"]
    for u, i, r, _ in rows:
        k, g = int(u[2:]), GENRES[int(i[4:]) % len(GENRES)]
        lines.append(f"{u},{i},{r},{'FM'[k % 2]},{18 + k % 3 * 10},job{k % 4},"
                     f"{10000 + k % 5:05d},{g},{1990 + int(i[4:]) % 7}")
    (root / "tabular.csv").write_text("\n".join(lines) + "\n")

    # Click sessions over ten days, mostly i -> i + 1.
    lines = ["visit,sku,ts"]
    for s, t0 in enumerate(np.sort(rng.uniform(0, 10 * 86400.0, 200))):
        current = int(rng.integers(0, NUM_ITEMS))
        for t in range(int(rng.integers(3, 7))):
            lines.append(f"v{s:03d},{_item(current)},{T0 + int(t0) + 60 * t}")
            current = (current + (1 if rng.random() < 0.85 else 5)) % NUM_ITEMS
    (root / "sessions.csv").write_text("\n".join(lines) + "\n")

    ids = np.array([_item(i) for i in range(NUM_ITEMS)])
    onehot = np.eye(len(GENRES), dtype=np.float32)[cluster]
    vectors = np.concatenate([onehot, rng.normal(0, 0.1, (NUM_ITEMS, 3))], axis=1)
    np.savez(root / "vectors.npz", item_id=ids, features=vectors.astype(np.float32))
    frames = onehot[:, None, :] + rng.normal(0, 0.1, (NUM_ITEMS, 10, len(GENRES)))
    np.savez(root / "frames.npz", item_id=ids, features=frames.astype(np.float32))
    (root / "tags.csv").write_text(
        "item,tags,popularity\n"
        + "".join(f"{_item(i)},{GENRES[c]}|tag{i % 2},{i / NUM_ITEMS:.3f}\n"
                  for i, c in enumerate(cluster))
    )
    (root / "genres.csv").write_text(
        "item,genres,title\n"
        + "".join(f"{_item(i)},{GENRES[c]},{GENRES[c]} story {i % 4}\n"
                  for i, c in enumerate(cluster))
    )
    return {p.stem: p for p in root.iterdir()}


# --------------------------------------------------------------------------- helpers


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _value(value) -> str:
    """A setting as the command line takes it (tuples comma-separated)."""
    if isinstance(value, tuple):
        if not value:
            return "()"
        return ",".join(map(str, value)) + ("," if len(value) == 1 else "")
    return str(value)


def _metric_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if re.match(r"  \S+ +\S+=", ln)]


def _query(recipe, vocab) -> tuple[list[str], list[str]]:
    """``(recommend arguments, raw item ids the answer must leave out)``."""
    items = [i for i in vocab.items if i]
    if recipe.query in ("user", "pipeline"):
        user = vocab.users[0]
        u = vocab.users.index(user)
        indptr, indices = vocab.seen
        seen = [vocab.items[j] for j in indices[indptr[u] : indptr[u + 1]]]
        return ["--user", user], seen
    if recipe.query == "session":
        session = items[:2]
        return ["--session", ",".join(session)], session
    if recipe.query == "item":
        return ["--item", items[0]], [items[0]]
    raise AssertionError(f"recipe {recipe.name}: unknown query kind {recipe.query!r}")


# --------------------------------------------------------------------------- test


@pytest.mark.parametrize("name", sorted(_recipes_by_name()))
def test_train_evaluate_export_recommend(name, files, tmp_path, capsys):
    recipe = _recipes_by_name()[name]
    assert name in CASES, (
        f"recipe {name!r} has no end-to-end CLI case: add one to CASES in "
        f"{Path(__file__).name} (models: {', '.join(recipe.models)})"
    )
    case = CASES[name]
    assert case.model in recipe.models, f"{case.model} is not a {name} model"
    assert not recipe.needs_content or case.content, f"{name} needs --content"

    # train
    run = tmp_path / "run"
    settings = {**recipe.test_config, **case.settings}
    argv = ["train", case.model, "--data", files[case.data], "--columns", case.columns,
            "--out", run]
    if case.content:
        argv += ["--content", files[case.content]]
    for key, value in settings.items():
        argv += [f"--{key.replace('_', '-')}", _value(value)]
    code, out, err = _cli(capsys, *argv)
    assert code == 0, f"tfrec {' '.join(map(str, argv))}\n{err}"
    assert f"Data: {files[case.data].name}" in out
    assert "Test metrics, read once at the end" in out
    epochs = [ln for ln in out.splitlines() if "] epoch " in ln]
    assert epochs and all("loss=" in ln for ln in epochs), out
    graphs = json.loads((run / "serving" / "serving.json").read_text())["graphs"]
    shown = re.search(r"^Serving graphs: (.+)$", out, flags=re.M)
    assert shown and sorted(shown.group(1).split(", ")) == sorted(graphs), out
    train_metrics = _metric_lines(out)
    assert train_metrics, out

    # evaluate: the saved graphs on the rebuilt test part, same numbers
    code, out, err = _cli(capsys, "evaluate", run)
    assert code == 0, f"tfrec evaluate {run}\n{err}"
    assert _metric_lines(out) == train_metrics

    # export: every serving graph, parity passed in both runtimes
    base = tmp_path / "saved_models"
    code, out, err = _cli(capsys, "export", run, "--base-dir", base)
    assert code == 0, f"tfrec export {run} --base-dir {base}\n{err}"
    for graph in graphs:
        manifest = base / graph / "1" / "manifest.json"
        assert manifest.is_file(), f"{graph}: no {manifest} ({list(base.iterdir())})"
        parity = json.loads(manifest.read_text())["parity"]
        passed = parity["saved_model"]["passed"] and parity["onnx"]["passed"]
        assert passed, (graph, parity)
        assert (manifest.parent / "vocab" / "items.tsv").is_file()
    folders = sorted(p.name for p in base.iterdir() if not p.name.startswith("."))
    assert folders == sorted(graphs)

    # recommend from the run with the recipe's query kind
    vocab = read_vocab(run)
    query, excluded = _query(recipe, vocab)
    code, out, err = _cli(capsys, "recommend", "--run", run, *query, "--k", K)
    assert code == 0, f"tfrec recommend --run {run} {' '.join(query)}\n{err}"
    recs = re.findall(r"^ +\d+\. item (\S+) +score=", out, flags=re.M)
    assert len(recs) == K and len(set(recs)) == K, out
    assert set(recs) <= set(vocab.items), recs
    assert not set(recs) & set(excluded), (recs, excluded)
    # The file's own string ids throughout: in the query and in the answer.
    assert all(r.startswith("sku-") for r in recs), recs
    assert query[1].startswith(("c-", "sku-")), query
