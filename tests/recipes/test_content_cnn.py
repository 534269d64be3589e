"""The content CNN recipe through the runner: a ``wmf`` stage, then ``cnn``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfrec
from tfrec.data import DataError
from tfrec.recipes.base import DataSource, recipe_for
from tfrec.recipes.content_cnn import FactorRegressionTrainer, wmf_als

MODELS = ("content_cnn", "content_cnn_ranker")
GRAPHS = {"content_cnn", "content_cnn_ranker"}


@pytest.fixture(scope="module")
def recipe():
    return recipe_for("content_cnn")


@pytest.fixture(scope="module")
def data(recipe):
    return recipe.synthetic_data(0)


@pytest.fixture(scope="module")
def runs(recipe, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn_runs")
    return {
        m: tfrec.train(m, data, out=out / m, **recipe.test_config) for m in MODELS
    }


@pytest.mark.parametrize("model", MODELS)
def test_trains_through_the_runner(model, recipe, data, runs):
    assert recipe_for(model) is recipe
    assert recipe.stage_names(model, runs[model].config) == ("wmf", "cnn")
    result = runs[model]
    losses = [r["loss"] for r in result.history["epochs"] if r["stage"] == "cnn"]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert losses[-1] < losses[0]
    last = result.history["epochs"][-1]
    assert np.isfinite(last["val_mse"]) and "val_ndcg@10" in last
    run = result.run_dir
    assert (run / "stages" / "wmf" / "arrays.npz").is_file()
    assert (run / "stages" / "cnn" / "content_cnn.weights.h5").is_file()
    assert (run / "model.keras").is_file()
    index = json.loads((run / "serving" / "serving.json").read_text())
    assert index["main"] == model and set(index["graphs"]) == GRAPHS
    assert all((run / "serving" / f"{g}.keras").is_file() for g in GRAPHS)
    assert result.model is result.serving[model].model
    for part in ("warm", "cold"):
        assert np.isfinite([result.metrics[part]["ndcg@10"],
                            result.metrics[part]["recall@20"]]).all()
    vocab = recipe.vocab(data)
    recs = recipe.recommend(model, result.serving, vocab, data.user_ids[1], k=6)
    ids = [item for item, _ in recs]
    assert len(set(ids)) == 6 and set(ids) <= set(vocab.items)


def test_ranker_is_wmf_user_factors_dot_cnn(data, runs):
    result = runs["content_cnn_ranker"]
    with np.load(result.run_dir / "stages" / "wmf" / "arrays.npz") as arrays:
        x = arrays["user_factors"]
    cnn = result.serving["content_cnn"].model
    ranker = result.serving["content_cnn_ranker"].model
    rng = np.random.default_rng(0)
    users = rng.integers(0, data.num_users, 40)
    items = rng.integers(0, data.num_items, 40)  # warm and cold
    y_hat = np.asarray(cnn({"content": data.content[items]})["item_factors"])
    served = np.asarray(ranker({"user_id": users, "content": data.content[items]})["score"])
    np.testing.assert_allclose(served, (x[users] * y_hat).sum(1), atol=1e-5)


def test_wmf_stage_fits_training_pairs_only(recipe, data):
    config, kwargs = recipe.make_config("content_cnn", **recipe.test_config)
    plan = recipe.build_stage("wmf", "content_cnn", data, config, kwargs, {})
    assert plan.trainer is None
    arrays = plan.compute()
    x_ref, y_ref = wmf_als(data.fit["user_id"], data.fit["item_id"], data.num_users,
                           data.num_warm_items, factors=4, iterations=3, seed=0)
    np.testing.assert_allclose(arrays["user_factors"], x_ref)
    assert arrays["item_factors"].shape == (data.num_warm_items, 4)
    plan.arrays = arrays
    cnn = recipe.build_stage("cnn", "content_cnn", data, config, kwargs, {"wmf": plan})
    assert isinstance(cnn.trainer, FactorRegressionTrainer)
    assert (cnn.monitor, cnn.monitor_mode) == ("mse", "min")
    # The CNN's held-out warm items are never in its training batches.
    rows = np.concatenate([b[0]["content"].numpy() for b in cnn.dataset])
    assert rows.shape[0] == data.num_warm_items - round(0.1 * data.num_warm_items)


def _own_files(tmp_path):
    from tfrec.data.coldstart import synthetic_content

    syn = synthetic_content(30, 25, per_user=7, frames=8, bands=5, seed=4)
    inter = syn.interactions
    lines = ["visitor\titem"] + [
        f"v{u:03d}\tsong-{i}" for u, i in zip(inter.user, inter.item, strict=True)
    ]
    tsv = tmp_path / "plays.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    ids = np.array([f"song-{i}" for i in syn.item_ids])
    np.savez(tmp_path / "audio.npz", item_id=ids, features=syn.spectrograms)
    np.savez(tmp_path / "vectors.npz", item_id=ids, features=syn.features)
    return tsv


def test_own_file_with_string_ids(recipe, tmp_path):
    tsv = _own_files(tmp_path)
    result = tfrec.train(
        "content_cnn", str(tsv), out=tmp_path / "run", columns="user=visitor",
        content=str(tmp_path / "audio.npz"), **recipe.test_config,
    )
    losses = [r["loss"] for r in result.history["epochs"] if r["stage"] == "cnn"]
    assert losses[-1] < losses[0]
    users = (tmp_path / "run" / "vocab" / "users.tsv").read_text().splitlines()[1:]
    assert all(line.split("\t")[1].startswith("v0") for line in users)
    kwargs = json.loads((tmp_path / "run" / "serving" / "serving.json").read_text())
    assert kwargs["graphs"]["content_cnn"]["input_length"] == 8
    config, _ = recipe.make_config("content_cnn")
    with pytest.raises(DataError, match="vectors.npz: content CNN needs 2-D content"):
        recipe.load_data(DataSource(file=str(tsv), columns={"user": "visitor"},
                                    content=str(tmp_path / "vectors.npz")), config)


def test_config_errors_name_the_key(recipe):
    with pytest.raises(ValueError, match="'wmf_alfa'.*Did you mean 'wmf_alpha'"):
        recipe.make_config("content_cnn", wmf_alfa=3.0)
    with pytest.raises(ValueError, match="wmf_iterations"):
        recipe.make_config("content_cnn", wmf_iterations=0)
    with pytest.raises(ValueError, match="cnn_valid_fraction"):
        recipe.make_config("content_cnn_ranker", cnn_valid_fraction=1.0)
    with pytest.raises(ValueError, match="num_users"):
        recipe.make_config("content_cnn_ranker", num_users=3)  # comes from the data
    config, kwargs = recipe.make_config("content_cnn", preset="content_cnn_ml100k")
    assert (config.early_stopping, kwargs["filters"], kwargs["embedding_dim"]) == (
        5, (64, 64), 32)


def test_movielens_token_content(recipe, shared_data):
    config, _ = recipe.make_config("content_cnn")
    data = recipe.load_data(
        DataSource(dataset="movielens-100k", data_dir=str(shared_data / "movielens-100k")),
        config,
    )
    assert data.content.shape[:2] == (1682, 16)
    assert set(np.unique(data.content.sum(axis=2))) <= {0.0, 1.0}


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted(recipe, data, runs, tmp_path):
    import keras

    class StopInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise _Interrupt

    out = tmp_path / "resumed"
    with pytest.raises(_Interrupt):
        tfrec.train("content_cnn", data, out=out, callbacks=[StopInSecondEpoch()],
                    **recipe.test_config)
    assert (out / "stages" / "wmf" / "DONE").is_file()
    assert not (out / "stages" / "cnn").exists()
    resumed = tfrec.train("content_cnn", data, out=out, **recipe.test_config)
    reference = runs["content_cnn"]
    for a, b in zip(resumed.model.get_weights(), reference.model.get_weights(),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert [r["epoch"] for r in resumed.history["epochs"]] == [1, 2]


def test_recommend_from_the_saved_run_uses_its_item_content(recipe, runs, data):
    from tfrec.training.runner import load_run, read_vocab

    run = runs["content_cnn"].run_dir
    vocab = read_vocab(run)  # vocab/item_content.npz
    assert vocab.item_content is not None
    serving, _ = load_run(run)
    user = vocab.users[0]
    from_disk = recipe.recommend("content_cnn", serving, vocab, user, k=5)
    in_memory = recipe.recommend("content_cnn", runs["content_cnn"].serving,
                                 recipe.vocab(data), user, k=5)
    assert [i for i, _ in from_disk] == [i for i, _ in in_memory]
    vocab.item_content = None
    with pytest.raises(ValueError, match="item_content"):
        recipe.recommend("content_cnn", serving, vocab, user)


def test_keras_native_route(recipe, data):
    prepared = tfrec.prepare("content_cnn_ranker", data, **recipe.test_config)
    trainer, train_ds, protocols = prepared
    history = trainer.fit(train_ds, epochs=2, callbacks=[protocols.callback()],
                          verbose=0, shuffle=False)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "val_mse" in history.history
    serving = prepared.serving()
    assert set(serving) == GRAPHS
    metrics = protocols.test(serving)
    assert np.isfinite(metrics["cold"]["ndcg@10"])
