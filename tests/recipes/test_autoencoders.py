"""The autoencoder recipes (AutoRec / autoencoder, CDAE) through the runner."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

import tfrec
from tfrec.data.datasets import DataError
from tfrec.data.vectors import epoch_vector_dataset, rating_vectors
from tfrec.recipes.autoencoders import ReconstructionTrainer, make_training_optimizer
from tfrec.registry import model_info

MODELS = ("autorec", "autoencoder", "cdae")


def _recipe(name):
    return model_info(name).recipe


@pytest.mark.parametrize("name", MODELS)
def test_trains_through_the_runner(name, tmp_path):
    recipe = _recipe(name)
    assert recipe.name == ("cdae" if name == "cdae" else "autorec")
    data = recipe.synthetic_data(0)
    out = tmp_path / name
    result = tfrec.train(name, data, out=out, **recipe.test_config)
    losses = [row["loss"] for row in result.history["epochs"]]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert (out / "model.keras").is_file()
    index = json.loads((out / "serving" / "serving.json").read_text())
    assert index["main"] == name and set(index["graphs"]) == {name}
    assert (out / "serving" / f"{name}.keras").is_file()
    # Validation metrics were logged every epoch (selection never reads test).
    key = "val_rmse" if name != "cdae" else "val_ndcg@10"
    assert all(key in row for row in result.history["epochs"])
    config, _ = recipe.make_config(name, **recipe.test_config)
    metrics = recipe.evaluate(name, result.serving, data, config, "test")
    values = [v for proto in metrics.values() for v in proto.values()]
    assert values and all(math.isfinite(v) for v in values)
    if name == "cdae":
        assert 0.0 <= metrics["full"]["ndcg@10"] <= 1.0
    else:
        assert metrics["rating"]["rmse"] > 0
    vocab = recipe.vocab(data)
    user = vocab.users[3]
    recs = recipe.recommend(name, result.serving, vocab, user, k=5)
    items = [item for item, _ in recs]
    assert len(items) == 5 == len(set(items)) and set(items) <= set(vocab.items)
    indptr, indices = vocab.seen
    seen = {vocab.items[i] for i in indices[indptr[3] : indptr[4]]}
    assert not seen & set(items)  # known items are excluded
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)


def _write_csv(path, rng, *, users=24, items=14, per_user=8):
    lines = ["customer,sku,stars"]
    for u in range(users):
        for i in rng.choice(items, per_user, replace=False):
            lines.append(f"u_{u},sku-{i},{1 + (u + i) % 5}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", ["autorec", "cdae"])
def test_own_csv_with_string_ids_trains(name, tmp_path, rng):
    csv = _write_csv(tmp_path / "ratings.csv", rng)
    recipe = _recipe(name)
    extra = {"core": 2} if name == "cdae" else {}
    result = tfrec.train(
        name,
        str(csv),
        out=tmp_path / "run",
        columns="user=customer,item=sku,rating=stars",
        **recipe.test_config,
        **extra,
    )
    losses = [row["loss"] for row in result.history["epochs"]]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    items = (tmp_path / "run" / "vocab" / "items.tsv").read_text().splitlines()[1:]
    assert all(line.split("\t")[1].startswith("sku-") for line in items)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    source = tfrec.recipes.base.DataSource(**record["source"])
    config, _ = recipe.make_config(name, **recipe.test_config, **extra)
    data = recipe.load_data(source, config)
    recs = recipe.recommend(name, result.serving, recipe.vocab(data), "u_5", k=3)
    assert len({i for i, _ in recs}) == 3 and all(i.startswith("sku-") for i, _ in recs)


def test_bad_own_files_name_file_line_and_column(tmp_path):
    recipe = _recipe("autorec")
    config, _ = recipe.make_config("autorec")
    source = tfrec.recipes.base.DataSource
    dup = tmp_path / "dup.csv"
    dup.write_text("user,item,rating\na,x,4\nb,x,3\na,x,5\n")
    with pytest.raises(DataError, match=r"dup\.csv: line 4: user 'a' rated item 'x'"):
        recipe.load_data(source(file=str(dup), split="random"), config)
    zero = tmp_path / "zero.csv"
    zero.write_text("user,item,rating\na,x,4\nb,y,0\n")
    with pytest.raises(DataError, match=r"zero\.csv: line 3, column 'rating'"):
        recipe.load_data(source(file=str(zero)), config)
    with pytest.raises(ValueError, match="splits random, leave_one_out, time"):
        recipe.load_data(source(file=str(zero), split="session_last_day"), config)


def test_config_errors_name_the_key():
    autorec, cdae = _recipe("autorec"), _recipe("cdae")
    with pytest.raises(ValueError, match="'hiden_units'.*Did you mean 'hidden_units'"):
        autorec.make_config("autorec", hiden_units=(8,))
    with pytest.raises(ValueError, match="lr_schedule"):
        autorec.make_config("autorec", lr_schedule="linear")
    with pytest.raises(ValueError, match="rating_range"):
        autorec.make_config("autorec", rating_range=(5, 1))
    with pytest.raises(ValueError, match="output_activation='linear'"):
        cdae.make_config("cdae", output_activation="linear")
    with pytest.raises(ValueError, match="`core`"):
        cdae.make_config("cdae", core=0)
    with pytest.raises(ValueError, match="is for autorec, not 'autoencoder'"):
        autorec.make_config("autoencoder", preset="autorec_ml1m")
    with pytest.raises(ValueError, match="Unknown preset 'autorec_ml1m' for the cdae"):
        cdae.make_config("cdae", preset="autorec_ml1m")
    config, kwargs = cdae.make_config("cdae", preset="cdae_recbole")
    assert (config.epochs, config.learning_rate, kwargs["embedding_dim"]) == (100, 0.002, 64)
    assert config.early_stopping == 10
    source = cdae.preset("cdae_recbole").source
    assert "chosen on validation" in source and "TEST" not in source
    # Settings still carrying an old test-set choice say so.
    assert "TEST split" in autorec.preset("autorec_deep_ml1m").source


def test_epoch_order_is_a_function_of_seed_and_epoch():
    rows = np.repeat(np.arange(10), 2)
    vec = rating_vectors(rows, (np.arange(20) * 3) % 7, np.ones(20), num_rows=11, num_cols=7)

    def epoch_rows(epoch):
        ds, source = epoch_vector_dataset(vec, batch_size=4, seed=5, row_id_name="id")
        source.epoch = epoch
        return np.concatenate([f["id"].numpy() for f, _ in ds])

    first = epoch_rows(3)
    np.testing.assert_array_equal(first, epoch_rows(3))  # a fresh pipeline, same order
    assert sorted(first.tolist()) == list(range(10))  # row 10 is empty: dropped
    assert not np.array_equal(first, epoch_rows(4))
    ds, source = epoch_vector_dataset(vec, batch_size=4, seed=5, row_id_name="id")
    assert ds.cardinality().numpy() == 3
    feats, labels = next(iter(ds))
    np.testing.assert_array_equal(feats["ratings"].numpy(), vec.dense(feats["id"].numpy()))
    np.testing.assert_array_equal(labels["mask"].numpy(), feats["ratings"].numpy() != 0)


def test_cosine_schedule_follows_the_optimiser_steps():
    recipe = _recipe("autorec")
    config, _ = recipe.make_config("autorec", epochs=2, learning_rate=0.002)
    model = tfrec.create_model("autorec", num_users=5, num_items=3, hidden_units=(4,))
    vec = rating_vectors([0, 1, 2], [0, 2, 4], [5, 3, 1], num_rows=3, num_cols=5)
    ds, _ = epoch_vector_dataset(vec, batch_size=1, seed=0)
    trainer = ReconstructionTrainer(model, num_vectors=3)
    trainer.compile(optimizer=make_training_optimizer(config, steps_per_epoch=3))
    trainer.fit(ds, epochs=1, verbose=0, shuffle=False)
    # After 3 of 6 steps: lr = 0.002 * (1 + cos(pi * 3 / 6)) / 2 = 0.001.
    assert int(trainer.optimizer.iterations) == 3
    np.testing.assert_allclose(float(trainer.optimizer.learning_rate), 0.001, rtol=1e-6)
    constant, _ = recipe.make_config("autorec", lr_schedule="constant")
    opt = make_training_optimizer(constant, steps_per_epoch=3)
    np.testing.assert_allclose(float(opt.learning_rate), constant.learning_rate)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    recipe = _recipe("cdae")
    data = recipe.synthetic_data(0)
    settings = {**recipe.test_config, "epochs": 3}
    whole = tfrec.train("cdae", data, out=tmp_path / "whole", **settings)
    with pytest.raises(KeyboardInterrupt):
        tfrec.train("cdae", data, out=tmp_path / "cut", callbacks=[_Interrupt()], **settings)
    assert (tmp_path / "cut" / "backup").is_dir()
    resumed = tfrec.train("cdae", data, out=tmp_path / "cut", **settings)
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
