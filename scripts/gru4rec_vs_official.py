"""GRU4Rec training speed and accuracy: tfrec against the official PyTorch code.

Runs, back to back and alternating, ``--pairs`` pairs of 10-epoch trainings on
the same files with the same settings (the official ``rsc15_xe_shared_100_best``
paramfile: 100 units, batch 32, 2,048 shared negatives, cross-entropy + logQ,
hidden dropout 0.4, Adagrad-momentum 0.2 / 0.2):

* ``official``: the unmodified official code
  (``hidasib/GRU4Rec_PyTorch_Official``, its ``run.py`` with ``-pf
  paramfiles/rsc15_xe_shared_100_best.py -d cpu -m 20 -e conservative -t
  TEST``) in its own Python (``--torch-python``, a venv outside the project);
* ``tfrec``: the recipe's ``refit`` stage of the preset
  ``rsc15_xe_shared_100_best`` (`GRU4RecTrainer`, the fast step, trained on
  every training session, as the official code), evaluated on the test file
  with the official tie rule (conservative) at 20.

Each run is a subprocess pinned to one thread: ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` = 1, ``taskset -c 0`` where
available, ``torch.set_num_threads(1)`` / ``set_num_interop_threads(1)`` for
the official code (set by a small wrapper before its ``run.py`` runs; the
official files are not touched), TensorFlow intra / inter-op threads 1.

Training time: the official code's own logged epoch times (``EpochN --> ...
(dt s)``) summed over the epochs; its CPU seconds over exactly those
intervals come from the wrapper, which records ``time.process_time()`` each
time the official module reads its clock (``time.time()``, the calls that
start and end each epoch). tfrec: wall and CPU seconds of each ``fit`` epoch
(a callback), summed. Events are the same number on both sides: training
clicks that have a next click in their session (lines of the training file
minus its sessions), times the epochs. (The official log's own ``e/s`` counts
32 per mini-batch, also at the end of an epoch where fewer sessions remain;
it is kept in the JSON as ``logged_events_per_s``.) Recall@20 / MRR@20 are
each side's on the test file; the table compares their means over the pairs.

Setup of the official side (once; outside the project, the official code is not
a dependency). The official code needs NumPy < 2: under NumPy 2's promotion
rules its compatibility-mode initialiser builds float64 weights (float32 array
times a NumPy float64 scalar) and ``Tensor.set_`` refuses them; pandas < 3::

    python3.11 -m venv /work/exp/torchvenv2
    /work/exp/torchvenv2/bin/pip install \\
        --extra-index-url https://download.pytorch.org/whl/cpu \\
        "torch==2.13.0+cpu" "numpy==1.26.4" "pandas==2.3.3" "joblib==1.6.0"
    git clone https://github.com/hidasib/GRU4Rec_PyTorch_Official \\
        /work/exp/gru/official && git -C /work/exp/gru/official checkout d1fc311

Run (from the project root, with the project's Python)::

    TFREC_DATA_DIR=/work/shared/data python scripts/gru4rec_vs_official.py \\
        --official-dir /work/exp/gru/official \\
        --torch-python /work/exp/torchvenv2/bin/python \\
        --pairs 3 --out reports/gru4rec_vs_official.json

``--lock FILE`` holds an ``flock`` on FILE for each pair (both runs of a pair
back to back, released between pairs) on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARAMFILE = "paramfiles/rsc15_xe_shared_100_best.py"
PRESET = "rsc15_xe_shared_100_best"
DATASET = "yoochoose-rsc15-100k-sample"
TRAIN = "yoochoose-clicks-100k_train_full.txt"
TEST = "yoochoose-clicks-100k_test.txt"
CUTOFF = 20
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
CPU_MARK = "OFFICIAL_CLOCK_READS "
TFREC_MARK = "TFREC_RESULT "

_EPOCH = re.compile(
    r"^Epoch(\d+) --> loss: ([0-9.naninf]+)\s+\(([0-9.]+)s\)\s+"
    r"\[([0-9.]+) mb/s \| ([0-9]+) e/s\]",
    re.M,
)
_METRICS = re.compile(r"^Recall@(\d+): ([0-9.]+) MRR@\d+: ([0-9.]+)", re.M)


# ----------------------------------------------------------------- parsing
def parse_official(stdout: str, epochs: int) -> dict:
    """Epoch times, CPU seconds and Recall / MRR from an official run's output.

    Args:
        stdout: The run's standard output (the wrapper's clock line included).
        epochs: Epochs the run was asked for.

    Returns:
        ``{"epoch_s", "train_s", "cpu_s", "logged_events_per_s", "losses",
        "recall@20", "mrr@20"}``.
    """
    rows = _EPOCH.findall(stdout)
    if len(rows) != epochs:
        raise ValueError(
            f"expected {epochs} 'EpochN --> loss' lines in the official output, "
            f"found {len(rows)}; the end of the output:\n{stdout[-2000:]}"
        )
    epoch_s = [float(r[2]) for r in rows]
    metrics = {int(k): (float(r), float(m)) for k, r, m in _METRICS.findall(stdout)}
    if CUTOFF not in metrics:
        raise ValueError(f"no 'Recall@{CUTOFF}: ... MRR@{CUTOFF}: ...' line found")
    cpu = None
    for line in stdout.splitlines():
        if line.startswith(CPU_MARK):
            reads = json.loads(line[len(CPU_MARK) :])
            # The last 2 * epochs clock reads start and end the epochs (the
            # earlier ones time a sort of the data).
            pairs = reads[-2 * epochs :]
            if len(pairs) != 2 * epochs:
                raise ValueError(f"expected >= {2 * epochs} clock reads, got {len(reads)}")
            cpu = sum(pairs[2 * e + 1][1] - pairs[2 * e][1] for e in range(epochs))
    if cpu is None:
        raise ValueError(f"no '{CPU_MARK.strip()}' line in the official output")
    return {
        "epoch_s": epoch_s,
        "train_s": sum(epoch_s),
        "cpu_s": cpu,
        "logged_events_per_s": [int(r[4]) for r in rows],
        "losses": [float(r[1]) for r in rows],
        f"recall@{CUTOFF}": metrics[CUTOFF][0],
        f"mrr@{CUTOFF}": metrics[CUTOFF][1],
    }


def parse_tfrec(stdout: str) -> dict:
    """The tfrec child's result line (JSON after ``TFREC_RESULT``)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(TFREC_MARK):
            return json.loads(line[len(TFREC_MARK) :])
    raise ValueError(f"no '{TFREC_MARK.strip()}' line; the end:\n{stdout[-2000:]}")


