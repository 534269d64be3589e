"""The ``tfrec`` command.

    tfrec models                       registered models: task, recipe, default data
    tfrec datasets                     data sets in the catalogue
    tfrec presets [MODEL]              named settings behind reported results
    tfrec train MODEL [--dataset NAME | --data FILE] [--preset P] [--name value ...]
                [--strategy default|mirrored|multi-worker]
    tfrec select MODEL --grid KEY=V1,V2 [...]   settings chosen on validation only
    tfrec evaluate RUN_DIR             the test metrics of a finished run
    tfrec export RUN_DIR               every serving graph: SavedModel + ONNX + parity
    tfrec export --all [--runs DIR...] [--no-browser]   the zoo, checked in 5 runtimes
    tfrec recommend --run DIR (--user ID | --session ID,ID,... | --item ID)
    tfrec recommend --artifact DIR --user ID
    tfrec recommend --pipeline youtube --artifact DIR --user ID

Settings follow the options, as ``--embedding-dim 16`` or ``--hidden-units
64,32,16``: a recipe's config fields and the model's keyword arguments, checked
before any data is loaded. Failures exit non-zero with a one-line reason;
``--debug`` shows TensorFlow's own output and the traceback.

The CLI is the application layer: it is the only part of ``tfrec`` that calls into
the ``export`` package (lazily, for ``export`` and ``recommend --artifact``); the
library itself (models, data, training, evaluation) never imports it.
"""

from __future__ import annotations

import argparse
import ast
import errno
import os
import sys
from pathlib import Path
from typing import Any


def _parse_value(text: str):
    if "," in text and not text.startswith(("(", "[")):
        return tuple(_parse_value(t) for t in text.split(",") if t)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_model_kwargs(extra: list[str]) -> dict:
    """``['--embedding-dim', '16', '--hidden-units=64,32']`` -> settings dict."""
    kwargs, i = {}, 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise ValueError(
                f"Unexpected argument {token!r}; settings look like --name value."
            )
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise ValueError(f"Setting {token} needs a value.")
            key, value = token[2:], extra[i + 1]
            i += 2
        kwargs[key.replace("-", "_")] = _parse_value(value)
    return kwargs


def _print_metrics(metrics: dict) -> None:
    for protocol, values in metrics.items():
        if not isinstance(values, dict):
            continue
        shown = "  ".join(
            f"{k}={v}" if isinstance(v, int) or float(v).is_integer() and v > 1
            else f"{k}={v:.4f}"
            for k, v in sorted(values.items())
            if k != "seconds" and isinstance(v, (int, float))
        )
        print(f"  {protocol:<10} {shown}")


def cmd_models(args) -> int:
    from tfrec import list_models, model_info

    print(f"{'model':<22} {'task':<10} {'recipe':<13} {'default data':<28} paper")
    for name in list_models():
        info = model_info(name)
        try:
            recipe = info.recipe
            rname, data = recipe.name, recipe.default_dataset
        except ValueError:
            rname, data = "(none)", "-"
        print(f"{name:<22} {info.task:<10} {rname:<13} {data:<28} {info.paper}")
    return 0


def cmd_datasets(args) -> int:
    from tfrec.data import DATASETS

    for name, spec in DATASETS.items():
        print(f"{name:<28} {spec.description}")
    print("Your own data: tfrec train MODEL --data FILE.csv|.tsv|.parquet "
          "--columns user=...,item=...")
    return 0


def cmd_presets(args) -> int:
    from tfrec import list_models, model_info

    names = [args.model] if args.model else list_models()
    seen = set()
    for name in names:
        try:
            recipe = model_info(name).recipe
        except ValueError:
            if args.model:
                raise
            continue
        for preset in recipe.presets:
            if preset.models and name not in preset.models:
                continue
            if args.model is None and (recipe.name, preset.name) in seen:
                continue
            seen.add((recipe.name, preset.name))
            models = name if args.model else ", ".join(preset.models or recipe.models)
            print(f"{preset.name}  ({models}; --dataset {preset.dataset or recipe.default_dataset})")
            values = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in preset.values.items())
            print(f"    {values}")
            print(f"    source: {preset.source}")
    if not seen:
        print("No presets." if args.model is None else f"No presets for {args.model}.")
    return 0


