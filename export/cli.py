"""``tfrec-export RUN_DIR``: export every serving graph of a run (also ``tfrec
export``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _folder_names(serving: dict, main: str, name: str | None) -> dict[str, str]:
    """``saved_models/<folder>`` of each graph: the graph's registry name, or
    ``--name`` for the main graph and ``<name>-<graph>`` for the others."""
    if name is None:
        return {g: g for g in serving}
    return {g: name if g == main else f"{name}-{g}" for g in serving}


def export_run(
    run,
    *,
    name: str | None = None,
    base_dir: str | os.PathLike = "saved_models",
    version: int | None = None,
    verbose: bool = True,
    graphs: list[str] | None = None,
    keep: int | None = None,
    web_demo: bool = False,
    optimize: bool = False,
    int8: bool = False,
) -> dict[str, Path]:
    """Exports every serving graph of a finished run, each with its parity check.

    Args:
        run: A run directory, or the `RunResult` of ``tfrec.train(..., out=...)``.
        name: Folder of the main graph (default: its registry name); the other
            graphs go to ``<name>-<graph>``.
        base_dir: TF Serving model base path.
        version: Version number (default: the next free one per folder).
        verbose: Print the parity report of each graph.
        graphs: Only these graphs (default: all of them).
        keep: After each successful export, keep only the newest ``keep``
            versions of that folder (default: keep all).
        web_demo: Also write ``<version>/web/`` (`export.webdemo`), a browser page
            running the main graph's ONNX in onnxruntime-web, or the first graph
            a page can drive (a user-item scorer or a session model). It is
            written before the version is published and listed with its sha256
            in the manifest.
        optimize, int8: Also write ``model.opt.onnx`` / ``model.int8.onnx`` with
            their own parity reports (`export.optimize`).

    Returns:
        ``{graph name: version folder}``. Each version holds the SavedModel,
        ``model.onnx``, ``manifest.json`` (inputs described, OOV policy, parity)
        and the run's ``vocab/``, so serving needs nothing else.

    Raises:
        ValueError: a bad ``name`` or ``keep``; ExportError: a target that is a
            file, not a tfrec export folder, or not writable. Both before any work.
    """
    from export.artifact import (
        check_export_name,
        check_export_target,
        check_keep,
        export_model,
        prune_versions,
    )

    keep = check_keep(keep)
    if name is not None:
        check_export_name(name)
    check_export_target(base_dir, name)
    run_dir = Path(getattr(run, "run_dir", run) or "")
    if not str(run_dir) or str(run_dir) == ".":
        raise ValueError("This run was trained in memory (no out=); nothing to export.")
    from tfrec import model_info
    from tfrec.training.runner import load_run

    serving, record = load_run(run_dir)
    recipe = model_info(record["model"]).recipe
    if graphs:
        unknown = sorted(set(graphs) - set(serving))
        if unknown:
            raise ValueError(
                f"Run {run_dir} has no graph {unknown}; its graphs: {sorted(serving)}."
            )
        serving = {g: serving[g] for g in graphs}
    folders = _folder_names(serving, record["main"], name)
    for folder in folders.values():
        check_export_target(base_dir, folder)
    demo = _web_demo_graph(serving, record["main"]) if web_demo else None
    vocab = run_dir / "vocab"
    extra = {
        f"vocab/{p.name}": p
        for p in sorted(vocab.iterdir())
        if p.suffix in (".tsv", ".npz", ".json") and not p.name.startswith(".")
    } if vocab.is_dir() else {}
    paths = {}
    for graph_name, graph in serving.items():
        info = model_info(graph.name)
        kwargs = graph.kwargs
        page = None
        if graph_name == demo:  # written into the version before it is published
            from export.webdemo import write_web_demo

            def page(tmp, manifest):
                write_web_demo(tmp, manifest=manifest)

        paths[graph_name] = path = export_model(
            graph.model,
            folders[graph_name],
            base_dir=base_dir,
            version=version,
            example_inputs=lambda b, rng, info=info, kwargs=kwargs: info.example_inputs(
                kwargs, b, rng
            ),
            atol=info.parity.atol,
            rtol=info.parity.rtol,
            tolerance_reason=info.parity.reason,
            model_config={
                "registry_name": graph.name,
                "kwargs": kwargs,
                "run": {k: record.get(k) for k in ("model", "recipe", "preset", "config",
                                                    "source")},
            },
            extra_files=extra,
            input_notes=recipe.input_notes(graph.name),
            oov_policy=recipe.oov_policy,
            before_publish=page,
        )
        if verbose:
            report = json.loads((path / "manifest.json").read_text())["parity"]
            print(f"Exported {graph_name} -> {path}")
            for runtime in ("saved_model", "onnx"):
                r = report[runtime]
                print(
                    f"  parity {runtime:<11} max_abs_diff={r['max_abs_diff']:.2e} "
                    f"max_rel_diff={r['max_rel_diff']:.2e} passed={r['passed']}"
                )
            tol = report["tolerance"]
            print(f"  tolerance atol={tol['atol']} rtol={tol['rtol']} ({tol['reason']})")
        if optimize or int8:
            from export.optimize import write_variants

            write_variants(path, optimize=optimize, int8=int8, verbose=verbose)
        if keep is not None:
            removed = prune_versions(path.parent, keep)
            if verbose and removed:
                print(f"  kept the newest {keep} version(s) of {path.parent}; removed "
                      f"{', '.join(map(str, removed))}")
    if demo is not None and verbose:
        web = paths[demo] / "web"
        print(f"Web demo of {demo} -> {web}/index.html (serve {paths[demo]} over "
              f"http: python -m http.server -d {paths[demo]}, open /web/)")
    return paths


def _web_demo_graph(serving: dict, main: str) -> str:
    """The graph the web demo runs: the main one if a page can drive it. Checked,
    with the onnxruntime-web files, before anything is exported."""
    from export.webdemo import demo_kind, ort_web_dist

    ort_web_dist()

    def kind(graph):
        spec = {"inputs": [{"name": k} for k in graph.model.input]}
        return demo_kind(spec) if isinstance(graph.model.input, dict) else None

    order = ([main] if main in serving else []) + [g for g in serving if g != main]
    for g in order:
        if kind(serving[g]) is not None:
            return g
    raise ValueError(
        f"--web-demo needs a user-item scorer (inputs user_id, item_id) or a session "
        f"model (session_items); this run's graphs {sorted(serving)} are neither."
    )


def export_all_main(args) -> int:
    """``tfrec export --all``: `export.zoo.export_all`, exit 1 if any row fails."""
    if not args.all:
        raise SystemExit("tfrec export: error: give a run directory, or --all")
    from export.zoo import export_all

    runs = [*([args.run] if args.run else []), *(args.runs or [])] or None
    rows = export_all(args.base_dir, runs=runs, browser=not args.no_browser)
    return 0 if rows and all(r["passed"] for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfrec-export", description=__doc__)
    parser.add_argument("run", help="a finished tfrec run directory")
    parser.add_argument("--name", default=None)
    parser.add_argument("--base-dir", default="saved_models")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--graph", action="append", default=None,
                        help="export only this serving graph (repeatable)")
    parser.add_argument("--keep", type=int, default=None, metavar="N",
                        help="after the export, keep only the newest N versions")
    parser.add_argument("--web-demo", action="store_true",
                        help="also write <version>/web/, an onnxruntime-web page")
    parser.add_argument("--optimize", action="store_true",
                        help="also write model.opt.onnx (onnxruntime graph optimisations)")
    parser.add_argument("--int8", action="store_true",
                        help="also write model.int8.onnx (dynamic INT8 quantisation)")
    args = parser.parse_args(argv)
    from tfrec.console import quiet

    quiet()
    try:
        export_run(
            args.run, name=args.name, base_dir=args.base_dir, version=args.version,
            graphs=args.graph, keep=args.keep, web_demo=args.web_demo,
            optimize=args.optimize, int8=args.int8,
        )
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"tfrec-export: error: {type(err).__name__}: {first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
