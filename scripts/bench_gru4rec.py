"""Bench section ``gru4rec``: training events/s of the session-parallel trainer.

The YooChoose sample (every training session, the ``refit`` stage's data) with
the official RSC15 cross-entropy settings (``rsc15_xe_shared_100_best``: 100
units, batch 32, 2,048 shared popularity-sampled negatives, XE + logQ, hidden
dropout 0.4, Adagrad with momentum 0.2), fed the way the recipe feeds it
(`tfrec.data.sessions.session_parallel_dataset`, ``steps_per_execution`` 16).
Three trainers, interleaved round by round so machine noise hits all alike:

* ``baseline``: a plain Keras next-click model (Embedding -> one GRU step from a
  zero state -> full softmax over all items, Adagrad, ``fit`` on the same click
  pairs, the same ``steps_per_execution``);
* ``reference``: `GRU4RecTrainer` with ``fast=False`` (Keras layers, a tape over
  the variables, the optimiser's unique / segment-sum row update): the trainer
  before its fast step, kept as the reference the tests compare against;
* ``tfrec``: `GRU4RecTrainer` (its default fast step).

Events are (click, next click) pairs; the first ``WARM_STEPS`` steps (tracing)
are excluded; events per wall-clock second and per second of this process's CPU
time (which a loaded machine distorts less). ``events_per_s_ratio`` is tfrec
over the baseline (the ``gru4rec.events_per_s_ratio`` key), ``reference_ratio``
tfrec over the reference trainer. Thread counts are fixed (intra = inter =
``threads``) and reported.

    python scripts/bench_gru4rec.py [--quick] [--threads 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WARM_STEPS = 50
SPE = 16  # steps per execution, the recipe's default, for every trainer
BATCH = 32
UNITS = 100


def plain_keras_next_click(num_items: int, units: int = UNITS):
    """Baseline: one GRU step from a zero state and a full softmax (no sampling)."""
    import keras

    item = keras.Input(shape=(1,), dtype="int64", name="item_id")
    x = keras.layers.Embedding(num_items + 1, units)(item)
    x = keras.layers.GRU(units, reset_after=False)(x)
    out = keras.layers.Dense(num_items + 1, activation="softmax")(x)
    return keras.Model(item, out)


def timed_fit(model, fit_kwargs: dict, steps: int, warm: int) -> dict:
    """Events per wall and CPU second over the steps after the first ``warm``."""
    import keras

    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if "start" not in marks and batch >= warm - 1:
                marks["first"] = batch
                marks["start"], marks["cpu"] = time.perf_counter(), time.process_time()

        def on_train_end(self, logs=None):
            marks["end"], marks["cpu_end"] = time.perf_counter(), time.process_time()

    model.fit(verbose=0, shuffle=False, callbacks=[Clock()], **fit_kwargs)
    events = (steps - 1 - marks["first"]) * BATCH
    return {
        "events_per_s": events / (marks["end"] - marks["start"]),
        "events_per_cpu_s": events / (marks["cpu_end"] - marks["cpu"]),
    }


def _trainer(sessions, *, fast: bool, seed: int = 0):
    import keras

    from tfrec.models.gru4rec import gru4rec_step
    from tfrec.training.session import AdagradMomentum, GRU4RecTrainer, item_counts

    keras.utils.set_random_seed(seed)
    step = gru4rec_step(sessions.num_items, layers=(UNITS,), dropout_hidden=0.4)
    trainer = GRU4RecTrainer(
        step,
        item_counts(sessions),
        batch_size=BATCH,
        n_sample=2048,
        sample_alpha=0.5,
        logq=1.0,
        bpreg=0.0,
        seed=seed,
        fast=fast,
    )
    trainer.compile(
        optimizer=AdagradMomentum(0.2, momentum=0.2), steps_per_execution=SPE
    )
    return trainer


def run(quick: bool = False, threads: int = 1, smoke: bool = False) -> dict:
    """Measures the three trainers; see the module docstring.

    Args:
        quick: Fewer steps and one round (``make bench-quick``).
        threads: TensorFlow intra- and inter-op threads.
        smoke: Tiny synthetic sessions, a few steps (the driver's own test).

    Returns:
        ``{"events_per_s_ratio", "events_per_s", "events_per_cpu_s_ratio",
        "reference_ratio", "threads", ...}`` (the driver files it under
        ``gru4rec``).
    """
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from tfrec.data.sessions import session_parallel_batches

    if smoke:
        from tfrec.recipes.gru4rec import synthetic_sessions

        sessions, name = synthetic_sessions(0).full, "synthetic"
    else:
        from tfrec.data.sessions import load_yoochoose

        sessions = load_yoochoose().train  # the catalogue copy (TFREC_DATA_DIR)
        name = "yoochoose-rsc15-100k-sample (all training sessions)"
    batches = session_parallel_batches(sessions, BATCH)
    steps = 40 if smoke else (400 if quick else 1200)
    steps = min(steps, batches.num_steps)
    warm = min(WARM_STEPS, steps // 4) if smoke else WARM_STEPS
    rounds = 1 if (quick or smoke) else 2
    sl = slice(0, steps)
    arrays = {
        "item_id": batches.inputs[sl],
        "target": batches.targets[sl],
        "reset": batches.reset[sl],
        "valid": batches.valid[sl],
    }
    pairs = dict(
        x=batches.inputs[sl].reshape(-1, 1),
        y=batches.targets[sl].reshape(-1),
        batch_size=BATCH,
        epochs=1,
    )
    runs: dict[str, list[dict]] = {"baseline": [], "reference": [], "tfrec": []}
    for _ in range(rounds):
        base = plain_keras_next_click(sessions.num_items)
        base.compile(
            optimizer=keras.optimizers.Adagrad(0.2),
            loss="sparse_categorical_crossentropy",
            steps_per_execution=SPE,
        )
        runs["baseline"].append(timed_fit(base, pairs, steps, warm))
        for label, fast in (("reference", False), ("tfrec", True)):
            ds = tf.data.Dataset.from_tensor_slices(arrays).prefetch(tf.data.AUTOTUNE)
            runs[label].append(
                timed_fit(_trainer(sessions, fast=fast), dict(x=ds, epochs=1), steps, warm)
            )
    med = {
        label: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        for label, rs in runs.items()
    }
    out = {
        "events_per_s_ratio": med["tfrec"]["events_per_s"]
        / med["baseline"]["events_per_s"],
        "events_per_s": med["tfrec"]["events_per_s"],
        "events_per_cpu_s": med["tfrec"]["events_per_cpu_s"],
        "events_per_cpu_s_ratio": med["tfrec"]["events_per_cpu_s"]
        / med["baseline"]["events_per_cpu_s"],
        "reference_ratio": med["tfrec"]["events_per_s"]
        / med["reference"]["events_per_s"],
        "reference_cpu_ratio": med["tfrec"]["events_per_cpu_s"]
        / med["reference"]["events_per_cpu_s"],
        "threads": {"intra_op": threads, "inter_op": threads},
        "data": name,
        "steps": steps,
        "warm_steps": warm,
        "rounds": rounds,
        "settings": {
            "units": UNITS,
            "batch_size": BATCH,
            "n_sample": 2048,
            "loss": "cross-entropy",
            "logq": 1.0,
            "steps_per_execution": SPE,
        },
        "trainers": {
            label: {k: round(v, 1) for k, v in m.items()} for label, m in med.items()
        },
    }
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, 1 round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1; received {args.threads}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = run(args.quick, args.threads)
    print(
        f"GRU4Rec training, {result['data']}, {result['steps']} steps "
        f"(first {result['warm_steps']} excluded), median of {result['rounds']} "
        f"round(s), threads intra/inter {args.threads}/{args.threads}"
    )
    print(f"{'trainer':<12}{'events/s':>12}{'events/CPU s':>15}")
    for label, m in result["trainers"].items():
        print(f"{label:<12}{m['events_per_s']:>12,.0f}{m['events_per_cpu_s']:>15,.0f}")
    print(
        f"tfrec / baseline: {result['events_per_s_ratio']:.2f}x wall, "
        f"{result['events_per_cpu_s_ratio']:.2f}x CPU; tfrec / reference: "
        f"{result['reference_ratio']:.2f}x wall, {result['reference_cpu_ratio']:.2f}x CPU"
    )
    if args.out:
        from tfrec.io import atomic_write_json

        atomic_write_json(args.out, {"gru4rec": result})
        print(f"wrote {args.out}")
    else:
        print(json.dumps({"gru4rec": result}, indent=1))


if __name__ == "__main__":
    main()