_QUERY_HINT = {
    "user": "--user {user}",
    "session": "--session {items}",
    "item": "--item {item}",
    "pipeline": "--user {user}",
}


def _next_commands(run: Path, recipe, vocab) -> list[str]:
    users = vocab.users or ["USER"]
    items = [i for i in vocab.items if i] or ["ITEM"]
    hint = _QUERY_HINT[recipe.query].format(
        user=users[0], item=items[0], items=",".join(items[:3])
    )
    return [
        f"tfrec evaluate {run}",
        f"tfrec export {run}",
        f"tfrec recommend --run {run} {hint} --k 10",
    ]


def _run_inputs(args, extra) -> tuple[Any, dict]:
    """``(data, settings)`` of ``train`` / ``select`` from their shared options."""
    import tfrec

    settings = parse_model_kwargs(extra)
    for key in ("epochs", "batch_size", "optimizer", "learning_rate", "seed",
                "early_stopping", "data_dir", "columns", "content", "split",
                "split_seed", "test_fraction", "valid_fraction", "eval_negatives",
                "mixed_precision", "jit_compile"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if settings.get("data_dir"):
        settings["data_dir"] = str(Path(settings["data_dir"]).resolve())
    if settings.get("content"):
        settings["content"] = str(Path(settings["content"]).resolve())
    if args.data and args.dataset:
        raise ValueError("Give --dataset NAME or --data FILE, not both.")
    data = args.data or args.dataset
    if data is None and args.preset:
        data = tfrec.model_info(args.model).recipe.preset(args.preset).dataset
    return data, settings


def cmd_train(args, extra) -> int:
    import tfrec
    from tfrec.console import quiet

    quiet()
    data, settings = _run_inputs(args, extra)
    recipe = tfrec.model_info(args.model).recipe
    label = Path(data).stem if args.data else (data or recipe.default_dataset)
    out = Path(args.out or f"runs/{args.model}-{label}-s{settings.get('seed', 0)}")
    result = tfrec.train(
        args.model,
        data,
        out=out,
        preset=args.preset,
        verbose=args.verbose,
        printer=print,
        overwrite=args.overwrite,
        strategy=args.strategy,
        **settings,
    )
    epochs = len(result.history.get("epochs", []))
    print(f"Test metrics, read once at the end ({epochs} epoch{'s' * (epochs != 1)}, "
          f"{result.seconds:.0f} s):")
    _print_metrics(result.metrics)
    print(f"Serving graphs: {', '.join(result.serving)}")
    if result.run_dir != out:  # a multi-worker run's non-chief worker
        print(f"This worker is not the chief; the chief wrote the run to {out}.")
        return 0
    from tfrec.training.runner import read_vocab

    print("Next:")
    for line in _next_commands(out, recipe, read_vocab(out)):
        print(f"  {line}")
    return 0


def parse_grid(pairs: list[str]) -> dict:
    """``["l2=100,200", "lr=0.001"]`` -> ``{"l2": [100, 200], "learning_rate": [0.001]}``."""
    grid = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--grid takes KEY=V1,V2,... Received: {pair!r}")
        key = {"lr": "learning_rate"}.get(key.replace("-", "_"), key.replace("-", "_"))
        grid[key] = [_parse_value(v) for v in values.split(",")]
    return grid


def cmd_select(args, extra) -> int:
    from tfrec.console import quiet
    from tfrec.training.select import markdown, select

    quiet()
    data, settings = _run_inputs(args, extra)
    grid = parse_grid(args.grid)
    trials = select(args.model, data, grid=grid, preset=args.preset,
                    monitor=args.monitor, printer=print, report=args.report, **settings)
    print()
    print(markdown(args.model, args.preset, settings, trials), end="")
    best = trials[0]
    if best.best is None:
        print("No trial produced a validation value.")
        return 1
    fixed = {k: v for k, v in settings.items() if k not in best.settings}
    flags = " ".join(f"--{k.replace('_', '-')} {v}"
                     for k, v in {**fixed, **best.settings}.items())
    preset = f" --preset {args.preset}" if args.preset else ""
    print(f"Best on validation: {best.settings} ({best.monitor} {best.best:.4f} at "
          f"epoch {best.best_epoch} of {best.epochs_run}). Train it; the test set is "
          "read once, at the end (add --early-stopping PATIENCE to keep the best "
          "epoch's weights):")
    print(f"  tfrec train {args.model}{preset} {flags}")
    if args.report:
        print(f"Report: {args.report}.md")
    return 0


def cmd_evaluate(args) -> int:
    from tfrec.console import quiet
    from tfrec.training.runner import evaluate_run

    quiet()
    metrics = evaluate_run(args.run, data_dir=args.data_dir)
    print(f"Test metrics of {args.run}:")
    _print_metrics(metrics)
    return 0


def cmd_export(args) -> int:
    from export.cli import export_run
    from tfrec.console import quiet

    quiet()
    if args.all or args.run is None:
        from export.cli import export_all_main

        return export_all_main(args)
    paths = export_run(
        args.run, name=args.name, base_dir=args.base_dir, version=args.version,
        graphs=args.graph, keep=args.keep, web_demo=args.web_demo,
        optimize=args.optimize, int8=args.int8,
    )
    import json

    for path in paths.values():
        inputs = {s["name"] for s in json.loads((path / "manifest.json").read_text())["inputs"]}
        if inputs == {"user_id", "item_id"}:
            print(f"Next: tfrec recommend --artifact {path.parent} --user ID")
            break
    else:
        if paths:
            print(f"Next: serve {next(iter(paths.values())).parent} with TF Serving "
                  "(model base path), or load model.onnx in onnxruntime")
    return 0


def _query(args):
    given = [q for q in ("user", "session", "item") if getattr(args, q) is not None]
    if len(given) != 1:
        raise ValueError("Give exactly one of --user ID, --session ID,ID,... or --item ID.")
    kind = given[0]
    value = getattr(args, kind)
    if kind == "session":
        value = [v for v in (t.strip() for t in value.split(",")) if v]
        if not value:
            raise ValueError("--session needs at least one item id.")
    return kind, value


def _print_recs(recs, header, vocab):
    names = dict(zip(vocab.items, vocab.item_names, strict=True)) if vocab.item_names else None
    print(header)
    for rank, (item, score) in enumerate(recs, start=1):
        title = f"  {names[item]}" if names and names.get(item) else ""
        print(f"  {rank:>2}. item {item:<8} score={score:.4f}{title}")


def _note_if_short(got: int, k: int, why: str) -> None:
    """Says so when fewer than ``k`` items could be returned."""
    if got < k:
        print(f"Note: only {got} item(s) can be returned, not --k {k}: {why}.")


def _why_short(args) -> str:
    if args.include_seen:
        return "that is every item the model can recommend here"
    return ("every other item is excluded (seen by this user, or the query's own "
            "items); --include-seen lists seen items too")


def cmd_recommend(args) -> int:
    from tfrec.console import quiet

    quiet()
    if args.pipeline:
        return _recommend_pipeline(args)
    if bool(args.run) == bool(args.artifact):
        raise ValueError("Give exactly one of --run DIR or --artifact DIR.")
    if args.k < 1:
        raise ValueError(f"--k must be a positive int. Received: {args.k}")
    kind, query = _query(args)
    if args.artifact:
        return _recommend_artifact(args, kind, query)
    from tfrec import model_info
    from tfrec.training.runner import load_run, read_vocab

    serving, record = load_run(args.run)
    recipe = model_info(record["model"]).recipe
    want = "user" if recipe.query == "pipeline" else recipe.query
    if kind != want:
        raise ValueError(
            f"{record['model']} recommends from --{want}, not --{kind}."
        )
    vocab = read_vocab(args.run)
    recs = recipe.recommend(
        record["model"], serving, vocab, query, k=args.k,
        exclude_seen=not args.include_seen,
    )
    shown = ",".join(query) if kind == "session" else query
    what = {"user": f"user {shown}", "session": f"session {shown}", "item": f"item {shown}"}
    _print_recs(recs, f"Top-{args.k} for {what[kind]} from run {args.run} (Keras):", vocab)
    _note_if_short(len(recs), args.k, _why_short(args))
    return 0


def _recommend_artifact(args, kind, query) -> int:
    """An exported user-item scorer, in onnxruntime or the SavedModel."""
    from export.serving import ExportedModel
    from tfrec.evaluation.scoring import feed_scorer
    from tfrec.recipes.interactions import recommend_for_user
    from tfrec.training.runner import read_vocab

    exported = ExportedModel(args.artifact, runtime=args.runtime)
    inputs = {s["name"] for s in exported.manifest["inputs"]}
    from export.recommend import serves_user_requests

    if kind == "user" and inputs != {"user_id", "item_id"} and serves_user_requests(
        exported.manifest
    ):  # its recommend signature (export/recommend.py)
        from export.recommend import recommend_for_user as recommend_signature

        vocab = read_vocab(exported.path)
        recs = recommend_signature(exported, vocab, query, k=args.k,
                                   exclude_seen=not args.include_seen)
        _print_recs(recs, f"Top-{args.k} for user {query} from {exported.path} "
                    f"({args.runtime}, recommend signature):", vocab)
        _note_if_short(len(recs), args.k, _why_short(args))
        return 0
    if kind != "user" or inputs != {"user_id", "item_id"}:
        raise ValueError(
            f"--artifact recommends for --user from user-item scorers; this artifact "
            f"takes {sorted(inputs)}. Use --run DIR for the other models."
        )
    out = exported.manifest["outputs"][0]["name"]
    vocab = read_vocab(exported.path)
    if not args.include_seen and vocab.seen is None:
        raise FileNotFoundError(
            f"{exported.path / 'vocab' / 'seen.npz'} is missing, so seen items "
            "cannot be excluded; pass --include-seen or re-export the run."
        )
    recs = recommend_for_user(
        feed_scorer(exported, out), vocab, query, k=args.k,
        exclude_seen=not args.include_seen,
    )
    _print_recs(recs, f"Top-{args.k} for user {query} from {exported.path} "
                f"({args.runtime}):", vocab)
    _note_if_short(len(recs), args.k, _why_short(args))
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
    if args.user is None:
        raise ValueError("--pipeline youtube needs --user ID.")
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
    _note_if_short(len(recs), args.k, f"the candidate stage retrieves {k_cand} items "
                   "and the ones this user has seen are dropped")
    return 0


def _run_options(t: argparse.ArgumentParser) -> None:
    """The model, data and training options ``train`` and ``select`` share."""
    t.add_argument("model")
    src = t.add_argument_group("data")
    src.add_argument("--dataset", default=None,
                     help="catalogue data set (default: the recipe's, see tfrec models)")
    src.add_argument("--data", default=None, metavar="FILE",
                     help="your own .csv / .tsv / .parquet interactions")
    src.add_argument("--columns", default=None,
                     help="column mapping, e.g. user=customer,item=sku,rating=stars,"
                     "time=ts,session=visit")
    src.add_argument("--content", default=None, metavar="FILE",
                     help="item content / features file, for models that need one")
    src.add_argument("--split", default=None,
                     help="leave_one_out, time, random, session_last_day or ncf_valid "
                     "(default: the recipe's)")
    src.add_argument("--split-seed", type=int, default=None)
    src.add_argument("--test-fraction", type=float, default=None)
    src.add_argument("--valid-fraction", type=float, default=None)
    src.add_argument("--eval-negatives", type=int, default=None,
                     help="sampled negatives per held-out item (sampled protocol)")
    src.add_argument("--data-dir", default=None, help="local copy of the data set")
    t.add_argument("--preset", default=None, help="named settings (tfrec presets MODEL)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--optimizer", default=None)
    t.add_argument("--learning-rate", "--lr", type=float, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                   help="stop when the validation metric stalls this many epochs")
    t.add_argument("--mixed-precision", action="store_true", default=None,
                   help="mixed_float16 compute, float32 variables and exports")
    t.add_argument("--jit-compile", action="store_true", default=None,
                   help="XLA-compile the training step (falls back where it cannot)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfrec", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true",
                        help="show TensorFlow's output and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list registered models")
    sub.add_parser("datasets", help="list data sets")
    p = sub.add_parser("presets", help="named settings behind reported results")
    p.add_argument("model", nargs="?", default=None)

    t = sub.add_parser(
        "train", help="train a model; extra --name value pairs are settings"
    )
    _run_options(t)
    t.add_argument("--out", default=None,
                   help="run directory (default runs/MODEL-DATA-sSEED)")
    t.add_argument("--overwrite", action="store_true",
                   help="train afresh in --out even if it holds a finished run")
    t.add_argument("--verbose", type=int, default=0,
                   help="Keras progress bars (0: one line per epoch)")
    t.add_argument("--strategy", default="default",
                   choices=["default", "mirrored", "multi-worker"],
                   help="tf.distribute strategy: mirrored (local GPUs or CPUs) or "
                   "multi-worker (TF_CONFIG); the batch size is the global batch")

    g = sub.add_parser(
        "select",
        help="choose settings on validation only (a grid of runs; the test set is not read)",
    )
    _run_options(g)
    g.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="values to try (repeatable; every combination is one trial)")
    g.add_argument("--monitor", default=None,
                   help="validation metric (default: the recipe's)")
    g.add_argument("--report", default=None, metavar="PATH",
                   help="write PATH.json and PATH.md")

    e = sub.add_parser("evaluate", help="evaluate a finished run on its test part")
    e.add_argument("run")
    e.add_argument("--data-dir", default=None)

    x = sub.add_parser(
        "export", help="export every serving graph of a run (SavedModel + ONNX, parity)"
    )
    x.add_argument("run", nargs="?", default=None, help="a run (or --all)")
    x.add_argument("--all", action="store_true", help="train every model briefly, "
                   "export and check everything (export.zoo); exit 1 if any fails")
    x.add_argument("--runs", nargs="+", default=None, help="with --all: these runs")
    x.add_argument("--no-browser", action="store_true", help="with --all: no pages")
    x.add_argument("--name", default=None)
    x.add_argument("--base-dir", default="saved_models")
    x.add_argument("--version", type=int, default=None)
    x.add_argument("--graph", action="append", default=None,
                   help="only this serving graph (repeatable)")
    x.add_argument("--keep", type=int, default=None, metavar="N",
                   help="after a successful export keep only the newest N versions")
    x.add_argument("--web-demo", action="store_true",
                   help="also write <version>/web/: the model in a browser page "
                   "(onnxruntime-web)")
    x.add_argument("--optimize", action="store_true", help="also write model.opt.onnx "
                   "(onnxruntime graph optimisations), parity-checked")
    x.add_argument("--int8", action="store_true", help="also write model.int8.onnx "
                   "(dynamic INT8 quantisation), parity- and top-10-checked")

    r = sub.add_parser("recommend", help="top-K items for a user, session or item")
    r.add_argument("--run", default=None)
    r.add_argument("--artifact", default=None, help="saved_models/<name>[/<version>]")
    r.add_argument("--runtime", default="onnx", choices=["onnx", "saved_model"])
    r.add_argument("--user", default=None, help="raw user id, as in the data")
    r.add_argument("--session", default=None, help="raw item ids, comma-separated")
    r.add_argument("--item", default=None, help="raw item id (similar items)")
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
    if args.debug:
        os.environ["TFREC_DEBUG"] = "1"
    if extra and args.command not in ("train", "select"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "train":
            return cmd_train(args, extra)
        if args.command == "select":
            return cmd_select(args, extra)
        handler = {
            "models": cmd_models,
            "datasets": cmd_datasets,
            "presets": cmd_presets,
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
        if _disk_full(err):
            print("tfrec: error: no space left on device. Free some space and rerun "
                  "the same command: a training run resumes from its last finished "
                  "epoch, and nothing half-written is kept.", file=sys.stderr)
            return 1
        print(f"tfrec: error: {type(err).__name__}: {_first_line(err)}", file=sys.stderr)
        return 1


def _disk_full(err: BaseException | None) -> bool:
    """ENOSPC anywhere in the chain (h5py and TF report it in the message)."""
    seen = 0
    while err is not None and seen < 10:
        text = str(err)
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in text \
                or "errno = 28" in text:
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


if __name__ == "__main__":
    sys.exit(main())
