"""The ``tfrec`` command.

    tfrec models                       registered models and their tasks
    tfrec datasets                     data sets in the catalog
    tfrec train MODEL --dataset NAME   train, evaluate, write a run directory
    tfrec evaluate RUN_DIR             re-evaluate a finished run
    tfrec export RUN_DIR               SavedModel + ONNX + parity into saved_models/
    tfrec recommend --run DIR | --artifact DIR --user RAW_ID
    tfrec recommend --pipeline youtube --artifact DIR --user RAW_ID

Model keyword arguments follow the options, as ``--embedding-dim 16`` or
``--hidden-units 64,32,16``. Failures exit non-zero with a one-line reason.

The CLI is the application layer: it is the only part of ``tfrec`` that calls into
the ``export`` package (lazily, for ``export`` and ``recommend --artifact``); the
library itself (models, data, training, evaluation) never imports it.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _parse_value(text: str):
    if "," in text and not text.startswith(("(", "[")):
        return tuple(_parse_value(t) for t in text.split(",") if t)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_model_kwargs(extra: list[str]) -> dict:
    """``['--embedding-dim', '16', '--hidden-units=64,32']`` -> kwargs dict."""
    kwargs, i = {}, 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise ValueError(
                f"Unexpected argument {token!r}; model options look like --name value."
            )
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise ValueError(f"Model option {token} needs a value.")
            key, value = token[2:], extra[i + 1]
            i += 2
        kwargs[key.replace("-", "_")] = _parse_value(value)
    return kwargs


def load_split_for(dataset, protocol, data_dir, seed, eval_negatives=99):
    """The split a run trains on; rebuilt the same way by evaluate/recommend."""
    from tfrec.data import load_split

    kw = {}
    if protocol == "leave_one_out" and dataset != "ncf-ml-1m":
        kw["num_negatives"] = eval_negatives
    return load_split(dataset, protocol=protocol, data_dir=data_dir, seed=seed, **kw)


def _split_for(config: dict, data_dir=None):
    cfg = config["config"] if "config" in config else config
    return load_split_for(
        cfg["dataset"],
        cfg.get("protocol", "leave_one_out"),
        data_dir or cfg.get("data_dir"),
        cfg.get("split_seed", 0),
        cfg.get("eval_negatives", 99),
    )


def _print_metrics(metrics: dict) -> None:
    for protocol, values in metrics.items():
        if not isinstance(values, dict):
            continue
        shown = "  ".join(
            f"{k}={v:.4f}" for k, v in sorted(values.items()) if k != "seconds"
        )
        print(f"  {protocol:<8} {shown}")


def cmd_models(args) -> int:
    from tfrec import list_models, model_info

    for name in list_models():
        print(model_info(name).summary())
    return 0


def cmd_datasets(args) -> int:
    from tfrec.data import DATASETS

    for name, spec in DATASETS.items():
        print(f"{name:<16} {spec.description}")
    return 0


def cmd_train(args, extra) -> int:
    from tfrec.training import TrainConfig, train

    kwargs = parse_model_kwargs(extra)
    config = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        model_kwargs=kwargs,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        num_negatives=args.num_negatives,
        seed=args.seed,
        early_stopping_patience=args.early_stopping,
        full_ranking=not args.no_full_ranking,
        protocol=args.protocol,
        split_seed=args.split_seed,
        eval_negatives=args.eval_negatives,
        data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
    )
    config.validate()
    split = load_split_for(
        args.dataset, args.protocol, args.data_dir, args.split_seed, args.eval_negatives
    )
    out = Path(args.out or f"runs/{args.model}-{args.dataset}-s{args.seed}")
    print(
        f"Training {args.model} on {split.name}: {split.num_users} users, "
        f"{split.num_items} items, {len(split.train['user_id'])} training rows -> {out}"
    )
    result = train(config, split, out, verbose=args.verbose)
    print(
        f"Test metrics ({result.metrics['epochs_run']} epochs, {result.seconds:.0f} s):"
    )
    _print_metrics(result.metrics)
    print(f"Run directory: {out}")
    return 0


def cmd_evaluate(args) -> int:
    from tfrec.training import evaluate_model, load_run

    model, config = load_run(args.run)
    split = _split_for(config, args.data_dir)
    metrics = evaluate_model(
        model,
        split,
        ks=tuple(config["config"].get("ks", (10,))),
        full_ranking=not args.no_full_ranking,
    )
    _print_metrics(metrics)
    return 0


def cmd_export(args) -> int:
    from export.cli import export_run

    export_run(args.run, name=args.name, base_dir=args.base_dir, version=args.version)
    return 0


def _read_vocab(path: Path) -> tuple[list[str], list[str] | None]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:] if line]
    raw = [r[1] for r in rows]
    names = [r[2] if len(r) > 2 else "" for r in rows] if "name" in header else None
    return raw, names


def cmd_recommend(args) -> int:
    import numpy as np

    from tfrec.training import feed_scorer, keras_scorer

    if args.pipeline:
        return _recommend_pipeline(args)
    if bool(args.run) == bool(args.artifact):
        raise ValueError("Give exactly one of --run DIR or --artifact DIR.")
    if args.k < 1:
        raise ValueError(f"--k must be a positive int. Received: {args.k}")
    if args.run:
        from tfrec.training import load_run

        model, _ = load_run(args.run)
        score_fn = keras_scorer(model)
        vocab_dir = Path(args.run) / "vocab"
        source = f"run {args.run} (Keras)"
    else:
        from export.serving import ExportedModel

        exported = ExportedModel(args.artifact, runtime=args.runtime)
        out = exported.manifest["outputs"][0]["name"]
        score_fn = feed_scorer(exported, out)
        vocab_dir = exported.path / "vocab"
        source = f"{exported.path} ({args.runtime})"
    users, _ = _read_vocab(vocab_dir / "users.tsv")
    items, names = _read_vocab(vocab_dir / "items.tsv")
    if str(args.user) not in users:
        raise ValueError(
            f"Unknown user {args.user!r}: not in the training vocabulary "
            f"({len(users)} users, e.g. {', '.join(users[:3])})."
        )
    user = users.index(str(args.user))
    scores = score_fn(
        np.full(len(items), user, np.int64), np.arange(len(items), dtype=np.int64)
    )
    seen = []
    if not args.include_seen:
        seen_path = vocab_dir / "seen.npz"
        if not seen_path.is_file():
            raise FileNotFoundError(
                f"{seen_path} is missing, so seen items cannot be excluded; "
                "pass --include-seen or re-export the run."
            )
        with np.load(seen_path) as csr:
            indptr, indices = csr["indptr"], csr["indices"]
        seen = indices[indptr[user] : indptr[user + 1]]
        scores = scores.astype(np.float64)
        scores[seen] = -np.inf
    top = np.argsort(-scores, kind="stable")[: args.k]
    print(
        f"Top-{args.k} for user {args.user} from {source}; {len(seen)} seen items excluded:"
    )
    for rank, idx in enumerate(top, start=1):
        title = f"  {names[idx]}" if names else ""
        print(f"  {rank:>2}. item {items[idx]:<6} score={scores[idx]:.4f}{title}")
    return 0


def _recommend_pipeline(args) -> int:
    """``recommend --pipeline youtube``: candidate index, then ranking model."""
    if not args.artifact or args.run:
        raise ValueError(
            "--pipeline youtube needs --artifact saved_models/youtube[/<version>] "
            "(a pipeline export) and no --run."
        )
    if args.k < 1:
        raise ValueError(f"--k must be a positive int. Received: {args.k}")
    from export.pipeline import ExportedPipeline

    pipe = ExportedPipeline(args.artifact, runtime=args.runtime)
    recs = pipe.recommend(args.user, k=args.k)
    k_cand = next(s["k"] for s in pipe.manifest["stages"] if s["stage"] == "candidate")
    print(
        f"Top-{args.k} for user {args.user} from {pipe.path} ({args.runtime}): "
        f"{k_cand} candidates retrieved, seen items dropped, ranked by odds:"
    )
    for rank, rec in enumerate(recs, start=1):
        title = f"  {rec['title']}" if rec["title"] else ""
        print(
            f"  {rank:>2}. item {rec['item_id']:<6} odds={rec['odds']:.4f} "
            f"p={rec['score']:.4f}{title}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tfrec.training.optimizers import OPTIMIZERS

    parser = argparse.ArgumentParser(prog="tfrec", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list registered models")
    sub.add_parser("datasets", help="list data sets")

    t = sub.add_parser(
        "train", help="train a model; extra --name value pairs are model kwargs"
    )
    t.add_argument("model")
    t.add_argument("--dataset", default="movielens-100k")
    t.add_argument(
        "--protocol", default="leave_one_out", choices=["leave_one_out", "random"]
    )
    t.add_argument("--data-dir", default=None, help="local copy of the data set")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    t.add_argument("--learning-rate", "--lr", type=float, default=0.001)
    t.add_argument("--num-negatives", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--split-seed", type=int, default=0)
    t.add_argument(
        "--eval-negatives",
        type=int,
        default=99,
        help="sampled negatives per held-out item (leave-one-out protocol)",
    )
    t.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE")
    t.add_argument("--no-full-ranking", action="store_true")
    t.add_argument(
        "--out", default=None, help="run directory (default runs/MODEL-DATASET-sSEED)"
    )
    t.add_argument("--verbose", type=int, default=2)

    e = sub.add_parser("evaluate", help="evaluate a finished run")
    e.add_argument("run")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--no-full-ranking", action="store_true")

    x = sub.add_parser(
        "export", help="export a run to SavedModel + ONNX with parity check"
    )
    x.add_argument("run")
    x.add_argument("--name", default=None)
    x.add_argument("--base-dir", default="saved_models")
    x.add_argument("--version", type=int, default=None)

    r = sub.add_parser("recommend", help="top-K items for a user")
    r.add_argument("--run", default=None)
    r.add_argument("--artifact", default=None, help="saved_models/<name>[/<version>]")
    r.add_argument("--runtime", default="onnx", choices=["onnx", "saved_model"])
    r.add_argument("--user", required=True, help="raw user id, as in the data set")
    r.add_argument("--k", type=int, default=10)
    r.add_argument("--include-seen", action="store_true")
    r.add_argument(
        "--pipeline",
        default=None,
        choices=["youtube"],
        help="run a two-stage pipeline export (retrieve, then rank)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "train":
            return cmd_train(args, extra)
        handler = {
            "models": cmd_models,
            "datasets": cmd_datasets,
            "evaluate": cmd_evaluate,
            "export": cmd_export,
            "recommend": cmd_recommend,
        }[args.command]
        return handler(args)
    except KeyboardInterrupt:
        print("tfrec: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as err:  # one-line reason, non-zero exit
        if os.environ.get("TFREC_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"tfrec: error: {type(err).__name__}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
