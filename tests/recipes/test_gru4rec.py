"""The GRU4Rec recipe: every model trains through the runner, data, config, use."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import tfrec
from tfrec.data import DataError
from tfrec.recipes.base import DataSource, recipe_for
from tfrec.recipes.gru4rec import SessionData, carve_validation
from tfrec.training.runner import evaluate_run, read_vocab

RECIPE = recipe_for("gru4rec")
GRAPHS = ("gru4rec", "gru4rec_topk", "gru4rec_step")


@pytest.fixture(scope="module")
def data() -> SessionData:
    return RECIPE.synthetic_data(0)


def _losses(run_dir: Path, stage: str = "train") -> list[float]:
    history = json.loads((run_dir / "history.json").read_text())
    return [r["loss"] for r in history["epochs"] if r["stage"] == stage]


def _finite(metrics: dict) -> bool:
    return all(math.isfinite(v) for part in metrics.values() for v in part.values())


@pytest.mark.parametrize("name", GRAPHS)
def test_every_model_trains_and_serves(name, data, tmp_path):
    out = tmp_path / name
    result = tfrec.train(name, data, out=out, **RECIPE.test_config)
    losses = _losses(out)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert (out / "model.keras").is_file()
    index = json.loads((out / "serving" / "serving.json").read_text())
    assert index["main"] == name and set(index["graphs"]) == set(GRAPHS)
    for graph in GRAPHS:
        assert (out / "serving" / f"{graph}.keras").is_file()
    assert index["graphs"]["gru4rec_topk"]["k"] == RECIPE.test_config["k"]
    # One weight set: the three graphs agree on the last click's scores.
    row = np.array([[0, 3, 4, 5]], np.int64)
    whole = result.serving["gru4rec"].model({"session_items": row})["scores"]
    step = result.serving["gru4rec_step"].model
    state = np.zeros((1, RECIPE.test_config["layers"][0]), np.float32)
    for i in row[0]:
        o = step({"item_id": np.array([i]), "hidden_state": state})
        state = np.asarray(o["new_hidden_state"])
    np.testing.assert_allclose(whole, o["scores"], atol=1e-5)
    # Validation every epoch, test once at the end.
    history = json.loads((out / "history.json").read_text())
    assert all("val_recall@20" in r for r in history["epochs"])
    assert _finite(result.metrics and {"next_click": result.metrics["next_click"]})
    assert (
        result.metrics["next_click"]["queries"]
        == data.test.num_events - data.test.num_sessions
    )
    metrics = RECIPE.evaluate(name, result.serving, data, result.config, "valid")
    assert _finite(metrics) and 0 <= metrics["next_click"]["recall@20"] <= 1
    vocab = read_vocab(out)
    recs = RECIPE.recommend(name, result.serving, vocab, ["item_3", "item_4"], k=5)
    items = [i for i, _ in recs]
    assert len(items) == 5 == len(set(items))
    assert set(items) <= set(vocab.items[1:]) and not {"item_3", "item_4"} & set(items)


def test_own_csv_with_string_ids_trains(tmp_path):
    rng = np.random.default_rng(1)
    lines = ["visit,sku,ts"]
    for s in range(150):
        start = 1_700_000_000 + int(s * 86400 * 8 / 150)
        cur = int(rng.integers(0, 20))
        for t in range(int(rng.integers(2, 6))):
            lines.append(f"v-{s},sku-{cur},{start + 30 * t}")
            cur = (cur + 1) % 20
    path = tmp_path / "clicks.csv"
    path.write_text("\n".join(lines) + "\n")
    columns = "session=visit,item=sku,time=ts"
    result = tfrec.train(
        "gru4rec",
        str(path),
        out=tmp_path / "run",
        columns=columns,
        **RECIPE.test_config,
    )
    assert _finite(result.metrics and {"next_click": result.metrics["next_click"]})
    # evaluate RUN rebuilds the split from the file and reloads the saved graphs.
    again = evaluate_run(tmp_path / "run")
    assert again["next_click"] == pytest.approx(result.metrics["next_click"], abs=1e-6)
    vocab = read_vocab(tmp_path / "run")
    assert vocab.items[0] == "" and all(i.startswith("sku-") for i in vocab.items[1:])
    recs = RECIPE.recommend("gru4rec", result.serving, vocab, "sku-1,sku-2", k=3)
    assert len({i for i, _ in recs}) == 3
    with pytest.raises(ValueError, match="Unknown item 'sku-999'"):
        RECIPE.recommend("gru4rec", result.serving, vocab, ["sku-999"], k=3)
    with pytest.raises(ValueError, match="session_last_day"):
        RECIPE.load_data(DataSource(file=str(path), columns={}, split="random"), None)
    with pytest.raises(DataError, match=r"clicks\.csv: no 'time' column"):
        columns = {"session": "visit", "item": "sku"}
        RECIPE.load_data(DataSource(file=str(path), columns=columns), None)


def test_too_short_a_file_is_a_clear_error(tmp_path):
    path = tmp_path / "day.csv"
    path.write_text("session,item,time\na,x,1\na,y,2\nb,x,3\nb,y,4\n")
    with pytest.raises(DataError, match=r"day\.csv: too few sessions to split"):
        RECIPE.load_data(DataSource(file=str(path)), None)


def test_validation_is_carved_from_training(data):
    full, train, valid = data.full, data.train, data.valid
    assert train.num_events + valid.num_events <= full.num_events
    train_ends = train.timestamps[train.offsets[1:] - 1]
    valid_ends = valid.timestamps[valid.offsets[1:] - 1]
    assert valid_ends.min() >= full.timestamps.max() - 86400.0 > train_ends.max()
    assert np.isin(valid.items, train.items).all()
    assert data.test.timestamps.min() > train.timestamps.max()
    np.testing.assert_array_equal(valid.item_vocab, full.item_vocab)


@pytest.mark.skipif(
    not os.environ.get("TFREC_DATA_DIR")
    or not Path(os.environ["TFREC_DATA_DIR"], "yoochoose-rsc15-100k-sample").is_dir(),
    reason="needs the YooChoose sample in TFREC_DATA_DIR",
)
def test_yoochoose_validation_equals_gru4rec_files():
    from tfrec.data.sessions import load_yoochoose

    data = RECIPE.load_data(DataSource(dataset="yoochoose-rsc15-100k-sample"), None)
    official = load_yoochoose(split="valid")  # GRU4Rec's train_tr / train_valid
    assert data.train.num_events == official.train.num_events
    assert data.valid.num_events == official.test.num_events
    np.testing.assert_array_equal(data.valid.raw_items, official.test.raw_items)


def test_refit_stage_resumes_to_the_same_weights(data, tmp_path):
    settings = {**RECIPE.test_config, "refit_full": True}
    a = tfrec.train("gru4rec_step", data, out=tmp_path / "a", **settings)
    assert len(_losses(tmp_path / "a", "refit")) == 2  # the second stage ran
    # A copy interrupted after the first stage: the rerun loads that stage and
    # trains the refit, which must start from the same weights and samples.
    b_dir = tmp_path / "b"
    shutil.copytree(tmp_path / "a", b_dir)
    shutil.rmtree(b_dir / "stages" / "refit")
    shutil.rmtree(b_dir / "serving")
    (b_dir / "metrics.json").unlink()
    b = tfrec.train("gru4rec_step", data, out=b_dir, **settings)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-6)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:  # user callbacks run last: epoch 2 is backed up
            raise RuntimeError("interrupted")


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_interrupted_epoch_resumes_to_the_same_weights(data, tmp_path):
    # The trainer's sampling step and Adagrad-momentum state are part of the
    # backup, so resuming inside a stage ends where an uninterrupted run does.
    settings = {**RECIPE.test_config, "epochs": 3}
    a = tfrec.train("gru4rec", data, out=tmp_path / "a", **settings)
    with pytest.raises(RuntimeError, match="interrupted"):
        tfrec.train(
            "gru4rec", data, out=tmp_path / "b", callbacks=[_Interrupt()], **settings
        )
    seen = _Epochs()
    b = tfrec.train("gru4rec", data, out=tmp_path / "b", callbacks=[seen], **settings)
    assert seen.epochs == [2]  # it resumed after the second epoch
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "b"))


def test_keras_native_route(data):
    trainer, train_ds, protocols = prepared = tfrec.prepare(
        "gru4rec", data, **RECIPE.test_config
    )
    history = trainer.fit(
        train_ds, epochs=1, callbacks=[protocols.callback()], verbose=0, shuffle=False
    )
    assert math.isfinite(history.history["loss"][0])
    assert "val_mrr@20" in history.history
    assert set(prepared.serving()) == set(GRAPHS)
    assert type(trainer.optimizer).__name__ == "AdagradMomentum"
    adam = tfrec.prepare(
        "gru4rec", data, optimizer="adam", **RECIPE.test_config
    ).trainer
    assert type(adam.optimizer).__name__ == "Adam"


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="'n_samples'.*Did you mean 'n_sample'"):
        RECIPE.make_config("gru4rec", n_samples=10)
    with pytest.raises(ValueError, match="`loss` must be one of"):
        RECIPE.make_config("gru4rec", loss="bpr")
    with pytest.raises(ValueError, match="`momentum`"):
        RECIPE.make_config("gru4rec", momentum=1.5)
    with pytest.raises(ValueError, match="adagrad_momentum"):
        RECIPE.make_config("gru4rec", optimizer="lion")
    with pytest.raises(ValueError, match="num_items"):
        RECIPE.make_config("gru4rec", num_items=5)
    # The top-K length and the architecture are settings of every model.
    config, kwargs = RECIPE.make_config("gru4rec_step", k=7, layers=[16])
    assert (
        kwargs == {"k": 7, "layers": (16,)} and config.optimizer == "adagrad_momentum"
    )


def test_presets_are_the_official_paramfiles():
    config, kwargs = RECIPE.make_config("gru4rec", preset="rsc15_xe_shared_100_best")
    assert (config.loss, config.learning_rate, config.momentum, config.logq) == (
        "cross-entropy",
        0.2,
        0.2,
        1.0,
    )
    assert kwargs["layers"] == (100,) and config.refit_full and config.batch_size == 32
    config, kwargs = RECIPE.make_config(
        "gru4rec_topk", preset="diginetica_bprmax_shared_best"
    )
    assert (config.loss, config.bpreg, config.elu_param, config.batch_size) == (
        "bpr-max",
        0.9,
        1.0,
        128,
    )
    assert kwargs["layers"] == (512,) and kwargs["dropout_embed"] == 0.5
    for preset in RECIPE.presets:
        assert "paramfiles/" in preset.source and preset.dataset in RECIPE.datasets


def test_carving_needs_more_than_the_validation_span(data):
    with pytest.raises(DataError, match="too few sessions"):
        carve_validation(data.full, 365.0)


def test_refit_trains_for_the_epochs_early_stopping_chose_on_validation(tmp_path):
    """``refit_full`` + ``early_stopping``: the ``train`` stage stops on validation
    and the ``refit`` stage retrains on all training sessions for its best epoch."""
    data = RECIPE.synthetic_data(0)
    settings = {**RECIPE.test_config, "epochs": 6, "early_stopping": 1,
                "refit_full": True, "learning_rate": 0.5}
    result = tfrec.train("gru4rec", data, out=tmp_path / "run", **settings)
    rows = result.history["epochs"]
    train_rows = [r for r in rows if r["stage"] == "train"]
    refit_rows = [r for r in rows if r["stage"] == "refit"]
    key = f"val_recall@{max(RECIPE.make_config('gru4rec', **settings)[0].ks)}"
    best = max(train_rows, key=lambda r: (r[key], -r["epoch"]))["epoch"]
    best = min(r["epoch"] for r in train_rows if r[key] == train_rows[best - 1][key])
    assert len(refit_rows) == best
    stage = json.loads((tmp_path / "run" / "stages" / "train" / "stage.json").read_text())
    assert stage["best_epoch"] == best
