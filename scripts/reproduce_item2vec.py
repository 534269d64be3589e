"""item2vec (Barkan & Koenigstein 2016) on MovieLens-100K user histories.

A thin loop over the runner: every row is ``tfrec.train("item2vec",
"movielens-100k", preset=..., seed=...)``; the settings are the recipe's presets
(``tfrec presets item2vec``) and the data, split and protocols are the recipe's
(:mod:`tfrec.recipes.item2vec`):

* each user's ratings in time order is one sequence; the last item is the test
  next item, the one before it the validation next item, training sees the rest;
* epochs are chosen by early stopping on the validation next item (NDCG@10) when
  the preset (or ``--early-stopping``) says so; the test part is read once, at
  the end of each run;
* test protocols: next-item HR@10 / NDCG@10 (full ranking, the user's earlier
  items excluded, score = mean cosine to the last 5 items) and genre consistency
  of cosine nearest neighbours (``share@1``, ``vote@8``, over items with >= 5
  training occurrences and the unpopular ones, 5-19); baselines through the same
  protocols: truncated SVD of the binary item-user matrix (the paper's baseline),
  popularity, chance.

Writes ``reports/item2vec.{json,md}``.

    python scripts/reproduce_item2vec.py --seeds 0 1 2 [--presets ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER = (
    "Barkan & Koenigstein 2016 (private Xbox Music data): nearest neighbours "
    "genre-consistent for 68% of unpopular items with item2vec vs 58.4% with SVD."
)
DATASET = "movielens-100k"
CHANGES = (
    "Changed from the 2026-11-28 report (issue 9, honest selection): each "
    "user's second-last item is now a validation item left out of training "
    "(training sees one item fewer per user); the vocabulary is the items of the "
    "training sequences (1,678 of 1,682; test items outside it are dropped, 3 "
    "users); the learning rates and epochs were re-chosen on the validation "
    "item (skip-gram: Adam 0.003 -> 0.01, 10 epochs; CBOW: 0.01 kept, 20 -> 9 "
    "epochs; see the presets' sources), where the earlier report set them while "
    "looking at the test metrics; every run goes through `tfrec.train` with the "
    "recipe's presets. The set-as-window row (`ml100k_set_window`) was not rerun "
    "(its 2,527,096 pairs per epoch do not fit this machine's budget today); "
    "the earlier report had it at share@1 unpopular 0.5604, HR@10 0.0785. "
    "Selecting on the next item raised skip-gram's HR@10 from 0.1131 to 0.1521 "
    "and lowered its genre share@1 (all) from 0.7102 to 0.6843: the validation "
    "monitor is the next item, not genre consistency; CBOW's genre scores rose "
    "(share@1 all 0.6206 -> 0.7093) with 9 instead of 20 epochs."
)
KEYS = (
    "all_share@1",
    "all_vote@8",
    "unpopular_share@1",
    "unpopular_vote@8",
    "hr@10",
    "ndcg@10",
)


def _fmt(values):
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _flat(metrics) -> dict:
    out = dict(metrics.get("genre", {}))
    nxt = metrics.get("next_item", {})
    out["hr@10"], out["ndcg@10"] = nxt.get("hr@10"), nxt.get("ndcg@10")
    return out


def baselines(data, config, dims) -> dict:
    """SVD, popularity and chance through the recipe's protocols."""
    import numpy as np

    from tfrec.evaluation.embeddings import (
        chance_share,
        popularity_next_item_metrics,
        svd_item_embeddings,
    )
    from tfrec.recipes.item2vec import evaluate_table

    out = {}
    offsets, items = data.train
    for dim in dims:
        table = svd_item_embeddings(offsets, items, data.num_items, dim)
        out[f"SVD dim {dim}"] = _flat(evaluate_table(table, data, config, "test"))
    test = data.test
    # Popularity over the test profiles (each user's items before the test item).
    pop = popularity_next_item_metrics(
        test.offsets, test.items, test.targets, data.num_items
    )
    out["popularity"] = {"hr@10": pop["hr@10"], "ndcg@10": pop["ndcg@10"]}
    counts = data.counts
    pool = counts >= config.min_count
    unpop = pool & (counts < config.unpopular_below)
    out["chance (random neighbour)"] = {
        "all_share@1": chance_share(data.genres, np.flatnonzero(pool), candidates=pool),
        "unpopular_share@1": chance_share(
            data.genres, np.flatnonzero(unpop), candidates=pool
        ),
    }
    return out


