"""Training glue: run directory, learning beats chance, resume after interruption."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tfrec.data import leave_one_out
from tfrec.data.synthetic import synthetic_interactions
from tfrec.evaluation import SampledRanking
from tfrec.training import OPTIMIZERS, TrainConfig, load_run, make_optimizer, train


@pytest.fixture(scope="module")
def split():
    inter = synthetic_interactions(num_users=60, num_items=40, per_user=12, seed=1)
    return leave_one_out(inter, num_negatives=20, seed=0)


def _config(**kw):
    base = dict(
        model="gmf",
        dataset="synthetic",
        epochs=3,
        batch_size=64,
        learning_rate=0.02,
        model_kwargs={"embedding_dim": 4},
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_run_directory_holds_everything(split, tmp_path):
    result = train(_config(), split, tmp_path / "run", verbose=0)
    run = tmp_path / "run"
    for name in (
        "config.json",
        "history.json",
        "metrics.json",
        "curves.png",
        "model.keras",
        "vocab/users.tsv",
        "vocab/items.tsv",
    ):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()  # BackupAndRestore cleans up after success
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2, 3]
    assert {"loss", "val_hr@10", "val_ndcg@10", "test_hr@10"} <= set(
        history["epochs"][0]
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"sampled", "full"} <= set(metrics)
    assert 0.0 <= metrics["sampled"]["ndcg@10"] <= metrics["sampled"]["hr@10"] <= 1.0
    assert metrics["epochs_run"] == 3
    assert metrics["sampled"]["hr@10"] == pytest.approx(
        result.metrics["sampled"]["hr@10"]
    )
    model, config = load_run(run)
    assert config["config"]["model"] == "gmf"
    x = {"user_id": np.array([0, 1]), "item_id": np.array([2, 3])}
    np.testing.assert_allclose(model(x)["score"], result.model(x)["score"], atol=1e-6)
    users = (run / "vocab" / "users.tsv").read_text().splitlines()
    assert users[0] == "index\traw_id" and users[1] == f"0\t{split.user_ids[0]}"


def test_training_learns_the_synthetic_structure(split, tmp_path):
    untrained = keras.models.clone_model(
        __import__("tfrec").create_model(
            "gmf", num_users=split.num_users, num_items=split.num_items, embedding_dim=4
        )
    )
    from tfrec.training import keras_scorer

    protocol = SampledRanking(
        split.test["user_id"], split.test["item_id"], split.test_negatives
    )
    before = protocol.evaluate(keras_scorer(untrained))["ndcg@10"]
    result = train(_config(epochs=8), split, tmp_path / "run", verbose=0)
    after = result.metrics["sampled"]["ndcg@10"]
    assert after > before + 0.1, (before, after)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated crash")


def test_resume_after_interruption_matches_uninterrupted_run(split, tmp_path):
    config = _config(epochs=4, eval_test_each_epoch=False)
    straight = train(config, split, tmp_path / "straight", verbose=0)

    run = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(
            _config(epochs=4, eval_test_each_epoch=False),
            split,
            run,
            verbose=0,
            extra_callbacks=[_Interrupt(at_epoch=1)],
        )
    assert (run / "backup").is_dir() and not (run / "model.keras").exists()
    done = json.loads((run / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in done] == [1, 2]

    resumed = train(
        _config(epochs=4, eval_test_each_epoch=False), split, run, verbose=0
    )
    epochs = [r["epoch"] for r in resumed.history["epochs"]]
    assert epochs == [1, 2, 3, 4]
    for a, b in zip(
        straight.model.get_weights(), resumed.model.get_weights(), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert resumed.metrics["sampled"]["hr@10"] == pytest.approx(
        straight.metrics["sampled"]["hr@10"], abs=1e-9
    )


def test_explicit_task_trains_on_ratings(split, tmp_path):
    config = _config(model="mf", model_kwargs={"task": "explicit"}, learning_rate=0.05)
    result = train(config, split, tmp_path / "run", verbose=0)
    assert result.metrics["rating"]["rmse"] < 1.5
    history = result.history["epochs"]
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_lecture_optimizer_builds(name):
    opt = make_optimizer(name, 0.01)
    assert float(opt.learning_rate) == pytest.approx(0.01)
    if name in ("momentum", "nesterov"):
        assert opt.momentum == 0.9 and opt.nesterov == (name == "nesterov")


def test_bad_training_arguments_raise_clearly(split, tmp_path):
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("adamw2")
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer("adam", 0)
    with pytest.raises(ValueError, match="epochs"):
        train(_config(epochs=0), split, tmp_path / "r", verbose=0)
    with pytest.raises(ValueError, match="Unknown model"):
        train(_config(model="gmff"), split, tmp_path / "r", verbose=0)
    with pytest.raises(ValueError, match="do not match the data set"):
        train(_config(model_kwargs={"num_users": 3}), split, tmp_path / "r", verbose=0)
    with pytest.raises(FileNotFoundError, match="not a finished tfrec run"):
        load_run(tmp_path / "nothing")


def test_corrupt_model_file_is_reported(split, tmp_path):
    train(_config(epochs=1), split, tmp_path / "run", verbose=0)
    (tmp_path / "run" / "model.keras").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not be loaded"):
        load_run(tmp_path / "run")


def test_early_stopping_stops_when_validation_stalls(split, tmp_path):
    # With a vanishing learning rate the validation NDCG cannot improve, so
    # patience 1 stops the run after its second epoch.
    config = _config(
        epochs=6, optimizer="sgd", learning_rate=1e-12, early_stopping_patience=1
    )
    result = train(config, split, tmp_path / "run", verbose=0)
    rows = result.history["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["val_ndcg@10"] == rows[1]["val_ndcg@10"]
    assert result.metrics["epochs_run"] == 2