def training_events(path: str | os.PathLike) -> int:
    """Clicks with a next click in their session: lines minus sessions."""
    sessions, lines = set(), 0
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        col = header.index("SessionId")
        for line in f:
            sessions.add(line.split("\t", col + 1)[col])
            lines += 1
    return lines - len(sessions)


def summarise(runs: list[dict], events_per_epoch: int, epochs: int) -> dict:
    """Per-side events/s (wall, CPU) and the ratios and relative differences.

    Args:
        runs: ``{"side", "train_s", "cpu_s", "recall@20", "mrr@20"}`` per run.
        events_per_epoch: Training events of one epoch.
        epochs: Epochs per run.

    Returns:
        ``{"official": {...}, "tfrec": {...}, "ratio_wall", "ratio_cpu",
        "recall_rel_diff", "mrr_rel_diff"}``, medians of speed and means of
        accuracy over the runs of each side.
    """
    events = events_per_epoch * epochs
    out: dict = {}
    for side in ("official", "tfrec"):
        rs = [r for r in runs if r["side"] == side]
        if not rs:
            raise ValueError(f"no {side} run to summarise")
        out[side] = {
            "runs": len(rs),
            "events_per_s": statistics.median(events / r["train_s"] for r in rs),
            "events_per_cpu_s": statistics.median(events / r["cpu_s"] for r in rs),
            "train_s": [round(r["train_s"], 2) for r in rs],
            "cpu_s": [round(r["cpu_s"], 2) for r in rs],
        }
        for m in (f"recall@{CUTOFF}", f"mrr@{CUTOFF}"):
            vals = [r[m] for r in rs]
            out[side][m] = statistics.fmean(vals)
            out[side][m + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            out[side][m + "_runs"] = vals
    o, t = out["official"], out["tfrec"]
    out["ratio_wall"] = t["events_per_s"] / o["events_per_s"]
    out["ratio_cpu"] = t["events_per_cpu_s"] / o["events_per_cpu_s"]
    # Same-pair ratios (each tfrec run over the official run just before it).
    pairs = list(zip(
        [r for r in runs if r["side"] == "official"],
        [r for r in runs if r["side"] == "tfrec"],
        strict=False,
    ))
    out["pair_ratios_wall"] = [round(a["train_s"] / b["train_s"], 3) for a, b in pairs]
    out["pair_ratios_cpu"] = [round(a["cpu_s"] / b["cpu_s"], 3) for a, b in pairs]
    out["recall_rel_diff"] = t[f"recall@{CUTOFF}"] / o[f"recall@{CUTOFF}"] - 1.0
    out["mrr_rel_diff"] = t[f"mrr@{CUTOFF}"] / o[f"mrr@{CUTOFF}"] - 1.0
    out["events_per_epoch"] = events_per_epoch
    out["epochs"] = epochs
    return out


def table(summary: dict) -> str:
    """The printed table."""
    lines = [
        f"{'side':<10}{'events/s':>10}{'events/CPU s':>14}"
        f"{'Recall@20':>18}{'MRR@20':>18}",
    ]
    for side in ("official", "tfrec"):
        s = summary[side]
        lines.append(
            f"{side:<10}{s['events_per_s']:>10,.0f}{s['events_per_cpu_s']:>14,.0f}"
            f"{s['recall@20']:>11.4f} ± {s['recall@20_sd']:.4f}"
            f"{s['mrr@20']:>11.4f} ± {s['mrr@20_sd']:.4f}"
        )
    lines.append(
        f"tfrec / official: {summary['ratio_wall']:.2f}x wall, "
        f"{summary['ratio_cpu']:.2f}x CPU (per pair wall {summary['pair_ratios_wall']}, "
        f"CPU {summary['pair_ratios_cpu']}); Recall@20 "
        f"{100 * summary['recall_rel_diff']:+.2f}%, MRR@20 "
        f"{100 * summary['mrr_rel_diff']:+.2f}% (relative)"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------- children
def child_official(official_dir: str, run_args: list[str]) -> None:
    """Runs the official ``run.py`` in this process (the torch venv's Python)."""
    import runpy
    import time as real_time

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, official_dir)
    import gru4rec_pytorch  # the official module; run.py imports this same one

    reads: list[tuple[float, float]] = []

    class Clock:
        """``time`` for the official module: records CPU time at each read."""

        def __getattr__(self, name):
            return getattr(real_time, name)

        def time(self):
            reads.append((real_time.time(), real_time.process_time()))
            return reads[-1][0]

    gru4rec_pytorch.time = Clock()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    sys.argv = ["run.py", *run_args]
    os.chdir(official_dir)
    runpy.run_path(os.path.join(official_dir, "run.py"), run_name="__main__")
    print(CPU_MARK + json.dumps(reads), flush=True)


def child_tfrec(data_dir: str, epochs: int, seed: int) -> None:
    """Trains the preset's ``refit`` stage and evaluates it (this project)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    sys.path.insert(0, str(ROOT))
    from tfrec.data.sessions import session_parallel_batches
    from tfrec.evaluation.session import evaluate_next_click
    from tfrec.recipes.base import DataSource, recipe_for
    from tfrec.recipes.gru4rec import STEP

    recipe = recipe_for("gru4rec")
    config, kwargs = recipe.make_config(
        "gru4rec", preset=PRESET, seed=seed, epochs=epochs
    )
    data = recipe.load_data(DataSource(dataset=DATASET, data_dir=data_dir), config)
    plan = recipe.build_stage("refit", "gru4rec", data, config, kwargs, {})
    times: list[tuple[float, float]] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            times.append(
                (time.perf_counter() - self.t[0], time.process_time() - self.t[1])
            )

    history = plan.trainer.fit(
        plan.dataset,
        epochs=plan.epochs,
        verbose=0,
        shuffle=False,
        callbacks=[*plan.callbacks, Clock()],
    )
    res = evaluate_next_click(plan.models[STEP], data.test, cutoffs=(CUTOFF,))
    result = {
        "epoch_s": [round(w, 3) for w, _ in times],
        "train_s": sum(w for w, _ in times),
        "cpu_s": sum(c for _, c in times),
        "losses": [float(x) for x in history.history["loss"]],
        "events_per_epoch": int(
            session_parallel_batches(data.full, config.batch_size).num_events
        ),
        f"recall@{CUTOFF}": float(res[f"recall@{CUTOFF}"]),
        f"mrr@{CUTOFF}": float(res[f"mrr@{CUTOFF}"]),
        "queries": int(res["queries"]),
        "tensorflow": tf.__version__,
        "seed": seed,
    }
    print(TFREC_MARK + json.dumps(result), flush=True)


# ----------------------------------------------------------------- driver
def _pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", "0", *cmd] if shutil.which("taskset") else cmd


def _run(cmd: list[str], timeout: float) -> str:
    env = dict(os.environ, **ONE_THREAD)
    proc = subprocess.run(
        _pinned(cmd), capture_output=True, text=True, env=env, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def _official_args(data_dir: Path, epochs: int) -> list[str]:
    args = [str(data_dir / TRAIN), "-pf", PARAMFILE, "-d", "cpu", "-m", str(CUTOFF),
            "-e", "conservative", "-t", str(data_dir / TEST)]
    if epochs != 10:  # the paramfile's n_epochs is 10; other counts go by string
        raise ValueError("the official paramfile trains 10 epochs; use --epochs 10")
    return args


class _Lock:
    def __init__(self, path: str | None):
        self.path, self.f = path, None

    def __enter__(self):
        if self.path:
            import fcntl

            self.f = open(self.path, "a")  # noqa: SIM115
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.f:
            self.f.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["--child", "official"]:  # OFFICIAL_DIR, then run.py's arguments
        child_official(argv[2], argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official-dir", help="checkout of the official code")
    parser.add_argument("--torch-python", help="Python of the venv with torch")
    parser.add_argument("--data-dir", default=None,
                        help=f"folder of {TRAIN} / {TEST} (default: "
                        f"$TFREC_DATA_DIR/{DATASET})")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="tfrec seeds")
    parser.add_argument("--lock", default=None, help="flock this file per pair")
    parser.add_argument("--out", default=None, help="write the result as JSON")
    parser.add_argument("--timeout", type=float, default=1200, help="per run, s")
    parser.add_argument("--child", choices=("tfrec",), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir or Path(os.environ.get(
        "TFREC_DATA_DIR", ROOT / "data")) / DATASET)
    if args.child == "tfrec":
        child_tfrec(str(data_dir), args.epochs, args.seed)
        return 0
    if not args.official_dir or not args.torch_python:
        parser.error("--official-dir and --torch-python are required")
    if args.pairs < 1:
        parser.error(f"--pairs must be >= 1; received {args.pairs}")
    official_dir = str(Path(args.official_dir).resolve())
    me = str(Path(__file__).resolve())
    events = training_events(data_dir / TRAIN)
    runs: list[dict] = []
    for pair in range(args.pairs):
        seed = args.first_seed + pair
        with _Lock(args.lock):
            t = time.time()
            load = os.getloadavg()[0]
            out = _run([args.torch_python, me, "--child", "official", official_dir,
                        *_official_args(data_dir, args.epochs)],
                       args.timeout)
            official = dict(parse_official(out, args.epochs), side="official",
                            torch=out.splitlines()[0], load_before=load)
            load = os.getloadavg()[0]
            out = _run([sys.executable, me, "--child", "tfrec", "--data-dir",
                        str(data_dir), "--epochs", str(args.epochs), "--seed",
                        str(seed)], args.timeout)
            tfrec = dict(parse_tfrec(out), side="tfrec", load_before=load)
            load = os.getloadavg()[0]
            official["load_after"] = tfrec["load_after"] = load
            if tfrec["events_per_epoch"] != events:
                raise RuntimeError(
                    f"tfrec trains {tfrec['events_per_epoch']} events per epoch, the "
                    f"training file has {events}: not the same data"
                )
            runs += [official, tfrec]
            print(
                f"pair {pair + 1}/{args.pairs} ({time.time() - t:.0f} s): official "
                f"{official['train_s']:.1f} s / {official['cpu_s']:.1f} CPU s, R@20 "
                f"{official['recall@20']:.4f} MRR@20 {official['mrr@20']:.4f}; tfrec "
                f"(seed {seed}) {tfrec['train_s']:.1f} s / {tfrec['cpu_s']:.1f} CPU s,"
                f" R@20 {tfrec['recall@20']:.4f} MRR@20 {tfrec['mrr@20']:.4f}; "
                f"load average {official['load_before']:.1f} / {load:.1f}",
                flush=True,
            )
    summary = summarise(runs, events, args.epochs)
    print(table(summary))
    if args.out:
        sys.path.insert(0, str(ROOT))
        from tfrec.io import atomic_write_json

        atomic_write_json(args.out, {
            "summary": summary,
            "runs": runs,
            "settings": {
                "paramfile": PARAMFILE, "preset": PRESET, "train": str(data_dir / TRAIN),
                "test": str(data_dir / TEST), "threads": 1,
                "taskset": bool(shutil.which("taskset")), "pairs": args.pairs,
                "order": "official then tfrec, pair after pair",
                "host_cpus": os.cpu_count(),
            },
            "command": " ".join([sys.executable, *sys.argv]),
        })
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
