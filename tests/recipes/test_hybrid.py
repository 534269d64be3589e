"""The hybrid recipe: every model of the family trains through the runner on tiny
synthetic content data, the split carves validation from training only, the
user's own interactions + content files train, and bad settings or files fail
with messages that name the problem."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import tfrec
from tfrec.data.coldstart import cold_item_split, synthetic_content
from tfrec.data.datasets import DataError
from tfrec.recipes.base import recipe_for
from tfrec.recipes.hybrid import HybridRecipe, hybrid_split, read_item_content

MODELS = HybridRecipe.models
RECIPE = recipe_for("hybrid_weighted")
# The combination stages choose these on validation (cheap: no training).
GRIDS = {
    "hybrid_switching": {"threshold_grid": (0.0, 3.0, 1000.0)},
    "hybrid_weighted": {"weight_grid": (0.0, 0.5, 1.0)},
}


@pytest.fixture(scope="module")
def data():
    return RECIPE.synthetic_data(0)


def _stage_losses(history):
    by_stage = {}
    for row in history["epochs"]:
        by_stage.setdefault(row["stage"], []).append((row["epoch"], row["loss"]))
    return {s: [loss for _, loss in sorted(rows)] for s, rows in by_stage.items()}


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_through_the_runner(name, data, tmp_path):
    run = tmp_path / name
    grid = GRIDS.get(name, {})
    result = tfrec.train(name, data, out=run, **RECIPE.test_config, **grid)
    losses = _stage_losses(json.loads((run / "history.json").read_text()))
    assert losses, "no epoch was recorded"
    for stage, values in losses.items():
        assert len(values) == 2 and np.isfinite(values).all(), (stage, values)
        assert values[-1] < values[0], (stage, values)
    assert set(losses) <= set(RECIPE.stage_names(name, result.config))
    assert (run / "model.keras").is_file()
    index = json.loads((run / "serving" / "serving.json").read_text())
    assert index["main"] == name and set(index["graphs"]) == {name}
    assert (run / "serving" / f"{name}.keras").is_file()
    if name != "cbf_profile":  # cold items are outside the models' vocabulary
        assert index["graphs"][name]["num_items"] == data.num_warm_items
    if grid:
        (key, values), = grid.items()
        attr = "threshold" if name == "hybrid_switching" else "cf_weight"
        stage = RECIPE.stage_names(name, result.config)[-1]
        with np.load(run / "stages" / stage / "arrays.npz") as chosen:
            scores, choice = chosen["valid_scores"], float(chosen["choice"])
        assert scores.shape == (len(values),) and np.isfinite(scores).all()
        assert choice == values[int(np.argmax(scores))]
        assert index["graphs"][name][attr] == choice
        layer = result.serving[name].model.get_layer(
            "switch" if name == "hybrid_switching" else "blend"
        )
        assert getattr(layer, attr) == choice
    # The test metrics cover warm and cold items and are finite.
    for part in ("warm", "cold"):
        for metric in ("recall@10", "ndcg@10"):
            assert np.isfinite(result.metrics[part][metric]), (part, metric)
    # Validation metrics (warm and cold validation parts) were logged each epoch.
    assert any(k.startswith("val_warm_ndcg@") for r in result.history["epochs"] for k in r)
    recs = RECIPE.recommend(name, result.serving, RECIPE.vocab(data), data.user_ids[0], k=5)
    items = [i for i, _ in recs]
    assert len(items) == 5 and len(set(items)) == 5
    assert set(items) <= {str(i) for i in data.item_ids}
    seen = RECIPE.vocab(data)
    indptr, indices = seen.seen
    assert not set(items) & {seen.items[i] for i in indices[indptr[0] : indptr[1]]}


def test_split_carves_validation_from_training_only():
    syn = synthetic_content(60, 50, per_user=10, hidden_dim=4, seed=1)
    outer = cold_item_split(syn.interactions, cold_fraction=0.2, test_fraction=0.2, seed=1)
    content = syn.features[outer.item_ids - 1]
    d = hybrid_split(outer, content, valid_cold_fraction=0.15, valid_fraction=0.15, seed=1)
    nw, nv = d.num_warm_items, d.num_valid_cold
    assert nw + nv == outer.num_warm_items and nv == round(0.15 * outer.num_warm_items)
    assert d.train["item_id"].max() < nw
    assert set(np.unique(d.train["item_id"])) == set(range(nw))  # every warm item trains
    assert np.all((d.cold_valid["item_id"] >= nw) & (d.cold_valid["item_id"] < nw + nv))
    assert np.all(d.warm_valid["item_id"] < nw) and np.all(d.warm_test["item_id"] < nw)
    assert np.all(d.cold_test["item_id"] >= nw + nv)

    def pairs(split, part):
        users, items = split.user_ids[part["user_id"]], split.item_ids[part["item_id"]]
        return set(zip(users.tolist(), items.tolist(), strict=True))

    def raw_pairs(part):
        return pairs(d, part)

    outer_train = pairs(outer, outer.train)
    outer_test = pairs(outer, outer.warm_test) | pairs(outer, outer.cold_test)
    train, wv, cv = raw_pairs(d.train), raw_pairs(d.warm_valid), raw_pairs(d.cold_valid)
    # Validation and training are exactly the outer training pairs; none is a test pair.
    assert train | wv | cv == outer_train and not (train & wv) and not (train & cv)
    assert not ((wv | cv) & outer_test)
    assert raw_pairs(d.warm_test) | raw_pairs(d.cold_test) <= outer_test
    assert raw_pairs(d.cold_test) == pairs(outer, outer.cold_test)
    # Content rows follow the items to their new indices.
    np.testing.assert_array_equal(d.content, syn.features[d.item_ids - 1])
    # Same seed, same split.
    again = hybrid_split(outer, content, valid_cold_fraction=0.15, valid_fraction=0.15,
                         seed=1)
    np.testing.assert_array_equal(again.train["item_id"], d.train["item_id"])


def _own_files(tmp_path):
    syn = synthetic_content(50, 40, per_user=10, hidden_dim=4, seed=2)
    inter = syn.interactions
    pd.DataFrame(
        {
            "customer": [f"u_{u}" for u in inter.user],
            "sku": [f"sku-{i}" for i in inter.item],
            "ts": inter.timestamp,
        }
    ).to_csv(tmp_path / "events.csv", index=False)
    tags = np.where(syn.features[:, 0] > 0, "red|big", "blue")
    pd.DataFrame(
        {
            "sku": [f"sku-{i}" for i in syn.item_ids],
            **{f"f{j}": syn.features[:, j] for j in range(syn.features.shape[1])},
            "tags": tags,
        }
    ).to_csv(tmp_path / "items.csv", index=False)
    return tmp_path / "events.csv", tmp_path / "items.csv"


def test_own_interactions_and_content_files_train(tmp_path):
    events, items = _own_files(tmp_path)
    result = tfrec.train(
        "hybrid_regularized",
        events,
        content=str(items),
        columns="user=customer,item=sku,time=ts",
        out=tmp_path / "run",
        **RECIPE.test_config,
    )
    vocab_items = (tmp_path / "run" / "vocab" / "items.tsv").read_text().splitlines()
    assert vocab_items[1].split("\t")[1].startswith("sku-")
    assert np.isfinite(result.metrics["cold"]["ndcg@10"])
    # 4 numeric columns + the tags red, big, blue as a multi-hot.
    assert result.serving["hybrid_regularized"].kwargs["content_dim"] == 7
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["source"]["content"] == str(items)


def test_content_file_errors_name_the_file_line_and_column(tmp_path):
    events, items = _own_files(tmp_path)
    with pytest.raises(ValueError, match="--content"):
        tfrec.train("cbf_profile", events, columns="user=customer,item=sku")
    ids = np.array(["sku-1", "sku-2", "sku-999"])
    with pytest.raises(DataError, match=r"items\.csv: 1 item\(s\).*sku-999"):
        read_item_content(items, ids, {"item": "sku"})
    bad = pd.read_csv(items, dtype=str)
    bad.loc[3, "f1"] = "oops"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv: line 5, column 'f1'"):
        read_item_content(tmp_path / "bad.csv", ids[:2], {"item": "sku"})
    dup = pd.concat([pd.read_csv(items), pd.read_csv(items).iloc[:1]])
    dup.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(DataError, match=r"dup\.csv: line 2, column 'sku'.*more than once"):
        read_item_content(tmp_path / "dup.csv", ids[:2], {"item": "sku"})
    with pytest.raises(DataError, match="no item id column"):
        read_item_content(items, ids[:2], {"item": "product"})
    with pytest.raises(ValueError, match="cold_items"):
        tfrec.train("cbf_profile", events, content=str(items), split="random",
                    columns="user=customer,item=sku")


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"lamda": 0.1}, "Unknown setting 'lamda'"),
        ({"content_weight": -1.0}, "content_weight"),
        ({"cold_fraction": 1.5}, "cold_fraction"),
        ({"monitor": "test"}, "monitor"),
        ({"map_epochs": 0}, "map_epochs"),
        ({"optimizer": "lbfgs"}, "optimizer"),
    ],
)
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        RECIPE.make_config("hybrid_regularized", **overrides)


def test_presets_apply_to_their_models_and_say_where_they_come_from():
    config, kwargs = RECIPE.make_config(
        "hybrid_regularized", preset="report_regularized_01"
    )
    assert config.content_weight == 0.1 and kwargs["embedding_dim"] == 32
    for preset in RECIPE.presets:
        assert preset.source and preset.models
        assert set(preset.models) <= set(MODELS)
    with pytest.raises(ValueError, match="report_switching"):
        RECIPE.make_config("hybrid_joint", preset="report_switching")
    config, kwargs = RECIPE.make_config("hybrid_switching", preset="report_switching")
    assert kwargs["threshold"] == 10.0
