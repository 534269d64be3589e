"""How cost grows: NeuMF and MF on power-law synthetic interactions, 1 M to 100 M.

Each (model, size) runs in a fresh subprocess: it generates the interactions
(`tfrec.data.synthetic.powerlaw_interactions`, users and items growing with the
square root of the size, 140k x 30k at 100 M, density 2.4 %), builds the NCF
recipe's training stage (negatives drawn inside ``tf.data``, 4 per positive,
batch 2048, ``steps_per_execution`` 16), and times a fixed number of steps.
``epoch_s`` is derived (examples per epoch / examples per second, flagged
``epoch_s_estimated``); at 1 M (quick mode: 300k) a full epoch is also timed
(wall clock of a ``fit`` call, its start-up included) to check the estimate.

Memory: ``peak_rss_mb`` is the process's high-water mark (``getrusage``), set by
the data and its setup; ``train_rss_growth_mb`` is how far the resident set rose
above its level before ``fit`` while training (sampled every 50 ms): the model,
its optimiser slots and the pipeline's buffers, nothing per epoch. What is held
is ``data_mb``: the positives' items sorted by (user, item) as int32 (4 bytes per
interaction), one int64 offset per user, and the sampler's bitset rows of its
heaviest users (at most as many bytes as the items), the training data itself.

Linearity: ``us_per_interaction`` is ``epoch_s`` over the interactions; the
result's ``linearity`` gives, per (model, optimizer), its top size / bottom size
ratio (1 is linear; the bench goal is <= 1.5), and the table printed at the end
shows both.

Default optimiser: LazyAdam. Keras's dense Adam reads and writes every row of
the embedding tables and both moments each step, so its step grows with the
tables (``--table-cost``); LazyAdam's does not. On ML-1M (NeuMF-8, the
``ncf_fast`` settings) the two reach the same validation HR@10
(reports/lazy_adam_ncf_valid.md).

Each positive's negatives share its batch (``group_negatives``, the NCF
recipe's opt-in): a batch then touches fewer distinct embedding rows, and the
step stays cheaper as the tables outgrow the cache. On ML-1M (NeuMF-8,
``ncf_fast`` with LazyAdam) validation HR@10 is 0.8007 with it and 0.7995
without (reports/select_group_negatives.md, one seed each).

``--decompose N`` splits one step's cost at N interactions: the ``tf.data``
pipeline alone, the training step alone on one batch of it, and both in ``fit``
(``--bitset-budget 0`` gives the sampler's binary-search-only path).

``--optimizer lazy_adam`` trains with :class:`tfrec.training.lazy_adam.LazyAdam`
(moments of the embedding rows in the batch only) instead of Keras's dense Adam,
whose every step reads and writes the whole embedding tables and their moments.

    python scripts/bench_scaling.py [--quick] [--threads 2] [--out scaling.json]
        [--optimizer lazy_adam|adam|both]
    python scripts/bench_scaling.py --table-cost [--out table_cost.json]
    python scripts/bench_scaling.py --decompose 100000000 --model neumf
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import emit, quiet_tensorflow, step_clock  # noqa: E402  (scripts/bench.py: the driver)

SIZES = (1_000_000, 10_000_000, 100_000_000)
QUICK_SIZES = (100_000, 300_000, 1_000_000)
MODELS = {"neumf": {"embedding_dim": 8}, "mf": {"embedding_dim": 16}}
BATCH, LR, SPE = 2048, 6e-3, 16
GROUP_NEGATIVES = True  # each positive's negatives in its batch (docstring)
PLOT = ROOT / "docs" / "scaling.png"


def catalogue(n: int) -> tuple[int, int]:
    """(users, items) for ``n`` interactions: 140k x 30k at 100 M, ~sqrt(n)."""
    f = math.sqrt(n / 1e8)
    return max(100, round(140_000 * f)), max(50, round(30_000 * f))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    """Highest resident set seen while running (every ``every`` seconds)."""

    def __init__(self, every=0.05):
        super().__init__(daemon=True)
        self.every, self.peak, self._done = every, _rss_mb(), threading.Event()

    def run(self):
        while not self._done.wait(self.every):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak


def worker(model: str, n: int, steps: int, threads: int, full_epoch: bool,
           optimizer: str = "lazy_adam") -> dict:
    """One (model, size) in this process; returns its measurements."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from tfrec.data.synthetic import powerlaw_interactions
    from tfrec.recipes.ncf import NCFConfig, NCFRecipe

    num_users, num_items = catalogue(n)
    t = time.perf_counter()
    users, items = powerlaw_interactions(n, num_users, num_items, seed=0)
    gen_s = time.perf_counter() - t
    split = _Split(users, items, num_users, num_items)
    keras.utils.set_random_seed(0)
    extra = {"lazy_adam": True} if optimizer == "lazy_adam" else {}
    config = NCFConfig(
        batch_size=BATCH, learning_rate=LR, num_negatives=4, steps_per_execution=SPE,
        group_negatives=GROUP_NEGATIVES, **extra,
    )
    plan = NCFRecipe().build_stage(model, model, split, config, MODELS[model], {})
    del users, items, split  # the sampler's keys are the data from here on
    sampler = plan.callbacks[0].sampler
    net = plan.trainer
    clock, marks = step_clock(2 * SPE - 1)

    rss_before = _rss_mb()
    sampler_thread = RssSampler()
    sampler_thread.start()
    net.fit(plan.dataset, epochs=1, steps_per_epoch=steps, verbose=0,
            callbacks=[*plan.callbacks, clock])
    examples = (steps - 1 - marks["first"]) * BATCH
    rate = examples / (marks["end"] - marks["start"])
    out = {
        "model": model, "optimizer": optimizer, "group_negatives": GROUP_NEGATIVES,
        "interactions": n,
        "users": num_users, "items": num_items,
        "examples_per_epoch": len(sampler), "examples_per_s": round(rate),
        "epoch_s": round(len(sampler) / rate, 2), "epoch_s_estimated": True,
        "timed_steps": steps - 1 - marks["first"], "batch_size": BATCH,
        "generate_s": round(gen_s, 1),
        "data_mb": round((4 * n + 8 * (num_users + 1) + bitset_bytes(sampler))
                         / 2**20, 1),
        "bitset_users": sampler.bitset_users,
        "rss_before_fit_mb": round(rss_before, 1),
    }
    if full_epoch:  # the check of the estimate: one whole epoch, timed
        t = time.perf_counter()
        net.fit(plan.dataset, epochs=2, initial_epoch=1, verbose=0,
                callbacks=plan.callbacks)
        out["measured_epoch_s"] = round(time.perf_counter() - t, 2)
    out["train_rss_growth_mb"] = round(sampler_thread.stop() - rss_before, 1)
    out["peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    return out


def bitset_bytes(sampler) -> int:
    """Bytes of the sampler's bitset rows (int32 words) and their row index."""
    if sampler._bits is None:
        return 0
    return 4 * int(sampler._bits.shape[0]) + 8 * int(sampler._rows.shape[0])


def linearity(rows: list[dict]) -> list[dict]:
    """Per (model, optimizer): seconds per interaction at the top size over the
    bottom size (1 is linear)."""
    out = []
    for key in sorted({(r["model"], r.get("optimizer", "adam")) for r in rows}):
        line = sorted((r for r in rows if (r["model"], r.get("optimizer", "adam"))
                       == key), key=lambda r: r["interactions"])
        if len(line) < 2:
            continue
        lo, hi = line[0], line[-1]
        ratio = (hi["epoch_s"] / hi["interactions"]) / (lo["epoch_s"] / lo["interactions"])
        out.append({"model": key[0], "optimizer": key[1],
                    "from": lo["interactions"], "to": hi["interactions"],
                    "epoch_s_growth": round(hi["epoch_s"] / lo["epoch_s"], 1),
                    "time_per_interaction_ratio": round(ratio, 3)})
    return out


def table(rows: list[dict]) -> str:
    """The markdown table: per row examples/s, s per epoch, us per interaction,
    peak RSS; per line the top / bottom ratio of seconds per interaction."""
    lines = ["| model | optimizer | interactions | examples/s | s / epoch | "
             "us / interaction | peak RSS MB | RSS rise in fit MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["model"], r.get("optimizer", "adam"),
                                         r["interactions"])):
        lines.append(
            f"| {r['model']} | {r.get('optimizer', 'adam')} | {r['interactions']:,} | "
            f"{r['examples_per_s']:,} | {r['epoch_s']:,} | "
            f"{1e6 * r['epoch_s'] / r['interactions']:.2f} | {r['peak_rss_mb']:,} | "
            f"{r['train_rss_growth_mb']} |"
        )
    lines += ["", "| model | optimizer | epoch time growth | s/interaction, top / "
              "bottom (linear = 1, goal <= 1.5) |", "| --- | --- | --- | --- |"]
    for r in linearity(rows):
        lines.append(f"| {r['model']} | {r['optimizer']} | "
                     f"{r['from']:,} -> {r['to']:,}: {r['epoch_s_growth']}x | "
                     f"{r['time_per_interaction_ratio']} |")
    return "\n".join(lines)


