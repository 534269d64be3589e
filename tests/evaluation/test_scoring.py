"""The one scorer adapter (`tfrec.evaluation.scoring`)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfrec.evaluation.scoring import feed_scorer, keras_scorer, output_name


def content_model(num_users=4, width=3, with_item_id=True):
    """score = <u_emb, W x_i> (+ item bias): a model with an item-side input."""
    keras.utils.set_random_seed(0)
    inputs = {
        "user_id": keras.Input((), dtype="int64", name="user_id"),
        "item_content": keras.Input((width,), name="item_content"),
    }
    user = keras.layers.Embedding(num_users, 2, name="user_embedding")(inputs["user_id"])
    item = keras.layers.Dense(2, name="content_map")(inputs["item_content"])
    score = keras.layers.Dot(axes=1, name="dot")([user, item])
    if with_item_id:
        inputs["item_id"] = keras.Input((), dtype="int64", name="item_id")
        bias = keras.layers.Embedding(10, 1, name="item_bias")(inputs["item_id"])
        score = keras.layers.Add(name="add")([score, bias])
    return keras.Model(inputs, {"score": score}, name="toy")


def manual(model, users, items, content):
    feed = {"user_id": users, "item_content": content[items]}
    if "item_id" in model.input:
        feed["item_id"] = items
    return np.asarray(model(feed)["score"])


@pytest.mark.parametrize("with_item_id", [True, False])
@pytest.mark.parametrize("compiled", [True, False])
def test_item_inputs_are_gathered_by_item_index(with_item_id, compiled):
    rng = np.random.default_rng(0)
    content = rng.normal(size=(10, 3)).astype(np.float32)
    model = content_model(with_item_id=with_item_id)
    users, items = rng.integers(0, 4, 37), rng.integers(0, 10, 37)
    fn = keras_scorer(model, item_inputs={"item_content": content, "unused": content},
                      batch_size=5, compiled=compiled)
    got = fn(users, items)
    assert got.shape == (37, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, manual(model, users, items, content), rtol=1e-6)
    assert fn(np.zeros(0, np.int64), np.zeros(0, np.int64)).size == 0


def test_missing_item_inputs_and_out_of_range_items_are_explained():
    model = content_model()
    with pytest.raises(ValueError, match=r"takes \['item_content'\].*item_inputs"):
        keras_scorer(model)
    fn = keras_scorer(model, item_inputs={"item_content": np.zeros((6, 3))})
    with pytest.raises(ValueError, match=r"Item indices must be in \[0, 6\)"):
        fn(np.array([0]), np.array([6]))


def test_output_name_and_feed_scorer_batches():
    model = content_model()
    assert output_name(model) == "score"
    two = keras.Model(model.input, {"a": model.output["score"],
                                    "b": model.output["score"]})
    with pytest.raises(ValueError, match="exactly one named output"):
        output_name(two)
    calls = []

    def predict(feed):
        calls.append(feed["user_id"].size)
        assert feed["user_id"].dtype == np.int64
        return {"score": feed["user_id"] * 10.0 + feed["item_id"]}

    got = feed_scorer(predict, "score", batch_size=4)(np.arange(10), np.arange(10) % 3)
    np.testing.assert_array_equal(got, np.arange(10) * 10.0 + np.arange(10) % 3)
    assert calls == [4, 4, 2]
