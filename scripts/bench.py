"""`make bench`: run the benchmark sections, write ``bench.json``, print one table.

Every section is a plug-in: for a section ``NAME`` the driver imports
``scripts/bench_NAME.py`` and calls its ``run(quick: bool, threads: int) -> dict``
(a ``smoke`` keyword, where ``run`` takes one, asks for tiny sizes: the driver's
own test). Each section runs in a fresh Python process (``--section``), so one
section's threads, memory and TensorFlow state never touch another's, its peak
resident memory is its own, and a crash is reported, not fatal. A missing plug-in
is reported as "not run".

What a section returns lands in ``bench.json`` under its name (``{"neumf":
{...}}``); a returned dict holding its own name as a key (``{"scaling": [...]}``)
or dotted keys (``"neumf.examples_per_s_ratio"``) is merged at the top level
instead, so a section can write any of the keys other tools read:

    neumf.examples_per_s_ratio, neumf.time_to_hr_ratio, gru4rec.events_per_s_ratio,
    evaluation.full_ranking_ml1m_s, evaluation.sampled_ncf_s,
    serving.all_items_ort_speedup, scaling (a list of {interactions,
    examples_per_s, epoch_s, peak_rss_mb})

Figures are ratios against a baseline measured in the same invocation where the
goal is a ratio (the machine is shared; absolute seconds mean little), absolute
seconds where the goal is a time budget.

    python scripts/bench.py                    # make bench: full sizes
    python scripts/bench.py --quick            # make bench-quick: about two minutes
    python scripts/bench.py --sections evaluation serving --out /tmp/b.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import inspect
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

# Default order: the cheap, always-present ones first. --quick leaves out the
# ONNX variants (no goal of their own).
SECTIONS = ("evaluation", "serving", "variants", "neumf", "gru4rec", "scaling")
QUICK_SECTIONS = tuple(s for s in SECTIONS if s != "variants")

# (key, goal text, target, direction): "min" = at least target, "max" = at most,
# "report" = a figure shown without a target of its own (GRU4Rec's goal is against
# the official code, which make bench does not run: README, scripts/gru4rec_vs_official.py).
GOALS = (
    ("neumf.examples_per_s_ratio", "NeuMF-8 examples/s vs plain Keras", 3.0, "min"),
    ("neumf.time_to_hr_ratio", "NeuMF-8 time to HR@10>=0.68, Keras/tfrec", 3.0, "min"),
    ("gru4rec.events_per_s_ratio", "GRU4Rec events/s vs plain Keras GRU", None,
     "report"),
    ("evaluation.full_ranking_ml1m_s", "full ranking ML-1M, NeuMF (s)", 3.0, "max"),
    ("evaluation.full_ranking_ml1m_mf_s", "full ranking ML-1M, MF (s)", 3.0, "max"),
    ("evaluation.sampled_ncf_s", "sampled NCF protocol, NeuMF (s)", 1.0, "max"),
    ("serving.all_items_ort_speedup", "recommend all items: TF / ORT", 5.0, "min"),
    ("serving.all_items_ort_speedup_mf", "recommend all items, MF: TF / ORT", 5.0,
     "min"),
    ("scaling_time_per_interaction", "scaling: s/interaction, top/bottom", 1.5, "max"),
)

PACKAGES = ("tensorflow", "keras", "onnxruntime", "tf2onnx", "onnx", "numpy")


def atomic_write_json(path, payload) -> None:
    """`tfrec.io.atomic_write_json`, loaded from its file: importing the package
    would import TensorFlow into the driver (seconds, and memory) for nothing."""
    spec = importlib.util.spec_from_file_location("_tfrec_io", ROOT / "tfrec/io.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.atomic_write_json(path, payload)


def quiet_tensorflow() -> None:
    """`tfrec.console.quiet`, loaded from its file before anything imports
    TensorFlow (``import tfrec`` would import it first): no C++ start-up lines,
    which TF_CPP_MIN_LOG_LEVEL cannot hide."""
    spec = importlib.util.spec_from_file_location("_tfrec_console",
                                                  ROOT / "tfrec/console.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.quiet()


def step_clock(from_batch: int):
    """``(callback, marks)`` for timing a Keras ``fit``: ``marks["start"]`` /
    ``marks["first"]`` are the time and index of the first batch end at or after
    ``from_batch`` (tracing and warm-up before it stay untimed), ``marks["end"]``
    the end of training. The plug-ins' one step timer."""
    import keras

    marks: dict = {}

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if "start" not in marks and batch >= from_batch:
                marks["start"], marks["first"] = time.perf_counter(), batch

        def on_train_end(self, logs=None):
            marks["end"] = time.perf_counter()

    return StepClock(), marks


