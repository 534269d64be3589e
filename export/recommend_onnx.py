"""``recommend.onnx`` of a factor model, written node by node (`export.recommend`).

tf2onnx turns the TF ``recommend`` signature of a factor model into about 70
ONNX nodes (72 for NeuMF-8, 64 for MF), most of them Cast/Shape/Slice/
Unsqueeze/Not/Mul bookkeeping on tensors of a few elements (``tf.where`` becomes
arithmetic, ``boolean_mask`` becomes NonZero/Transpose/Gather); onnxruntime's
profile puts them at about a third of a NeuMF call on ML-1M. This module writes
the same computation in 28 nodes (NeuMF-8; 19 for MF), from the tables
`tfrec.evaluation.factors.FactorScores.frozen` precomputes:

* the user index clamped with one ``Min`` on its ``uint64`` cast (ids outside
  ``[0, U)``, negative ones too, land on the out-of-vocabulary row);
* every one-sided term in one matmul: the user row ``[p_u (x h), b_u, 1]``
  against the item table ``[q_i; 1; b_i]`` (GMF's ``h``, MF's user bias, the
  item bias, every scalar offset and the head's bias folded in at export);
* the MLP over ``relu(a_u + c_i)`` with items along the last axis, each
  layer's bias folded into its kernel through a constant-one channel, so a
  layer is one MatMul and one Relu (`tower_tables`); the head is a matmul with
  a vector (no Squeeze);
* a sink item ``N`` whose logit is ``-inf``: exclusion ids outside ``[0, N)``
  are clamped onto it (one ``Min`` again) and scattered per row
  (``ScatterElements``: no row indices, no boolean mask);
* ``TopK`` on the logits and the output activation (sigmoid) on the ``k``
  winners only: a monotone activation keeps the order (float32 sigmoid can tie
  logits it rounds to one value; ids are compared only where scores differ).

Same inputs, outputs and bad-request behaviour as the signature (the export's
parity check compares both with the Keras reference at every request).
"""

from __future__ import annotations

import numpy as np

from export.recommend import RecommendError

# Output activations applied to the k winners (monotone non-decreasing).
_AFTER_TOPK = {"sigmoid": "Sigmoid", "linear": None}


def activation_name(act) -> str | None:
    """``"sigmoid"``/``"linear"`` for the Keras activation ``act`` (None: linear),
    else None (then the graph is converted by tf2onnx instead)."""
    if act is None:
        return "linear"
    name = getattr(act, "__name__", str(act))
    return name if name in _AFTER_TOPK else None


