"""Bench section ``serving``: latency of the exported graphs, onnxruntime vs TF.

1. The ``recommend`` path (`export.recommend`): all items scored for one user,
   exclusions applied and the top 10 returned inside the graph, for NeuMF-8 and
   MF at the NCF ML-1M sizes (6,040 users, 3,706 items; untrained: latency does
   not depend on the weights), exported with `export.export_model`. The TF side
   is the SavedModel's ``recommend`` signature through ``tf.saved_model.load``;
   the ORT side is ``recommend.onnx`` in several session configurations
   (threads, execution mode, graph optimisation level, I/O binding with
   pre-allocated inputs). Both are factor models (`tfrec.registry.Factor`): the
   exported graph scores the user against the whole item table in one matmul
   from tables precomputed at export (NeuMF: the GMF part as a matmul, the MLP
   over the user's half of its first layer plus every item's half, items along
   the last axis) and scatters the exclusions into the scores (ONNX
   ``ScatterND``). For MF also the four prototype graphs it came from (bench
   only, reading the model's variables: pair tiling or matmul, comparison or
   scatter; `mf_prototype_graphs`).
   ``serving.all_items_ort_speedup`` is the TF time over
   the time of the ORT session that `export.serving.ExportedModel.recommend`
   builds (onnxruntime's defaults: one intra-op thread per core, where TF runs
   on ``threads``), for NeuMF; ``..._same_threads`` uses the ORT session with
   ``threads``; the best configuration and MF are reported beside it. Also
   per NeuMF/MF: the signature converted by tf2onnx (what ``recommend.onnx``
   was before `export.recommend_onnx`), the TF signature rewritten with the
   ONNX graph's algebra (`tf_same_algebra`), onnxruntime's per-node profile by
   part of the graph (`ort_profile`), and the MLP's compute bound
   (`mlas_bound`).
2. The ``serving_default`` signature of NeuMF at batch 1, batch 100 and all
   3,706 (user, item) pairs of one user: onnxruntime vs the TF2 signature vs the
   TF1 session path TF Serving uses.
3. Full sizes only: GRU4Rec's step-wise serving (one click + state -> scores
   over all items + new state, batch 1) and the whole-sequence graph, on the
   YooChoose sample's catalogue.

Calls are timed one at a time after a warm-up, the cases interleaved round by
round so machine noise hits all alike; each figure is the lowest of three
rounds' medians.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ML1M_USERS, ML1M_ITEMS = 6040, 3706
EXCLUDED = 50  # items excluded per request (a user's seen items)


def latency_us(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def latency_feeds(rng, nu: int, ni: int):
    """``(case, feed)`` of the serving_default latency cases: batch 1, batch 100,
    and all ``ni`` items of one user."""
    for case, b in (("batch_1", 1), ("batch_100", 100), (f"all_{ni}_items", ni)):
        feed = {
            "user_id": rng.integers(0, nu, b).astype(np.int64),
            "item_id": (np.arange(b) % ni).astype(np.int64),
        }
        if b == ni:
            feed["user_id"] = np.full(b, 7, np.int64)
        yield case, feed


def interleaved(cases: dict, reps: int, rounds: int = 3) -> dict[str, float]:
    """Microseconds per call of each case: the median of each of ``rounds``
    interleaved rounds, then the lowest round (a round that other processes on
    the machine slowed down says nothing about the graph)."""
    per = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            per[name].append(latency_us(fn, max(1, reps // rounds)))
    return {name: min(v) for name, v in per.items()}


def export(name: str, nu: int, ni: int, base_dir: str, *, with_model=False):
    """An untrained ``name`` exported with `export.export_model` (its version
    folder; and the Keras model, ``with_model``)."""
    import keras

    from export import export_model
    from tfrec.registry import create_model, model_info

    keras.utils.set_random_seed(0)
    info = model_info(name)
    kw = {"num_users": nu, "num_items": ni}
    model = create_model(name, **kw)
    path = export_model(
        model, name, base_dir=base_dir,
        example_inputs=lambda b, r: info.example_inputs(kw, b, r),
        catalogue={"num_items": ni},
    )
    return (model, path) if with_model else path


def mf_prototype_graphs(model, nu: int, ni: int, threads: int, reps: int,
                        want: np.ndarray, feed: dict) -> dict:
    """Bench only, not an export: what two changes to MF's recommend graph give.

    ``factor``: the user's vector against the whole item table in one matmul
    (``sigmoid(p_u Q^T + b_u + b_i + b)``) instead of tiling the user against
    every item and running the pair model N times; ``scatter``: the exclusions
    as a scatter of the request's ids into a ``[batch, N]`` mask instead of
    comparing ``[batch, n_excluded, N]``. Each graph is saved as a SavedModel
    signature (the TF side) and converted with tf2onnx (the ORT side), both
    with ``threads`` intra-op threads; top-10 lists are checked against the
    exported graph's.
    """
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    table = {n: model.get_layer(n).embeddings for n in (
        "mf_user_embedding", "mf_item_embedding", "mf_user_bias", "mf_item_bias")}
    bias = model.get_layer("global_bias").bias
    sig = [tf.TensorSpec((None,), tf.int64, "user_id"),
           tf.TensorSpec((), tf.int64, "k"),
           tf.TensorSpec((None, None), tf.int64, "exclude")]

    def build(factor: bool, scatter: bool):
        @tf.function(input_signature=sig)
        def recommend(user_id, k, exclude):
            b = tf.shape(user_id)[0]
            if factor:
                ok = tf.logical_and(user_id >= 0, user_id < nu)
                u = tf.where(ok, user_id, tf.zeros_like(user_id))
                keep = tf.cast(ok, tf.float32)[:, None]
                p = tf.gather(table["mf_user_embedding"], u) * keep
                bu = tf.gather(table["mf_user_bias"], u) * keep
                logits = tf.matmul(p, table["mf_item_embedding"], transpose_b=True)
                scores = tf.sigmoid(
                    logits + bu + tf.transpose(table["mf_item_bias"]) + bias
                )
            else:
                rows = tf.reshape(tf.tile(tf.range(b)[:, None], [1, ni]), [-1])
                cols = tf.tile(tf.range(ni, dtype=tf.int64), [b])
                out = model({"user_id": tf.gather(user_id, rows), "item_id": cols},
                            training=False)["score"]
                scores = tf.reshape(out, [b, ni])
            if scatter:
                ok = tf.logical_and(exclude >= 0, exclude < ni)
                r = tf.tile(tf.range(b, dtype=tf.int64)[:, None],
                            [1, tf.shape(exclude)[1]])
                idx = tf.boolean_mask(tf.stack([r, exclude], -1), ok)
                hit = tf.scatter_nd(idx, tf.ones(tf.shape(idx)[:1]),
                                    tf.shape(scores, out_type=tf.int64)) > 0
            else:
                ids = tf.range(ni, dtype=tf.int64)
                hit = tf.reduce_any(
                    tf.equal(exclude[:, :, None], ids[None, None, :]), axis=1
                )
            scores = tf.where(hit, -np.inf, scores)
            top, ids = tf.math.top_k(scores, tf.cast(tf.clip_by_value(k, 1, ni),
                                                     tf.int32))
            return {"item_ids": tf.cast(ids, tf.int64), "scores": top}

        return recommend

    tf_feed = {k: tf.constant(v) for k, v in feed.items()}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (False, True):
            for scatter in (False, True):
                fn = build(factor, scatter)
                holder = tf.Module()
                holder.model, holder.recommend = model, fn
                folder = f"{tmp}/{int(factor)}{int(scatter)}"
                tf.saved_model.save(holder, folder, signatures={"recommend": fn})
                loaded = tf.saved_model.load(folder).signatures["recommend"]
                proto, _ = tf2onnx.convert.from_function(fn, input_signature=sig,
                                                         opset=17)
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
                sess = ort.InferenceSession(proto.SerializeToString(), so,
                                            providers=["CPUExecutionProvider"])
                t = interleaved({
                    "tf": lambda g=loaded: g(**tf_feed),
                    "ort": lambda s=sess: s.run(None, feed),
                }, reps)
                out[f"factor={factor},scatter={scatter}"] = {
                    "tf_signature_us": round(t["tf"], 1),
                    "ort_us": round(t["ort"], 1),
                    "speedup": t["tf"] / t["ort"],
                    "top10_equal_export": bool(
                        np.array_equal(sess.run(["item_ids"], feed)[0], want)
                        and np.array_equal(loaded(**tf_feed)["item_ids"].numpy(), want)
                    ),
                }
    return out


def ort_sessions(onnx_path: Path, threads: int) -> dict:
    """The onnxruntime configurations tried, by name."""
    import onnxruntime as ort

    def options(intra=None, inter=None, mode=None, level=None, spin=None):
        so = ort.SessionOptions()
        if intra is not None:
            so.intra_op_num_threads = intra
        if inter is not None:
            so.inter_op_num_threads = inter
        if mode is not None:
            so.execution_mode = mode
        if level is not None:
            so.graph_optimization_level = level
        if spin is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        return so

    seq, par = ort.ExecutionMode.ORT_SEQUENTIAL, ort.ExecutionMode.ORT_PARALLEL
    levels = ort.GraphOptimizationLevel
    configs = {
        "default (ExportedModel)": options(),
        f"intra {threads}, sequential": options(threads, 1, seq),
        f"intra {threads}, sequential, no spinning": options(threads, 1, seq, spin="0"),
        f"intra {threads}, parallel": options(threads, threads, par),
        f"intra {threads}, optimisation off": options(
            threads, 1, seq, levels.ORT_DISABLE_ALL
        ),
        f"intra {threads}, optimisation basic": options(
            threads, 1, seq, levels.ORT_ENABLE_BASIC
        ),
    }
    return {
        name: ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        for name, so in configs.items()
    }


def bound(session, feed: dict):
    """I/O binding: inputs copied once into OrtValues, outputs on CPU."""
    import onnxruntime as ort

    binding = session.io_binding()
    values = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in feed.items()}
    for k, v in values.items():
        binding.bind_ortvalue_input(k, v)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cpu")

    def call():
        session.run_with_iobinding(binding)
        return binding.get_outputs()

    return call


def tf2onnx_recommend(path: Path, threads: int):
    """The signature converted by tf2onnx (what recommend.onnx was before
    `export.recommend_onnx`), written beside the export as ``tf2onnx.onnx``:
    ``(session, node count, path)``."""
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    sig = tf.saved_model.load(str(path)).signatures["recommend"]
    specs = [tf.TensorSpec((None,), tf.int64, "user_id"),
             tf.TensorSpec((), tf.int64, "k"),
             tf.TensorSpec((None, None), tf.int64, "exclude")]

    @tf.function(input_signature=specs)
    def serve(user_id, k, exclude):
        return sig(user_id=user_id, k=k, exclude=exclude)

    out = path.parent / f"{path.name}-tf2onnx.onnx"
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=specs, opset=17,
                                             output_path=str(out))
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(proto.SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    return session, len(proto.graph.node), out


def tf_same_algebra(frozen: dict, n: int):
    """Bench only: the TF signature rewritten with the algebra of the ONNX graph
    (`export.recommend_onnx`: one-sided terms in one matmul, MLP biases folded,
    a sink item for the exclusions, top-k before the sigmoid), to show what the
    same graph change does for TF."""
    import tensorflow as tf

    from export.recommend_onnx import one_sided, tower_tables

    user_rows, item_cols = (tf.constant(t) for t in one_sided(frozen, n))
    oov = int(user_rows.shape[0]) - 1
    tower = tower_tables(frozen, n) if "user_tower" in frozen else None

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.int64, "user_id"),
                                  tf.TensorSpec((), tf.int64, "k"),
                                  tf.TensorSpec((None, None), tf.int64, "exclude")])
    def recommend(user_id, k, exclude):
        ok = tf.logical_and(user_id >= 0, user_id < oov)
        u = tf.where(ok, user_id, tf.constant(oov, tf.int64))
        logits = tf.matmul(tf.gather(user_rows, u), item_cols)
        if tower is not None:
            x = tf.nn.relu(tf.gather(tf.constant(tower["user"]), u)
                           + tf.constant(tower["items"]))
            for kernel in tower["kernels"]:
                x = tf.nn.relu(tf.matmul(tf.constant(kernel)[None], x))
            logits += tf.squeeze(tf.matmul(tf.constant(tower["head"])[None, None], x), 1)
        ex = tf.where(tf.logical_and(exclude >= 0, exclude < n), exclude,
                      tf.constant(n, tf.int64))
        rows = tf.broadcast_to(tf.range(tf.shape(ex, out_type=tf.int64)[0])[:, None],
                               tf.shape(ex, out_type=tf.int64))
        index = tf.reshape(tf.stack([rows, ex], -1), [-1, 2])
        masked = tf.tensor_scatter_nd_update(
            logits, index, tf.fill(tf.shape(index)[:1], tf.constant(-np.inf)))
        top, ids = tf.math.top_k(masked, tf.cast(tf.clip_by_value(k, 1, n), tf.int32))
        gone = tf.equal(top, -np.inf)
        return {"item_ids": tf.where(gone, tf.constant(-1, tf.int64),
                                     tf.cast(ids, tf.int64)),
                "scores": tf.where(gone, tf.constant(-np.inf), tf.sigmoid(top))}

    return recommend


def ort_profile(onnx_path: Path, feed: dict, threads: int, reps: int,
                n: int) -> dict:
    """onnxruntime's own per-node times (``enable_profiling``), medians in us
    summed by part of the graph; profiling adds its own cost per node, so the
    parts are shares, and ``run_us_profiled`` is above the plain figure."""
    import json

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = f"{tmp}/ort"
        session = ort.InferenceSession(str(onnx_path), so,
                                       providers=["CPUExecutionProvider"])
        for _ in range(reps):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes, runs = {}, []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            shape = str(e["args"].get("output_type_shape"))
            nodes.setdefault((e["args"].get("op_name"), e["name"], shape),
                             []).append(e["dur"])
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(e["dur"])
    skip = reps // 5
    parts = {"mlp over every item ([b, width, N+1])": 0.0,
             "one-sided matmul, head, logits ([b, N+1])": 0.0,
             "exclusion scatter": 0.0, "top-k": 0.0,
             "small nodes (ids, k, outputs)": 0.0}
    for (op, _, shape), times in nodes.items():
        t = statistics.median(times[skip:])
        big = f", {n + 1}]" in shape or f", {n}]" in shape
        if op == "TopK":
            parts["top-k"] += t
        elif op.startswith("Scatter"):
            parts["exclusion scatter"] += t
        elif big and shape.count(",") >= 2:
            parts["mlp over every item ([b, width, N+1])"] += t
        elif big:
            parts["one-sided matmul, head, logits ([b, N+1])"] += t
        else:
            parts["small nodes (ids, k, outputs)"] += t
    return {"nodes": len(nodes), "run_us_profiled": statistics.median(runs[skip:]),
            "parts_us": {k: round(v, 1) for k, v in parts.items()}}


def mlas_bound(n: int, threads: int, reps: int) -> dict:
    """The compute bound of NeuMF-8's MLP over ``n`` items: its MACs, and
    onnxruntime's (MLAS) throughput on its largest matmul alone, against the
    cost of a call that does nothing (one Identity)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def session(nodes, inits, x_shape):
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(a, k) for k, a in inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        return ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])

    x = rng.normal(size=(1, 33, n + 1)).astype(np.float32)
    w = rng.normal(size=(17, 33)).astype(np.float32)
    mm = session([helper.make_node("MatMul", ["w", "x"], ["y"])], {"w": w}, x.shape)
    ident = session([helper.make_node("Identity", ["x"], ["y"])], {}, [1])
    one = np.zeros(1, np.float32)
    t = interleaved({"matmul": lambda: mm.run(None, {"x": x}),
                     "identity": lambda: ident.run(None, {"x": one})}, reps)
    flops = 2 * 17 * 33 * (n + 1)
    # hidden (32, 16, 8) plus the folded ones: 33 -> 17 -> 9 -> 1, GMF 9 -> 1
    macs = (17 * 33 + 9 * 17 + 9 + 9) * (n + 1)
    return {
        "mlp_macs_per_call": macs,
        "elementwise_per_call": 2 * 33 * (n + 1),
        "matmul_17x33_by_33xN_us": round(t["matmul"], 1),
        "matmul_gflops": flops / (t["matmul"] - t["identity"]) / 1e3,
        "empty_call_us": round(t["identity"], 1),
        "mlp_matmuls_at_that_rate_us": 2 * macs / (flops / (t["matmul"]
                                                           - t["identity"])),
    }


