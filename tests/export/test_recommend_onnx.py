"""The factor models' ``recommend.onnx`` written node by node (export/recommend_onnx.py).

Its top-k equals a numpy ranking of the Keras pair model's scores of every item
(in-vocabulary and out-of-vocabulary users, -1 padding, ids outside the
catalogue, repeated ids, rows with fewer than k items left); the MLP's biases
are folded into its matmuls (no Add per layer); an activation it cannot move
after top-k is refused, so the plan falls back to tf2onnx.
"""

from __future__ import annotations

import numpy as np
import pytest

NU, NI = 13, 17


def _randomised(name, seed=0):
    import keras

    from tfrec.registry import create_model

    keras.utils.set_random_seed(seed)
    model = create_model(name, num_users=NU, num_items=NI)
    rng = np.random.default_rng(seed)
    for w in model.weights:  # spread weights: score gaps well above float noise
        w.assign(rng.normal(0.0, 0.5, w.shape).astype("float32"))
    return model


def _frozen(model, name):
    from tfrec.evaluation.factors import FactorScores, factor_rule

    return FactorScores(model, factor_rule(model, name), "score").frozen(NI)


def _session(proto):
    import onnxruntime as ort

    return ort.InferenceSession(proto.SerializeToString(),
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["neumf", "mf", "ncf_mlp"])
def test_topk_equals_the_pair_model_ranking(name):
    from export.recommend_onnx import factor_onnx

    model = _randomised(name)
    session = _session(factor_onnx(_frozen(model, name), NI, 17))
    users = np.array([0, 5, 12, -1, NU, 99], np.int64)  # the last three: OOV
    exclude = np.array([[-1, 3, NI, 3], [0, 1, 2, 4], [-7, -1, -1, -1],
                        [16, 15, 14, 13], [2, 2, 2, 2], [-1, -1, -1, -1]], np.int64)
    k = NI - 2  # rows 1 and 3 have NI - 4 items left: two -1 ids each
    ids, scores = session.run(["item_ids", "scores"], {
        "user_id": users, "k": np.array(k, np.int64), "exclude": exclude})
    pair = {"user_id": np.repeat(users, NI), "item_id": np.tile(np.arange(NI), 6)}
    want = np.asarray(model(pair, training=False)["score"], np.float32).reshape(6, NI)
    for row in range(6):
        gone = {int(i) for i in exclude[row] if 0 <= i < NI}
        left = [i for i in np.argsort(-want[row], kind="stable") if i not in gone]
        n_left = min(k, len(left))
        np.testing.assert_array_equal(ids[row, :n_left], left[:n_left])
        np.testing.assert_allclose(scores[row, :n_left], want[row, left[:n_left]],
                                   rtol=1e-5, atol=1e-6)
        assert (ids[row, n_left:] == -1).all() and np.isneginf(scores[row, n_left:]).all()
    assert (ids == -1).sum(1).tolist() == [0, 2, 0, 2, 0, 0]


def test_neumf_mlp_is_one_matmul_and_relu_per_layer():
    from export.recommend_onnx import factor_onnx

    proto = factor_onnx(_frozen(_randomised("neumf"), "neumf"), NI, 17)
    ops = [n.op_type for n in proto.graph.node]
    layers = 2  # hidden (32, 16, 8): the first layer is split, two follow
    # Add: the first layer's user half + item half, the tower + one-sided logits
    assert ops.count("Add") == 2 and ops.count("Relu") == layers + 1
    assert ops.count("MatMul") == layers + 2  # + the head and the one-sided matmul
    assert len(ops) <= 30 and not {"Concat", "Transpose", "Reshape", "NonZero"} & set(ops)


def test_an_activation_it_cannot_move_after_topk_falls_back():
    import keras

    from export.recommend import RecommendError
    from export.recommend_onnx import factor_onnx

    frozen = _frozen(_randomised("mf"), "mf")
    frozen["activation"] = keras.activations.tanh
    with pytest.raises(RecommendError, match="tanh"):
        factor_onnx(frozen, NI, 17)
