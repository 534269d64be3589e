"""One runner for every recipe: ``tfrec.train`` / ``tfrec train MODEL``.

A run directory holds everything needed to inspect, resume, evaluate, export and
serve a run::

    config.json     model, recipe, preset, settings, model kwargs, data source
    history.json    per-epoch training loss and validation metrics, every stage
    stages/<s>/     a finished stage's weights (and arrays); DONE marks it
    backup/<s>/     BackupAndRestore state of the stage in progress
    serving/        every serving graph of the run (<name>.keras, serving.json)
    model.keras     the requested model's serving graph (written atomically)
    metrics.json    the test evaluation, read once at the end
    curves.png      training curves
    vocab/          users.tsv / items.tsv (raw id of each index), seen.npz

Interrupt a run and call it again with the same directory and settings: finished
stages are loaded, the stage in progress resumes from its last finished epoch
(``keras.callbacks.BackupAndRestore``), and because every recipe's epoch data is a
function of (seed, epoch) the resumed run ends with the same weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfrec.io import atomic_write_json, jsonable, save_keras_atomic, save_weights_atomic
from tfrec.recipes.base import DataSource, Recipe, ServingGraph, StagePlan, Vocab
from tfrec.registry import model_info
from tfrec.training import distribute, precision
from tfrec.training.fingerprint import (
    DEFINITION_KEYS,
    check_data_files,
    check_loaded,
    data_fingerprint,
    definition_fingerprint,
)

SOURCE_KEYS = tuple(f.name for f in dataclasses.fields(DataSource))


@dataclass
class RunResult:
    """What :func:`train` returns."""

    run_dir: Path | None
    model: Any
    serving: dict
    history: dict
    metrics: dict
    seconds: float
    config: Any = None
    stages: dict = dataclasses.field(default_factory=dict)
    """Per stage: ``{"monitor": "val_<metric>", "mode": "max"|"min", "best_epoch": n}``."""


# --------------------------------------------------------------------------- callbacks


class ValidationCallback(keras.callbacks.Callback):
    """Adds ``val_<metric>`` of ``validate()`` to each epoch's logs (so
    ``History``, ``EarlyStopping`` and the curves see them)."""

    def __init__(self, validate, every: int = 1):
        super().__init__()
        self.validate = validate
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == self.params.get("epochs") if self.params else False
        if logs is None or ((epoch + 1) % self.every and not last):
            return
        for key, value in self.validate().items():
            logs[f"val_{key}"] = float(value)


class HistoryFile(keras.callbacks.Callback):
    """Merges each epoch's logs into ``history.json`` (survives interruptions)."""

    def __init__(self, path: Path, stage: str = "train"):
        super().__init__()
        self.path = Path(path)
        self.stage = stage

    def load(self) -> dict:
        if self.path.is_file():
            return json.loads(self.path.read_text())
        return {"epochs": []}

    def on_epoch_end(self, epoch, logs=None):
        history = self.load()
        rows = [
            r
            for r in history["epochs"]
            if (r.get("stage", "train"), r["epoch"]) != (self.stage, epoch + 1)
        ]
        row = {"stage": self.stage, "epoch": epoch + 1, "time": time.time()}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        rows.append(row)
        history["epochs"] = rows
        atomic_write_json(self.path, history)


