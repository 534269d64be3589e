"""Reproduces the NCF paper's ML-1M table (He et al. 2017) with tfrec.

Protocol: the paper's own leave-one-out split (``ncf-ml-1m``), HR@10 / NDCG@10 of
the held-out item ranked among its 99 sampled negatives, averaged over 6,040 users;
implicit feedback, log loss with 4 fresh negatives per positive per epoch, Adam,
batch 256, lr 0.001. Writes ``reports/ncf_ml1m.{json,md}``.

Every run reports both the final epoch and the best epoch on the test metric. The
authors' code reports the best epoch (selected on the test set); the final epoch is
the honest number. Deviations from the paper are printed in the report.

    python scripts/reproduce_ncf.py --seeds 0 1 2 [--epochs 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER = {  # TARGETS.md: He et al. 2017 Tables 2-4, factors 8
    "gmf": None,
    "ncf_mlp": (0.671, 0.399),
    "neumf": (0.688, 0.410),
    "neumf_pretrained": (0.684, 0.403),
    "mf": (0.7294, 0.4523),  # Rendle et al. 2020, dim 192, tuned
}


def run_one(
    label,
    model_name,
    split,
    seed,
    epochs,
    batch,
    out_root,
    *,
    model=None,
    optimizer="adam",
    lr=0.001,
    kwargs=None,
    num_negatives=4,
):
    from tfrec.training import TrainConfig, train

    config = TrainConfig(
        model=model_name,
        dataset="ncf-ml-1m",
        model_kwargs=dict(kwargs or {}),
        epochs=epochs,
        batch_size=batch,
        optimizer=optimizer,
        learning_rate=lr,
        num_negatives=num_negatives,
        seed=seed,
        full_ranking=False,
    )
    run_dir = out_root / f"{label}-s{seed}"
    started = time.time()
    result = train(config, split, run_dir, model=model, verbose=2)
    rows = result.history["epochs"]
    best = max(rows, key=lambda r: r.get("test_ndcg@10", -1))
    final = result.metrics["sampled"]
    record = {
        "label": label,
        "model": model_name,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch,
        "optimizer": optimizer,
        "learning_rate": lr,
        "num_negatives": num_negatives,
        "kwargs": config.model_kwargs,
        "final_hr@10": final["hr@10"],
        "final_ndcg@10": final["ndcg@10"],
        "best_epoch": best["epoch"],
        "best_hr@10": best["test_hr@10"],
        "best_ndcg@10": best["test_ndcg@10"],
        "seconds": round(time.time() - started, 1),
        "run_dir": str(run_dir),
    }
    print(json.dumps(record), flush=True)
    return record, result.model


def summarise(records):
    groups = {}
    for r in records:
        groups.setdefault(r["label"], []).append(r)
    lines = [
        "| model | seeds | HR@10 final | NDCG@10 final | HR@10 best epoch | NDCG@10 best epoch | paper HR@10 / NDCG@10 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def fmt(values):
        if len(values) == 1:
            return f"{values[0]:.4f}"
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"

    for label, rs in groups.items():
        paper = PAPER.get(label.split("-")[0])
        paper_txt = f"{paper[0]:.3f} / {paper[1]:.3f}" if paper else "—"
        lines.append(
            f"| {label} | {','.join(str(r['seed']) for r in rs)} | "
            f"{fmt([r['final_hr@10'] for r in rs])} | {fmt([r['final_ndcg@10'] for r in rs])} | "
            f"{fmt([r['best_hr@10'] for r in rs])} | {fmt([r['best_ndcg@10'] for r in rs])} | {paper_txt} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=5,
        help="SGD epochs of NeuMF after GMF+MLP pre-training",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "runs" / "reproduce-ncf"))
    parser.add_argument("--report", default=str(ROOT / "reports" / "ncf_ml1m"))
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="subset of: gmf ncf_mlp neumf neumf_pretrained mf",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 epoch, 1 seed (smoke run)"
    )
    parser.add_argument("--mf-epochs", type=int, default=None)
    parser.add_argument("--mf-negatives", type=int, default=8)
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the report's records of models not rerun now",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.finetune_epochs = args.seeds[:1], 1, 1

    import tensorflow as tf

    from tfrec.data import ncf_split
    from tfrec.models.ncf import load_pretrained_neumf
    from tfrec.registry import create_model

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    split = ncf_split(args.data_dir)
    out_root = Path(args.out)
    want = set(args.only or PAPER)
    records = []
    first = args.seeds[0]
    pre_epochs = args.pretrain_epochs or args.epochs
    f8 = {"embedding_dim": 8}
    pretrained = {}
    for label in ("gmf", "ncf_mlp"):
        if label in want or "neumf_pretrained" in want:
            rec, model = run_one(
                label,
                label,
                split,
                first,
                pre_epochs,
                args.batch_size,
                out_root,
                kwargs=f8,
            )
            records.append(rec)
            pretrained[label] = model
    if "neumf" in want:
        for seed in args.seeds:
            rec, _ = run_one(
                "neumf",
                "neumf",
                split,
                seed,
                args.epochs,
                args.batch_size,
                out_root,
                kwargs=f8,
            )
            records.append(rec)
    if "neumf_pretrained" in want:
        model = create_model(
            "neumf", num_users=split.num_users, num_items=split.num_items, **f8
        )
        load_pretrained_neumf(
            model, pretrained["gmf"], pretrained["ncf_mlp"], alpha=0.5
        )
        rec, _ = run_one(
            "neumf_pretrained",
            "neumf",
            split,
            first,
            args.finetune_epochs,
            args.batch_size,
            out_root,
            model=model,
            optimizer="sgd",
            lr=0.001,
            kwargs=dict(f8, num_users=split.num_users, num_items=split.num_items),
        )
        records.append(rec)
    if "mf" in want:
        for seed in args.seeds:
            rec, _ = run_one(
                "mf",
                "mf",
                split,
                seed,
                args.mf_epochs or args.epochs,
                args.batch_size,
                out_root,
                kwargs={"embedding_dim": 64, "l2": 1e-5},
                num_negatives=args.mf_negatives,
            )
            records.append(rec)

    report = Path(args.report)
    if args.append and report.with_suffix(".json").is_file():
        rerun = {r["label"] for r in records}
        old = json.loads(report.with_suffix(".json").read_text())
        records = [r for r in old if r["label"] not in rerun] + records
    table = summarise(records)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(json.dumps(records, indent=2) + "\n")
    notes = (
        f"NCF ML-1M reproduction, {time.strftime('%Y-%m-%d')}, "
        "settings per row in the JSON (epochs, batch, optimizer, negatives), "
        "TF intra/inter-op threads 2/2, CPU. 'final' = last epoch; 'best epoch' = "
        "the epoch with the best test NDCG@10 (what the authors' code reports).\n\n"
        "Deviations: the training file is the reconstruction in shared/data (55 of "
        "994,169 lines may have permuted ids among 32 rare items); fewer epochs than "
        "the paper's 20 where the JSON says so (CPU time); MF uses Adam, dim 64, "
        "per-example L2 1e-5 instead of Rendle et al.'s tuned SGD at dim 192; "
        "pre-trained NeuMF is fine-tuned with plain SGD lr 0.001.\n\n"
    )
    report.with_suffix(".md").write_text(notes + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
