"""Reproduce GRU4Rec (next-click, full ranking) on the YooChoose and DIGINETICA samples.

Trains with the official implementation's published best settings
(``paramfiles/`` of github.com/hidasib/GRU4Rec_PyTorch_Official) for several
seeds, evaluates Recall@K / MRR@K over all items (conservative ties, the
official default), and writes ``reports/gru4rec.json`` and ``reports/gru4rec.md``
with the mean and spread, the settings, the training time and events/s, and two
baselines (popularity, item-kNN) on the same split.

Usage:
    TFREC_DATA_DIR=/path/to/data python scripts/reproduce_gru4rec.py
    python scripts/reproduce_gru4rec.py --datasets diginetica --seeds 0 --epochs 2

Thread counts are fixed (``--threads``, default 1 intra-op and 1 inter-op) so
the timings are comparable; they are printed beside every figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

# Published best settings of the official code (paramfiles/), by data set. The
# hyperparameters live in one place, the gru4rec recipe's presets
# (`tfrec presets gru4rec`); `params` are their values in the official names.
SETTINGS = {
    "yoochoose": {
        "paramfile": "rsc15_xe_shared_100_best.py",
        "preset": "rsc15_xe_shared_100_best",
        "note": "unchanged (the 100-unit RSC15 setting)",
    },
    "diginetica": {
        "paramfile": "diginetica_bprmax_shared_best.py",
        "preset": "diginetica_bprmax_shared_best",
        "note": "unchanged; the sample has fewer items (about 1,950) than "
        "n_sample, so negatives repeat (sampling is with replacement, as in the "
        "official code)",
    },
}


def preset_params(name: str) -> dict:
    """The preset's values as `train_gru4rec` arguments (the official names).

    `train_gru4rec` trains on every training session with Adagrad-momentum,
    which is the preset's ``refit`` stage (the same weights for the same seed).
    """
    from tfrec.recipes.base import recipe_for

    values = dict(recipe_for("gru4rec").preset(SETTINGS[name]["preset"]).values)
    if values.pop("optimizer") != "adagrad_momentum" or not values.pop("refit_full"):
        raise ValueError(f"{name}: the preset no longer matches train_gru4rec")
    values["n_epochs"] = values.pop("epochs")
    return values


# The unmodified official PyTorch code (GRU4Rec_PyTorch_Official d1fc311) run on
# exactly these splits with the same paramfiles, 10 epochs, seeds 1-3, CPU, one
# torch thread, conservative ties (measured for this project on the same shared
# machine, 2026-11-27/28). events/CPU s: training pairs per second of the process's
# CPU time (median epoch).
OFFICIAL = {
    "yoochoose": {
        "recall@20": (0.6813, 0.0017),
        "mrr@20": (0.3579, 0.0003),
        "events_per_cpu_second": 5270,
        "seeds": 3,
    },
    "diginetica": {
        "recall@20": (0.5247, 0.0148),
        "mrr@20": (0.2098, 0.0017),
        "events_per_cpu_second": 2679,
        "seeds": 3,
    },
}
PAPER = {
    "yoochoose": "official code, full RSC15, XE: Recall@20 0.7283, MRR@20 0.3205",
    "diginetica": "official code, full DIGINETICA, BPR-max: Recall@20 0.4995, "
    "MRR@20 0.1500",
}


def load(name: str):
    from tfrec.data.sessions import load_diginetica, load_yoochoose

    return load_yoochoose() if name == "yoochoose" else load_diginetica()


def mean_std(values):
    arr = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "values": [float(v) for v in arr],
    }


def run_dataset(name: str, seeds, epochs: int | None, cutoffs) -> dict:
    from tfrec.evaluation.session import (
        evaluate_next_click,
        item_knn_step,
        popularity_step,
    )
    from tfrec.training.session import train_gru4rec

    split = load(name)
    params = preset_params(name)
    if epochs is not None:
        params["n_epochs"] = int(epochs)
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        trainer, info = train_gru4rec(split.train, seed=int(seed), **params)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics = evaluate_next_click(trainer.step_model, split.test, cutoffs=cutoffs)
        eval_s = time.perf_counter() - t1
        run = {
            "seed": int(seed),
            "metrics": metrics,
            "train_seconds": train_s,
            "epoch_seconds": info["epoch_seconds"],
            "events_per_second": info["events_per_second"],
            "events_per_second_steady": info["events_per_second_steady"],
            "events_per_cpu_second": info["events_per_cpu_second"],
            "epoch_cpu_seconds": info["epoch_cpu_seconds"],
            "events_per_cpu_second_median_epoch": info[
                "events_per_cpu_second_median_epoch"
            ],
            "final_loss": info["loss"][-1],
            "eval_seconds": eval_s,
        }
        runs.append(run)
        print(
            f"[{name}] seed {seed}: recall@20 {metrics['recall@20']:.4f} "
            f"mrr@20 {metrics['mrr@20']:.4f}  train {train_s:.1f}s "
            f"({info['events_per_second']:.0f} events/s, "
            f"{info['events_per_cpu_second']:.0f} per CPU s)  loss {info['loss'][-1]:.4f}",
            flush=True,
        )
    baselines = {}
    for bname, fn in (("popularity", popularity_step), ("item_knn", item_knn_step)):
        baselines[bname] = evaluate_next_click(
            fn(split.train), split.test, cutoffs=cutoffs
        )
        print(
            f"[{name}] {bname}: recall@20 {baselines[bname]['recall@20']:.4f} "
            f"mrr@20 {baselines[bname]['mrr@20']:.4f}",
            flush=True,
        )
    summary = {
        key: mean_std([r["metrics"][key] for r in runs])
        for key in runs[0]["metrics"]
        if "@" in key
    }
    summary["train_seconds"] = mean_std([r["train_seconds"] for r in runs])
    summary["events_per_second"] = mean_std([r["events_per_second"] for r in runs])
    summary["events_per_cpu_second"] = mean_std(
        [r["events_per_cpu_second"] for r in runs]
    )
    summary["events_per_cpu_second_median_epoch"] = mean_std(
        [r["events_per_cpu_second_median_epoch"] for r in runs]
    )
    return {
        "data": {
            "settings": split.settings,
            "stats": split.stats,
        },
        "paramfile": SETTINGS[name]["paramfile"],
        "params": params,
        "settings_note": SETTINGS[name]["note"],
        "published_reference": PAPER[name],
        "runs": runs,
        "summary": summary,
        "baselines": baselines,
    }


def markdown(report: dict) -> str:
    lines = [
        "# GRU4Rec reproduction (next-click, full ranking over all items)",
        "",
        "Generated by `scripts/reproduce_gru4rec.py`. Protocol: every click of a "
        "test session but the last predicts the next click; the target is ranked "
        "against all items (nothing excluded); ties are counted against the model "
        "(the official code's `conservative` mode). Mean ± sample std over seeds "
        f"{report['seeds']}. Threads: {report['threads']} intra-op, 1 inter-op; "
        f"host: {report['host']}. `train s` and `events/s` are wall-clock, the "
        "first epoch's graph tracing included; `events/CPU s` divides by the "
        "process's CPU time, which the shared machine's load distorts less.",
        "",
        "| data set | model | Recall@20 | MRR@20 | Recall@10 | MRR@10 | Recall@5 "
        "| MRR@5 | train s | events/s | events/CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in report["datasets"].items():
        s = res["summary"]

        def ms(key, s=s):
            return f"{s[key]['mean']:.4f} ± {s[key]['std']:.4f}"

        lines.append(
            f"| {name} | GRU4Rec ({res['params']['loss']}) | {ms('recall@20')} | "
            f"{ms('mrr@20')} | {ms('recall@10')} | {ms('mrr@10')} | {ms('recall@5')} "
            f"| {ms('mrr@5')} | {s['train_seconds']['mean']:.0f} | "
            f"{s['events_per_second']['mean']:.0f} | "
            f"{s['events_per_cpu_second']['mean']:.0f} |"
        )
        for bname, b in res["baselines"].items():
            lines.append(
                f"| {name} | {bname} | {b['recall@20']:.4f} | {b['mrr@20']:.4f} | "
                f"{b['recall@10']:.4f} | {b['mrr@10']:.4f} | {b['recall@5']:.4f} | "
                f"{b['mrr@5']:.4f} | - | - | - |"
            )
    lines += [
        "",
        "## Same data, official code",
        "",
        "The unmodified official PyTorch implementation (GRU4Rec_PyTorch_Official "
        "d1fc311), run on exactly these splits with the same paramfiles, 10 epochs, "
        "3 seeds, on the same shared machine (1 torch thread). Relative difference "
        "= ours / official - 1. Speed: training pairs per second of process CPU time "
        "in the median epoch (both implementations, 1 intra-op thread).",
        "",
        "| data set | Recall@20 ours | Recall@20 official | diff | MRR@20 ours "
        "| MRR@20 official | diff | events/CPU s ours | official | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in report["datasets"].items():
        ref = OFFICIAL.get(name)
        if ref is None:
            continue
        s = res["summary"]
        cells = []
        for key in ("recall@20", "mrr@20"):
            ours, (theirs, spread) = s[key]["mean"], ref[key]
            cells += [
                f"{ours:.4f} ± {s[key]['std']:.4f}",
                f"{theirs:.4f} ± {spread:.4f}",
                f"{100 * (ours / theirs - 1):+.1f}%",
            ]
        key = "events_per_cpu_second_median_epoch"
        cpu = s[key]["mean"] if key in s else s["events_per_cpu_second"]["mean"]
        cells += [
            f"{cpu:.0f}",
            f"{ref['events_per_cpu_second']}",
            f"{cpu / ref['events_per_cpu_second']:.2f}x",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Data and settings", ""]
    for name, res in report["datasets"].items():
        st = res["data"]["stats"]
        lines += [
            f"### {name}",
            "",
            f"- Split: {res['data']['settings']}.",
            f"- Train: {st['train_events']} clicks, {st['train_sessions']} sessions, "
            f"{st['num_items']} items; test: {st['test_events']} clicks, "
            f"{st['test_sessions']} sessions, "
            f"{res['runs'][0]['metrics']['queries']} "
            "next-click queries.",
            f"- Settings: official `paramfiles/{res['paramfile']}` — "
            f"{res['settings_note']}: `{res['params']}`.",
            f"- Published reference (different, full data set; not directly "
            f"comparable): {res['published_reference']}.",
            "- Per seed: "
            + "; ".join(
                f"seed {r['seed']}: R@20 {r['metrics']['recall@20']:.4f}, "
                f"MRR@20 {r['metrics']['mrr@20']:.4f}, {r['train_seconds']:.0f} s"
                for r in res["runs"]
            )
            + ".",
            "",
        ]
    lines += NOTES.splitlines()
    return "\n".join(lines) + "\n"


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
  train); read as is. DIGINETICA: SR-GNN's
  12,391-click sample, clicks ordered by eventdate + timeframe, then GRU4Rec's
  preprocessing with item support >= 2 (5 would keep 369 of 7,139 items) and the
  last 14 days as test (7 days would leave 286 queries); only 371 test queries,
  so its numbers have a large sampling error (a 95% binomial interval for a
  Recall@20 near 0.54 is about +-0.05).
- **Published numbers** are for the full data sets and are not directly
  comparable with these samples; the same-data comparison is against the
  official code run on exactly these splits.
- Reproduce: `TFREC_DATA_DIR=... python scripts/reproduce_gru4rec.py`
  (`--seeds`, `--epochs`, `--datasets`); `--render` rewrites this file from the
  JSON.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["yoochoose", "diginetica"],
        choices=list(SETTINGS),
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override n_epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "reports" / "gru4rec"))
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the .md from the .json"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other data sets' results already in the .json",
    )
    args = parser.parse_args(argv)
    if args.render:
        import json

        report = json.loads(Path(args.out + ".json").read_text())
        _write_md(args.out, report)
        return 0

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tfrec.io import atomic_write_json

    cutoffs = (5, 10, 20)
    report = {
        "seeds": args.seeds,
        "threads": args.threads,
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "tensorflow": tf.__version__,
        "tie_mode": "conservative",
        "datasets": {},
    }
    if args.merge and Path(args.out + ".json").is_file():
        import json

        old = json.loads(Path(args.out + ".json").read_text())
        report["datasets"] = {
            k: v for k, v in old.get("datasets", {}).items() if k not in args.datasets
        }
    for name in args.datasets:
        report["datasets"][name] = run_dataset(name, args.seeds, args.epochs, cutoffs)
        atomic_write_json(args.out + ".json", report)  # partial results survive
    atomic_write_json(args.out + ".json", report)
    _write_md(args.out, report)
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


def _write_md(out: str, report: dict) -> None:
    md = Path(out + ".md")
    tmp = md.with_name("." + md.name + ".tmp")
    tmp.write_text(markdown(report))
    os.replace(tmp, md)


if __name__ == "__main__":
    raise SystemExit(main())