class _MemoryHistory(keras.callbacks.Callback):
    """The rows `HistoryFile` writes, kept in memory (runs without a directory)."""

    def __init__(self, rows: list, stage: str):
        super().__init__()
        self.rows, self.stage = rows, stage

    def on_epoch_end(self, epoch, logs=None):
        row = {"stage": self.stage, "epoch": epoch + 1, "time": time.time()}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose state survives a kill at any moment.

    Keras writes ``latest.weights.h5`` and ``training_metadata.json`` in place, so
    a process killed while writing leaves a truncated HDF5 file (resuming then
    fails with "file signature not found", seen with SIGKILL) or weights and epoch
    counter from different epochs. Here each save goes to a fresh
    ``ckpt-<epoch>-<batch>/`` folder holding both files; a one-line ``LATEST``
    pointer is then replaced atomically, and older folders are removed but one. A
    kill before the pointer moves leaves the previous state intact. On resume a
    checkpoint that does not load (a damaged disk, a file edited by hand) falls
    back to the previous one, with a message; when none loads the error names the
    folder and what to do.
    """

    def __init__(self, backup_dir, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self._root = Path(backup_dir)
        self._pointer = self._root / "LATEST"
        self._point_at(self._current_folder())

    def _current_folder(self) -> Path | None:
        if self._pointer.is_file():
            name = self._pointer.read_text().strip()
            if name and (self._root / name / "DONE").is_file():
                return self._root / name
        return None

    def _point_at(self, folder: Path | None) -> None:
        folder = folder or (self._root / "none")
        self._weights_path = str(folder / "latest.weights.h5")
        self._training_metadata_path = str(folder / "training_metadata.json")
        self._prev_weights_path = str(folder / "absent.bkp")

    def _checkpoints(self) -> list[Path]:
        """Finished checkpoint folders, newest first (the pointer's first)."""
        if not self._root.is_dir():
            return []
        done = [p for p in self._root.iterdir()
                if p.name.startswith("ckpt-") and (p / "DONE").is_file()]
        current = self._current_folder()

        def order(p: Path):
            epoch, _, batch = p.name[len("ckpt-"):].partition("-")
            return (p == current, int(epoch or 0), int(batch or 0))

        return sorted(done, key=order, reverse=True)

    def on_train_begin(self, logs=None):
        candidates = self._checkpoints()
        if not candidates:
            self._point_at(None)
            return
        problems = []
        for folder in candidates:
            self._point_at(folder)
            try:
                self._load_model()
            except Exception as err:  # noqa: BLE001 - h5py/keras raise many kinds
                problems.append(f"{folder / 'latest.weights.h5'}: {err}".splitlines()[0])
                continue
            if problems:
                print(f"tfrec: warning: backup {problems[0]} could not be read; resumed "
                      f"from the previous one, {folder.name}.", file=sys.stderr)
            return
        raise RuntimeError(
            f"The training backup cannot be read ({problems[0]}). Delete {self._root} "
            "to restart this stage from its first epoch (earlier stages are kept), "
            "then rerun the same command."
        )

    def _save_model(self):
        self._root.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{self._current_epoch}-{self._last_batch_seen}"
        folder = self._root / name
        tmp = Path(tempfile.mkdtemp(dir=self._root, prefix=f".{name}."))
        save_weights_atomic(self.model, tmp / "latest.weights.h5")
        (tmp / "training_metadata.json").write_text(
            json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen})
        )
        (tmp / "DONE").write_text("ok\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        pointer_tmp = self._root / ".LATEST.tmp"
        pointer_tmp.write_text(name + "\n")
        os.replace(pointer_tmp, self._pointer)
        self._point_at(folder)
        keep = {name, "LATEST", *(p.name for p in self._checkpoints()[:2])}
        for old in self._root.iterdir():
            if old.name not in keep and (
                old.name.startswith("ckpt-") or old.name.startswith(".ckpt-")
            ):
                shutil.rmtree(old, ignore_errors=True)


class _Quiet(keras.callbacks.Callback):
    """One line per epoch: stage, epoch, loss and validation metrics."""

    def __init__(self, stage: str, epochs: int, printer=print):
        super().__init__()
        self.stage, self.epochs, self.printer = stage, epochs, printer

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        shown = "  ".join(
            f"{k}={float(v):.4f}" for k, v in sorted((logs or {}).items())
        )
        secs = time.perf_counter() - self._t0
        self.printer(
            f"  [{self.stage}] epoch {epoch + 1}/{self.epochs}  {shown}  ({secs:.1f} s)"
        )


# --------------------------------------------------------------------------- helpers


def save_model_atomic(model, path: Path) -> None:
    """``model.save`` built in memory, written to ``path`` atomically."""
    save_keras_atomic(model, path)


def _atomic_dir(target: Path, write) -> None:
    """``write(tmp_dir)``, then rename ``tmp_dir`` to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        write(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_vocab(vocab: Vocab, run_dir: Path) -> None:
    """``vocab/users.tsv``, ``vocab/items.tsv`` (index, raw id[, name]), ``seen.npz``."""

    def write(tmp: Path) -> None:
        for kind, ids in (("users", vocab.users), ("items", vocab.items)):
            if ids is None:
                continue
            names = vocab.item_names if kind == "items" else None
            lines = ["index\traw_id" + ("\tname" if names else "")]
            for k, raw in enumerate(ids):
                lines.append(f"{k}\t{raw}" + (f"\t{names[k]}" if names else ""))
            (tmp / f"{kind}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if vocab.seen is not None:
            indptr, indices = vocab.seen
            values = getattr(vocab, "seen_values", None)
            extra = {} if values is None else {"values": np.asarray(values, np.float32)}
            np.savez_compressed(tmp / "seen.npz", indptr=indptr, indices=indices, **extra)
        if getattr(vocab, "item_content", None) is not None:
            np.savez_compressed(tmp / "item_content.npz", content=vocab.item_content)
        if getattr(vocab, "tables", None):
            np.savez_compressed(tmp / "tables.npz", **vocab.tables)

    _atomic_dir(Path(run_dir) / "vocab", write)


def read_vocab(run_or_artifact: str | os.PathLike) -> Vocab:
    """The :class:`Vocab` saved in a run or an export (``vocab/``)."""
    folder = Path(run_or_artifact) / "vocab"

    def read(name):
        path = folder / name
        if not path.is_file():
            return None, None
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        rows = [line.split("\t") for line in lines[1:] if line]
        raw = [r[1] if len(r) > 1 else "" for r in rows]
        names = [r[2] if len(r) > 2 else "" for r in rows] if "name" in header else None
        return raw, names

    users, _ = read("users.tsv")
    items, names = read("items.tsv")
    if items is None:
        raise FileNotFoundError(f"{folder / 'items.tsv'} is missing.")
    seen = content = values = None
    if (folder / "seen.npz").is_file():
        with np.load(folder / "seen.npz") as csr:
            seen = (csr["indptr"], csr["indices"])
            values = csr["values"] if "values" in csr.files else None
    if (folder / "item_content.npz").is_file():
        with np.load(folder / "item_content.npz") as arrays:
            content = arrays["content"]
    tables = None
    if (folder / "tables.npz").is_file():
        with np.load(folder / "tables.npz", allow_pickle=False) as arrays:
            tables = {k: arrays[k] for k in arrays.files}
    return Vocab(items=items, users=users, item_names=names, seen=seen,
                 item_content=content, tables=tables, seen_values=values)


def plot_curves(history: dict, path: Path, title: str = "") -> None:
    """Loss and validation metrics per epoch (one row per stage), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = history.get("epochs", [])
    if not rows:
        return
    stages = list(dict.fromkeys(r.get("stage", "train") for r in rows))
    fig, axes = plt.subplots(len(stages), 2, figsize=(10, 3.4 * len(stages)), squeeze=False)
    for s, stage in enumerate(stages):
        part = [r for r in rows if r.get("stage", "train") == stage]
        epochs = [r["epoch"] for r in part]
        keys = sorted({k for r in part for k in r} - {"stage", "epoch", "time"})
        losses = [k for k in keys if k.endswith("loss")]
        metrics = [k for k in keys if k.startswith("val_") and not k.endswith("loss")]
        for key in losses:
            axes[s][0].plot(epochs, [r.get(key, np.nan) for r in part], marker="o", label=key)
        for key in metrics:
            axes[s][1].plot(epochs, [r.get(key, np.nan) for r in part], marker="o", label=key)
        axes[s][0].set_title(f"{stage}: loss")
        axes[s][1].set_title(f"{stage}: validation")
        for ax in axes[s]:
            ax.set_xlabel("epoch")
            if ax.lines:
                ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def resolve_source(recipe: Recipe, data, preset_dataset: str | None, options: dict):
    """A `DataSource` from ``data`` (None, a catalogue name, a file path, a
    `DataSource`) and the source options; None when ``data`` is already the
    recipe's loaded data (tests, the Python API)."""
    from tfrec.data.datasets import DATASETS

    if isinstance(data, DataSource):
        return dataclasses.replace(data, **options) if options else data
    if data is None:
        return DataSource(dataset=preset_dataset or recipe.default_dataset, **options)
    if isinstance(data, (str, os.PathLike)):
        text = str(data)
        if text in DATASETS:
            return DataSource(dataset=text, **options)
        if Path(text).suffix.lower() in (".csv", ".tsv", ".parquet") or Path(text).exists():
            return DataSource(file=str(Path(text).resolve()), **options)
        from tfrec.data.sources import check_dataset

        check_dataset(DataSource(dataset=text))  # raises with the valid names
    if options:
        raise ValueError(
            f"Data source options {sorted(options)} only apply when `data` is a "
            "catalogue name or a file."
        )
    return None


def _split_settings(settings: Mapping[str, Any]) -> tuple[dict, dict]:
    source = {k: v for k, v in settings.items() if k in SOURCE_KEYS}
    rest = {k: v for k, v in settings.items() if k not in SOURCE_KEYS}
    if "columns" in source:
        from tfrec.data.userfiles import parse_columns

        source["columns"] = parse_columns(source["columns"])
    return source, rest


class _Setup:
    """Everything both :func:`train` and :func:`prepare` resolve first."""

    def __init__(self, model: str, data, preset, settings):
        info = model_info(model)
        self.model = model
        self.recipe: Recipe = info.recipe
        source_opts, rest = _split_settings(settings)
        preset_obj = self.recipe.preset(preset) if preset else None
        self.preset = preset
        self.config, self.model_kwargs = self.recipe.make_config(
            model, preset=preset, **rest
        )
        self.source = resolve_source(
            self.recipe, data, preset_obj.dataset if preset_obj else None, source_opts
        )
        self._data = data if self.source is None else None

    def load(self):
        if self.source is None:
            return self._data
        from tfrec.data.sources import check_dataset

        check_dataset(self.source, self.recipe.datasets)
        return self.recipe.load_data(self.source, self.config)

    def record(self) -> dict:
        return {
            "model": self.model,
            "recipe": self.recipe.name,
            "preset": self.preset,
            "config": self.config.to_json(),
            "model_kwargs": self.model_kwargs,
            "source": self.source.to_json() if self.source else None,
        }


def _seed(config) -> None:
    keras.utils.set_random_seed(int(config.seed))


def _stage_callbacks(plan: StagePlan, config, stage: str) -> list:
    callbacks = list(plan.callbacks)
    if plan.validate is not None:
        callbacks.append(ValidationCallback(plan.validate, every=plan.validate_every))
    if config.early_stopping and plan.trainer is not None and plan.early_stopping:
        if plan.validate is None or plan.monitor is None:
            raise ValueError(
                f"Early stopping needs validation metrics, and stage {stage!r} has "
                "none (its split has no validation part). Drop --early-stopping or "
                "use a split with validation."
            )
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=f"val_{plan.monitor}",
                mode=plan.monitor_mode,
                patience=config.early_stopping,
                restore_best_weights=True,
            )
        )
    return callbacks


