"""Reproduces GRU4Rec (next click, full ranking) on the YooChoose and DIGINETICA
samples through the runner.

Each data set is one row: the gru4rec recipe with the official implementation's
published best settings (``paramfiles/`` of
github.com/hidasib/GRU4Rec_PyTorch_Official), which are the recipe's presets
(``tfrec presets gru4rec``: ``rsc15_xe_shared_100_best``,
``diginetica_bprmax_shared_best``), trained for each seed by ``tfrec.train``.
The presets set ``refit_full``: the ``train`` stage fits on the training
sessions minus validation (the official ``train_tr`` / ``train_valid`` split)
and reports validation Recall@K / MRR@K each epoch; the ``refit`` stage trains
afresh on every training session, and that model is evaluated once on the test
sessions (Recall@K / MRR@K over all items, conservative ties).

This script only loops (``scripts/repro.py``) and reads the runs: their test
metrics, ``metrics.json``'s ``train_seconds`` and the per-epoch wall and CPU
time of each stage (a timing callback), plus two evaluation baselines
(`tfrec.evaluation.session`: popularity, item-kNN) on each run's own split.
It writes ``reports/gru4rec.json`` (one record per run) and
``reports/gru4rec.md``.

    python scripts/reproduce_gru4rec.py --seeds 0 1 2 [--only yoochoose] \
        [--set epochs=1] [--threads 1]

Thread counts are fixed (``--threads``, default 1 intra-op and 1 inter-op) so
the timings are comparable; they are stored with every run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from repro import Row, parser, run_rows, write_report  # noqa: E402

MODEL = "gru4rec"
ROWS = [
    Row("yoochoose", MODEL, "rsc15_xe_shared_100_best", data="yoochoose-rsc15-100k-sample"),
    Row("diginetica", MODEL, "diginetica_bprmax_shared_best", data="diginetica-srgnn-sample"),
]
CUTOFFS = (20, 10, 5)

# The unmodified official PyTorch code (GRU4Rec_PyTorch_Official d1fc311) run on
# exactly these splits with the same paramfiles, 10 epochs, seeds 1-3, CPU, one
# torch thread, conservative ties (measured for this project on the same shared
# machine, 2026-11-27/28, outside this script). events/CPU s: training pairs per
# second of the process's CPU time (median epoch).
OFFICIAL = {
    "yoochoose": {
        "recall@20": (0.6813, 0.0017),
        "mrr@20": (0.3579, 0.0003),
        "events_per_cpu_second": 5270,
    },
    "diginetica": {
        "recall@20": (0.5247, 0.0148),
        "mrr@20": (0.2098, 0.0017),
        "events_per_cpu_second": 2679,
    },
}
PAPER = {
    "yoochoose": "official code, full RSC15, XE: Recall@20 0.7283, MRR@20 0.3205",
    "diginetica": "official code, full DIGINETICA, BPR-max: Recall@20 0.4995, "
    "MRR@20 0.1500",
}


# --------------------------------------------------------------------------- runs


def _clock():
    """``(callback, take)``: a Keras callback timing every epoch of every stage
    of a run (wall and process CPU seconds, one list per ``fit``), and
    ``take()``, which returns those lists and starts afresh for the next run.

    The runner hands user callbacks the epoch last, so a ``train`` stage epoch
    includes its validation pass and every epoch the run's backup."""
    import keras

    fits: list[list[tuple[float, float]]] = []
    start: list[float] = [0.0, 0.0]

    def begin(epoch, logs=None):
        start[:] = [time.perf_counter(), time.process_time()]

    def end(epoch, logs=None):
        wall, cpu = time.perf_counter(), time.process_time()
        fits[-1].append((wall - start[0], cpu - start[1]))

    def take() -> list[list[tuple[float, float]]]:
        out = list(fits)
        fits.clear()
        return out

    callback = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs=None: fits.append([]),
        on_epoch_begin=begin,
        on_epoch_end=end,
    )
    return callback, take


