"""The item2vec recipe: both serving graphs from one run, data splits, own files,
protocols, the learning-rate schedule and config errors."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import tfrec
from tfrec.recipes.base import DataSource, recipe_for
from tfrec.recipes.item2vec import (
    Item2VecRecipe,
    _optimizer,
    histories_data,
    sessions_data,
)
from tfrec.training.runner import read_vocab

RECIPE = recipe_for("item2vec")


def _losses(run_dir):
    rows = json.loads((run_dir / "history.json").read_text())["epochs"]
    return [r["loss"] for r in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run per model (shared with the resume test)."""
    cache = {}

    def get(model):
        if model not in cache:
            keras.utils.set_random_seed(0)
            run = tmp_path_factory.mktemp("runs") / model
            cache[model] = (run, tfrec.train(
                model, RECIPE.synthetic_data(0), out=run, **RECIPE.test_config
            ))
        return cache[model]

    return get


@pytest.mark.parametrize("model", ["item2vec", "item2vec_similar"])
def test_trains_through_the_runner_and_gives_both_serving_graphs(model, runs):
    assert isinstance(RECIPE, Item2VecRecipe) and RECIPE.query == "item"
    data = RECIPE.synthetic_data(0)
    run, result = runs(model)
    losses = _losses(run)
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert (run / "model.keras").is_file()
    index = json.loads((run / "serving" / "serving.json").read_text())
    assert index["main"] == model
    assert set(index["graphs"]) == {"item2vec", "item2vec_similar"}
    for name in index["graphs"]:
        assert (run / "serving" / f"{name}.keras").is_file()
    assert index["graphs"]["item2vec_similar"] == {
        "num_items": 24, "embedding_dim": 8, "k": 5,
    }
    # Both graphs hold the same trained table.
    table = result.serving["item2vec"].model.get_layer("item_embedding").get_weights()
    similar = result.serving["item2vec_similar"].model.get_layer("similar_items")
    np.testing.assert_array_equal(table[0], similar.get_weights()[0])
    config, _ = RECIPE.make_config(model, **RECIPE.test_config)
    metrics = RECIPE.evaluate(model, result.serving, data, config, "test")
    values = [*metrics["next_item"].values(), *metrics["genre"].values()]
    assert np.all(np.isfinite(values))
    # Two clusters that never share a sequence: neighbours keep the "genre".
    assert metrics["genre"]["all_share@1"] == 1.0
    vocab = read_vocab(run)
    for k in (5, 9):  # from the similar-items graph (k <= 5) and from the table
        recs = RECIPE.recommend(model, result.serving, vocab, "i3", k=k)
        ids = [i for i, _ in recs]
        assert len(set(ids)) == k and set(ids) <= set(vocab.items) and "i3" not in ids
        assert all(int(i[1:]) < 12 for i in ids[:5])  # i3's cluster is i0..i11
    with pytest.raises(ValueError, match="Unknown item 'nope'"):
        RECIPE.recommend(model, result.serving, vocab, "nope")


def _write_sessions_csv(path, rng):
    lines = ["visit,sku,ts"]
    t0 = 1_700_000_000
    for s in range(40):
        base = 0 if s % 2 == 0 else 6
        day = 0 if s < 32 else 2  # the last 8 sessions: a later day (test)
        for j, item in enumerate(base + rng.permutation(6)[:4]):
            lines.append(f"v-{s},sku-{item},{t0 + day * 86400 + s * 60 + j}")
    path.write_text("\n".join(lines) + "\n")


def test_own_session_file_with_string_ids_trains(tmp_path, rng):
    path = tmp_path / "clicks.csv"
    _write_sessions_csv(path, rng)
    cols = "session=visit,item=sku,time=ts"
    source = DataSource(file=str(path), columns={"session": "visit", "item": "sku",
                                                 "time": "ts"})
    config, _ = RECIPE.make_config("item2vec", **RECIPE.test_config)
    data = RECIPE.load_data(source, config)
    assert data.kind == "sessions" and not data.exclude_history
    assert len(data.test) == 8 * 3  # every click after the first of a test session
    assert data.valid is not None and sorted(data.item_ids)[0] == "sku-0"
    result = tfrec.train(
        "item2vec_similar", str(path), out=tmp_path / "run", columns=cols,
        **RECIPE.test_config,
    )
    assert np.isfinite(result.metrics["next_item"]["hr@10"])
    recs = RECIPE.recommend(
        "item2vec_similar", result.serving, read_vocab(tmp_path / "run"), "sku-1", k=3
    )
    assert len({i for i, _ in recs}) == 3 and all(i.startswith("sku-") for i, _ in recs)


def test_own_history_file_and_bad_files(tmp_path):
    path = tmp_path / "ratings.csv"
    rows = ["customer,item,when"]
    for u in range(10):
        for j in range(5):
            rows.append(f"u_{u},m{(u % 2) * 5 + (j + u) % 5},{1000 + 10 * u + j}")
    path.write_text("\n".join(rows) + "\n")
    config, _ = RECIPE.make_config("item2vec", **RECIPE.test_config)
    src = DataSource(file=str(path), columns={"user": "customer", "time": "when"})
    data = RECIPE.load_data(src, config)
    assert data.kind == "histories" and len(data.test) == len(data.valid) == 10
    no_time = tmp_path / "no_time.csv"
    no_time.write_text("user,item\nu1,a\nu1,b\n")
    with pytest.raises(Exception, match=r"no_time.csv: item2vec needs a 'session'"):
        RECIPE.load_data(DataSource(file=str(no_time)), config)
    with pytest.raises(ValueError, match="user histories take --split leave_one_out"):
        RECIPE.load_data(
            DataSource(file=str(path), columns=src.columns, split="random"), config
        )