# --------------------------------------------------------------------------- prepare


class Protocols:
    """The evaluations of a prepared run: ``validate()`` each epoch (or
    ``callback()`` for ``fit``), ``test(serving)`` once at the end."""

    def __init__(self, recipe, model, data, config, validate):
        self._recipe, self._model, self._data, self._config = recipe, model, data, config
        self.validate = validate

    def callback(self) -> keras.callbacks.Callback:
        if self.validate is None:
            raise ValueError("This recipe's data has no validation part.")
        return ValidationCallback(self.validate)

    def test(self, serving: dict) -> dict:
        return self._recipe.evaluate(self._model, serving, self._data, self._config, "test")


@dataclass
class Prepared:
    """``trainer, train_ds, protocols = tfrec.prepare(...)`` (it unpacks to three);
    ``serving()`` gives the serving graphs after ``trainer.fit``."""

    trainer: Any
    dataset: Any
    protocols: Protocols
    plan: StagePlan
    data: Any
    epochs: int

    def __iter__(self):
        return iter((self.trainer, self.dataset, self.protocols))

    def serving(self) -> dict[str, ServingGraph]:
        return self.plan.serving()


def prepare(model: str, data=None, *, preset: str | None = None, **settings) -> Prepared:
    """The pieces of a run for the Keras-native route.

    Earlier stages of a multi-stage recipe (pre-training, ALS, the candidate
    generator) are trained here in memory; the returned trainer is the last
    stage's, compiled, with its ``tf.data`` input. Each pass over the dataset
    draws the next epoch's examples (fresh negatives, new order).

    Example:
        >>> trainer, train_ds, protocols = tfrec.prepare("neumf", "movielens-100k")
        >>> trainer.fit(train_ds, epochs=5, callbacks=[protocols.callback()])
    """
    setup = _Setup(model, data, preset, settings)
    loaded = setup.load()
    _seed(setup.config)
    recipe, config = setup.recipe, setup.config
    names = recipe.stage_names(model, config)
    previous: dict[str, StagePlan] = {}
    for stage in names[:-1]:
        plan = precision.build_stage(recipe, stage, model, loaded, config,
                                     setup.model_kwargs, previous)
        _run_plan(plan, stage, config, callbacks=[], verbose=0)
        previous[stage] = plan
    plan = precision.build_stage(
        recipe, names[-1], model, loaded, config, setup.model_kwargs, previous
    )
    protocols = Protocols(recipe, model, loaded, config, plan.validate)
    return Prepared(plan.trainer, plan.dataset, protocols, plan, loaded, plan.epochs)