def _pairs(sessions) -> int:
    """Training (click, next click) pairs in one epoch over ``sessions``."""
    import numpy as np

    return int(np.maximum(sessions.lengths - 1, 0).sum())


def _part(sessions) -> dict:
    return {
        "clicks": int(sessions.num_events),
        "sessions": int(sessions.num_sessions),
        "pairs": _pairs(sessions),
    }


def _next_click(metrics: dict) -> dict:
    return {
        k: (int(v) if k == "queries" else float(v))
        for k, v in metrics.items()
        if k == "queries" or k.startswith(("recall@", "mrr@"))
    }


def run_reader(args, take):
    """``extra`` of `repro.run_rows`: what a report record adds to the runner's.

    The data set (and the baselines on it) is rebuilt once per row from the
    first run's ``config.json``, so the baselines see that run's exact split;
    ``take`` gives the run's epoch times (`_clock`)."""
    cache: dict[str, tuple] = {}

    def loaded(row: Row, run_dir) -> tuple:
        if row.label not in cache:
            from tfrec.evaluation.session import (
                evaluate_next_click,
                item_knn_step,
                popularity_step,
            )
            from tfrec.training.runner import run_data

            record = json.loads((run_dir / "config.json").read_text())
            recipe, config, data = run_data(record, args.data_dir)
            baselines = {}
            for name, make in (("popularity", popularity_step), ("item_knn", item_knn_step)):
                out = evaluate_next_click(make(data.full), data.test, cutoffs=config.ks)
                baselines[name] = _next_click(out)
            cache[row.label] = (recipe, config, data, baselines)
        return cache[row.label]

    def extra(row: Row, result) -> dict:
        import keras
        import numpy as np
        import tensorflow as tf

        recipe, _, data, baselines = loaded(row, result.run_dir)
        config = result.config
        stages = list(recipe.stage_names(row.model, config))
        fits = take()
        # A resumed run skips finished stages: the clock saw the last len(fits).
        timed = dict(zip(stages[len(stages) - len(fits):], fits, strict=True))
        epochs = result.history.get("epochs", [])
        timing = {}
        for stage, times in timed.items():
            pairs = _pairs(data.full if stage == "refit" else data.train)
            wall = [w for w, _ in times]
            cpu = [c for _, c in times]
            timing[stage] = {
                "epochs": len(times),
                "pairs_per_epoch": pairs,
                "epoch_seconds": wall,
                "epoch_cpu_seconds": cpu,
                "seconds": sum(wall),
                # All epochs, the first one's graph tracing included.
                "events_per_second": pairs * len(wall) / max(sum(wall), 1e-9),
                # The median epoch's CPU time ignores the first epoch's tracing and
                # is less distorted than wall time on a shared machine.
                "events_per_cpu_second_median_epoch": pairs
                / max(float(np.median(cpu)), 1e-9),
            }
        last = {}
        for r in epochs:
            last[r.get("stage", "train")] = r
        run = json.loads((result.run_dir / "config.json").read_text())
        return {
            "config": run["config"],
            "model_kwargs": run["model_kwargs"],
            "run_seconds": result.metrics.get("train_seconds"),
            "timing": timing,
            "final_loss": {s: r.get("loss") for s, r in last.items()},
            "validation": {
                k[4:]: v for k, v in last.get("train", {}).items() if k.startswith("val_")
            },
            "baselines": baselines,
            "data": {
                "name": data.name,
                "settings": data.settings,
                "items": int(data.num_items),
                "full": _part(data.full),
                "train": _part(data.train),
                "valid": _part(data.valid) if data.valid is not None else None,
                "test": _part(data.test),
            },
            "threads": {"intra_op": args.threads, "inter_op": args.threads},
            "versions": {
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "numpy": np.__version__,
            },
            "host": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }

    return extra


# --------------------------------------------------------------------------- report


