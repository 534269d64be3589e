"""The Wide & Deep recipe: training through the runner (CTR and rating), the run
directory, evaluation, recommendation, the own-file path with string ids, the
data protocols, resume, and config / input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfrec
from tfrec.data.datasets import DataError
from tfrec.recipes.base import DataSource
from tfrec.recipes.wide_deep import (
    RATING_TEST_FRACTION,
    WideDeepRecipe,
    synthetic_tabular,
)
from tfrec.registry import model_info

RECIPE: WideDeepRecipe = model_info("wide_deep").recipe


def _losses(result):
    rows = [r for r in result.history["epochs"] if r.get("stage") == "train"]
    return [r["loss"] for r in sorted(rows, key=lambda r: r["epoch"])]


def _check_run(result, run_dir):
    losses = _losses(result)
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses
    assert (run_dir / "model.keras").is_file()
    index = json.loads((run_dir / "serving" / "serving.json").read_text())
    assert index["main"] == "wide_deep" and set(index["graphs"]) == {"wide_deep"}
    assert (run_dir / "serving" / "wide_deep.keras").is_file()
    assert (run_dir / "vocab" / "items.tsv").is_file()


def test_ctr_trains_evaluates_and_recommends(tmp_path):
    data = RECIPE.synthetic_data(0)
    out = tmp_path / "ctr"
    result = tfrec.train("wide_deep", data, out=out, **RECIPE.test_config)
    _check_run(result, out)
    # Validation each epoch, test once at the end.
    assert all("val_auc" in r for r in result.history["epochs"])
    ctr = result.metrics["ctr"]
    assert 0.0 <= ctr["auc"] <= 1.0 and np.isfinite(ctr["log_loss"])
    again = RECIPE.evaluate("wide_deep", result.serving, data, result.config, "valid")
    assert np.isfinite(again["ctr"]["auc"])
    # The serving graph's kwargs come from the training rows only.
    kwargs = result.serving["wide_deep"].kwargs
    assert sorted(kwargs["vocabularies"]["user_id"]) == sorted(
        np.unique(data.train.features["user_id"]).tolist()
    )
    assert kwargs["logit_offset"] == pytest.approx(
        np.log(data.train.labels.mean() / (1 - data.train.labels.mean())), rel=1e-5
    )
    vocab = RECIPE.vocab(data)
    recs = RECIPE.recommend("wide_deep", result.serving, vocab, vocab.users[0], k=5)
    items = [i for i, _ in recs]
    assert len(items) == 5 == len(set(items)) and set(items) <= set(vocab.items)
    seen = {vocab.items[j] for j in vocab.seen[1][vocab.seen[0][0] : vocab.seen[0][1]]}
    assert not seen & set(items)
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    # A new user given by features also gets recommendations.
    new = {"gender": "F", "age": "25-34", "occupation": "artist", "zip_prefix": "0"}
    assert len(RECIPE.recommend("wide_deep", result.serving, vocab, new, k=3)) == 3


def test_rating_task_trains_with_squared_loss(tmp_path):
    data = synthetic_tabular(1, task="rating")
    settings = {**RECIPE.test_config, "task": "rating", "learning_rate": 0.05}
    result = tfrec.train("wide_deep", data, out=tmp_path / "rating", **settings)
    _check_run(result, tmp_path / "rating")
    rating = result.metrics["rating"]
    assert np.isfinite(rating["rmse"]) and rating["rmse"] < 2.0
    assert "rating" in result.model.output
    assert all("val_rmse" in r for r in result.history["epochs"])


class _Interrupt(Exception):
    pass


# three short trainings (kept in the default run)
def test_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path):
    import keras

    class StopAtSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise _Interrupt

    data = RECIPE.synthetic_data(2)
    settings = {**RECIPE.test_config, "seed": 5}
    full = tfrec.train("wide_deep", data, out=tmp_path / "full", **settings)
    out = tmp_path / "resumed"
    with pytest.raises(_Interrupt):
        tfrec.train("wide_deep", data, out=out, callbacks=[StopAtSecondEpoch()], **settings)
    assert (out / "backup").is_dir() and not (out / "model.keras").exists()
    resumed = tfrec.train("wide_deep", data, out=out, **settings)
    for a, b in zip(full.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)


def test_task_mismatch_between_data_and_config_is_clear():
    with pytest.raises(ValueError, match="labelled for task 'ctr'"):
        tfrec.train("wide_deep", RECIPE.synthetic_data(0), task="rating", epochs=1)


def _own_rows(n_users=30, n_items=20, seed=0):
    rng = np.random.default_rng(seed)
    genres = ["Action", "Comedy", "Drama|Romance", "Comedy|Horror", ""]
    occ = ["artist", "engineer", "student"]
    lines = ["customer,sku,stars,gender,age,occupation,zip,genres,year"]
    item_genre = {i: genres[i % len(genres)] for i in range(n_items)}
    for u in range(n_users):
        g = "M" if u % 2 else "F"
        for i in rng.choice(n_items, 10, replace=False):
            like = (g == "M") == ("Action" in item_genre[i] or "Horror" in item_genre[i])
            stars = int(np.clip(rng.normal(4.3 if like else 1.7, 0.6), 1, 5).round())
            year = "" if i % 7 == 0 else str(1960 + i)
            lines.append(
                f"u_{u},sku-{i},{stars},{g},{18 + u % 3 * 10},{occ[u % 3]},"
                f"{10000 + u * 37},{item_genre[i]},{year}"
            )
    return lines


def test_own_csv_with_string_ids_trains_and_recommends_raw_ids(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(_own_rows()) + "\n")
    out = tmp_path / "own"
    result = tfrec.train(
        "wide_deep", str(path), out=out,
        columns="user=customer,item=sku,rating=stars", **RECIPE.test_config,
    )
    _check_run(result, out)
    assert np.isfinite(result.metrics["ctr"]["auc"])
    data = RECIPE.load_data(
        DataSource(file=str(path), columns={"user": "customer", "item": "sku",
                                            "rating": "stars"}),
        result.config,
    )
    vocab = RECIPE.vocab(data)
    assert vocab.users[0].startswith("u_") and vocab.items[0].startswith("sku-")
    recs = RECIPE.recommend("wide_deep", result.serving, vocab, "u_3", k=4)
    assert len({i for i, _ in recs}) == 4 and all(i.startswith("sku-") for i, _ in recs)
    saved = (out / "vocab" / "users.tsv").read_text().splitlines()
    assert saved[1].split("\t")[1].startswith("u_")


def test_own_file_errors_name_file_line_and_column(tmp_path):
    rows = _own_rows()
    source = DataSource(
        columns={"user": "customer", "item": "sku", "rating": "stars"},
    )
    config, _ = RECIPE.make_config("wide_deep")
    no_occ = tmp_path / "no_occ.csv"
    no_occ.write_text("\n".join(rows).replace(",occupation,", ",job,"))
    source.file = str(no_occ)
    with pytest.raises(DataError, match=r"no_occ.csv.*missing \['occupation'\]"):
        RECIPE.load_data(source, config)
    bad_year = tmp_path / "bad_year.csv"
    bad_year.write_text("\n".join([*rows[:3], rows[3].rsplit(",", 1)[0] + ",199x"]))
    source.file = str(bad_year)
    with pytest.raises(DataError, match=r"bad_year.csv: line 4, column 'year'"):
        RECIPE.load_data(source, config)
    source.file = str(no_occ)
    source.split = "leave_one_out"
    with pytest.raises(ValueError, match="split 'random'"):
        RECIPE.load_data(source, config)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="Unknown setting 'wide_lr'.*wide_learning_rate"):
        RECIPE.make_config("wide_deep", wide_lr=0.1)
    with pytest.raises(ValueError, match="`task` must be one of"):
        RECIPE.make_config("wide_deep", task="clicks")
    with pytest.raises(ValueError, match="`wide_learning_rate` must be > 0"):
        RECIPE.make_config("wide_deep", wide_learning_rate=0)
    with pytest.raises(ValueError, match="`cross_features`: Cross 'genres_x_age'"):
        RECIPE.make_config("wide_deep", cross_features=("genres_x_age",))
    with pytest.raises(ValueError, match="`optimizer` must be one of"):
        RECIPE.make_config("wide_deep", optimizer="ftrl")
    with pytest.raises(ValueError, match="Unknown setting 'vocabularies'"):
        RECIPE.make_config("wide_deep", vocabularies={})  # comes from the data


def test_presets_carry_the_report_settings_and_provenance():
    from tfrec.data.datasets import DATASETS

    config, kwargs = RECIPE.make_config("wide_deep", preset="recbole_ctr_wide")
    assert kwargs["mode"] == "wide" and config.wide_learning_rate == 3.0
    assert config.early_stopping == 1 and config.task == "ctr"
    config, kwargs = RECIPE.make_config("wide_deep", preset="msr_rating_joint")
    assert config.task == "rating" and config.learning_rate == 0.05
    assert kwargs["hidden_units"] == (256, 128, 64)
    for preset in RECIPE.presets:
        assert preset.dataset in DATASETS and "reports/wide_deep.md" in preset.source


def test_epoch_order_is_a_function_of_seed_and_epoch():
    from tfrec.data.tabular import TabularEpochs, epoch_dataset

    data = RECIPE.synthetic_data(0)
    ds, source = epoch_dataset(data.train, batch_size=1000, seed=3)
    first = [next(iter(ds))[1].numpy() for _ in range(2)]  # epochs 0 and 1
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(first[1], data.train.labels[TabularEpochs(
        len(data.train), seed=3).order(1)])


def test_catalogue_rating_protocol_holds_out_a_quarter(shared_data):
    config, _ = RECIPE.make_config("wide_deep", task="rating")
    source = DataSource(dataset="movielens-100k", data_dir=str(shared_data / "movielens-100k"))
    data = RECIPE.load_data(source, config)
    assert len(data.test) == int(RATING_TEST_FRACTION * 100_000)
    assert len(data.train) + len(data.valid) == 75_000
    assert len(data.valid) == 7_500
    assert set(np.unique(data.test.labels)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_keras_native_route_prepare_then_fit():
    data = RECIPE.synthetic_data(3)
    prepared = tfrec.prepare("wide_deep", data, **RECIPE.test_config)
    trainer, train_ds, protocols = prepared
    history = trainer.fit(train_ds, epochs=2, callbacks=[protocols.callback()], verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "val_auc" in history.history
    serving = prepared.serving()
    assert set(serving) == {"wide_deep"} and serving["wide_deep"].model is trainer.model
    assert np.isfinite(protocols.test(serving)["ctr"]["auc"])


def test_the_data_rows_match_the_serving_contract():
    from tfrec.data.tabular import FEATURE_DTYPES
    from tfrec.models.wide_deep import INPUT_DTYPES

    assert FEATURE_DTYPES == INPUT_DTYPES  # the model keeps its own copy (stays pure)