def emit(result, out) -> None:
    """A plug-in run on its own: print its result as JSON, and write it to
    ``out`` (atomically) when given."""
    print(json.dumps(result, indent=2))
    if out:
        atomic_write_json(Path(out), result)


PLUGIN_DIRS = [HERE]  # --plugin-dir adds folders searched first


def plugin_path(name: str) -> Path:
    for folder in PLUGIN_DIRS:
        if (folder / f"bench_{name}.py").is_file():
            return folder / f"bench_{name}.py"
    return HERE / f"bench_{name}.py"


def load_plugin(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", plugin_path(name))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"{plugin_path(name)} has no `run(quick, threads)` function.")
    return module


def takes_smoke(run) -> bool:
    return "smoke" in inspect.signature(run).parameters


def set_threads(threads: int) -> None:
    """The same thread counts for every runtime of a section, before any import
    creates its pools (TF reads the environment too late; set it in-process)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def section_worker(name: str, quick: bool, threads: int, smoke: bool, out: Path) -> int:
    """``--section NAME``: run one plug-in in this process, write its result."""
    quiet_tensorflow()
    result: dict = {"status": "ok"}
    started = time.perf_counter()
    try:
        module = load_plugin(name)
        set_threads(threads)
        kwargs = {"smoke": True} if smoke and takes_smoke(module.run) else {}
        if smoke and not kwargs:
            result = {"status": "not run", "reason": "no smoke mode"}
        else:
            result["result"] = module.run(quick, threads, **kwargs)
    except Exception as err:  # a broken section is reported, the others still run
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    atomic_write_json(out, result)
    return 0


# ----------------------------------------------------------------- the driver


def versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def host() -> dict:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "name": platform.node(),
        "platform": platform.platform(),
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def merge(report: dict, name: str, value) -> None:
    """A section's result into the report (see the module docstring)."""
    if isinstance(value, dict) and (name in value or any("." in k for k in value)):
        for key, item in value.items():
            node = report
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            if isinstance(item, dict) and isinstance(node.get(leaf), dict):
                node[leaf].update(item)
            else:
                node[leaf] = item
    else:
        report[name] = value


def lookup(report: dict, key: str):
    node = report
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def derived(report: dict) -> None:
    """Figures computed from other sections' figures: the scaling curve's
    seconds per interaction, top size over bottom size, per (model, optimizer)
    line; the goal row takes the worst line."""
    rows = report.get("scaling")
    if not isinstance(rows, list):
        return
    lines: dict = {}
    for r in rows:
        if isinstance(r, dict):
            lines.setdefault((r.get("model"), r.get("optimizer")), []).append(r)
    worst = None
    for line in lines.values():
        if len(line) < 2:
            continue
        try:
            line = sorted(line, key=lambda r: r["interactions"])
            lo, hi = line[0], line[-1]
            ratio = (hi["epoch_s"] / hi["interactions"]) / (
                lo["epoch_s"] / lo["interactions"])
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        worst = ratio if worst is None else max(worst, ratio)
    if worst is not None:
        report["scaling_time_per_interaction"] = worst


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def goal_rows(report: dict) -> list[dict]:
    """One row per goal. A "min" goal whose exact figure is missing but whose
    section wrote ``KEY_at_least`` (the baseline stopped before the target: what
    it spent is a lower bound) is decided on that bound, marked ``bound: ">="``."""
    rows = []
    for key, text, target, direction in GOALS:
        value = lookup(report, key)
        row = {"key": key, "goal": text, "target": target, "direction": direction}
        bound = lookup(report, key + "_at_least") if direction == "min" else None
        if _number(value) and direction == "report":
            row.update(measured=value, vs_goal=None, met=None)
        elif _number(value):
            ratio = value / target if direction == "min" else target / value
            row.update(measured=value, vs_goal=ratio, met=bool(ratio >= 1.0))
        elif _number(bound):
            ratio = bound / target
            # A bound below the target decides nothing: met unknown ("?").
            row.update(measured=bound, bound=">=", vs_goal=ratio,
                       met=True if ratio >= 1.0 else None)
        else:
            row.update(measured=None, vs_goal=None, met=None)
        rows.append(row)
    return rows


def table(report: dict) -> str:
    lines = [
        f"{'goal':<44}{'target':>10}{'measured':>12}{'vs goal':>9}  met?",
        "-" * 80,
    ]
    for row in report["goals"]:
        sign = ">=" if row["direction"] == "min" else "<="
        target = "-" if row["target"] is None else f"{sign} {row['target']:g}"
        if row["measured"] is None:
            lines.append(f"{row['goal']:<44}{target:>10}{'not run':>12}{'':>9}  -")
            continue
        if row["vs_goal"] is None:
            lines.append(f"{row['goal']:<44}{target:>10}{row['measured']:>12.3g}"
                         f"{'':>9}  (reported)")
            continue
        measured = row.get("bound", "") + f"{row['measured']:.3g}"
        lines.append(
            f"{row['goal']:<44}{target:>10}{measured:>12}"
            f"{row['vs_goal']:>8.2f}x  "
            + {True: "yes", False: "NO", None: "? (lower bound)"}[row["met"]]
        )
    lines.append("-" * 80)
    for name, info in report["sections"].items():
        extra = info.get("error") or info.get("reason") or ""
        lines.append(
            f"section {name:<12}{info['status']:<9}{info.get('seconds', 0):>8.1f} s"
            f"{info.get('peak_rss_mb', 0):>9.0f} MB  {extra}"[:160]
        )
    return "\n".join(lines)


def run_sections(args) -> dict:
    report: dict = {
        "meta": {
            "command": shlex.join([sys.executable, *sys.argv]),
            "date_utc": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            ),
            "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
            "threads": {"tensorflow_intra_op": args.threads,
                        "tensorflow_inter_op": args.threads,
                        "onnxruntime_intra_op": args.threads},
            "versions": versions(),
            "host": host(),
            "git_commit": git_commit(),
        },
        "sections": {},
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sections:
            if not plugin_path(name).is_file():
                report["sections"][name] = {
                    "status": "not run", "reason": f"{plugin_path(name).name} missing"
                }
                print(f"[bench] {name}: not run ({plugin_path(name).name} missing)")
                continue
            out = Path(tmp) / f"{name}.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--section", name,
                       "--threads", str(args.threads), "--result", str(out)]
            command += ["--quick"] * args.quick + ["--smoke"] * args.smoke
            for folder in args.plugin_dir:
                command += ["--plugin-dir", str(folder)]
            print(f"[bench] {name} ...", flush=True)
            started = time.perf_counter()
            try:
                proc = subprocess.run(command, env=env, timeout=args.timeout)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
            if out.is_file():
                info = json.loads(out.read_text())
            else:
                info = {"status": "failed", "error": f"worker exit {code}"}
                info["seconds"] = round(time.perf_counter() - started, 2)
            if "result" in info:
                merge(report, name, info.pop("result"))
            report["sections"][name] = info
            print(f"[bench] {name}: {info['status']} ({info['seconds']:.1f} s)")
    derived(report)
    report["goals"] = goal_rows(report)
    atomic_write_json(args.out, report)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, about two minutes (make bench-quick)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, only sections that have a smoke mode (tests)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra/inter-op threads of every runtime (default 1: "
                        "steady figures on a shared machine)")
    parser.add_argument("--sections", nargs="+", default=None, metavar="NAME",
                        help=f"default: {' '.join(SECTIONS)} (--quick: "
                        f"{' '.join(QUICK_SECTIONS)})")
    parser.add_argument("--out", type=Path, default=ROOT / "bench.json")
    parser.add_argument("--timeout", type=float, default=7200,
                        help="seconds per section before it is stopped")
    parser.add_argument("--plugin-dir", type=Path, action="append", default=[],
                        help="another folder of bench_NAME.py plug-ins, searched "
                        "before scripts/")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sections is None:
        args.sections = list(QUICK_SECTIONS if args.quick else SECTIONS)
    if args.threads < 1:
        parser.error(f"--threads must be a positive int. Received: {args.threads}")
    sys.path.insert(0, str(ROOT))
    PLUGIN_DIRS[:0] = [p.resolve() for p in args.plugin_dir]
    if args.section:
        return section_worker(args.section, args.quick, args.threads, args.smoke,
                              args.result)
    bad = [s for s in args.sections if not s.replace("_", "").isalnum()]
    if bad:
        parser.error(f"section names are bench_NAME.py plug-ins; received {bad}")
    report = run_sections(args)
    print()
    print(table(report))
    print(f"\nwrote {args.out}")
    failed = [n for n, s in report["sections"].items() if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
