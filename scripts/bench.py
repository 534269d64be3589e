"""Benchmarks: training throughput and serving latency, each against a baseline
measured in the same run (absolute seconds on a shared 2-core machine mean little).

1. Training throughput (examples/s) of NeuMF (factors 8) on the NCF ML-1M data:
   tfrec's pipeline (fresh negatives per epoch through ``tf.data``) and model, vs a
   plain Keras NeuMF (``keras.layers.Embedding``, no OOV guard) fed by ``fit`` from
   the same in-memory arrays.
2. Inference latency of the exported NeuMF: onnxruntime vs the TF SavedModel
   signature (TF2 ``tf.saved_model.load``, and the TF1 session path TF Serving
   uses), at batch 1, batch 100, and all 3,706 items of one user.
3. GRU4Rec (``--only gru4rec``) on the YooChoose sample with the official RSC15
   settings (100 units, batch 32, 2,048 shared negatives, XE + logQ): training
   events/s of tfrec's session-parallel trainer vs a plain Keras next-click
   model (Embedding -> one GRU step without carried state -> full softmax over
   all items, Adagrad, ``fit`` on the same click pairs); and step-wise serving
   latency at batch 1 (one click + state -> scores over all items + new state):
   onnxruntime vs the TF2 SavedModel signature vs calling the Keras model.
4. ONNX variants of the exported NeuMF (``export.optimize``): float ``model.onnx``
   vs ``model.opt.onnx`` (onnxruntime graph optimisations, level all) vs
   ``model.int8.onnx`` (dynamic INT8), each in an onnxruntime session with the
   same fixed thread counts, at batch 1, batch 100 and all items of one user;
   ratios against the float model, with each variant's parity report.
   ``--only variants`` runs this part alone on an untrained NeuMF at the NCF
   ML-1M sizes (6,040 users, 3,706 items; latency does not depend on the weights).

    python scripts/bench.py [--steps 1500] [--batch-size 256] [--threads 2]
    python scripts/bench.py --only gru4rec [--gru4rec-steps 600]
    python scripts/bench.py --only variants
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plain_keras_neumf(num_users, num_items, f=8):
    import keras

    u = keras.Input(shape=(), dtype="int64", name="user_id")
    i = keras.Input(shape=(), dtype="int64", name="item_id")
    gu = keras.layers.Embedding(num_users, f)(u)
    gi = keras.layers.Embedding(num_items, f)(i)
    mu = keras.layers.Embedding(num_users, 4 * f)(u)
    mi = keras.layers.Embedding(num_items, 4 * f)(i)
    x = keras.layers.Concatenate()([mu, mi])
    for width in (4 * f, 2 * f, f):
        x = keras.layers.Dense(width, activation="relu")(x)
    fused = keras.layers.Concatenate()([keras.layers.Multiply()([gu, gi]), x])
    out = keras.layers.Reshape(())(keras.layers.Dense(1, activation="sigmoid")(fused))
    return keras.Model({"user_id": u, "item_id": i}, {"score": out})


WARM_STEPS = 50
SPE = 16  # GRU4Rec: steps per execution, the same for the trainer and baseline


def throughput(model, fit_kwargs, steps, batch_size):
    """Examples/s over the steps after the first WARM_STEPS (tracing excluded)."""
    import keras

    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == WARM_STEPS - 1:
                marks["start"] = time.perf_counter()

        def on_train_end(self, logs=None):
            marks["end"] = time.perf_counter()

    model.compile(
        optimizer=keras.optimizers.Adam(0.001), loss={"score": "binary_crossentropy"}
    )
    model.fit(verbose=0, shuffle=False, callbacks=[Clock()], **fit_kwargs)
    return (steps - WARM_STEPS) * batch_size / (marks["end"] - marks["start"])


def latency(fn, feed, reps):
    fn(feed)  # warm
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(feed)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def plain_keras_next_click(num_items, units=100):
    """Baseline: one GRU step from a zero state and a full softmax (no sampling)."""
    import keras

    item = keras.Input(shape=(1,), dtype="int64", name="item_id")
    x = keras.layers.Embedding(num_items + 1, units)(item)
    x = keras.layers.GRU(units, reset_after=False)(x)
    out = keras.layers.Dense(num_items + 1, activation="softmax")(x)
    return keras.Model(item, out)


def gru4rec_bench(args):
    """GRU4Rec training events/s and step-wise serving latency (batch 1)."""
    import json

    import keras
    import numpy as np
    import tensorflow as tf

    from export import export_model
    from export.serving import ExportedModel
    from tfrec.data.sessions import load_yoochoose, session_parallel_batches
    from tfrec.models.gru4rec import gru4rec_step, serving_models
    from tfrec.registry import model_info
    from tfrec.training.session import AdagradMomentum, GRU4RecTrainer, item_counts

    split = load_yoochoose(args.data_dir and Path(args.data_dir))
    train = split.train
    n, bs, steps = train.num_items, 32, args.gru4rec_steps
    batches = session_parallel_batches(train, bs)
    steps = min(steps, batches.num_steps)
    print(
        f"\nGRU4Rec, YooChoose sample ({train.num_events:,} clicks, {n:,} items); "
        f"threads intra/inter = {args.threads}/{args.threads}; batch {bs}; "
        f"{steps} steps per measurement, the first {WARM_STEPS} (tracing) excluded; "
        f"steps_per_execution {SPE} for both"
    )

    def timed_fit(model, fit_kwargs):
        marks = {}

        class Clock(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if "start" not in marks and batch >= WARM_STEPS - 1:
                    marks["start"], marks["first"] = time.perf_counter(), batch
                    marks["cpu_start"] = time.process_time()

            def on_train_end(self, logs=None):
                marks["end"] = time.perf_counter()
                marks["cpu_end"] = time.process_time()

        model.fit(verbose=0, shuffle=False, callbacks=[Clock()], **fit_kwargs)
        events = (steps - 1 - marks["first"]) * bs
        return (
            events / (marks["end"] - marks["start"]),
            events / (marks["cpu_end"] - marks["cpu_start"]),
        )

    sl = slice(0, steps)
    data = {
        "item_id": batches.inputs[sl],
        "target": batches.targets[sl],
        "reset": batches.reset[sl],
        "valid": batches.valid[sl],
    }
    results = {}
    for _ in range(2):  # two interleaved rounds expose machine noise
        base = plain_keras_next_click(n)
        base.compile(
            optimizer=keras.optimizers.Adagrad(0.2),
            loss="sparse_categorical_crossentropy",
            steps_per_execution=SPE,
        )
        results.setdefault("plain Keras, full softmax, fit", []).append(
            timed_fit(
                base,
                dict(
                    x=batches.inputs[sl].reshape(-1, 1),
                    y=batches.targets[sl].reshape(-1),
                    batch_size=bs,
                    epochs=1,
                ),
            )
        )
        step = gru4rec_step(n, layers=(100,), dropout_hidden=0.4)
        trainer = GRU4RecTrainer(
            step, item_counts(train), batch_size=bs, n_sample=2048, logq=1.0
        )
        trainer.compile(
            optimizer=AdagradMomentum(0.2, momentum=0.2), steps_per_execution=SPE
        )
        ds = tf.data.Dataset.from_tensor_slices(data).prefetch(tf.data.AUTOTUNE)
        results.setdefault("tfrec GRU4RecTrainer (2048 samples)", []).append(
            timed_fit(trainer, dict(x=ds, epochs=1))
        )
    base = results["plain Keras, full softmax, fit"]
    base_rate = statistics.median(r for r, _ in base)
    base_cpu = statistics.median(c for _, c in base)
    print(
        "Training throughput (median of 2 rounds; events per wall-clock second, and "
        "per second of this process's CPU time, which a loaded machine distorts less)"
    )
    print(
        f"{'setup':<42}{'events/s':>12}{'vs baseline':>13}{'events/CPU s':>14}"
        f"{'vs baseline':>13}"
    )
    for name, pairs in results.items():
        rate = statistics.median(r for r, _ in pairs)
        cpu = statistics.median(c for _, c in pairs)
        print(
            f"{name:<42}{rate:>12,.0f}{rate / base_rate:>12.2f}x{cpu:>14,.0f}"
            f"{cpu / base_cpu:>12.2f}x"
        )

    # Latency does not depend on the weight values: export freshly built graphs
    # (the trained ones can miss the exporter's 1e-6 SavedModel-vs-Keras rule by
    # float32 rounding, see reports/gru4rec.md).
    models = serving_models(gru4rec_step(n, layers=(100,)))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"\nGRU4Rec serving latency (median microseconds per call, {args.reps} calls)"
        )
        print(
            f"{'case':<36}{'onnxruntime':>12}{'TF2 signature':>15}{'Keras call':>12}"
            f"{'TF2/ORT':>9}{'parity max|diff|':>18}"
        )
        cases = {
            "step: 1 click + state, batch 1": (
                "gru4rec_step",
                {
                    "item_id": np.array([5], np.int64),
                    "hidden_state": rng.uniform(-0.5, 0.5, (1, 100)).astype(np.float32),
                },
            ),
            "whole sequence, 10 clicks, batch 1": (
                "gru4rec",
                {"session_items": rng.integers(1, n + 1, (1, 10)).astype(np.int64)},
            ),
        }
        for case, (name, feed) in cases.items():
            info = model_info(name)
            kw = {"num_items": n, "layers": (100,)}
            path = export_model(
                models[name],
                name,
                base_dir=tmp,
                example_inputs=lambda b, r, info=info, kw=kw: info.example_inputs(
                    kw, b, r
                ),
                atol=info.parity.atol,
                rtol=info.parity.rtol,
                tolerance_reason=info.parity.reason,
            )
            manifest = json.loads((path / "manifest.json").read_text())
            diff = manifest["parity"]["onnx"]["max_abs_diff"]
            sess = ExportedModel(path)._session
            sig = tf.saved_model.load(str(path)).signatures["serving_default"]
            keras_model = models[name]
            t_ort = latency(lambda f, s=sess: s.run(None, f), feed, args.reps)
            tf_feed = {k: tf.constant(v) for k, v in feed.items()}
            t_tf2 = latency(lambda f, g=sig: g(**f), tf_feed, args.reps)
            t_keras = latency(lambda f, m=keras_model: m(f), tf_feed, args.reps)
            print(
                f"{case:<36}{t_ort:>12,.0f}{t_tf2:>15,.0f}{t_keras:>12,.0f}"
                f"{t_tf2 / t_ort:>8.1f}x{diff:>18.2e}"
            )


ML1M_USERS, ML1M_ITEMS = 6040, 3706  # the NCF ML-1M split's sizes


def onnx_variants_bench(path, nu, ni, args):
    """Latency of the float, optimised and INT8 ONNX files of one NeuMF export,
    each as a ratio against the float model measured in the same invocation."""
    import numpy as np
    import onnxruntime as ort

    from export.optimize import (
        VARIANT_FILES,
        optimize_onnx,
        quantize_onnx,
        session_options,
    )
    from tfrec.registry import model_info

    info = model_info("neumf")
    kw = {"num_users": nu, "num_items": ni}

    def example_inputs(b, r):
        return info.example_inputs(kw, b, r)

    reports = {
        variant: write(path, example_inputs=example_inputs, task="ranking",
                       num_items=ni)
        for variant, write in (
            ("opt", lambda p, **k: optimize_onnx(p, "all", **k)),
            ("int8", quantize_onnx),
        )
    }
    print(
        f"\nONNX variants of NeuMF ({nu:,} users, {ni:,} items); onnxruntime "
        f"{ort.__version__}, intra_op_num_threads={args.threads}, "
        "inter_op_num_threads=1, sequential execution; model.opt.onnx loads with "
        "graph optimisations off (done when written)"
    )
    print(f"{'variant':<8}{'file':<18}{'KiB':>8}{'max|diff| vs float':>20}"
          f"{'top-10 agreement':>18}  passed  details")
    sessions = {"float": path / "model.onnx"}
    for variant, r in reports.items():
        worst = max(r[k]["max_abs_diff"] for k in r if k in ("golden", "fresh_5",
                                                              "fresh_64"))
        top = r["top10"]
        detail = (f"level {r['level']}" if variant == "opt"
                  else f"{r['weight_type']} {r['quantized_ops']}")
        print(
            f"{variant:<8}{r['file']:<18}{r['bytes'] / 1024:>8,.0f}{worst:>20.2e}"
            f"{top['agreement']:>11.3f} ({top['users']}x{top['candidates']})"
            f"  {str(r['passed']):<6}  {detail}"
        )
        if r["passed"]:
            sessions[variant] = path / VARIANT_FILES[variant]
    runs, starts = {}, {}
    for k, f in sessions.items():
        options = session_options(k) or ort.SessionOptions()  # opt: no re-optimising
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        took = []
        for _ in range(5):
            t = time.perf_counter()
            runs[k] = ort.InferenceSession(
                str(f), options, providers=["CPUExecutionProvider"]
            )
            took.append(time.perf_counter() - t)
        starts[k] = statistics.median(took) * 1e6
    rng = np.random.default_rng(0)
    cases = {"batch 1": 1, "batch 100": 100, f"one user x all {ni} items": ni}
    print(f"\nONNX variant latency (median microseconds per call, {args.reps} calls; "
          "the three sessions interleaved per case)")
    header = "".join(f"{k:>10}" for k in runs) + "".join(
        f"{k + '/float':>12}" for k in runs if k != "float")
    print(f"{'case':<28}{header}")
    print(
        f"{'session start (median of 5)':<28}"
        + "".join(f"{starts[k]:>10,.0f}" for k in runs)
        + "".join(f"{starts[k] / starts['float']:>11.2f}x" for k in runs if k != "float")
    )
    for name, b in cases.items():
        feed = {
            "user_id": rng.integers(0, nu, b).astype(np.int64),
            "item_id": (np.arange(b) % ni).astype(np.int64),
        }
        if b == ni:
            feed["user_id"] = np.full(b, 7, np.int64)
        times = {k: [] for k in runs}
        for _ in range(3):  # three interleaved rounds: machine noise hits all alike
            for k, sess in runs.items():
                times[k].append(latency(lambda f, s=sess: s.run(None, f), feed,
                                        max(1, args.reps // 3)))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"{name:<28}" + "".join(f"{med[k]:>10,.0f}" for k in runs)
            + "".join(f"{med[k] / med['float']:>11.2f}x" for k in runs if k != "float")
        )


def variants_only(args):
    """``--only variants``: an untrained NeuMF at ML-1M sizes, exported, then
    `onnx_variants_bench`."""
    import keras

    from export import export_model
    from tfrec.registry import create_model, model_info

    keras.utils.set_random_seed(0)
    nu, ni = ML1M_USERS, ML1M_ITEMS
    info = model_info("neumf")
    kw = {"num_users": nu, "num_items": ni}
    model = create_model("neumf", **kw)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(
            model, "neumf", base_dir=tmp,
            example_inputs=lambda b, r: info.example_inputs(kw, b, r),
        )
        onnx_variants_bench(path, nu, ni, args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--only",
        choices=("all", "ncf", "gru4rec", "variants"),
        default="all",
        help="which benchmarks to run",
    )
    parser.add_argument("--gru4rec-steps", type=int, default=600)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    if args.only == "gru4rec":
        gru4rec_bench(args)
        return
    if args.only == "variants":
        variants_only(args)
        return

    from export import export_model
    from export.parity import load_saved_model_tf1
    from export.serving import ExportedModel
    from tfrec.data import ncf_split
    from tfrec.data.pipelines import NegativeSampler, implicit_dataset
    from tfrec.registry import create_model, model_info

    split = ncf_split(args.data_dir)
    nu, ni, bs = split.num_users, split.num_items, args.batch_size
    n = args.steps * bs
    print(
        f"threads intra/inter = {args.threads}/{args.threads}; batch {bs}; "
        f"{args.steps} steps ({n:,} examples) per measurement; TF {tf.__version__}"
    )

    # --- training throughput -------------------------------------------------
    sampler = NegativeSampler(
        split.train["user_id"], split.train["item_id"], ni, 4, seed=0
    )
    u, i, y = sampler.epoch_arrays(0)
    u, i, y = u[:n], i[:n], y[:n]
    results = {}
    for rnd in range(2):  # two rounds, interleaved, to expose machine noise
        base = plain_keras_neumf(nu, ni)
        results.setdefault("plain Keras NeuMF, fit(numpy arrays)", []).append(
            throughput(
                base,
                dict(
                    x={"user_id": u, "item_id": i},
                    y={"score": y},
                    batch_size=bs,
                    epochs=1,
                ),
                args.steps,
                bs,
            )
        )
        ds, _ = implicit_dataset(
            split.train["user_id"],
            split.train["item_id"],
            ni,
            num_negatives=4,
            batch_size=bs,
            seed=rnd,
        )
        model = create_model("neumf", num_users=nu, num_items=ni)
        results.setdefault("tfrec NeuMF, tf.data fresh negatives", []).append(
            throughput(
                model, dict(x=ds, epochs=1, steps_per_epoch=args.steps), args.steps, bs
            )
        )
    started = time.perf_counter()
    sampler.epoch_arrays(1)
    epoch_draw = time.perf_counter() - started
    base_rate = statistics.median(results["plain Keras NeuMF, fit(numpy arrays)"])
    print("\nTraining throughput (examples/s, median of 2 rounds)")
    print(f"{'setup':<42}{'examples/s':>12}{'vs baseline':>13}")
    for name, rates in results.items():
        rate = statistics.median(rates)
        print(f"{name:<42}{rate:>12,.0f}{rate / base_rate:>12.2f}x")
    print(
        f"(drawing one full epoch of fresh negatives, {len(sampler):,} examples, "
        f"takes {epoch_draw:.2f} s once per epoch, outside the timed steps)"
    )

    # --- serving latency -----------------------------------------------------
    info = model_info("neumf")
    kw = {"num_users": nu, "num_items": ni}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(
            model,
            "neumf",
            base_dir=tmp,
            example_inputs=lambda b, r: info.example_inputs(kw, b, r),
        )
        onnx_model = ExportedModel(path)
        sess = onnx_model._session
        tf2_sig = tf.saved_model.load(str(path)).signatures["serving_default"]
        tf1 = load_saved_model_tf1(path)
        rng = np.random.default_rng(0)
        cases = {
            "batch 1": 1,
            "batch 100": 100,
            f"one user x all {ni} items": ni,
        }
        print(f"\nInference latency (median microseconds per call, {args.reps} calls)")
        print(
            f"{'case':<28}{'onnxruntime':>12}{'TF2 signature':>15}{'TF1 session':>13}"
            f"{'TF2/ORT':>9}"
        )
        for name, b in cases.items():
            feed = {
                "user_id": rng.integers(0, nu, b).astype(np.int64),
                "item_id": (np.arange(b) % ni).astype(np.int64),
            }
            if b == ni:
                feed["user_id"] = np.full(b, 7, np.int64)
            t_ort = latency(lambda f, s=sess: s.run(None, f), feed, args.reps)
            tf_feed = {k: tf.constant(v) for k, v in feed.items()}
            t_tf2 = latency(lambda f: tf2_sig(**f), tf_feed, args.reps)
            t_tf1 = latency(tf1, feed, args.reps)
            print(
                f"{name:<28}{t_ort:>12,.0f}{t_tf2:>15,.0f}{t_tf1:>13,.0f}"
                f"{t_tf2 / t_ort:>8.1f}x"
            )
        tf1.close()
        onnx_variants_bench(path, nu, ni, args)
    if args.only == "all":
        gru4rec_bench(args)


if __name__ == "__main__":
    main()