def recommend_bench(path: Path, nu: int, ni: int, threads: int, reps: int,
                    result_feed: dict, frozen: dict | None = None) -> dict:
    import tensorflow as tf

    sig = tf.saved_model.load(str(path)).signatures["recommend"]
    rng = np.random.default_rng(0)
    feed = {
        "user_id": np.array([7], np.int64),
        "k": np.array(10, np.int64),
        "exclude": np.sort(rng.choice(ni, min(EXCLUDED, ni // 2), replace=False))[
            None
        ].astype(np.int64),
    }
    tf_feed = {k: tf.constant(v) for k, v in feed.items()}
    sessions = ort_sessions(path / "recommend.onnx", threads)
    want = sig(**tf_feed)["item_ids"].numpy()
    agree = {}
    cases = {"TF2 recommend signature": lambda: sig(**tf_feed)}
    for name, s in sessions.items():
        agree[name] = bool(np.array_equal(s.run(["item_ids"], feed)[0], want))
        cases[f"ORT {name}"] = lambda s=s: s.run(None, feed)
    base = f"intra {threads}, sequential"
    cases[f"ORT {base}, I/O binding"] = bound(sessions[base], feed)
    old_session, old_nodes, old_path = tf2onnx_recommend(path, threads)
    agree["tf2onnx graph"] = bool(np.array_equal(old_session.run(["item_ids"], feed)[0],
                                                 want))
    cases[f"ORT intra {threads}, tf2onnx graph (before)"] = (
        lambda: old_session.run(None, feed))
    if frozen is not None:
        same = tf_same_algebra(frozen, ni)
        agree["TF same algebra"] = bool(np.array_equal(
            same(**tf_feed)["item_ids"].numpy(), want))
        cases["TF same algebra"] = lambda: same(**tf_feed)
    times = interleaved(cases, reps)
    tf_same = times.pop("TF same algebra", None)
    result_feed.update(feed=feed, want=want)
    tf_us = times.pop("TF2 recommend signature")
    ort_us = {k[len("ORT "):]: v for k, v in times.items()}
    best = min(ort_us, key=ort_us.get)
    return {
        "tf_signature_us": round(tf_us, 1),
        "ort_us": {k: round(v, 1) for k, v in ort_us.items()},
        "ort_default_us": round(ort_us["default (ExportedModel)"], 1),
        "speedup_default": tf_us / ort_us["default (ExportedModel)"],
        "best_config": best,
        "speedup_best": tf_us / ort_us[best],
        "top10_equal_tf": agree,
        "excluded_per_request": EXCLUDED,
        "tf2onnx_graph_nodes": old_nodes,
        "graph_nodes": len(__import__("onnx").load(str(path / "recommend.onnx")).graph.node),
        "tf_same_algebra_us": None if tf_same is None else round(tf_same, 1),
        "speedup_vs_tf_same_algebra": None if tf_same is None
        else tf_same / ort_us["default (ExportedModel)"],
        "profile": ort_profile(path / "recommend.onnx", feed, threads,
                               max(10, reps), ni),
        "profile_tf2onnx_graph": ort_profile(old_path, feed, threads,
                                             max(10, reps), ni),
    }


def serving_default_bench(path: Path, nu: int, ni: int, reps: int) -> dict:
    import tensorflow as tf

    from export.parity import load_saved_model_tf1
    from export.serving import ExportedModel

    sess = ExportedModel(path)._session
    tf2 = tf.saved_model.load(str(path)).signatures["serving_default"]
    tf1 = load_saved_model_tf1(path)
    rng = np.random.default_rng(0)
    out = {}
    try:
        for case, feed in latency_feeds(rng, nu, ni):
            tf_feed = {k: tf.constant(v) for k, v in feed.items()}
            t = interleaved({
                "ort": lambda f=feed: sess.run(None, f),
                "tf2": lambda f=tf_feed: tf2(**f),
                "tf1": lambda f=feed: tf1(f),
            }, reps)
            out[case] = {
                "ort_us": round(t["ort"], 1),
                "tf2_signature_us": round(t["tf2"], 1),
                "tf1_session_us": round(t["tf1"], 1),
                "tf2_over_ort": t["tf2"] / t["ort"],
            }
    finally:
        tf1.close()
    return out


def gru4rec_serving_bench(base_dir: str, reps: int) -> dict:
    """Step-wise GRU4Rec serving and the whole-sequence graph, batch 1."""
    import tensorflow as tf

    from export import export_model
    from export.serving import ExportedModel
    from tfrec.data.sessions import load_yoochoose
    from tfrec.models.gru4rec import gru4rec_step, serving_models
    from tfrec.registry import model_info

    n = load_yoochoose().train.num_items
    models = serving_models(gru4rec_step(n, layers=(100,)))
    rng = np.random.default_rng(0)
    cases = {
        "step_batch_1": ("gru4rec_step", {
            "item_id": np.array([5], np.int64),
            "hidden_state": rng.uniform(-0.5, 0.5, (1, 100)).astype(np.float32),
        }),
        "sequence_10_clicks_batch_1": ("gru4rec", {
            "session_items": rng.integers(1, n + 1, (1, 10)).astype(np.int64),
        }),
    }
    out = {"num_items": int(n)}
    for case, (name, feed) in cases.items():
        info = model_info(name)
        kw = {"num_items": n, "layers": (100,)}
        path = export_model(
            models[name], name, base_dir=base_dir,
            example_inputs=lambda b, r, info=info, kw=kw: info.example_inputs(kw, b, r),
            atol=info.parity.atol, rtol=info.parity.rtol,
            tolerance_reason=info.parity.reason,
        )
        sess = ExportedModel(path)._session
        sig = tf.saved_model.load(str(path)).signatures["serving_default"]
        tf_feed = {k: tf.constant(v) for k, v in feed.items()}
        t = interleaved({
            "ort": lambda s=sess, f=feed: s.run(None, f),
            "tf2": lambda g=sig, f=tf_feed: g(**f),
            "keras": lambda m=models[name], f=tf_feed: m(f),
        }, reps)
        out[case] = {
            "ort_us": round(t["ort"], 1),
            "tf2_signature_us": round(t["tf2"], 1),
            "keras_call_us": round(t["keras"], 1),
            "tf2_over_ort": t["tf2"] / t["ort"],
        }
    return out


def run(quick: bool, threads: int, *, smoke: bool = False) -> dict:
    import onnxruntime as ort

    nu, ni = (40, 30) if smoke else (ML1M_USERS, ML1M_ITEMS)
    reps = 9 if smoke else 150 if quick else 600
    out: dict = {
        "users": nu, "items": ni, "reps": reps, "threads": threads,
        "onnxruntime": ort.__version__, "recommend": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("neumf", "mf"):
            model, path = export(name, nu, ni, tmp, with_model=True)
            request: dict = {}
            from tfrec.evaluation.factors import FactorScores, factor_rule

            frozen = FactorScores(model, factor_rule(model, name), "score").frozen(ni)
            out["recommend"][name] = recommend_bench(path, nu, ni, threads, reps,
                                                     request, frozen)
            print(f"serving recommend {name}: {out['recommend'][name]}", flush=True)
            if name == "mf":
                out["recommend_prototypes_mf"] = mf_prototype_graphs(
                    model, nu, ni, threads, reps, request["want"], request["feed"]
                )
                print(f"serving prototypes mf: {out['recommend_prototypes_mf']}",
                      flush=True)
            if name == "neumf":
                out["serving_default_neumf"] = serving_default_bench(path, nu, ni, reps)
                print(f"serving_default neumf: {out['serving_default_neumf']}",
                      flush=True)
        if not (quick or smoke):
            out["gru4rec"] = gru4rec_serving_bench(tmp, reps)
            print(f"serving gru4rec: {out['gru4rec']}", flush=True)
    out["mlas_bound_neumf"] = mlas_bound(ni, threads, reps)
    print(f"serving bound: {out['mlas_bound_neumf']}", flush=True)
    neumf = out["recommend"]["neumf"]
    out["all_items_ort_speedup"] = neumf["speedup_default"]
    out["all_items_ort_speedup_best"] = neumf["speedup_best"]
    # onnxruntime's default session (ExportedModel) takes one intra-op thread
    # per core; TF runs on ``threads``: the same-threads ratio beside it
    same = neumf["ort_us"][f"intra {threads}, sequential"]
    out["all_items_ort_speedup_same_threads"] = neumf["tf_signature_us"] / same
    out["all_items_ort_speedup_mf"] = out["recommend"]["mf"]["speedup_default"]
    proto = out["recommend_prototypes_mf"]["factor=True,scatter=True"]
    out["all_items_ort_speedup_mf_factor_prototype"] = proto["speedup"]
    return out