def export_parity(serving) -> dict:
    """Exports both serving graphs of a run; returns the parity figures."""
    import numpy as np

    from export import export_model

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, graph in serving.items():
            n = graph.kwargs["num_items"]
            path = export_model(
                graph.model,
                name,
                base_dir=tmp,
                example_inputs=lambda b, r, n=n: {
                    "item_id": r.integers(0, n, b, dtype=np.int64)
                },
                atol=1e-5,
                rtol=1e-5,
                tolerance_reason="float32 lookups / cosine matmul",
            )
            parity = json.loads((path / "manifest.json").read_text())["parity"]
            out[name] = {
                rt: {
                    "max_abs_diff": parity[rt]["max_abs_diff"],
                    "passed": parity[rt]["passed"],
                }
                for rt in ("onnx", "saved_model")
            }
    return out


def run_one(preset, seed, args) -> tuple[dict, dict]:
    import numpy as np

    import tfrec

    overrides = {"seed": seed}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.early_stopping is not None:
        overrides["early_stopping"] = args.early_stopping or None
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    started = time.time()
    result = tfrec.train(
        "item2vec", DATASET, preset=preset, printer=print,
        out=Path(args.runs_dir) / f"{preset}-s{seed}", **overrides,
    )
    config = result.config
    rows = result.history.get("epochs", [])
    record = {
        "label": preset,
        "seed": seed,
        "settings": {
            k: v for k, v in config.to_json().items()
            if k not in ("seed", "ks", "recent", "min_count", "unpopular_below")
        },
        "embedding_dim": result.serving["item2vec"].kwargs["embedding_dim"],
        "train_seconds": round(time.time() - started, 1),
        "epochs_run": len(rows),
        **_flat(result.metrics),
    }
    if config.early_stopping and rows:
        val = [r.get("val_ndcg@10", float("-inf")) for r in rows]
        record["best_epoch_on_validation"] = int(np.argmax(val)) + 1
        record["best_val_ndcg@10"] = float(max(val))
    return record, result.serving


