"""The one runner: run directory, config validation, resume (single and
multi-stage), early stopping on validation, the Keras-native route."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import tfrec
from tfrec.recipes.base import recipe_for
from tfrec.training import OPTIMIZERS, make_optimizer
from tfrec.training.runner import evaluate_run, load_run


@pytest.fixture(scope="module")
def split():
    return recipe_for("gmf").synthetic_data(1)


SMALL = dict(batch_size=64, learning_rate=0.02, embedding_dim=4, seed=3)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch: int):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated crash")


def test_run_directory_holds_everything(split, tmp_path):
    run = tmp_path / "run"
    result = tfrec.train("gmf", split, out=run, epochs=3, **SMALL)
    for name in ("config.json", "history.json", "metrics.json", "model.keras",
                 "curves.png", "serving/serving.json", "serving/gmf.keras",
                 "vocab/users.tsv", "vocab/items.tsv", "vocab/seen.npz"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    record = json.loads((run / "config.json").read_text())
    assert record["model"] == "gmf" and record["recipe"] == "ncf"
    assert record["config"]["epochs"] == 3 and record["model_kwargs"] == {"embedding_dim": 4}
    rows = result.history["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # Validation during training, never the test set.
    assert all("val_ndcg@10" in r for r in rows)
    assert not any(k.startswith("test") for r in rows for k in r)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["sampled"]["hr@10"] <= 1 and "full" in metrics
    serving, record = load_run(run)
    assert set(serving) == {"gmf"} and record["main"] == "gmf"
    # A run on data passed in memory cannot be re-evaluated from its folder alone.
    with pytest.raises(ValueError, match="in memory"):
        evaluate_run(run)


def test_training_learns_the_synthetic_structure(split):
    result = tfrec.train("gmf", split, epochs=8, **SMALL)
    assert result.run_dir is None  # trained in memory
    pop = _popularity_hr(split)
    assert result.metrics["sampled"]["ndcg@10"] > pop


def _popularity_hr(split):
    from tfrec.evaluation import SampledRanking, popularity_scorer

    protocol = SampledRanking(
        split.test["user_id"], split.test["item_id"], split.test_negatives, ks=(10,)
    )
    return protocol.evaluate(popularity_scorer(split.train["item_id"], split.num_items))[
        "ndcg@10"
    ]


def _weights(run):
    return keras.saving.load_model(run / "model.keras").get_weights()


def test_resume_after_interruption_matches_uninterrupted_run(split, tmp_path):
    straight = tmp_path / "straight"
    tfrec.train("neumf", split, out=straight, epochs=4, **SMALL)
    run = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        tfrec.train("neumf", split, out=run, epochs=4, callbacks=[_Interrupt(1)], **SMALL)
    assert (run / "backup").is_dir() and not (run / "model.keras").exists()
    rows = json.loads((run / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]
    resumed = tfrec.train("neumf", split, out=run, epochs=4, **SMALL)
    assert [r["epoch"] for r in resumed.history["epochs"]] == [1, 2, 3, 4]
    for a, b in zip(_weights(straight), _weights(run), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("crash_stage", [1, 2])
def test_multi_stage_resume_matches_uninterrupted_run(split, tmp_path, crash_stage):
    """Pre-trained NeuMF (gmf -> ncf_mlp -> neumf): a crash in the second or the
    third stage resumes with finished stages loaded, to the same weights."""
    settings = dict(pretrain=True, pretrain_epochs=2, epochs=2, **SMALL)
    straight = tmp_path / "straight"
    tfrec.train("neumf", split, out=straight, **settings)
    run = tmp_path / "resumed"

    class StageCrash(keras.callbacks.Callback):
        calls = 0

        def on_train_begin(self, logs=None):
            type(self).calls += 1

        def on_epoch_end(self, epoch, logs=None):
            if type(self).calls == crash_stage + 1 and epoch == 0:
                raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        tfrec.train("neumf", split, out=run, callbacks=[StageCrash()], **settings)
    stages = ["gmf", "ncf_mlp", "neumf"]
    for done in stages[:crash_stage]:
        assert (run / "stages" / done / "DONE").is_file()
    assert not (run / "stages" / stages[crash_stage]).exists()
    tfrec.train("neumf", split, out=run, **settings)
    for a, b in zip(_weights(straight), _weights(run), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    rows = json.loads((run / "history.json").read_text())["epochs"]
    assert sorted({r["stage"] for r in rows}) == sorted(stages)


def test_resuming_with_other_settings_is_refused(split, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        tfrec.train("gmf", split, out=run, epochs=3, callbacks=[_Interrupt(0)], **SMALL)
    with pytest.raises(ValueError, match=r"another definition \(config: epochs\)"):
        tfrec.train("gmf", split, out=run, epochs=5, **SMALL)
    history = (run / "history.json").read_text()
    with pytest.raises(ValueError, match=r"model_kwargs: embedding_dim"):
        tfrec.train("gmf", split, out=run, epochs=3, **{**SMALL, "embedding_dim": 5})
    assert (run / "history.json").read_text() == history  # untouched


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"embeding_dim": 3}, "Did you mean 'embedding_dim'"),
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"num_negatives": -1}, "num_negatives"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"pretrain": "maybe"}, "pretrain"),
    ],
)
def test_bad_settings_raise_before_anything_is_written(split, tmp_path, settings, message):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        tfrec.train("gmf", split, out=run, **settings)
    assert not run.exists()


def test_unknown_model_and_preset_name_the_valid_ones(split):
    with pytest.raises(ValueError, match="Did you mean 'neumf'"):
        tfrec.train("nuemf", split)
    with pytest.raises(ValueError, match="Unknown preset 'ncf_papr'.*Did you mean 'ncf_paper'"):
        tfrec.train("neumf", split, preset="ncf_papr")
    with pytest.raises(ValueError, match="is for neumf"):
        tfrec.train("gmf", split, preset="ncf_pretrained")


def test_early_stopping_needs_and_uses_validation(split, tmp_path):
    result = tfrec.train(
        "gmf", split, out=tmp_path / "run", epochs=30, early_stopping=2,
        batch_size=64, learning_rate=0.5, embedding_dim=4, seed=3,
    )
    ran = len(result.history["epochs"])
    assert 3 <= ran < 30
    best = max(r["val_ndcg@10"] for r in result.history["epochs"])
    # restore_best_weights: the model's validation score is the best epoch's.
    recipe = recipe_for("gmf")
    val = recipe.evaluate("gmf", result.serving, split, result.config, "valid")
    assert val["sampled"]["ndcg@10"] == pytest.approx(best, abs=1e-6)


def test_early_stopping_without_validation_part_is_refused(tmp_path):
    from tfrec.data import random_split
    from tfrec.data.synthetic import synthetic_interactions

    split = random_split(synthetic_interactions(30, 20, per_user=6), test_fraction=0.2)
    with pytest.raises(ValueError, match="validation"):
        tfrec.train("gmf", split, out=tmp_path / "r", epochs=3, early_stopping=1)


def test_explicit_task_trains_on_ratings(split):
    result = tfrec.train("mf", split, epochs=4, task="explicit", batch_size=64,
                         learning_rate=0.05, embedding_dim=4)
    assert result.metrics["rating"]["rmse"] < 2.0
    assert "rating" in result.model.output


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_lecture_optimizer_trains_through_the_runner(split, name):
    lr = 1.0 if name == "adadelta" else 0.01
    result = tfrec.train("gmf", split, epochs=1, optimizer=name, learning_rate=lr,
                         batch_size=64, embedding_dim=4)
    assert np.isfinite(result.metrics["sampled"]["ndcg@10"])
    assert make_optimizer(name, lr).__class__.__name__


def test_keras_native_route(split):
    trainer, train_ds, protocols = tfrec.prepare("gmf", split, **SMALL)
    history = trainer.fit(train_ds, epochs=3, callbacks=[protocols.callback()], verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "val_ndcg@10" in history.history
    prepared = tfrec.prepare("gmf", split, **SMALL)
    prepared.trainer.fit(prepared.dataset, epochs=2, verbose=0)
    serving = prepared.serving()
    metrics = prepared.protocols.test(serving)
    assert set(serving) == {"gmf"} and 0 <= metrics["full"]["ndcg@10"] <= 1


def test_prepare_runs_earlier_stages(split):
    prepared = tfrec.prepare("neumf", split, pretrain=True, pretrain_epochs=1, **SMALL)
    # The last stage's NeuMF starts from the pre-trained GMF embeddings.
    assert prepared.trainer.name == "neumf" and prepared.epochs == 20
    gmf_stage = tfrec.prepare("gmf", split, **SMALL)
    assert not np.allclose(
        prepared.trainer.get_layer("gmf_user_embedding").get_weights()[0],
        gmf_stage.trainer.get_layer("gmf_user_embedding").get_weights()[0],
    )