def one_sided(frozen: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(user_rows [U+1, e], item_cols [e, N+1])``: every term that depends on
    one side only, as one matmul; column ``N`` (the sink) scores ``-inf``."""
    users = frozen["user_tower" if "user_tower" in frozen else "user_vectors"].shape[0]
    u_parts, i_parts = [], []
    if "user_vectors" in frozen:
        u_parts.append(frozen["user_vectors"])
        i_parts.append(frozen["item_vectors"].T)
    if "user_bias" in frozen:
        u_parts.append(frozen["user_bias"][:, None])
        i_parts.append(np.ones((1, n), np.float32))
    u_parts.append(np.ones((users, 1), np.float32))
    i_parts.append(frozen["item_bias"][None, :])
    item_cols = np.concatenate(i_parts, 0).astype(np.float32)
    sink = np.zeros((item_cols.shape[0], 1), np.float32)
    sink[-1, 0] = -np.inf
    return (np.ascontiguousarray(np.concatenate(u_parts, 1), np.float32),
            np.ascontiguousarray(np.concatenate([item_cols, sink], 1)))


def factor_onnx(frozen: dict, n: int, opset: int, passthrough=()):
    """The ``recommend`` ModelProto of a factor model: inputs ``user_id`` (int64
    ``[batch]``), ``k``, ``exclude``; outputs ``item_ids``, ``scores``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if passthrough:
        raise RecommendError("a factor model has no passthrough outputs")
    act = activation_name(frozen["activation"])
    if act is None:
        raise RecommendError(
            f"output activation {frozen['activation']!r} is not applied after top-k"
        )
    tower_act = frozen.get("first_activation")
    acts = [tower_act, *(a for _, _, a in frozen.get("layers", []))]
    if "user_tower" in frozen and any(
        getattr(a, "__name__", "") != "relu" for a in acts
    ):
        raise RecommendError("only relu MLP towers are written node by node")
    init, nodes = [], []

    def const(name, array):
        init.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, outputs=None, **attrs):
        out = outputs or [f"{op.lower()}_{len(nodes)}"]
        nodes.append(helper.make_node(op, inputs, out, name=f"n{len(nodes)}_{op}",
                                      **attrs))
        return out[0] if len(out) == 1 else out

    user_rows, item_cols = one_sided(frozen, n)
    oov = user_rows.shape[0] - 1  # the last row: out-of-vocabulary user
    # ids outside [0, U): negative ids are huge as uint64, so one Min clamps both
    u64 = node("Cast", ["user_id"], to=TensorProto.UINT64)
    u = node("Cast", [node("Min", [u64, const("oov_row", np.array(oov, np.uint64))])],
             to=TensorProto.INT64)
    logits = node("MatMul", [node("Gather", [const("user_rows", user_rows), u]),
                             const("item_cols", item_cols)])  # [b, N+1]
    if "user_tower" in frozen:
        logits = node("Add", [logits, _tower(frozen, n, u, node, const)])
    # exclusions: ids outside [0, N) (the -1 padding too) go to the sink item N
    ex64 = node("Cast", ["exclude"], to=TensorProto.UINT64)
    ex = node("Cast", [node("Min", [ex64, const("sink", np.array(n, np.uint64))])],
              to=TensorProto.INT64)
    dead = const("minus_inf", np.array(-np.inf, np.float32))
    fill = node("Expand", [dead, node("Shape", ["exclude"])])
    masked = node("ScatterElements", [logits, ex, fill], axis=1)
    k = node("Max", [node("Min", ["k", const("k_max", np.array(n, np.int64))]),
                     const("k_min", np.array(1, np.int64))])
    k = node("Unsqueeze", [k, const("axis0", np.array([0], np.int64))])
    top, index = node("TopK", [masked, k], ["top", "index"], axis=-1, largest=1,
                      sorted=1)
    gone = node("Equal", [top, dead])
    node("Where", [gone, const("no_item", np.array(-1, np.int64)), index],
         ["item_ids"])
    best = node(_AFTER_TOPK[act], [top]) if _AFTER_TOPK[act] else top
    node("Where", [gone, dead, best], ["scores"])
    graph = helper.make_graph(
        nodes, "recommend", [
            helper.make_tensor_value_info("user_id", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
            helper.make_tensor_value_info("exclude", TensorProto.INT64,
                                          ["batch", "excluded"]),
        ], [
            helper.make_tensor_value_info("item_ids", TensorProto.INT64,
                                          ["batch", "k"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "k"]),
        ], init,
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)],
        producer_name="tfrec.export.recommend_onnx",
    )  # fmt: skip
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model


def tower_tables(frozen: dict, n: int) -> dict:
    """The MLP's tables with items along the last axis and every bias folded
    into the matmul before it: a constant-one channel rides along (the user's
    first-layer row gets a 1, the items' a 0, so ``relu(1 + 0) = 1``; each
    kernel gets the bias as its last column and passes the one on), so a layer
    is one MatMul and one Relu. ``user [U+1, h1+1, 1]``, ``items [h1+1, N+1]``
    (the sink item's half is 0), ``kernels`` ``[out+1, in+1]``, ``head
    [w+1]``."""
    users = frozen["user_tower"]
    ones = np.ones((users.shape[0], 1), np.float32)
    user = np.concatenate([users, ones], 1)[:, :, None]
    items = np.zeros((users.shape[1] + 1, n + 1), np.float32)
    items[:-1, :n] = frozen["item_tower"].T
    kernels = []
    for kernel, bias, _ in frozen["layers"]:
        k_in, k_out = kernel.shape
        w = np.zeros((k_out + 1, k_in + 1), np.float32)
        w[:k_out, :k_in] = kernel.T
        w[:k_out, k_in] = 0.0 if bias is None else bias
        w[k_out, k_in] = 1.0  # the one channel, passed on
        kernels.append(w)
    head = np.concatenate([frozen["head_tower"][:, 0], [0.0]]).astype(np.float32)
    return {"user": np.ascontiguousarray(user, np.float32), "items": items,
            "kernels": kernels, "head": head}


def _tower(frozen: dict, n: int, u: str, node, const) -> str:
    """``[b, N+1]``: the MLP part of every item's logit (see `tower_tables`)."""
    t = tower_tables(frozen, n)
    a = node("Gather", [const("user_tower", t["user"]), u])  # [b, h1+1, 1]
    x = node("Relu", [node("Add", [a, const("item_tower", t["items"])])])
    for i, kernel in enumerate(t["kernels"]):
        x = node("Relu", [node("MatMul", [const(f"kernel_{i}", kernel), x])])
    return node("MatMul", [const("head", t["head"]), x])  # [w+1] @ [b, w+1, N+1]
