"""The YouTube DNN recipe: two stages through the runner, serving graphs, own files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfrec
from tfrec.data.datasets import DataError
from tfrec.recipes.base import DataSource
from tfrec.recipes.youtube import (
    SampledSoftmaxTask,
    inclusion_probabilities,
)
from tfrec.registry import model_info
from tfrec.training.runner import read_vocab

MODELS = ("youtube_candidate", "youtube_ranking")
RECIPE = model_info("youtube_candidate").recipe


def _losses(history, stage):
    return [r["loss"] for r in history["epochs"] if r["stage"] == stage]


@pytest.fixture(scope="module")
def data():
    return RECIPE.synthetic_data(0)


@pytest.fixture(scope="module", params=MODELS)
def run(request, data, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    result = tfrec.train(request.param, data, out=out, **RECIPE.test_config)
    return request.param, result


def test_both_stages_train_and_the_run_serves_both_graphs(run):
    name, result = run
    assert model_info(name).recipe is RECIPE
    for stage in ("candidate", "ranking"):
        losses = _losses(result.history, stage)
        assert len(losses) == 2 and np.isfinite(losses).all(), (stage, losses)
        assert losses[-1] < losses[0], (stage, losses)
    run_dir = result.run_dir
    index = json.loads((run_dir / "serving" / "serving.json").read_text())
    assert index["main"] == name
    assert sorted(index["graphs"]) == sorted(MODELS)
    for graph in MODELS:
        assert (run_dir / "serving" / f"{graph}.keras").is_file()
    assert (run_dir / "model.keras").is_file()
    assert set(result.serving) == set(MODELS)
    # Every serving graph rebuilds from its registered name and kwargs.
    for graph in result.serving.values():
        rebuilt = tfrec.create_model(graph.name, **graph.kwargs)
        assert sorted(rebuilt.input) == sorted(graph.model.input)
    # Validation metrics were logged per epoch; the test part only at the end.
    rows = result.history["epochs"]
    assert all("val_recall@100" in r for r in rows if r["stage"] == "candidate")
    assert all("val_ndcg@10" in r for r in rows if r["stage"] == "ranking")


def test_evaluate_gives_finite_retrieval_and_pipeline_metrics(run, data):
    name, result = run
    metrics = RECIPE.evaluate(name, result.serving, data, result.config, "test")
    assert set(metrics) == {"candidate", "pipeline"}
    for part in metrics.values():
        values = [v for k, v in part.items() if "@" in k]
        assert values and all(0.0 <= v <= 1.0 for v in values)
    assert metrics["candidate"]["recall@100"] == 1.0  # 30 items: all retrieved


def test_recommend_returns_k_distinct_unseen_items(run, data):
    name, result = run
    for vocab in (RECIPE.vocab(data), read_vocab(result.run_dir)):
        user = vocab.users[3]
        recs = RECIPE.recommend(name, result.serving, vocab, user, k=5)
        items = [item for item, _ in recs]
        assert len(items) == 5 == len(set(items))
        assert set(items) <= set(vocab.items)
        indptr, indices = vocab.seen
        seen = {vocab.items[i] for i in indices[indptr[3]:indptr[4]]}
        assert not seen & set(items)
        scores = [s for _, s in recs]
        assert scores == sorted(scores, reverse=True)


def test_own_csv_with_string_ids_trains_and_recommends_raw_ids(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = ["customer,sku,stars,ts"]
    for u in range(12):
        for t, i in enumerate(rng.choice(15, 6, replace=False)):
            rows.append(f"u_{u},sku-{i},{rng.integers(1, 6)},{1_000_000 + 3600 * t + u}")
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n")
    content = tmp_path / "items.csv"
    content.write_text("item,genres,title\n" + "".join(
        f"sku-{i},{'Drama|Comedy' if i % 2 else 'Action'},Film {i}\n" for i in range(15)
    ))
    cfg = {**RECIPE.test_config, "epochs": 1, "ranking_epochs": 1, "refit": True}
    result = tfrec.train(
        "youtube_ranking", str(path), out=tmp_path / "run", content=str(content),
        columns="user=customer,item=sku,rating=stars,time=ts", **cfg,
    )
    # refit: validated stages, then both models again on all training data.
    stages = [(r["stage"], "val_ndcg@10" in r or "val_recall@100" in r)
              for r in result.history["epochs"]]
    assert stages == [("candidate", True), ("ranking", True),
                      ("candidate_refit", False), ("ranking_refit", False)]
    assert sorted(p.name for p in (result.run_dir / "stages").iterdir()) == [
        "candidate", "candidate_refit", "ranking", "ranking_refit"]
    vocab = read_vocab(result.run_dir)
    assert vocab.users[0].startswith("u_") and vocab.items[0].startswith("sku-")
    # recommend serves the history window the run trained with, not a fixed 50.
    assert int(vocab.tables["max_length"]) == cfg["max_length"] == 10
    from tfrec.recipes import histories as hx

    windows, user_history = [], hx.user_history
    monkeypatch.setattr(hx, "user_history", lambda t, u, n: (
        windows.append(n), user_history(t, u, n))[1])
    recs = RECIPE.recommend("youtube_ranking", result.serving, vocab, "u_3", k=3)
    assert windows == [10]
    assert len({item for item, _ in recs}) == 3
    assert all(item.startswith("sku-") for item, _ in recs)
    with pytest.raises(ValueError, match="Unknown user"):
        RECIPE.recommend("youtube_ranking", result.serving, vocab, "u_99", k=3)


def test_own_file_errors_name_the_file_and_column(tmp_path):
    path = tmp_path / "no_time.csv"
    path.write_text("user,item\nu1,a\nu1,b\nu1,c\n")
    with pytest.raises(DataError, match="'time'"):
        RECIPE.load_data(DataSource(file=str(path)), RECIPE.Config())
    path.write_text("user,item,time\nu1,a,1\nu1,b,2\nu1,c,3\nu2,c,1\nu2,a,2\nu2,b,3\n")
    content = tmp_path / "c.csv"
    content.write_text("item,genres\na,Drama\n")
    with pytest.raises(DataError, match="no content row"):
        RECIPE.load_data(DataSource(file=str(path), content=str(content)), RECIPE.Config())
    with pytest.raises(ValueError, match="Split 'random'"):
        RECIPE.load_data(DataSource(file=str(path), split="random"), RECIPE.Config())


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"num_sampeld": 8}, "num_sampeld.*Did you mean 'num_sampled'"),
        ({"num_sampled": 0}, "num_sampled"),
        ({"ranking_hidden_units": ()}, "ranking_hidden_units"),
        ({"distortion": 2.0}, "distortion"),
        ({"ranking_per_user": 0}, "ranking_per_user"),
        ({"optimizer": "adamm"}, "optimizer"),
        ({"refit": True, "early_stopping": 2}, "refit"),
    ],
)
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        RECIPE.make_config("youtube_candidate", **overrides)


def test_presets_apply_and_builder_kwargs_go_to_the_requested_model():
    config, kwargs = RECIPE.make_config("youtube_ranking", preset="youtube_ml100k",
                                        dropout=0.1)
    assert config.ranking_hidden_units == (256, 128, 64) and config.epochs == 4
    assert kwargs == {"dropout": 0.1}
    assert all(p.source for p in RECIPE.presets)


def test_sampler_is_a_function_of_seed_and_step_with_exact_inclusion():
    # Uniform classes: each of m distinct draws out of N is included w.p. m / N.
    np.testing.assert_allclose(inclusion_probabilities(np.full(10, 0.1), 4), 0.4,
                               rtol=1e-6)
    p = np.array([0.5, 0.2, 0.2, 0.05, 0.05])
    inc = inclusion_probabilities(p, 3)
    np.testing.assert_allclose(inc.sum(), 3.0, rtol=1e-6)
    assert np.all(np.diff(inc[[0, 1, 3]]) < 0)
    kw = {"num_items": 11, "embedding_dim": 4, "hidden_units": (6,), "num_genres": 3}
    task = SampledSoftmaxTask(tfrec.create_model("youtube_candidate", **kw),
                              num_sampled=5, unigrams=np.arange(11) + 1.0, seed=3)
    labels = np.array([1, 2])
    a, b, c = (task.sample(labels, step)[0].numpy() for step in (7, 7, 8))
    assert len(set(a.tolist())) == 5 and (a == b).all() and not (a == c).all()


def test_split_last_gives_interaction_recipes_the_same_protocol(data):
    """MF (split ``last``) is ranked like the YouTube models: same test users,
    labels, excluded items and metrics for the same scores."""
    from tfrec.evaluation.histories import evaluate_scores
    from tfrec.evaluation.protocols import evaluate_split
    from tfrec.recipes.histories import as_interaction_split

    split = as_interaction_split(data)
    np.testing.assert_array_equal(split.test["user_id"], data.split.test["user_id"])
    np.testing.assert_array_equal(split.test["item_id"], data.split.test["item_id"])
    np.testing.assert_array_equal(split.valid["item_id"], data.fit.test["item_id"])
    assert len(split.train["user_id"]) + len(split.valid["user_id"]) == len(
        data.split.train["user_id"]
    )
    scores = np.random.default_rng(0).normal(size=(data.split.num_users,
                                                    data.split.num_items))
    users = data.split.test["user_id"]
    ref = evaluate_scores(scores[users], data.split, (5, 10))
    got = evaluate_split(split, lambda u, i: scores[u, i], "test", ks=(5, 10))["full"]
    for key in ("recall@5", "recall@10", "ndcg@10"):
        assert got[key] == pytest.approx(ref[key])
