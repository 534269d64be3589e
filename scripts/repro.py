"""Shared helper of the reproduction scripts: seeds, the runner, report writing.

A reproduction script is a list of rows ``(label, model, preset, settings)``; this
module trains each row for each seed through ``tfrec.train`` (the one runner, so
no training logic lives in a script), collects the test metrics the run wrote
once at the end, and writes ``reports/<name>.{json,md}`` atomically with mean ±
sd over seeds. ``--append`` keeps the report's rows that are not rerun now.

A row's ``data`` is a catalogue name (None: the preset's), or a callable
``data(seed, data_dir)`` giving the run's data for that seed (a split the recipe
cannot build itself, passed in memory); ``split_seed=True`` draws a new split per
seed (``split_seed = seed``), otherwise every seed trains on the same split.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Row:
    label: str
    model: str
    preset: str | None = None
    settings: dict = field(default_factory=dict)
    data: str | Callable | None = None
    split_seed: bool = False


def parser(description: str, report: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="*", default=None, help="labels to run")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(ROOT / "runs" / f"reproduce-{report}"))
    p.add_argument("--report", default=str(ROOT / "reports" / report))
    p.add_argument("--append", action="store_true",
                   help="keep the report's rows of labels not rerun now")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override a setting of every row (e.g. epochs=1 for a smoke run)")
    p.add_argument("--threads", type=int, default=2)
    return p


def _overrides(pairs: Sequence[str]) -> dict:
    from tfrec.cli import _parse_value

    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key.replace("-", "_")] = _parse_value(value)
    return out


def run_rows(rows: Sequence[Row], args, *, callbacks=(), extra=None) -> list[dict]:
    """Trains every row for every seed; returns one record per run.

    ``callbacks`` go to every ``tfrec.train`` call (measurements, never training
    logic); ``extra(row, result)`` returns more fields of a run's record (a
    report's own columns, read from the run)."""
    import tensorflow as tf

    import tfrec

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    overrides = _overrides(args.set)
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    records = []
    for row in rows:
        if args.only and row.label not in args.only:
            continue
        for seed in args.seeds:
            out = Path(args.out) / f"{row.label}-s{seed}"
            started = time.time()
            settings = {**row.settings, **overrides}
            if row.split_seed:
                settings["split_seed"] = seed
            data = row.data
            if callable(data):
                data = data(seed, settings.pop("data_dir", None))
            result = tfrec.train(
                row.model, data, out=out, preset=row.preset, printer=print,
                callbacks=list(callbacks), **{**settings, "seed": seed},
            )
            record = {
                "label": row.label, "model": row.model, "preset": row.preset,
                "data": getattr(row.data, "__name__", row.data),
                "settings": settings, "seed": seed,
                "epochs_run": len(result.history.get("epochs", [])),
                "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, dict)},
                "seconds": round(time.time() - started, 1), "run_dir": str(out),
            }
            if extra is not None:
                record.update(extra(row, result))
            print(f"{row.label} seed {seed}: {record['metrics']}", flush=True)
            records.append(record)
    return records


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(records: list[dict], columns: Sequence[tuple[str, str, str]], extra=None) -> str:
    """A Markdown table: one line per label, ``columns`` = (header, protocol,
    metric) averaged over seeds; ``extra`` = {label: text} appended as a column."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["label"], []).append(r)
    head = ["model", "preset", "seeds", *[c[0] for c in columns]] + (["published"] if extra else [])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, rs in groups.items():
        cells = [label, rs[0].get("preset") or "—", ",".join(str(r["seed"]) for r in rs)]
        for _, protocol, metric in columns:
            vals = [r["metrics"].get(protocol, {}).get(metric) for r in rs]
            vals = [v for v in vals if v is not None]
            cells.append(_fmt(vals) if vals else "—")
        if extra:
            cells.append(extra.get(label, "—"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(args, records: list[dict], notes: str, markdown_table) -> None:
    import json

    from tfrec.io import atomic_write_json, atomic_write_text

    report = Path(args.report)
    if args.append and report.with_suffix(".json").is_file():
        rerun = {r["label"] for r in records}
        old = json.loads(report.with_suffix(".json").read_text())
        old = old if isinstance(old, list) else old.get("records", [])
        records = [r for r in old if r.get("label") not in rerun] + records
    atomic_write_json(report.with_suffix(".json"), records)
    text = notes.rstrip() + "\n\n" + markdown_table(records) + "\n"
    atomic_write_text(report.with_suffix(".md"), text)
    print(markdown_table(records))