def markdown(result) -> str:
    rows, base = result["runs"], result["baselines"]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    lines = [
        "# item2vec on MovieLens-100K user histories",
        "",
        f"Generated by `scripts/reproduce_item2vec.py` through `tfrec.train` (last "
        f"run {result['date']}, CPU, TF threads intra/inter {result['threads']}); "
        "mean ± sample std over the seeds listed per row.",
        "",
        f"Data: {result['data']}. Validation: each user's second-last item "
        "(epochs by early stopping on its NDCG@10 where a row says so); test: the "
        "last item, read once per run. Genre checks over items with >= 5 "
        "training occurrences and the unpopular ones among them (5-19); the "
        "neighbour pool is the same for all methods. Next item: full ranking over "
        "all items, the user's earlier items excluded, score = mean cosine to "
        "the last 5 items.",
        "",
        "| method | seeds | share@1 all | vote@8 all | share@1 unpopular | vote@8 "
        "unpopular | HR@10 next | NDCG@10 next |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label in labels:
        rs = [r for r in rows if r["label"] == label]
        cells = " | ".join(_fmt([r[k] for r in rs]) for k in KEYS)
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(f"| item2vec `{label}` | {seeds} | {cells} |")
    for name, rec in base.items():
        cells = " | ".join(
            f"{rec[k]:.4f}" if rec.get(k) is not None else "—" for k in KEYS
        )
        lines.append(f"| {name} | — | {cells} |")
    lines += [
        "",
        "share@1: the nearest neighbour shares at least one genre with the item. "
        "vote@8: the most frequent genre among the 8 nearest neighbours' genres "
        "is one of the item's (tied genres share the credit). Chance: a random "
        "neighbour from the pool. SVD: truncated SVD of the binary item-user "
        "matrix of the training sequences, item vectors U_k sqrt(S_k).",
        "",
        f"Paper: {PAPER} Different data and genre taxonomy (MovieLens films carry "
        "several genres), so only the ordering item2vec vs SVD is comparable.",
        "",
        "Presets (`tfrec train item2vec --preset NAME`) and runs:",
    ]
    for label in labels:
        rs = [r for r in rows if r["label"] == label]
        s = rs[0]["settings"]
        secs = statistics.mean(r["train_seconds"] for r in rs)
        chosen = [r.get("best_epoch_on_validation") for r in rs]
        stop = (
            f"; best validation epoch per seed {chosen}"
            if any(c is not None for c in chosen) else ""
        )
        lines.append(
            f"- `{label}` ({result['sources'][label]}): {s['variant']}, dim "
            f"{rs[0]['embedding_dim']}, window {s['window']}, "
            f"{s['num_negatives']} negatives, subsample {s['subsample']}, up to "
            f"{s['epochs']} epochs (early stopping {s['early_stopping']}){stop}, "
            f"batch {s['batch_size']}, {s['optimizer']} lr {s['learning_rate']} "
            f"({s['lr_schedule']}); {secs:.0f} s per run."
        )
    if result.get("export"):
        lines += ["", "Export parity (first run, SavedModel and ONNX vs Keras):"]
        for name, rec in result["export"].items():
            lines.append(
                f"- {name}: ONNX max |diff| {rec['onnx']['max_abs_diff']:.2e}, "
                f"SavedModel {rec['saved_model']['max_abs_diff']:.2e}, passed "
                f"{rec['onnx']['passed'] and rec['saved_model']['passed']}"
            )
    lines += ["", CHANGES]
    lines += [
        "",
        "Deviations from the paper: ordered user histories with a finite window in "
        "the main rows (the paper's unordered set-as-window is the "
        "`ml100k_set_window` preset); mini-batch Adam through Keras fit instead of "
        "per-pair SGD (`word2vec_sgd` is the per-example SGD with word2vec's "
        "linear decay); MovieLens genres (multi-genre) instead of Xbox artist "
        "genres.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--presets", nargs="+", default=["ml100k_skipgram", "ml100k_cbow"]
    )
    parser.add_argument("--epochs", type=int, default=None, help="override")
    parser.add_argument(
        "--early-stopping", type=int, default=None,
        help="patience on validation NDCG@10 (0: off); default: the preset's",
    )
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--report", default=str(ROOT / "reports" / "item2vec"))
    parser.add_argument(
        "--runs-dir", default=None, help="run directories (default: a temp dir)"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch")
    parser.add_argument(
        "--append", action="store_true",
        help="keep the report's runs whose presets are not rerun now",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.early_stopping = args.seeds[:1], 1, 0
    if args.runs_dir is None:
        args.runs_dir = tempfile.mkdtemp(prefix="item2vec-runs-")

    import tensorflow as tf

    from tfrec.io import atomic_write_json
    from tfrec.recipes.base import DataSource, recipe_for

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    recipe = recipe_for("item2vec")
    config, _ = recipe.make_config("item2vec")
    data = recipe.load_data(DataSource(dataset=DATASET, data_dir=args.data_dir), config)
    base = baselines(data, config, dims=(16, 64))
    for name, rec in base.items():
        print(name, {k: round(v, 4) for k, v in rec.items()}, flush=True)

    runs, export = [], None
    for preset in args.presets:
        for seed in args.seeds:
            record, serving = run_one(preset, seed, args)
            runs.append(record)
            print({k: v for k, v in record.items() if k != "settings"}, flush=True)
            if export is None and not args.no_export:
                export = export_parity(serving)
                print("export parity", export, flush=True)

    report = Path(args.report)
    old = {}
    if args.append and report.with_suffix(".json").is_file():
        old = json.loads(report.with_suffix(".json").read_text())
        rerun = {r["label"] for r in runs}
        runs = [r for r in old.get("runs", []) if r["label"] not in rerun] + runs
    labels = list(dict.fromkeys(r["label"] for r in runs))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "threads": f"{args.threads}/{args.threads}",
        "data": recipe.describe(data),
        "protocol": {
            "dataset": f"{DATASET} user histories (tfrec.recipes.item2vec)",
            "split": "last item test, second-last validation, per user",
            "paper": PAPER,
        },
        "sources": {p.name: p.source for p in recipe.presets},
        "baselines": base,
        "runs": runs,
        "summary": {
            label: {
                key: {
                    "mean": statistics.mean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                }
                for key in KEYS
                for vals in [[r[key] for r in runs if r["label"] == label]]
            }
            for label in labels
        },
        "export": export or old.get("export"),
    }
    atomic_write_json(report.with_suffix(".json"), result)
    text = markdown(result)
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, report.with_suffix(".md"))
    print(text)


if __name__ == "__main__":
    main()
