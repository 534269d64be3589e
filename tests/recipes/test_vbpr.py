"""The VBPR / BPR-MF recipe through the runner (tfrec.recipes.vbpr)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfrec
from tfrec.data import DataError
from tfrec.recipes.base import DataSource, recipe_for
from tfrec.recipes.vbpr import BPRTrainer, bpr_loss

MODELS = ("vbpr", "bpr_mf")


@pytest.fixture(scope="module")
def recipe():
    return recipe_for("vbpr")


@pytest.fixture(scope="module")
def data(recipe):
    return recipe.synthetic_data(0)


def _losses(history, stage):
    return [r["loss"] for r in history["epochs"] if r["stage"] == stage]


@pytest.fixture(scope="module")
def runs(recipe, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("vbpr_runs")
    return {
        m: tfrec.train(m, data, out=out / m, **recipe.test_config) for m in MODELS
    }


@pytest.mark.parametrize("model", MODELS)
def test_trains_through_the_runner(model, recipe, data, runs):
    assert recipe_for(model) is recipe
    result = runs[model]
    losses = _losses(result.history, model)
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert losses[-1] < losses[0]
    run = result.run_dir
    assert (run / "model.keras").is_file()
    index = json.loads((run / "serving" / "serving.json").read_text())
    assert index["main"] == model and set(index["graphs"]) == {model}
    assert (run / "serving" / f"{model}.keras").is_file()
    # Cold items are out of the model's vocabulary: num_items = warm items.
    assert index["graphs"][model]["num_items"] == data.num_warm_items
    # Validation each epoch, test once at the end (warm and cold protocols).
    assert "val_ndcg@10" in result.history["epochs"][-1]
    for part in ("warm", "cold"):
        values = [result.metrics[part][f"{m}@{k}"] for m in ("ndcg", "recall")
                  for k in (10, 20)]
        assert np.isfinite(values).all()
    assert recipe.evaluate(model, result.serving, data, result.config, "test")[
        "warm"]["ndcg@10"] == pytest.approx(result.metrics["warm"]["ndcg@10"])
    vocab = recipe.vocab(data)
    recs = recipe.recommend(model, result.serving, vocab, data.user_ids[0], k=5)
    ids = [item for item, _ in recs]
    assert len(set(ids)) == 5 and set(ids) <= set(vocab.items)
    seen = set(vocab.seen[1][vocab.seen[0][0]:vocab.seen[0][1]])
    assert not {vocab.items.index(i) for i in ids} & seen


def test_cold_items_scored_from_content(data, runs):
    from tfrec.evaluation.scoring import keras_scorer

    cold = data.split.cold_items
    users = np.zeros(cold.size, np.int64)
    mf = keras_scorer(runs["bpr_mf"].model)(users, cold)
    vb = keras_scorer(runs["vbpr"].model, item_inputs={"item_features": data.content})(
        users, cold)
    np.testing.assert_array_equal(mf, 0.0)  # no parameters for cold items
    assert np.unique(vb).size == cold.size  # VBPR tells them apart by content
    assert runs["vbpr"].metrics["cold"]["ndcg@10"] > runs["bpr_mf"].metrics["cold"][
        "ndcg@10"]


def test_bpr_mf_trains_with_the_bpr_loss(recipe, data):
    trainer, train_ds, protocols = tfrec.prepare("bpr_mf", data, **recipe.test_config)
    assert isinstance(trainer, BPRTrainer) and trainer.loss is bpr_loss
    features, _ = next(iter(train_ds))
    assert set(features) == {"user_id", "pos_item_id", "neg_item_id"}
    assert int(np.max(features["neg_item_id"])) < data.num_warm_items
    assert set(protocols.validate()) >= {"ndcg@10", "recall@20"}


def _own_files(tmp_path, rng, n_users=30, n_items=25):
    from tfrec.data.coldstart import synthetic_content

    syn = synthetic_content(n_users, n_items, per_user=7, seed=3)
    inter = syn.interactions
    lines = ["customer,sku,ts"]
    for u, i, t in zip(inter.user, inter.item, inter.timestamp, strict=True):
        lines.append(f"u_{u},sku-{i},{t}")
    csv = tmp_path / "clicks.csv"
    csv.write_text("\n".join(lines) + "\n")
    ids = np.array([f"sku-{i}" for i in syn.item_ids])
    np.savez(tmp_path / "items.npz", item_id=ids, features=syn.features)
    np.savez(tmp_path / "items_2d.npz", item_id=ids, features=syn.spectrograms)
    np.savez(tmp_path / "missing.npz", item_id=ids[1:], features=syn.features[1:])
    return csv


def test_own_file_with_string_ids(recipe, tmp_path, rng):
    csv = _own_files(tmp_path, rng)
    result = tfrec.train(
        "vbpr", str(csv), out=tmp_path / "run", columns="user=customer,item=sku,time=ts",
        content=str(tmp_path / "items.npz"), **recipe.test_config,
    )
    losses = _losses(result.history, "vbpr")
    assert losses[-1] < losses[0]
    items = (tmp_path / "run" / "vocab" / "items.tsv").read_text().splitlines()[1:]
    assert all(line.split("\t")[1].startswith("sku-") for line in items)
    source = DataSource(file=str(csv), columns={"user": "customer", "item": "sku"},
                        content=str(tmp_path / "items.npz"))
    config, _ = recipe.make_config("vbpr")
    loaded = recipe.load_data(source, config)
    recs = recipe.recommend("vbpr", result.serving, recipe.vocab(loaded), "u_3", k=4)
    assert len({i for i, _ in recs}) == 4 and all(i.startswith("sku-") for i, _ in recs)


def test_own_file_errors(recipe, tmp_path, rng):
    csv = _own_files(tmp_path, rng)
    config, _ = recipe.make_config("vbpr")
    cols = {"user": "customer", "item": "sku"}
    with pytest.raises(ValueError, match="--content"):
        recipe.load_data(DataSource(file=str(csv), columns=cols), config)
    with pytest.raises(DataError, match=r"missing.npz: 1 item\(s\) .* no content"):
        recipe.load_data(DataSource(file=str(csv), columns=cols,
                                    content=str(tmp_path / "missing.npz")), config)
    with pytest.raises(DataError, match="items_2d.npz: VBPR needs 1-D content"):
        recipe.load_data(DataSource(file=str(csv), columns=cols,
                                    content=str(tmp_path / "items_2d.npz")), config)
    with pytest.raises(ValueError, match="cold_items"):
        recipe.load_data(DataSource(dataset="movielens-100k", split="random"), config)


def test_config_errors_name_the_key(recipe):
    with pytest.raises(ValueError, match="'visual_dimm'.*Did you mean 'visual_dim'"):
        recipe.make_config("vbpr", visual_dimm=3)
    with pytest.raises(ValueError, match="visual_dim"):
        recipe.make_config("bpr_mf", visual_dim=3)  # BPR-MF has no visual part
    with pytest.raises(ValueError, match="l2"):
        recipe.make_config("vbpr", l2=-1.0)
    with pytest.raises(ValueError, match="cold_fraction"):
        recipe.make_config("vbpr", cold_fraction=1.5)
    with pytest.raises(ValueError, match="min_rating"):
        recipe.make_config("vbpr", min_rating="four")
    assert recipe.make_config("vbpr", min_rating="4")[0].min_rating == 4.0
    with pytest.raises(ValueError, match="num_negatives"):
        recipe.make_config("vbpr", num_negatives=0)
    with pytest.raises(ValueError, match="is for vbpr"):
        recipe.make_config("bpr_mf", preset="vbpr_ml100k")
    config, kwargs = recipe.make_config("vbpr", preset="vbpr_ml100k")
    assert (config.learning_rate, config.epochs, kwargs["visual_dim"]) == (0.005, 20, 10)


def test_movielens_content(recipe, shared_data):
    config, _ = recipe.make_config("vbpr")
    data = recipe.load_data(
        DataSource(dataset="movielens-100k", data_dir=str(shared_data / "movielens-100k")),
        config,
    )
    s = data.split
    assert (s.num_users, s.num_warm_items + s.num_cold_items) == (943, 1682)
    assert data.content.shape == (1682, 19 + 2 + 100)
    # Validation comes from training pairs only and leaves the test parts alone.
    assert data.fit["user_id"].size + data.valid["user_id"].size == s.train["user_id"].size
    assert data.valid["item_id"].max() < s.num_warm_items