class _BestEpoch(keras.callbacks.Callback):
    """Records each epoch's validation monitor, for ``StagePlan.best_epoch``."""

    def __init__(self, key: str):
        super().__init__()
        self.key, self.values = key, {}

    def on_epoch_end(self, epoch, logs=None):
        if logs and self.key in logs:
            self.values[epoch + 1] = float(logs[self.key])


def _best_epoch(plan: StagePlan, values: dict) -> int | None:
    """The earliest epoch with the best validation value."""
    if not values:
        return None
    target = (max if plan.monitor_mode == "max" else min)(values.values())
    return min(e for e, v in values.items() if v == target)


def _run_plan(plan: StagePlan, stage: str, config, *, callbacks, verbose,
              history_path: Path | None = None) -> None:
    if plan.compute is not None:
        plan.arrays = dict(plan.compute())
        return
    best = _BestEpoch(f"val_{plan.monitor}") if plan.monitor else None
    precision.fit_with_fallback(
        plan.trainer, plan.dataset,
        epochs=plan.epochs,
        steps_per_epoch=plan.steps_per_epoch,
        callbacks=[*_stage_callbacks(plan, config, stage), *([best] if best else []),
                   *callbacks],
        verbose=verbose,
        shuffle=False,
    )
    if best is not None:
        values = dict(best.values)
        if history_path is not None and history_path.is_file():  # resumed epochs too
            for row in json.loads(history_path.read_text())["epochs"]:
                if row.get("stage") == stage and best.key in row:
                    values.setdefault(row["epoch"], row[best.key])
        plan.best_epoch = _best_epoch(plan, values)


