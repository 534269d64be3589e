"""GRU4Rec serving graphs: GRU maths, step = whole sequence, padding, OOV, weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfrec.models.gru4rec import (
    PAD_SCORE,
    GRU4RecUniform,
    gru4rec,
    gru4rec_step,
    gru4rec_topk,
    serving_models,
    step_model_config,
)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_gru_step(x, h, kernel, recurrent, bias):
    """The original GRU (Cho et al. 2014; Keras reset_after=False), gates z, r, h."""
    u = h.shape[-1]
    xz, xr, xh = np.split(x @ kernel + bias, 3, axis=-1)
    rz, rr = h @ recurrent[:, :u], h @ recurrent[:, u : 2 * u]
    z = _sigmoid(xz + rz)
    r = _sigmoid(xr + rr)
    hh = np.tanh(xh + (r * h) @ recurrent[:, 2 * u :])
    return z * h + (1.0 - z) * hh


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()]
    )


def test_one_step_equals_numpy_gru_cell():
    n, units = 7, 4
    step = gru4rec_step(n, layers=(units,))
    _randomise(step)
    table, bias = step.get_layer("item_table").get_weights()
    kernel, recurrent, gbias = step.get_layer("gru_step").cells[0].get_weights()
    ids = np.array([3, 7, 1], dtype=np.int64)
    h0 = np.random.default_rng(1).uniform(-1, 1, (3, units)).astype(np.float32)
    out = step({"item_id": ids, "hidden_state": h0})
    h1 = _np_gru_step(table[ids], h0, kernel, recurrent, gbias)
    np.testing.assert_allclose(out["new_hidden_state"], h1, atol=1e-5)
    ref_scores = h1 @ table.T + bias
    ref_scores[:, 0] = PAD_SCORE
    np.testing.assert_allclose(out["scores"], ref_scores, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layers": (5, 3)},
        {"layers": (4,), "constrained_embedding": False, "embedding_dim": 6},
        {"layers": (4,), "constrained_embedding": False, "embedding_dim": 0},
    ],
)
def test_stepping_equals_whole_sequence_and_padding(kwargs):
    n = 11
    step = gru4rec_step(n, **kwargs)
    _randomise(step, 3)
    models = serving_models(step, k=3)
    whole, topk = models["gru4rec"], models["gru4rec_topk"]
    x = np.array([[0, 0, 3, 4, 5], [1, 2, 3, 4, 11], [0, 0, 0, 0, 7]], np.int64)
    state = np.zeros((3, sum(step_model_config(step)["layers"])), np.float32)
    for t in range(x.shape[1]):
        out = step({"item_id": x[:, t], "hidden_state": state})
        state = out["new_hidden_state"].numpy()
    ref = whole({"session_items": x})["scores"].numpy()
    np.testing.assert_allclose(out["scores"], ref, atol=1e-5)
    # A padded and an unpadded session give the same scores.
    short = whole({"session_items": np.array([[3, 4, 5]], np.int64)})["scores"]
    np.testing.assert_allclose(short[0], ref[0], atol=1e-6)
    top = topk({"session_items": x})
    expect = np.argsort(-ref, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(top["top_items"], expect)
    np.testing.assert_allclose(
        top["top_scores"], np.take_along_axis(ref, expect, 1), atol=1e-6
    )
    assert (ref[:, 0] == PAD_SCORE).all()


def test_oov_ids_look_up_zeros_and_padding_keeps_state():
    n = 6
    step = gru4rec_step(n, layers=(3,))
    _randomise(step, 5)
    h = np.random.default_rng(2).uniform(-1, 1, (4, 3)).astype(np.float32)
    ids = np.array([0, 7, -1, 10**12], np.int64)
    out = step({"item_id": ids, "hidden_state": h})["new_hidden_state"].numpy()
    np.testing.assert_allclose(out[0], h[0])  # padding: state unchanged
    kernel, recurrent, gbias = step.get_layer("gru_step").cells[0].get_weights()
    zero_input = _np_gru_step(
        np.zeros((3, 3), np.float32), h[1:], kernel, recurrent, gbias
    )
    np.testing.assert_allclose(out[1:], zero_input, atol=1e-5)


def test_constrained_embedding_is_one_table():
    model = gru4rec(9, layers=(4,))
    names = [w.path for w in model.trainable_weights]
    assert sum("embeddings" in p for p in names) == 1
    separate = gru4rec(9, layers=(4,), constrained_embedding=False, embedding_dim=5)
    assert separate.get_layer("item_embedding").embeddings.shape == (10, 5)
    onehot = gru4rec(9, layers=(4,), constrained_embedding=False)
    assert onehot.get_layer("gru_1").cell.kernel.shape == (10, 12)


def test_uniform_initializer_bound_per_gate():
    init = GRU4RecUniform(gates=3, seed=1)
    w = keras.ops.convert_to_numpy(init((20, 30)))
    bound = np.sqrt(6.0 / (20 + 10))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound


def test_serving_models_share_trained_weights():
    step = gru4rec_step(5, layers=(3,))
    _randomise(step, 9)
    whole = serving_models(step)["gru4rec"]
    np.testing.assert_array_equal(
        whole.get_layer("gru_1").cell.kernel.numpy(),
        step.get_layer("gru_step").cells[0].kernel.numpy(),
    )
    assert step_model_config(step)["num_items"] == 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": ()}, "layers"),
        ({"layers": (0,)}, "layers"),
        ({"dropout_hidden": 1.0}, "dropout_hidden"),
        ({"embedding_dim": -1}, "embedding_dim"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gru4rec(5, **kwargs)
    with pytest.raises(ValueError, match="num_items"):
        gru4rec_step(0)
    with pytest.raises(ValueError, match="`k`"):
        gru4rec_topk(5, k=0)


def test_whole_sequence_model_on_left_padded_dataset_matches_stepping():
    from tfrec.data.sessions import Sessions, padded_prefixes, sequence_dataset

    s = Sessions.from_events(
        [1, 1, 1, 2, 2], [1, 2, 3, 4, 1], [0, 1, 2, 3, 4], item_vocab=np.arange(1, 6)
    )
    step = gru4rec_step(5, layers=(4,))
    _randomise(step, 4)
    whole = serving_models(step)["gru4rec"]
    pred = whole.predict(sequence_dataset(s, max_length=4, batch_size=2), verbose=0)
    x, y = padded_prefixes(s, 4)
    assert y.tolist() == [2, 3, 1]
    # Row 1 is session 1 after two clicks: step through them from a zero state.
    h = np.zeros((1, 4), np.float32)
    for item in (1, 2):
        out = step({"item_id": np.array([item]), "hidden_state": h})
        h = out["new_hidden_state"].numpy()
    np.testing.assert_allclose(pred["scores"][1], out["scores"][0], atol=1e-5)