def table_cost(threads: int = 2, steps: int = 160) -> list[dict]:
    """The optimiser's share: ms per training step of one fixed batch (users in
    the 1 M catalogue) with the embedding tables of each size's catalogue, for
    dense Adam, LazyAdam and plain SGD. Only the tables grow; the batch does not."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    import tfrec
    from tfrec.training.lazy_adam import LazyAdam

    small_users, small_items = catalogue(SIZES[0])
    rng = np.random.default_rng(0)
    x = {"user_id": rng.integers(0, small_users, BATCH),
         "item_id": rng.integers(0, small_items, BATCH)}
    y = {"score": rng.integers(0, 2, BATCH).astype("float32")}
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    opts = {"adam": lambda: keras.optimizers.Adam(LR), "lazy_adam": lambda: LazyAdam(LR),
            "sgd": lambda: keras.optimizers.SGD(LR)}
    rows = []
    for model in MODELS:
        for opt, make in opts.items():
            for n in SIZES:
                num_users, num_items = catalogue(n)
                keras.utils.set_random_seed(0)
                net = tfrec.create_model(model, num_users=num_users,
                                         num_items=num_items, **MODELS[model])
                net.compile(optimizer=make(), steps_per_execution=SPE,
                            loss={"score": keras.losses.BinaryCrossentropy()})
                net.fit(ds, steps_per_epoch=2 * SPE, verbose=0)
                t = time.perf_counter()
                net.fit(ds, steps_per_epoch=steps, verbose=0)
                ms = 1000 * (time.perf_counter() - t) / steps
                rows.append({
                    "model": model, "optimizer": opt, "tables_of": n,
                    "params": int(sum(np.prod(w.shape) for w in net.trainable_weights)),
                    "ms_per_step": round(ms, 2),
                })
    return rows


def decompose(model: str, n: int, threads: int = 2, optimizer: str = "lazy_adam",
              batches: int = 960, bitset_budget: float | None = None,
              group_negatives: bool = False) -> dict:
    """Where a step's time goes at one size: ms per batch of (a) the ``tf.data``
    pipeline alone (iterated, no model), (b) the training step alone on one fixed
    batch drawn from that pipeline (this size's tables), (c) both in ``fit``.
    The sampler's chunk (``rounds`` of rejection included) is also timed alone."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from tfrec.data import pipelines
    from tfrec.data.synthetic import powerlaw_interactions
    from tfrec.recipes.ncf import NCFConfig, NCFRecipe

    # The recipe takes neither: they become the sampler's defaults here.
    init, fixed = pipelines.GraphNegatives.__init__, {"group_negatives": group_negatives}
    if bitset_budget is not None:
        fixed["bitset_budget"] = bitset_budget

    def with_settings(self, *args, **kwargs):
        init(self, *args, **{**kwargs, **fixed})

    pipelines.GraphNegatives.__init__ = with_settings
    num_users, num_items = catalogue(n)
    users, items = powerlaw_interactions(n, num_users, num_items, seed=0)
    split = _Split(users, items, num_users, num_items)
    keras.utils.set_random_seed(0)
    extra = {"lazy_adam": True} if optimizer == "lazy_adam" else {}
    config = NCFConfig(batch_size=BATCH, learning_rate=LR, num_negatives=4,
                       steps_per_execution=SPE, **extra)
    t = time.perf_counter()
    plan = NCFRecipe().build_stage(model, model, split, config, MODELS[model], {})
    setup_s = time.perf_counter() - t
    del users, items, split
    sampler = plan.callbacks[0].sampler
    out = {"model": model, "optimizer": optimizer, "interactions": n,
           "group_negatives": group_negatives, "sampler_setup_s": round(setup_s, 2)}

    # (a) the pipeline alone: past its first chunks (prefetched), steady state
    it = iter(plan.dataset)
    per_chunk = sampler.chunk_positives * (1 + sampler.num_negatives) // BATCH
    for _ in range(per_chunk):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    out["pipeline_ms_per_batch"] = round(1000 * (time.perf_counter() - t) / batches, 3)
    del it
    chunk = tf.function(sampler.chunk)
    chunk(tf.constant(0, tf.int64), tf.constant(1, tf.int64))
    reps = 4
    t = time.perf_counter()
    for c in range(reps):
        chunk(tf.constant(0, tf.int64), tf.constant(2 + c, tf.int64))
    out["chunk_ms_per_batch"] = round(
        1000 * (time.perf_counter() - t) / reps / per_chunk, 3
    )
    # (b) the step alone, on one batch of this pipeline
    x, y = next(iter(plan.dataset))
    fixed = tf.data.Dataset.from_tensors((x, y)).repeat()
    net = plan.trainer
    steps = batches // SPE * SPE
    net.fit(fixed, steps_per_epoch=2 * SPE, verbose=0)
    t = time.perf_counter()
    net.fit(fixed, steps_per_epoch=steps, verbose=0)
    out["step_ms"] = round(1000 * (time.perf_counter() - t) / steps, 3)
    # (c) both, in fit, timed from the end of its second execution
    clock, marks = step_clock(2 * SPE - 1)

    net.fit(plan.dataset, steps_per_epoch=steps + 2 * SPE, verbose=0,
            callbacks=[*plan.callbacks, clock])
    out["fit_ms_per_batch"] = round(
        1000 * (marks["end"] - marks["start"]) / (steps + 2 * SPE - 1 - marks["first"]),
        3,
    )
    out["bitset_users"] = sampler.bitset_users
    return out


class _Split:
    """The fields of a `Split` the NCF recipe's training stage reads."""

    valid = None

    def __init__(self, users, items, num_users, num_items):
        self.train = {"user_id": users, "item_id": items}
        self.num_users, self.num_items = num_users, num_items


def plot(rows: list[dict], path: Path = PLOT) -> None:
    """Three panels (examples/s, epoch seconds, peak RSS vs interactions, log-x),
    written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfrec.io import atomic_write_bytes

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        ("examples_per_s", "examples / s", False),
        ("epoch_s", "seconds per epoch (estimated)", True),
        ("peak_rss_mb", "peak resident memory (MB)", False),
    )
    lines = sorted({(r["model"], r.get("optimizer", "adam")) for r in rows})
    for ax, (key, label, logy) in zip(axes, panels, strict=True):
        for model, opt in lines:
            pts = sorted(
                (r["interactions"], r[key]) for r in rows
                if r["model"] == model and r.get("optimizer", "adam") == opt
            )
            if pts:
                lazy = opt == "lazy_adam"  # the default: solid lines
                (line,) = ax.plot(*zip(*pts, strict=True), marker="o" if lazy else "s",
                                  ls="-" if lazy else ":", label=f"{model}, {opt}")
                if key == "epoch_s" and len(pts) > 1:  # linear from the bottom size
                    (n0, t0), top = pts[0], pts[-1][0]
                    ax.plot([n0, top], [t0, t0 * top / n0], ls="--", lw=0.8,
                            c=line.get_color(), alpha=0.6)
        if key == "peak_rss_mb":
            pts = sorted({(r["interactions"], r["data_mb"]) for r in rows})
            ax.plot(*zip(*pts, strict=True), ls="--", c="grey",
                    label="data (items, offsets, bitset)")
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"NeuMF and MF, in-graph negatives (4 per positive), batch {BATCH}; "
        "dashed in the middle panel: linear growth from the 1 M point", fontsize=10
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def run(quick: bool = False, threads: int = 2, *, log=print,
        plot_path: Path | None = None, optimizer: str = "lazy_adam") -> dict:
    """Every (model, size) in its own subprocess. The plot goes to ``plot_path``,
    by default docs/scaling.png for a full run and nowhere for a quick one (so
    ``make bench-quick`` never replaces the README's plot)."""
    if plot_path is None and not quick:
        plot_path = PLOT
    sizes = QUICK_SIZES if quick else SIZES
    steps = 10 * SPE if quick else 40 * SPE
    rows = []
    optimizers = ("adam", "lazy_adam") if optimizer == "both" else (optimizer,)
    for model, opt in [(m, o) for o in optimizers for m in MODELS]:
        for n in sizes:
            cmd = [
                sys.executable, str(Path(__file__).resolve()), "--worker", model,
                "--interactions", str(n), "--steps", str(steps),
                "--threads", str(threads), "--optimizer", opt,
            ]
            if n == (300_000 if quick else 1_000_000):
                cmd.append("--full-epoch")
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"scaling worker {model} {n:,} failed:\n{proc.stderr[-3000:]}"
                )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            log(f"  {row}")
            rows.append(row)
    result = {
        "scaling": rows,
        "epoch_s_estimated": True,
        "note": (
            "epoch_s = examples per epoch / examples_per_s over "
            f"{steps} steps; measured_epoch_s (one whole epoch) checks it; "
            "peak_rss_mb is the high-water mark (data generation and setup included); "
            "train_rss_growth_mb is the rise above the pre-fit level while training"
        ),
    }
    result["linearity"] = linearity(rows)
    if result["linearity"]:
        result["time_per_interaction_ratio_worst"] = max(
            r["time_per_interaction_ratio"] for r in result["linearity"]
        )
    checks = [r for r in rows if "measured_epoch_s" in r]
    result["estimate_check"] = [
        {"model": r["model"], "optimizer": r["optimizer"], "estimated_s": r["epoch_s"],
         "measured_s": r["measured_epoch_s"],
         "ratio": round(r["measured_epoch_s"] / r["epoch_s"], 3)}
        for r in checks
    ]
    if plot_path is not None:
        plot(rows, plot_path)
        result["plot"] = str(plot_path)
    log(table(rows))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--optimizer", choices=("adam", "lazy_adam", "both"),
                        default="lazy_adam", help="LazyAdam (row updates; the "
                        "default), dense Keras Adam, or both (every size with each)")
    parser.add_argument("--bitset-budget", type=float, default=None,
                        help="with --decompose: the sampler's bitset budget")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--plot", type=Path, default=None,
                        help="where to write the plot (default: docs/scaling.png "
                        "for a full run, none for --quick)")
    parser.add_argument("--no-plot", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table-cost", action="store_true",
                        help="only time one fixed batch against each size's tables")
    parser.add_argument("--decompose", type=int, default=None, metavar="N",
                        help="only split one step's cost at N interactions: the "
                        "pipeline alone, the step alone, both in fit")
    parser.add_argument("--model", choices=tuple(MODELS), default="neumf")
    parser.add_argument("--group-negatives", action="store_true",
                        help="with --decompose: each positive's negatives in its batch")
    parser.add_argument("--worker", choices=tuple(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--interactions", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--full-epoch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table_cost:
        rows = table_cost(args.threads)
        for r in rows:
            print(json.dumps(r))
        if args.out:
            from tfrec.io import atomic_write_text

            atomic_write_text(Path(args.out), json.dumps({"table_cost": rows}, indent=2)
                              + "\n")
        return
    if args.decompose:
        opt = "lazy_adam" if args.optimizer == "both" else args.optimizer
        print(json.dumps(decompose(args.model, args.decompose, args.threads, opt,
                                   bitset_budget=args.bitset_budget,
                                   group_negatives=args.group_negatives)))
        return
    if args.worker:
        quiet_tensorflow()  # no C++ start-up lines in the size workers' output
        row = worker(args.worker, args.interactions, args.steps, args.threads,
                     args.full_epoch, args.optimizer)
        print(json.dumps(row))
        return
    result = run(args.quick, args.threads, plot_path=args.plot,
                 optimizer=args.optimizer)
    if args.no_plot:
        result.pop("plot", None)
    emit(result, args.out)


if __name__ == "__main__":
    main()