def test_history_split_holds_out_the_last_two_items():
    raw = np.array(list("abcdef"))
    data = histories_data("h", [[0, 1, 2, 3], [4, 5], [1, 2, 4, 0]], raw)
    # Training: all but the last two (the last one for a 2-item history).
    assert data.item_ids == ["a", "b", "c", "e"]  # 'd', 'f' never trained
    np.testing.assert_array_equal(data.train[0], [0, 2, 3, 5])
    np.testing.assert_array_equal(data.train[1], [0, 1, 3, 1, 2])
    # Validation: the 2nd-last items c (user 0) and e (user 2).
    np.testing.assert_array_equal(data.valid.targets, [2, 3])
    # Test: the last items; d and f are unknown (dropped), a (user 2) stays,
    # its profile every earlier item [b, c, e].
    np.testing.assert_array_equal(data.test.targets, [0])
    np.testing.assert_array_equal(data.test.items, [1, 2, 3])
    assert data.stats["test_cases_dropped_unknown_item"] == 2
    no_valid = histories_data("h", [[0, 1, 2, 3], [3, 0]], raw, valid=False)
    assert no_valid.valid is None and no_valid.train[1].tolist() == [0, 1, 2, 3]
    assert no_valid.test.targets.tolist() == [3, 0]


def test_sessions_carve_validation_from_the_latest_training_sessions():
    raw = np.array(list("abcde"))
    train = [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 3, 1]]
    data = sessions_data("s", train, [[0, 1, 0], [4, 1]], raw, valid_fraction=0.25)
    assert data.item_ids == ["a", "b", "c"]  # 'd' only in the validation session
    assert data.train[0].tolist() == [0, 3, 6, 9]
    # Validation: prefixes of [a, d, b]: d unknown, b's profile [a] (d dropped).
    assert data.valid.targets.tolist() == [1] and data.valid.items.tolist() == [0]
    # Test: every click after the first, repeats kept ([a, b] -> a).
    assert data.test.targets.tolist() == [1, 0]
    assert data.stats["test_cases_dropped_empty_profile"] == 1  # [e] -> b


def test_linear_schedule_is_word2vecs_decay():
    config, _ = RECIPE.make_config(
        "item2vec", preset="word2vec_sgd", batch_size=8
    )
    opt = _optimizer(config, steps=100)
    assert isinstance(opt, keras.optimizers.SGD)
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    assert float(schedule(0)) == pytest.approx(0.025 * 8)
    assert float(schedule(50)) == pytest.approx(0.025 * 8 * (1 + 1e-4) / 2)
    assert float(schedule(100)) == pytest.approx(0.025 * 8 * 1e-4)
    constant = _optimizer(RECIPE.make_config("item2vec", optimizer="rmsprop")[0], 10)
    assert isinstance(constant, keras.optimizers.RMSprop)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="Unknown setting 'windw'.*'window'"):
        RECIPE.make_config("item2vec", windw=3)
    with pytest.raises(ValueError, match="`variant` must be one of"):
        RECIPE.make_config("item2vec", variant="glove")
    with pytest.raises(ValueError, match="`window` must be a positive int"):
        RECIPE.make_config("item2vec", window=0)
    with pytest.raises(ValueError, match="`subsample` must be in"):
        RECIPE.make_config("item2vec_similar", subsample=2.0)
    config, kwargs = RECIPE.make_config("item2vec", window="none", embedding_dim=16)
    assert config.window is None and kwargs == {"embedding_dim": 16}
    with pytest.raises(ValueError, match="`k` must be at most num_items - 1 = 23"):
        tfrec.train("item2vec_similar", RECIPE.synthetic_data(0),
                    **{**RECIPE.test_config, "k": 30})


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt  # after epoch 0 is backed up


def test_resumed_run_ends_with_the_same_weights(tmp_path, runs):
    data = RECIPE.synthetic_data(0)
    whole_dir, whole = runs("item2vec")
    with pytest.raises(KeyboardInterrupt):
        tfrec.train("item2vec", data, out=tmp_path / "cut", callbacks=[_Interrupt()],
                    **RECIPE.test_config)
    assert (tmp_path / "cut" / "backup").is_dir()  # epoch 0 kept for the resume
    assert len(_losses(tmp_path / "cut")) == 1
    resumed = tfrec.train("item2vec", data, out=tmp_path / "cut", **RECIPE.test_config)
    assert _losses(tmp_path / "cut") == pytest.approx(_losses(whole_dir))
    np.testing.assert_allclose(
        resumed.model.get_layer("item_embedding").get_weights()[0],
        whole.model.get_layer("item_embedding").get_weights()[0],
        rtol=1e-6, atol=1e-7,
    )