# --------------------------------------------------------------------------- train


class RunExistsError(ValueError):
    """``out`` holds something a new run must not overwrite."""


def _run_state(run_dir: Path | None, overwrite: bool) -> str:
    """``none`` (no directory asked for), ``new``, ``finished`` (only with
    ``overwrite``), ``unfinished``; raises for what must not be touched."""
    if run_dir is None:
        return "none"
    if run_dir.exists() and not run_dir.is_dir():
        raise RunExistsError(f"{run_dir} exists and is not a directory; choose another --out.")
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new"
    if not (run_dir / "config.json").is_file():
        raise RunExistsError(
            f"{run_dir} is not empty and is not a tfrec run directory (no config.json); "
            "choose another --out."
        )
    if (run_dir / "metrics.json").is_file():
        if not overwrite:
            raise RunExistsError(
                f"{run_dir} holds a finished run. Evaluate, export or recommend from "
                "it, choose another --out, or pass --overwrite to train it again."
            )
        return "finished"
    return "unfinished"


def _check_resume(run_dir: Path, record: dict, overwrite: bool = False) -> bool:
    """True when ``run_dir`` holds an unfinished run of the same definition
    (settings and, once ``record`` has it, data); raises when it differs, unless
    ``overwrite``."""
    before = json.loads((run_dir / "config.json").read_text())
    now = json.loads(json.dumps(record, default=jsonable))
    keys = DEFINITION_KEYS + (("data",) if "data" in now else ())
    changed = [k for k in keys if before.get(k) != now.get(k)]
    if not changed:
        return _has_progress(run_dir) or (run_dir / "backup").is_dir()
    if overwrite:
        return False
    details = []
    for key in changed:
        if isinstance(before.get(key), dict) and isinstance(now.get(key), dict):
            diff = sorted(k for k in set(before[key]) | set(now[key])
                          if before[key].get(k) != now[key].get(k))
            details.append(f"{key}: {', '.join(diff)}")
        else:
            details.append(key)
    raise RunExistsError(
        f"{run_dir} holds an unfinished run with another definition "
        f"({'; '.join(details)}). Resume it with the same command and data, choose "
        "another --out, or pass --overwrite to start it again."
    )