def _groups(records: list[dict]) -> dict[str, list[dict]]:
    order = [r.label for r in ROWS]
    groups: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: (order.index(r["label"])
                                            if r["label"] in order else 99, r["seed"])):
        groups.setdefault(r["label"], []).append(r)
    return groups


def _stats(values: list[float]) -> tuple[float, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd


def _ms(values: list[float], digits: int = 4) -> str:
    if not values:
        return "—"
    mean, sd = _stats(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _metric(rs: list[dict], key: str) -> list[float]:
    return [r["metrics"]["next_click"][key] for r in rs]


def _speed(rs: list[dict], stage: str, key: str) -> list[float]:
    return [r["timing"][stage][key] for r in rs if stage in r.get("timing", {})]


def markdown(records: list[dict]) -> str:
    groups = _groups(records)
    metric_cols = [f"{m}@{k}" for k in CUTOFFS for m in ("recall", "mrr")]
    head = ["data set", "model", "seeds", *(c.replace("recall", "Recall").replace(
        "mrr", "MRR") for c in metric_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, rs in groups.items():
        cfg = rs[0]["config"]
        lines.append(
            f"| {label} | GRU4Rec ({cfg['loss']}), `{rs[0]['preset']}` | "
            + ",".join(str(r["seed"]) for r in rs) + " | "
            + " | ".join(_ms(_metric(rs, c)) for c in metric_cols) + " |"
        )
        for name, b in rs[0]["baselines"].items():
            lines.append(
                f"| {label} | {name} (same split) | — | "
                + " | ".join(f"{b[c]:.4f}" for c in metric_cols) + " |"
            )
    lines += [
        "",
        "## Same data, official code",
        "",
        "The unmodified official PyTorch implementation (GRU4Rec_PyTorch_Official "
        "d1fc311), run on exactly these splits with the same paramfiles, 10 epochs, "
        "3 seeds, on the same shared machine (1 torch thread), measured outside this "
        "script (2026-11-27/28). Relative difference = ours / official - 1. Speed: "
        "training pairs per second of process CPU time in the median epoch (ours: "
        "the `refit` stage, which trains on the same sessions as the official run; "
        "both 1 intra-op thread).",
        "",
        "| data set | Recall@20 ours | Recall@20 official | diff | MRR@20 ours "
        "| MRR@20 official | diff | events/CPU s ours | official | ratio |",
        "|" + " --- |" * 10,
    ]
    for label, rs in groups.items():
        ref = OFFICIAL.get(label)
        if ref is None:
            continue
        cells = []
        for key in ("recall@20", "mrr@20"):
            ours = _stats(_metric(rs, key))[0]
            theirs, spread = ref[key]
            cells += [_ms(_metric(rs, key)), f"{theirs:.4f} ± {spread:.4f}",
                      f"{100 * (ours / theirs - 1):+.1f}%"]
        cpu = _speed(rs, "refit", "events_per_cpu_second_median_epoch")
        if cpu:
            mean = _stats(cpu)[0]
            ratio = f"{mean / ref['events_per_cpu_second']:.2f}x"
            cells += [f"{mean:.0f}", str(ref["events_per_cpu_second"]), ratio]
        else:
            cells += ["—", str(ref["events_per_cpu_second"]), "—"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Training time",
        "",
        "Wall-clock seconds on the shared machine (its load varies, so compare the "
        "CPU figure). `run s`: `metrics.json`'s `train_seconds`, the whole run "
        "(data loading, both stages, the test evaluation). Stage seconds: the sum "
        "of its epochs as `fit` saw them (a `train` epoch includes its validation "
        "pass; every epoch the run's backup). events/s: training pairs over wall "
        "time, all epochs (the first epoch's graph tracing included); events/CPU s: "
        "pairs over the median epoch's process CPU time.",
        "",
        "| data set | threads (intra/inter) | run s | train stage s | refit stage s "
        "| refit pairs/epoch | refit events/s | refit events/CPU s |",
        "|" + " --- |" * 8,
    ]
    for label, rs in groups.items():
        th = rs[0]["threads"]
        pairs = _speed(rs, "refit", "pairs_per_epoch")
        lines.append(
            f"| {label} | {th['intra_op']}/{th['inter_op']} | "
            f"{_ms([r['run_seconds'] for r in rs if r.get('run_seconds')], 0)} | "
            f"{_ms(_speed(rs, 'train', 'seconds'), 0)} | "
            f"{_ms(_speed(rs, 'refit', 'seconds'), 0)} | "
            f"{pairs[0] if pairs else '—'} | "
            f"{_ms(_speed(rs, 'refit', 'events_per_second'), 0)} | "
            f"{_ms(_speed(rs, 'refit', 'events_per_cpu_second_median_epoch'), 0)} |"
        )
    lines += ["", "## Data and settings", ""]
    for label, rs in groups.items():
        r0 = rs[0]
        d = r0["data"]
        valid = d["valid"]
        val_keys = [f"{m}@{k}" for m in ("recall", "mrr") for k in (20,)]
        val = ", ".join(
            f"{k} {_ms([r['validation'][k] for r in rs if k in r['validation']])}"
            for k in val_keys
        )
        lines += [
            f"### {label}",
            "",
            f"- Data: `{d['name']}`, {d['items']} items; split settings "
            f"`{d['settings']}`.",
            f"- All training sessions (the `refit` stage): {d['full']['clicks']} "
            f"clicks, {d['full']['sessions']} sessions, {d['full']['pairs']} "
            f"training pairs; `train` stage: {d['train']['clicks']} clicks, "
            f"{d['train']['sessions']} sessions"
            + (f"; validation: {valid['clicks']} clicks, {valid['sessions']} "
               f"sessions, {valid['pairs']} queries" if valid else "")
            + f"; test: {d['test']['clicks']} clicks, {d['test']['sessions']} "
            f"sessions, {r0['metrics']['next_click']['queries']} next-click queries.",
            f"- Settings: preset `{r0['preset']}` (`tfrec presets gru4rec`), the "
            f"official `paramfiles/{r0['preset']}.py` unchanged; run config "
            f"`{ {k: v for k, v in r0['config'].items() if k != 'seed'} }`, "
            f"builder `{r0['model_kwargs']}`"
            + (f"; overrides `{r0['settings']}`" if r0["settings"] else "") + ".",
            f"- Validation (`train` stage, last epoch): {val}.",
            f"- Published reference (full data set; not directly comparable): "
            f"{PAPER.get(label, '—')}.",
            "- Per seed: " + "; ".join(
                f"seed {r['seed']}: R@20 {r['metrics']['next_click']['recall@20']:.4f}, "
                f"MRR@20 {r['metrics']['next_click']['mrr@20']:.4f}, run "
                f"{r['run_seconds']:.0f} s, final refit loss "
                f"{r['final_loss'].get('refit', float('nan')):.4f}"
                for r in rs
            ) + ".",
            f"- Versions: {r0['versions']}; host {r0['host']}; run {r0['date']}.",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n\n" + NOTES


INTRO = """# GRU4Rec reproduction (next click, full ranking over all items)

Generated by `scripts/reproduce_gru4rec.py`, a loop over the runner
(`tfrec.train("gru4rec", preset=..., seed=...)`, the recipe
`tfrec/recipes/gru4rec.py`). Each run has two stages: `train` fits on the training
sessions minus the validation ones (YooChoose: those ending in the last day of
training, exactly GRU4Rec's `train_tr` / `train_valid` files; DIGINETICA: the last
14 days) and reports validation Recall@K / MRR@K each epoch; `refit` (the presets
set `refit_full=True`) trains afresh on every training session for the preset's
epochs, and that model is evaluated once on the test sessions. Protocol: every
click of a test session but the last predicts the next click; the target is ranked
against all items (nothing excluded); ties count against the model (the official
code's `conservative` mode). Mean ± sample sd over seeds. The baselines are
`tfrec.evaluation.session.popularity_step` and `item_knn_step` fitted on the same
training sessions."""

NOTES = """## Notes

- **Faithfulness.** Session-parallel mini-batches in session start-time order
  (not shuffled) with per-slot state reset; no BPTT (the state is carried, not
  back-propagated, as in the official code); in-batch targets plus `n_sample`
  shared negatives drawn from popularity**`sample_alpha`; cross-entropy with
  logQ (in-batch columns corrected by popularity, sampled ones by
  popularity**alpha, as the official code does), BPR-max with `bpreg` over ELU
  (`elu_param`), TOP1-max; embedding and hidden dropout (the dropped-out hidden
  output is the new state); shared input/output item table
  (`constrained_embedding`); per-gate uniform init sqrt(6/(fan_in+fan_out));
  Adagrad with momentum updating only touched rows (`IndexedAdagradM`).
- **Deviations.** The GRU is the original formulation (reset gate before the
  recurrent matmul, Keras `reset_after=False`) as in the Theano code and the
  papers; the official PyTorch port's hidden layers use `torch.nn.GRUCell`
  (reset gate after the matmul). The official optimiser is described as
  Nesterov momentum but applies heavy-ball momentum; we do the same (a
  `nesterov=True` option exists). At the end of an epoch the batch keeps its
  size and finished slots are masked, instead of shrinking the batch. Times are
  read as UTC (the official preprocessing uses local time).
- **Data.** YooChoose: the session-rec 100k-click sample, already split in
  GRU4Rec's layout (train_full/test, the last day as test, every test item in
  train); read as is. DIGINETICA: SR-GNN's 12,391-click sample, clicks ordered by
  eventdate + timeframe, then GRU4Rec's preprocessing with item support >= 2 (5
  would keep 369 of 7,139 items) and the last 14 days as test (7 days would leave
  286 queries); only 371 test queries, so its numbers have a large sampling error
  (a 95% binomial interval for a Recall@20 near 0.54 is about +-0.05).
- **Published numbers** are for the full data sets and are not directly
  comparable with these samples; the same-data comparison is against the
  official code run on exactly these splits.
- **Earlier versions of this report** (2026-11-28) trained with
  `tfrec.training.session.train_gru4rec` on all training sessions, the same
  computation as the `refit` stage, since removed: Recall@20 / MRR@20 0.6800 ±
  0.0016 / 0.3606 ± 0.0027 (YooChoose) and 0.5373 ± 0.0102 / 0.2085 ± 0.0033
  (DIGINETICA), seeds 0-2. Speed measured then, back to back on a quiet machine
  (YooChoose, XE, 10 epochs of 52,484 pairs, 1 thread each): 43.8 s of training
  (12,098 pairs/s wall, 13,252 per CPU s) vs 76.4 s for the official code as the
  sum of its epoch times (6,870 pairs/s), 1.7x faster per wall-clock second.
- Reproduce: `python scripts/reproduce_gru4rec.py --seeds 0 1 2` (`--only
  yoochoose`, `--set epochs=1` for a smoke run, `--append` to keep the other
  data set's records, `--threads`); run folders under
  `runs/reproduce-gru4rec/<data set>-s<seed>`.
"""


def main(argv=None) -> int:
    p = parser(__doc__.split("\n")[0], "gru4rec")
    p.set_defaults(threads=1)
    p.add_argument("--render", action="store_true",
                   help="only rewrite the .md from the report's .json")
    args = p.parse_args(argv)
    if args.render:
        records = json.loads(Path(args.report).with_suffix(".json").read_text())
    else:
        callback, take = _clock()
        records = run_rows(ROWS, args, callbacks=[callback], extra=run_reader(args, take))
    write_report(args, records, INTRO, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
