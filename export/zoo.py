"""``tfrec export --all``: train every registered model briefly, export every
serving graph and check each export in every runtime it is served by.

For each exported version the row records its SavedModel signatures, the ONNX op
count and op types, the file sizes, and one check per runtime, each against the
reference (Keras) outputs of the export:

- ``ort`` and ``saved_model``: the parity report of the manifest (Python
  onnxruntime and the SavedModel in TF, checked by ``export.artifact``);
- ``node``: ``js/check_onnx.mjs`` (onnxruntime-node on ``golden.json``), one Node
  process for all versions;
- ``loader``: ``export.tfserving.run_many`` (TF Serving's load path through the C
  API) on the golden inputs, compared with the golden outputs, one process for
  all versions;
- ``browser`` (user-item scorers and session models, the graphs the web demo can
  drive): the page's top-10 in onnxruntime-web inside headless chromium against
  Python onnxruntime's top-10 on the same model (item ids equal, max score diff).

A row passes when every check it has passes. ``export_all`` prints one table and
writes ``export_all.json`` (the rows) under ``base_dir``.

Example:
    >>> rows = export_all("build/zoo", models=["neumf", "gru4rec"], browser=False)
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "js"
RESULTS = "export_all.json"
CHECKS = ("ort", "saved_model", "node", "loader", "browser")
BROWSER_K = 10


# --- training and exporting ------------------------------------------------------


def train_zoo(
    work_dir: str | os.PathLike,
    models: Sequence[str] | None = None,
    *,
    printer: Callable[[str], None] = print,
) -> list[Path]:
    """Trains each model through the runner on its recipe's tiny synthetic data at
    the recipe's test settings; one run directory ``work_dir/<model>`` per model.
    A model already among the serving graphs of an earlier run of ``models`` is not
    trained again (``gru4rec`` brings ``gru4rec_step`` and ``gru4rec_topk``)."""
    import tfrec
    from tfrec.registry import model_info
    from tfrec.training.runner import load_run

    names = list(models) if models is not None else tfrec.list_models()
    unknown = sorted(set(names) - set(tfrec.list_models()))
    if unknown:
        raise ValueError(f"Unknown models {unknown}; registered: {tfrec.list_models()}")
    runs, covered = [], set()
    for name in names:
        if name in covered:
            continue
        recipe = model_info(name).recipe
        run = Path(work_dir) / name
        started = time.perf_counter()
        tfrec.train(name, recipe.synthetic_data(0), out=run, **dict(recipe.test_config))
        serving, _ = load_run(run)
        covered |= {g.name for g in serving.values()} | {name}
        printer(f"trained {name} ({time.perf_counter() - started:.1f} s): graphs "
                f"{', '.join(serving)}")
        runs.append(run)
    return runs


def export_runs(
    runs: Iterable[str | os.PathLike], base_dir: str | os.PathLike
) -> list[tuple[str, str, Path]]:
    """Exports every serving graph of each run (``export.cli.export_run``); the
    folders are ``<run model>`` and ``<run model>-<graph>`` so two runs never
    share one. A run with a graph the browser page can drive is exported with
    ``web_demo=True`` (``web/`` written inside the version before it is
    published). ``[(run model, graph, version folder)]``."""
    from export.cli import _web_demo_graph, export_run
    from tfrec.training.runner import load_run

    out = []
    for run in runs:
        serving, record = load_run(Path(run))
        model = record["model"]
        try:  # a page-capable graph and the onnxruntime-web files
            _web_demo_graph(serving, record["main"])
            web = True
        except (ValueError, FileNotFoundError):
            web = False
        paths = export_run(run, name=model, base_dir=base_dir, verbose=False,
                           web_demo=web)
        out += [(model, graph, path) for graph, path in paths.items()]
    return out


# --- per-version facts -------------------------------------------------------------


def signature_keys(version_dir: Path) -> list[str]:
    """The SignatureDef keys of the SavedModel's ``serve`` MetaGraph, read from
    ``saved_model.pb`` (no graph is loaded); ``__saved_model_init_op`` is left
    out."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    keys = set()
    for meta in proto.meta_graphs:
        if "serve" in meta.meta_info_def.tags:
            keys |= set(meta.signature_def)
    return sorted(k for k in keys if not k.startswith("__"))  # not the init op


