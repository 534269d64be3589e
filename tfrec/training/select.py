"""Hyperparameter selection on validation data only: ``tfrec select MODEL --grid``.

Each point of a grid trains through the one runner (`tfrec.train`) in memory with
``test=False``: the recipe's validation part (carved from the training data) is
evaluated every epoch, the test part is never read. A trial's score is its best
validation value of the monitor (by default the recipe's own monitor of the last
stage that has one) and the epoch it was reached at, so the chosen settings and the
epoch budget come from validation alone. Train the winner with ``tfrec train``
(which reads the test set once, at the end).

Example:
    >>> trials = tfrec.select("cdae", "ncf-ml-1m", preset="cdae_recbole",
    ...                       grid={"learning_rate": [0.001, 0.002, 0.005]})
    >>> trials[0].settings, trials[0].best, trials[0].best_epoch
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tfrec.io import atomic_write_json, atomic_write_text


@dataclass
class Trial:
    """One grid point's validation result (``best`` is None when it never
    produced the monitor, e.g. a diverged run)."""

    settings: dict
    monitor: str
    mode: str
    best: float | None
    best_epoch: int | None
    last: float | None
    epochs_run: int
    seconds: float
    stage: str
    curve: list = field(default_factory=list)


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict]:
    """The cartesian product of ``grid`` as a list of settings dicts."""
    if not grid:
        raise ValueError("The grid is empty: give at least one KEY=V1,V2,... .")
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(
                f"Grid values of {key!r} must be a non-empty list. Received: {values!r}"
            )
    keys = list(grid)
    combos = itertools.product(*grid.values())
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


def _trial(result, point: dict, monitor: str | None, seconds: float) -> Trial:
    rows = result.history.get("epochs", [])
    if monitor is None:
        if not result.stages:
            raise ValueError(
                "This run has no validation monitor (its split has no validation "
                "part); choose a split with validation to select on it."
            )
        stage = list(result.stages)[-1]
        monitor, mode = result.stages[stage]["monitor"], result.stages[stage]["mode"]
    else:
        key = monitor if monitor.startswith("val_") else f"val_{monitor}"
        with_key = [r.get("stage", "train") for r in rows if key in r]
        if not with_key:
            seen = sorted({k for r in rows for k in r if k.startswith("val_")})
            raise ValueError(f"No epoch logged {key!r}. Logged: {seen}")
        stage, monitor = with_key[-1], key
        mode = "min" if ("loss" in key or "rmse" in key or "mae" in key) else "max"
        mode = result.stages.get(stage, {}).get("mode", mode) if (
            result.stages.get(stage, {}).get("monitor") == key) else mode
    curve = [(r["epoch"], r[monitor]) for r in rows
             if r.get("stage", "train") == stage and monitor in r
             and math.isfinite(r[monitor])]
    best = best_epoch = last = None
    if curve:
        pick = max if mode == "max" else min
        best = pick(v for _, v in curve)
        best_epoch = min(e for e, v in curve if v == best)
        last = curve[-1][1]
    epochs_run = len([r for r in rows if r.get("stage", "train") == stage])
    return Trial(point, monitor, mode, best, best_epoch, last, epochs_run,
                 round(seconds, 1), stage, [[e, v] for e, v in curve])


def select(
    model: str,
    data=None,
    *,
    grid: Mapping[str, Sequence[Any]],
    preset: str | None = None,
    monitor: str | None = None,
    printer=None,
    report: str | Path | None = None,
    **settings,
) -> list[Trial]:
    """Trains every grid point on the training part, scores it on validation.

    Args:
        model, data, preset, **settings: as for `tfrec.train` (shared by every
            point; a grid key overrides a setting of the same name).
        grid: ``{setting: [values...]}``; every combination is one trial.
        monitor: A validation metric (``ndcg@10`` or ``val_ndcg@10``); None uses
            the recipe's own monitor of its last monitored stage.
        printer: ``print``-like for progress; None is silent.
        report: A path stem: writes ``<report>.json`` and ``<report>.md``.

    Returns:
        The trials, best first (trials without a value last).
    """
    from tfrec.training.runner import train

    points = grid_points(grid)
    trials = []
    for n, point in enumerate(points, 1):
        if printer:
            shown = ", ".join(f"{k}={v}" for k, v in point.items())
            printer(f"Trial {n}/{len(points)}: {shown}")
        started = time.time()
        result = train(model, data, preset=preset, out=None, test=False,
                       printer=printer, **{**settings, **point})
        trial = _trial(result, point, monitor, time.time() - started)
        trials.append(trial)
        if printer:
            printer(f"  -> best {trial.monitor} {_fmt(trial.best)} at epoch "
                    f"{trial.best_epoch} of {trial.epochs_run} ({trial.seconds:.0f} s)")
    sign = 1 if trials[0].mode == "max" else -1
    ranked = sorted(trials, key=lambda t: (t.best is None, -sign * (t.best or 0.0)))
    if report is not None:
        write_report(report, model, preset, settings, ranked)
    return ranked


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def markdown(model: str, preset: str | None, settings: dict, trials: list[Trial]) -> str:
    keys = list(trials[0].settings) if trials else []
    head = [*keys, f"best {trials[0].monitor}", "best epoch", "last", "epochs run", "s"]
    lines = [
        f"Selection for `{model}`"
        + (f" (preset `{preset}`)" if preset else "")
        + (f", fixed settings {settings}" if settings else "")
        + ": every trial trained on the training part and scored on the validation "
        "part only (the test part was not read). Best first.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]
    for t in trials:
        cells = [str(t.settings[k]) for k in keys]
        cells += [_fmt(t.best), str(t.best_epoch), _fmt(t.last), str(t.epochs_run),
                  f"{t.seconds:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(stem, model, preset, settings, trials: list[Trial]) -> None:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stem.with_suffix(".json"), {
        "model": model, "preset": preset, "settings": settings,
        "trials": [asdict(t) for t in trials],
    })
    atomic_write_text(stem.with_suffix(".md"), markdown(model, preset, settings, trials))