def _clear_run(run_dir: Path) -> None:
    for name in ("stages", "backup", "serving"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in ("history.json", "metrics.json", "model.keras", "curves.png"):
        (run_dir / name).unlink(missing_ok=True)


def _save_stage(plan: StagePlan, folder: Path) -> None:
    def write(tmp: Path) -> None:
        for name, m in plan.models.items():
            save_weights_atomic(m, tmp / f"{name}.weights.h5")
        if plan.arrays:
            np.savez(tmp / "arrays.npz", **plan.arrays)
        (tmp / "stage.json").write_text(json.dumps({"best_epoch": plan.best_epoch}))
        (tmp / "DONE").write_text("ok\n")

    _atomic_dir(folder, write)


def _load_stage(plan: StagePlan, folder: Path) -> None:
    path = folder
    try:
        for name, m in plan.models.items():
            path = folder / f"{name}.weights.h5"
            m.load_weights(path)
        path = folder / "arrays.npz"
        if path.is_file():
            with np.load(path) as arrays:
                plan.arrays = {k: arrays[k] for k in arrays.files}
        path = folder / "stage.json"
        if path.is_file():
            plan.best_epoch = json.loads(path.read_text())["best_epoch"]
    except Exception as err:  # noqa: BLE001 - h5py/numpy/json raise many kinds
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(
            f"The finished stage in {folder} cannot be read ({path.name}: {reason}). "
            f"Delete {folder} to train that stage again, then rerun the same command."
        ) from err


def save_serving(serving: dict[str, ServingGraph], run_dir: Path, main: str) -> None:
    """``serving/<name>.keras`` + ``serving.json`` and ``model.keras`` (main)."""
    def write(tmp: Path) -> None:
        for name, graph in serving.items():
            save_keras_atomic(graph.model, tmp / f"{name}.keras")
        atomic_write_json(
            tmp / "serving.json",
            {"main": main, "graphs": {n: g.kwargs for n, g in serving.items()}},
        )

    _atomic_dir(Path(run_dir) / "serving", write)
    save_model_atomic(serving[main].model, Path(run_dir) / "model.keras")


def main_graph(model: str, serving: dict) -> str:
    return model if model in serving else next(iter(serving))


def train(
    model: str,
    data=None,
    *,
    out: str | os.PathLike | None = None,
    preset: str | None = None,
    verbose: int | str = 0,
    callbacks=(),
    printer=None,
    test: bool = True,
    overwrite: bool = False,
    strategy: str = "default",
    **settings,
) -> RunResult:
    """Trains ``model`` with its family's recipe; everything lands in ``out``.

    Args:
        model: A registered model name (``tfrec.list_models()``).
        data: None (the recipe's default catalogue data set, or the preset's), a
            catalogue name, the path of the user's own ``.csv`` / ``.tsv`` /
            ``.parquet`` file, a `DataSource`, or data already loaded by the
            recipe (``recipe.synthetic_data()``).
        out: Run directory; an unfinished run there with the same settings is
            resumed. None trains in memory only.
        preset: A named preset of the recipe (``tfrec presets MODEL``).
        verbose: Keras ``fit`` verbosity (0: one summary line per epoch through
            ``printer``).
        callbacks: More Keras callbacks (every stage).
        printer: ``print``-like for progress lines; None is silent.
        overwrite: Train afresh in ``out`` even when it holds a finished run or
            an unfinished one with another definition (never otherwise).
        test: False skips the final test evaluation (selection runs: see
            `tfrec.training.select`); only for runs without ``out``.
        strategy: ``default``, ``mirrored`` or ``multi-worker`` (`TF_CONFIG`):
            see `tfrec.training.distribute`. Recorded in ``config.json``; a run
            may be resumed under another strategy.
        **settings: Config fields, builder kwargs and data source options
            (``columns``, ``split``, ``content``, ``data_dir``...).

    Returns:
        A :class:`RunResult` with the main serving model, every serving graph,
        the history and the test metrics.
    """
    started = time.time()
    if not test and out is not None:
        raise ValueError(
            "test=False is for selection runs kept in memory (out=None): a run "
            "directory always ends with its test metrics."
        )
    setup = _Setup(model, data, preset, settings)
    record = setup.record()
    setup.dist = distribute.resolve(strategy)
    record["strategy"] = setup.dist.name
    run_dir, worker_tmp = distribute.worker_out(out, setup.dist)
    try:
        return _train(model, data, preset, verbose, callbacks, printer, test, overwrite,
                      started, setup, record, run_dir)
    finally:
        if worker_tmp is not None:
            shutil.rmtree(worker_tmp, ignore_errors=True)


def _train(model, data, preset, verbose, callbacks, printer, test, overwrite, started,
           setup, record, run_dir) -> RunResult:
    recipe, config = setup.recipe, setup.config
    state = _run_state(run_dir, overwrite)
    resuming = state == "unfinished" and _check_resume(run_dir, record, overwrite)
    if printer:
        printer(
            f"Training {model} ({recipe.name} recipe"
            f"{', preset ' + preset if preset else ''})"
            f"{' -> ' + str(run_dir) if run_dir else ''}"
            f"{'; resuming the unfinished run there' if resuming else ''}"
            f"{distribute.resume_note(run_dir, setup.dist) if resuming else ''}"
        )
        if setup.dist.name == "multi-worker":
            printer(f"Strategy: {setup.dist.describe()}")
    # Settings are validated, the data loaded and the first stage's models built
    # before anything is written.
    loaded = setup.load()
    if printer:
        printer(f"Data: {recipe.describe(loaded)}")
        printer(precision.devices_line(config, setup.dist.strategy))
    if run_dir is not None:
        record["data"] = data_fingerprint(setup.source, recipe, loaded)
        record["fingerprint"] = definition_fingerprint(record)
        if resuming:
            resuming = _check_resume(run_dir, record, overwrite)
    _seed(config)
    names = recipe.stage_names(model, config)
    first = distribute.build_stage(setup.dist, recipe, names[0], model, loaded, config,
                                   setup.model_kwargs, {})
    created = run_dir is not None and not run_dir.exists()
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            _clear_run(run_dir)
        atomic_write_json(run_dir / "config.json", record)
        write_vocab(recipe.vocab(loaded), run_dir)
    try:
        return _train_stages(
            model, recipe, config, setup, loaded, names, first, run_dir, printer,
            verbose, callbacks, test, started,
        )
    except BaseException:
        if created and not _has_progress(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # a failed start leaves nothing
        raise


def _has_progress(run_dir: Path) -> bool:
    """Whether a run directory holds anything worth resuming."""
    return (run_dir / "history.json").is_file() or (run_dir / "stages").is_dir()


def _train_stages(model, recipe, config, setup, loaded, names, first, run_dir, printer,
                  verbose, callbacks, test, started) -> RunResult:
    previous: dict[str, StagePlan] = {}
    history_path = run_dir / "history.json" if run_dir else None
    plan = None
    memory: list = []
    stages: dict = {}
    for i, stage in enumerate(names):
        plan = first if i == 0 else distribute.build_stage(
            setup.dist, recipe, stage, model, loaded, config, setup.model_kwargs, previous
        )
        folder = run_dir / "stages" / stage if run_dir else None
        if folder is not None and (folder / "DONE").is_file():
            _load_stage(plan, folder)
            if printer:
                printer(f"  [{stage}] finished earlier; loaded its weights")
        else:
            extra = []
            if printer and verbose == 0 and plan.trainer is not None:
                extra.append(_Quiet(stage, plan.epochs, printer))
            if run_dir is not None and plan.trainer is not None:
                extra.append(HistoryFile(history_path, stage))
                extra.append(AtomicBackupAndRestore(str(run_dir / "backup" / stage)))
            elif plan.trainer is not None:
                extra.append(_MemoryHistory(memory, stage))
            extra += list(callbacks)  # the user's last: they see the full logs
            _run_plan(plan, stage, config, callbacks=extra, verbose=verbose,
                      history_path=history_path)
            if folder is not None:
                _save_stage(plan, folder)
                shutil.rmtree(run_dir / "backup" / stage, ignore_errors=True)
        previous[stage] = plan
        if plan.monitor:
            stages[stage] = {"monitor": f"val_{plan.monitor}", "mode": plan.monitor_mode,
                             "best_epoch": plan.best_epoch}
    if plan is None or plan.serving is None:
        raise RuntimeError(f"The {recipe.name} recipe's last stage gives no serving graphs.")
    serving = plan.serving()
    main = main_graph(model, serving)
    metrics = recipe.evaluate(model, serving, loaded, config, "test") if test else {}
    history = {"epochs": memory}
    if run_dir is not None:
        save_serving(serving, run_dir, main)
        if history_path.is_file():
            history = json.loads(history_path.read_text())
        metrics = dict(metrics)
        metrics["train_seconds"] = round(time.time() - started, 1)
        atomic_write_json(run_dir / "metrics.json", metrics)
        shutil.rmtree(run_dir / "backup", ignore_errors=True)
        plot_curves(history, run_dir / "curves.png", title=f"{model}: {recipe.describe(loaded)}")
    return RunResult(
        run_dir, serving[main].model, serving, history, metrics,
        time.time() - started, config, stages,
    )


# --------------------------------------------------------------------------- runs


def load_run(
    run_dir: str | os.PathLike, *, check_data: bool = True
) -> tuple[dict[str, ServingGraph], dict]:
    """``(serving graphs, config.json)`` of a finished run directory.

    ``check_data``: refuse (`DataChangedError`) when a data file the run was
    trained on has changed since (a missing one is fine: serving does not read it).
    """
    import tfrec  # noqa: F401  (registers every custom layer)

    run_dir = Path(run_dir)
    index = run_dir / "serving" / "serving.json"
    if not index.is_file() or not (run_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a finished tfrec run (no serving/serving.json): train "
            "it first, or resume it with the same command."
        )
    record = json.loads((run_dir / "config.json").read_text())
    if check_data:
        check_data_files(record, run_dir, require=False)
    graphs = json.loads(index.read_text())
    serving = {}
    for name, kwargs in graphs["graphs"].items():
        path = run_dir / "serving" / f"{name}.keras"
        try:
            model = keras.saving.load_model(path)
        except Exception as err:
            raise ValueError(f"{path} could not be loaded (corrupt?): {err}") from err
        serving[name] = ServingGraph(name, kwargs, model)
    record["main"] = graphs["main"]
    return serving, record


def run_data(record: dict, data_dir: str | None = None):
    """The recipe, config and data of a run, rebuilt from its ``config.json``."""
    recipe = model_info(record["model"]).recipe
    config, _ = recipe.make_config(
        record["model"], **{**record["config"], **record["model_kwargs"]}
    )
    if record.get("source") is None:
        raise ValueError(
            "This run was trained on data passed in memory; evaluate it through "
            "the Python API with that data."
        )
    source = DataSource(**record["source"])
    if data_dir:
        source.data_dir = data_dir
    return recipe, config, recipe.load_data(source, config)


def evaluate_run(run_dir: str | os.PathLike, *, data_dir: str | None = None) -> dict:
    """The test metrics of a finished run, recomputed from its saved graphs, on
    the same data (checked against the run's data fingerprint)."""
    serving, record = load_run(run_dir, check_data=False)
    if not data_dir:
        check_data_files(record, run_dir, require=True)
    recipe, config, data = run_data(record, data_dir)
    check_loaded(record, run_dir, recipe, data)
    return recipe.evaluate(record["model"], serving, data, config, "test")