def onnx_ops(onnx_path: Path) -> tuple[int, list[str]]:
    """(node count of the main graph, sorted op types)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return len(graph.node), sorted({n.op_type for n in graph.node})


def _saved_model_bytes(version_dir: Path) -> int:
    files = [version_dir / "saved_model.pb", *(version_dir / "variables").rglob("*"),
             *(version_dir / "assets").rglob("*")]
    return sum(p.stat().st_size for p in files if p.is_file())


def _check(passed: bool, max_abs=None, max_rel=None, problems=(), **extra) -> dict:
    return {"passed": bool(passed), "max_abs_diff": max_abs, "max_rel_diff": max_rel,
            "problems": list(problems), **extra}


def compare_outputs(reference: dict, candidate: dict, *, atol: float, rtol: float) -> dict:
    """``export.parity.compare`` for numeric outputs; string outputs (``bytes`` from
    the loader, unicode in ``golden.npz``) must be equal."""
    from export.parity import compare

    numeric = [k for k in reference if np.asarray(reference[k]).dtype.kind not in "OUS"]
    report = compare({k: reference[k] for k in numeric},
                     {k: candidate[k] for k in numeric if k in candidate},
                     atol=atol, rtol=rtol)
    problems = list(report["problems"])
    missing = sorted(set(reference) - set(candidate))
    extra = sorted(set(candidate) - set(reference))
    if missing or extra:
        problems = [p for p in problems if not p.startswith("output names")]
        problems.append(f"outputs missing {missing}, unexpected {extra}")
    for key in sorted(set(reference) - set(numeric)):
        if key not in candidate:
            continue

        def text(a):
            a = np.asarray(a)
            return [v.decode() if isinstance(v, bytes) else str(v) for v in a.flat], a.shape

        if text(reference[key]) != text(candidate[key]):
            problems.append(f"{key}: strings differ")
    return _check(not problems, report["max_abs_diff"], report["max_rel_diff"], problems)


# --- runtimes ------------------------------------------------------------------------


def node_checks(version_dirs: Sequence[Path], *, timeout: float = 600) -> list[dict]:
    """``node js/check_onnx.mjs`` once over all folders; one check per folder (a
    failing check when Node or onnxruntime-node is missing, with the fix)."""
    fix = "run `make js-tools` (Debian nodejs + `npm ci` in js/)"
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "onnxruntime-node").is_dir():
        what = "`node` is not on PATH" if node is None else "onnxruntime-node is missing"
        return [_check(False, problems=[f"{what}; {fix}"]) for _ in version_dirs]
    proc = subprocess.run(
        [node, str(JS / "check_onnx.mjs"), *map(str, version_dirs)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    by_dir = {}
    for line in proc.stdout.splitlines():
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        by_dir[result.get("version_dir")] = result
    out = []
    for d in version_dirs:
        r = by_dir.get(str(d))
        if r is None:
            out.append(_check(False, problems=[
                f"check_onnx.mjs (exit {proc.returncode}) printed no result for {d}: "
                f"{proc.stderr.strip()[-500:]}"]))
        else:
            out.append(_check(r.get("passed") is True, r.get("max_abs_diff"),
                              r.get("max_rel_diff"), r.get("problems") or [],
                              runtime=r.get("runtime")))
    return out


def loader_checks(version_dirs: Sequence[Path], manifests: Sequence[dict]) -> list[dict]:
    """The golden inputs of every folder through one loader process
    (``export.tfserving.run_many``), compared with the golden outputs at the
    manifest's tolerance. When that process fails, each folder runs alone, so the
    failure is charged to the right one."""
    from export.golden import load_golden
    from export.tfserving import LoaderError, run, run_many

    goldens = [load_golden(d) for d in version_dirs]
    jobs = [(d, {"inputs": ins}) for d, (ins, _) in zip(version_dirs, goldens, strict=True)]
    try:
        results = [r[0] for r in run_many(jobs)]
    except LoaderError:
        results = []
        for d, job in jobs:
            try:
                results.append(run(d, **job)[0])
            except LoaderError as err:
                results.append(err)
    out = []
    for result, (_, want), manifest in zip(results, goldens, manifests, strict=True):
        if isinstance(result, Exception):
            out.append(_check(False, problems=[f"loader: {result}"]))
            continue
        tol = manifest["parity"]["tolerance"]
        out.append(compare_outputs(want, result, atol=tol["atol"], rtol=tol["rtol"]))
    return out


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def log_message(self, *args):
        pass


def _browser_query(version_dir: Path) -> tuple[dict, np.ndarray, list[int]]:
    """(page query, Python onnxruntime scores, excluded item indices)."""
    from export.artifact import load_manifest
    from export.serving import ExportedModel
    from export.webdemo import _score_output, demo_data
    from tfrec.recipes.interactions import seen_items
    from tfrec.training.runner import read_vocab

    manifest = load_manifest(version_dir)
    data = demo_data(version_dir)
    vocab = read_vocab(version_dir)
    model = ExportedModel(version_dir, runtime="onnx")
    output = _score_output(manifest)
    n = len(vocab.items)
    if data["kind"] == "user":
        user = data["users"][0]
        u = vocab.users.index(user) if user in vocab.users else 0
        scores = model({"user_id": np.full(n, u, np.int64), "item_id": np.arange(n)})
        return ({"user": user, "exclude_seen": True},
                np.asarray(scores[output]).reshape(-1), seen_items(vocab, u).tolist())
    session = data["example_session"]
    idx = [[str(i) for i in vocab.items].index(s) for s in session]
    scores = model({"session_items": np.array([idx], np.int64)})
    return ({"session": ",".join(session)}, np.asarray(scores[output]).reshape(n),
            [0, *idx])


def browser_check(version_dir: Path, url: str, screenshot: Path) -> dict:
    """The web demo page of one version against Python onnxruntime's top-10."""
    from export.webdemo import write_web_demo
    from tfrec.recipes.interactions import top_k
    from tfrec.training.runner import read_vocab

    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "playwright-core").is_dir():
        return _check(False, problems=["node or playwright-core is missing; run "
                                       "`make js-tools`"])
    try:
        write_web_demo(version_dir)
        query, scores, exclude = _browser_query(version_dir)
    except (ValueError, FileNotFoundError) as err:
        return _check(False, problems=[f"{type(err).__name__}: {err}"])
    proc = subprocess.run(
        [node, str(JS / "drive_page.mjs"), url, json.dumps(query), str(screenshot)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    try:
        page = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return _check(False, problems=[f"drive_page.mjs exited {proc.returncode}: "
                                       f"{(proc.stdout + proc.stderr)[-500:]}"])
    want = top_k(scores, read_vocab(version_dir), BROWSER_K, exclude)
    items = page.get("items") or []
    problems = []
    if page.get("state") != "done":
        problems.append(f"page state {page.get('state')!r}: {page.get('status')}")
    if [r["id"] for r in items] != [str(i) for i, _ in want]:
        problems.append("page items differ from Python onnxruntime's top-10")
    diff = (float(np.max(np.abs(np.subtract([r["score"] for r in items],
                                            [s for _, s in want]))))
            if items and len(items) == len(want) else None)
    ref = max((abs(s) for _, s in want), default=0.0)
    rel = diff / max(ref, 1e-12) if diff is not None else None
    if diff is None or diff > 1e-5:
        problems.append(f"max |score diff| {diff} beyond 1e-05")
    return _check(not problems, diff, rel, problems, seconds=page.get("seconds"))


def browser_checks(version_dirs: Sequence[Path], base_dir: Path,
                   screenshots: Path) -> list[dict | None]:
    """A browser check for each folder the web demo can drive (None for the
    others), all served from ``base_dir`` by one loopback http server."""
    from export.artifact import load_manifest
    from export.webdemo import demo_kind

    handler = functools.partial(_Handler, directory=str(base_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        out = []
        for d in version_dirs:
            if demo_kind(load_manifest(d, verify=False)) is None:
                out.append(None)
                continue
            rel = Path(d).resolve().relative_to(Path(base_dir).resolve()).as_posix()
            shot = screenshots / f"{rel.replace('/', '_')}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            out.append(browser_check(Path(d), f"{root}/{rel}/web/", shot))
        return out
    finally:
        server.shutdown()
        server.server_close()


# --- rows and the table -----------------------------------------------------------------


def version_row(model: str, graph: str, version_dir: Path) -> dict:
    """Everything but the Node, loader and browser checks of one version."""
    from export.artifact import load_manifest

    row = {"model": model, "graph": graph, "path": str(version_dir)}
    try:
        manifest = load_manifest(version_dir)
        row["registry_name"] = (manifest.get("model") or {}).get("registry_name", graph)
        row["signatures"] = signature_keys(version_dir)
        onnx_path = version_dir / manifest["onnx"]["file"]
        row["onnx_ops"], row["onnx_op_types"] = onnx_ops(onnx_path)
        row["saved_model_bytes"] = _saved_model_bytes(version_dir)
        row["onnx_bytes"] = onnx_path.stat().st_size
        parity = manifest["parity"]
        for runtime, key in (("onnx", "ort"), ("saved_model", "saved_model")):
            r = parity[runtime]
            row[key] = _check(r["passed"], r["max_abs_diff"], r["max_rel_diff"],
                              r.get("problems") or [])
        row["_manifest"] = manifest
    except Exception as err:  # a broken export is a failing row, not a crash
        row["error"] = f"{type(err).__name__}: {err}"
    return row


def finish_row(row: dict) -> dict:
    checks = [row.get(c) for c in CHECKS if row.get(c) is not None]
    row["passed"] = (
        "error" not in row
        and all(row.get(c) is not None for c in CHECKS if c != "browser")
        and all(c["passed"] for c in checks)
    )
    row.pop("_manifest", None)
    return row


def _fmt_diff(check: dict | None) -> str:
    if check is None:
        return "-"
    d = check.get("max_abs_diff")
    mark = "" if check["passed"] else " FAIL"
    if d is None:
        return "FAIL" if not check["passed"] else "ok"
    rel = check.get("max_rel_diff")
    return f"{d:.1e}/{rel:.0e}{mark}" if rel is not None else f"{d:.1e}{mark}"


def _fmt_size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.0f}K" if n < 1 << 20 else f"{n / (1 << 20):.1f}M"


def format_table(rows: Sequence[dict]) -> str:
    """A Markdown table: one line per exported graph, diffs as ``abs/rel``."""
    head = ["model", "graph", "signatures", "ONNX ops", "SavedModel", "ONNX",
            "ORT (Python)", "SavedModel (TF)", "Node", "loader (C API)", "browser",
            "passed"]
    lines = []
    for r in rows:
        lines.append([
            r["model"], r["graph"], ",".join(r.get("signatures") or []) or "-",
            str(r.get("onnx_ops", "-")), _fmt_size(r.get("saved_model_bytes")),
            _fmt_size(r.get("onnx_bytes")),
            *(_fmt_diff(r.get(c)) for c in CHECKS),
            "yes" if r["passed"] else "NO",
        ])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(head)]

    def fmt(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines]
    passed = sum(r["passed"] for r in rows)
    out.append(f"\n{passed}/{len(rows)} exported graphs passed every check "
               "(diffs: max abs/max rel vs the reference outputs; browser: page vs "
               "Python onnxruntime top-10 scores).")
    for r in rows:
        for c in ("error", *CHECKS):
            v = r.get(c)
            if c == "error" and v:
                out.append(f"  {r['model']}/{r['graph']}: {v}")
            elif isinstance(v, dict) and not v["passed"]:
                out.append(f"  {r['model']}/{r['graph']} {c}: {'; '.join(v['problems'])}")
    return "\n".join(out)


def _write_json(path: Path, rows: list[dict]) -> None:
    tmp = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with tmp:
            json.dump({"format": "tfrec-export-all/1", "rows": rows}, tmp, indent=1,
                      default=str)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise


def export_all(
    base_dir: str | os.PathLike,
    *,
    runs: Sequence[str | os.PathLike] | None = None,
    models: Sequence[str] | None = None,
    work_dir: str | os.PathLike | None = None,
    browser: bool = True,
    printer: Callable[[str], None] = print,
) -> list[dict]:
    """Trains (or takes ``runs``), exports every serving graph under ``base_dir``
    and checks each export in every runtime.

    Args:
        base_dir: Where the exports go (``<model>``, ``<model>-<graph>`` folders)
            and ``export_all.json``.
        runs: Finished run directories to export instead of training.
        models: Registered models to train (default: all of them); ignored with
            ``runs``.
        work_dir: Where the runs are trained (default: a temporary folder, removed
            afterwards).
        browser: Also drive the web demo page of user-item scorers and session
            models in headless chromium (about 4 s a page).
        printer: Where progress and the table go.

    Returns:
        One row per exported graph: ``model``, ``graph``, ``path``,
        ``signatures``, ``onnx_ops``, ``onnx_op_types``, ``saved_model_bytes``,
        ``onnx_bytes``, a check (``passed``, ``max_abs_diff``, ``max_rel_diff``,
        ``problems``) per runtime in ``CHECKS`` (``browser`` None where no page
        applies or ``browser=False``), ``passed``; ``error`` for a broken export.
    """
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp_work = None
    if runs is None:
        if work_dir is None:
            tmp_work = tempfile.mkdtemp(prefix="tfrec-export-all-")
        runs = train_zoo(work_dir or tmp_work, models, printer=printer)
    try:
        exported = export_runs(runs, base)
    finally:
        if tmp_work is not None:
            shutil.rmtree(tmp_work, ignore_errors=True)
    t_export = time.perf_counter()
    printer(f"exported {len(exported)} graphs of {len(runs)} runs "
            f"({t_export - started:.1f} s)")
    return check_exports(exported, base, browser=browser, printer=printer,
                         started=started)


def check_exports(
    exported: Sequence[tuple[str, str, Path]],
    base_dir: str | os.PathLike,
    *,
    browser: bool = True,
    printer: Callable[[str], None] = print,
    started: float | None = None,
) -> list[dict]:
    """The rows of ``export_all`` for versions already exported under ``base_dir``
    (``[(run model, graph, version folder)]``); prints the table, writes
    ``export_all.json``."""
    base = Path(base_dir)
    t_export = time.perf_counter()
    started = t_export if started is None else started
    rows = [version_row(m, g, Path(p)) for m, g, p in exported]
    ok = [r for r in rows if "error" not in r]
    dirs = [Path(r["path"]) for r in ok]
    if ok:
        for r, check in zip(ok, node_checks(dirs), strict=True):
            r["node"] = check
        for r, check in zip(ok, loader_checks(dirs, [r["_manifest"] for r in ok]),
                            strict=True):
            r["loader"] = check
        if browser:
            shots = base / ".export_all_screenshots"
            for r, check in zip(ok, browser_checks(dirs, base, shots), strict=True):
                r["browser"] = check
    rows = [finish_row(r) for r in rows]
    for r in rows:
        r.setdefault("browser", None)
    _write_json(base / RESULTS, rows)
    printer(format_table(rows))
    printer(f"checked in {time.perf_counter() - t_export:.1f} s; total "
            f"{time.perf_counter() - started:.1f} s; rows in {base / RESULTS}")
    return rows
