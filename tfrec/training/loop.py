"""Fit glue: one training run = one run directory.

A run directory holds everything needed to inspect, resume or export a run::

    config.json     what was trained, on what, with which settings and seed
    history.json    per-epoch losses and evaluation metrics (written every epoch)
    metrics.json    final evaluation on every protocol the split supports
    curves.png      training curves
    model.keras     the trained model (written atomically at the end)
    vocab/          users.tsv / items.tsv: raw id of each index
    backup/         BackupAndRestore state while a run is unfinished

Interrupting a run (Ctrl-C, a crash, a killed process) and calling :func:`train`
again with the same directory resumes from the last finished epoch
(``keras.callbacks.BackupAndRestore``); negatives are a function of (seed, epoch),
so the resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfrec.data.pipelines import (
    SamplerEpochCallback,
    explicit_dataset,
    implicit_dataset,
)
from tfrec.io import atomic_write_json
from tfrec.registry import create_model, model_info
from tfrec.training.optimizers import make_optimizer
from tfrec.training.scoring import keras_scorer, output_name


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json``)."""

    model: str
    dataset: str = "movielens-100k"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: float = 0.001
    num_negatives: int = 4
    seed: int = 0
    ks: tuple = (10,)
    early_stopping_patience: int | None = None
    monitor: str = "val_ndcg@10"
    eval_every: int = 1
    eval_test_each_epoch: bool = True
    full_ranking: bool = True
    # How the split was made, so evaluate/recommend can rebuild it.
    protocol: str = "leave_one_out"
    split_seed: int = 0
    eval_negatives: int = 99
    data_dir: str | None = None

    def validate(self) -> None:
        model_info(self.model)  # unknown model -> ValueError with valid names
        for name in ("epochs", "batch_size", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive int. Received: {name}={value!r}"
                )
        if not isinstance(self.num_negatives, int) or self.num_negatives < 0:
            raise ValueError(
                f"`num_negatives` must be an int >= 0. Received: {self.num_negatives!r}"
            )
        if (
            self.early_stopping_patience is not None
            and self.early_stopping_patience < 1
        ):
            raise ValueError(
                "`early_stopping_patience` must be a positive int or None. Received: "
                f"{self.early_stopping_patience!r}"
            )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    run_dir: Path
    model: Any
    history: dict
    metrics: dict
    seconds: float


def save_model_atomic(model, path: Path) -> None:
    """``model.save`` to a temporary ``.keras`` beside ``path``, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=".keras"
    )
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EvaluationCallback(keras.callbacks.Callback):
    """Evaluates ranking protocols at the end of epochs and adds them to ``logs``.

    Keys are ``{prefix}{metric}`` (``val_ndcg@10``), so ``History``,
    ``EarlyStopping`` and the curves see them like any Keras metric.
    """

    def __init__(self, protocols: dict, *, every: int = 1, output: str | None = None):
        super().__init__()
        self.protocols = protocols
        self.every = every
        self.output = output

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        score_fn = keras_scorer(self.model, output=self.output)
        for prefix, protocol in self.protocols.items():
            for key, value in protocol.evaluate(score_fn).items():
                if key.startswith(("hr@", "ndcg@")):  # keep progress lines short
                    logs[f"{prefix}{key}"] = float(value)


class HistoryFile(keras.callbacks.Callback):
    """Merges each epoch's logs into ``history.json`` (survives interruptions)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def load(self) -> dict:
        if self.path.is_file():
            return json.loads(self.path.read_text())
        return {"epochs": []}

    def on_epoch_end(self, epoch, logs=None):
        history = self.load()
        rows = [r for r in history["epochs"] if r["epoch"] != epoch + 1]
        row = {"epoch": epoch + 1, "time": time.time()}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        rows.append(row)
        history["epochs"] = sorted(rows, key=lambda r: r["epoch"])
        atomic_write_json(self.path, history)


def ranking_protocols(
    split, *, ks=(10,), which: str = "test", full: bool = False
) -> dict:
    """Protocols a split supports for its ``which`` part (``test`` or ``valid``)."""
    from tfrec.evaluation import FullRanking, SampledRanking

    part = getattr(split, which)
    negatives = getattr(split, f"{which}_negatives")
    protocols = {}
    if part is None:
        return protocols
    if negatives is not None:
        protocols["sampled"] = SampledRanking(
            part["user_id"], part["item_id"], negatives, ks=ks
        )
    if full or negatives is None:
        # Exclude every interaction known at evaluation time: training items, and
        # for the test part also the validation item (it is a known positive).
        known = ("train",) if which == "valid" else ("train", "valid")
        indptr, indices = split.csr(*known)
        protocols["full"] = FullRanking(
            split.num_items,
            part["user_id"],
            part["item_id"],
            exclude_indptr=indptr,
            exclude_indices=indices,
            ks=ks,
        )
    return protocols


def _epoch_protocols(split, config: TrainConfig) -> dict:
    """Per-epoch evaluations: validation (``val_``) and, for curves, test (``test_``)."""
    out = {}
    for which, prefix in (("valid", "val_"), ("test", "test_")):
        if which == "test" and not config.eval_test_each_epoch:
            continue
        protocols = ranking_protocols(split, ks=config.ks, which=which)
        # One protocol per epoch is enough for curves: the sampled one when present.
        name = "sampled" if "sampled" in protocols else next(iter(protocols), None)
        if name is not None:
            out[prefix] = protocols[name]
    return out


def _is_implicit(model) -> bool:
    return output_name(model) == "score"


def write_vocab(split, run_dir: Path) -> dict[str, str]:
    """Writes ``vocab/users.tsv`` and ``vocab/items.tsv`` (index, raw id[, name])."""
    vocab = Path(run_dir) / "vocab"
    vocab.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, ids in (("users", split.user_ids), ("items", split.item_ids)):
        names = split.item_names if kind == "items" else None
        lines = ["index\traw_id" + ("\tname" if names else "")]
        for k, raw in enumerate(ids):
            lines.append(f"{k}\t{raw}" + (f"\t{names[k]}" if names else ""))
        path = vocab / f"{kind}.tsv"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        files[f"vocab/{kind}.tsv"] = str(path)
    # Every known interaction per user (train, valid, test): what `recommend`
    # excludes, so it needs no access to the data set.
    indptr, indices = split.csr("train", "valid", "test")
    seen = vocab / "seen.npz"
    tmp = vocab / ".seen.tmp.npz"
    np.savez_compressed(tmp, indptr=indptr, indices=indices)
    os.replace(tmp, seen)
    files["vocab/seen.npz"] = str(seen)
    return files


def plot_curves(history: dict, path: Path, title: str = "") -> None:
    """Loss and ranking metrics per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = history.get("epochs", [])
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    loss_keys = sorted(k for k in rows[-1] if k.endswith("loss"))
    metric_keys = sorted(
        k for k in rows[-1] if "@" in k and ("hr@" in k or "ndcg@" in k)
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in loss_keys:
        axes[0].plot(epochs, [r.get(key, np.nan) for r in rows], marker="o", label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_title("loss")
    axes[0].legend()
    for key in metric_keys:
        axes[1].plot(epochs, [r.get(key, np.nan) for r in rows], marker="o", label=key)
    axes[1].set_xlabel("epoch")
    axes[1].set_title("ranking metrics")
    if metric_keys:
        axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def evaluate_model(model, split, *, ks=(10,), full_ranking: bool = True) -> dict:
    """Final metrics of ``model`` on the split's test part, every protocol."""
    score_fn = keras_scorer(model)
    results = {}
    for name, protocol in ranking_protocols(split, ks=ks, full=full_ranking).items():
        started = time.time()
        results[name] = protocol.evaluate(score_fn)
        results[name]["seconds"] = round(time.time() - started, 2)
    if not _is_implicit(model):
        from tfrec.evaluation import mae, rmse

        pred = score_fn(split.test["user_id"], split.test["item_id"])
        results["rating"] = {
            "rmse": rmse(split.test["rating"], pred),
            "mae": mae(split.test["rating"], pred),
        }
    return results


def build_model(config: TrainConfig, split):
    kwargs = dict(config.model_kwargs)
    kwargs.setdefault("num_users", split.num_users)
    kwargs.setdefault("num_items", split.num_items)
    if kwargs["num_users"] != split.num_users or kwargs["num_items"] != split.num_items:
        raise ValueError(
            f"Model sizes num_users={kwargs['num_users']}, num_items={kwargs['num_items']}"
            f" do not match the data set ({split.num_users} users, {split.num_items} items)."
        )
    return create_model(config.model, **kwargs), kwargs


def train(
    config: TrainConfig,
    split,
    run_dir: str | os.PathLike,
    *,
    model=None,
    verbose: int | str = "auto",
    extra_callbacks=(),
) -> RunResult:
    """Trains ``config.model`` on ``split``; everything lands in ``run_dir``.

    Args:
        config: the run's settings.
        split: a :class:`tfrec.data.Split` (index-encoded train/valid/test).
        run_dir: run directory; an unfinished run there is resumed.
        model: an already built (e.g. pre-trained NeuMF) model to train instead of
            building one from the registry.
        verbose: Keras progress-bar verbosity.
        extra_callbacks: more Keras callbacks.
    """
    config.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = (run_dir / "backup").is_dir()
    if resuming and (run_dir / "config.json").is_file():
        before = json.loads((run_dir / "config.json").read_text())["config"]
        now = json.loads(json.dumps(config.to_json(), default=list))
        before.pop("model_kwargs", None)
        now.pop("model_kwargs", None)
        changed = sorted(k for k in now if before.get(k) != now[k])
        if changed:
            raise ValueError(
                f"{run_dir} holds an unfinished run with other settings ({', '.join(changed)}"
                "); resume it with the same settings or choose another --out."
            )
    elif (run_dir / "history.json").is_file():
        (run_dir / "history.json").unlink()  # a fresh run: drop an old run's epochs
    keras.utils.set_random_seed(config.seed)
    started = time.time()

    if model is None:
        model, kwargs = build_model(config, split)
    else:
        kwargs = dict(config.model_kwargs)
    config.model_kwargs = {k: v for k, v in kwargs.items()}
    atomic_write_json(
        run_dir / "config.json",
        {
            "config": config.to_json(),
            "data": {
                "name": split.name,
                "num_users": split.num_users,
                "num_items": split.num_items,
                "train_rows": int(len(split.train["user_id"])),
                "test_rows": int(len(split.test["user_id"])),
            },
        },
    )
    write_vocab(split, run_dir)

    out = output_name(model)
    implicit = out == "score"
    if implicit:
        dataset, sampler = implicit_dataset(
            split.train["user_id"],
            split.train["item_id"],
            split.num_items,
            num_negatives=config.num_negatives,
            batch_size=config.batch_size,
            seed=config.seed,
            output_name=out,
        )
        loss = keras.losses.BinaryCrossentropy()
        callbacks = [SamplerEpochCallback(sampler)]
    else:
        dataset, source = explicit_dataset(
            split.train["user_id"],
            split.train["item_id"],
            split.train["rating"],
            batch_size=config.batch_size,
            seed=config.seed,
            output_name=out,
        )
        loss = keras.losses.MeanSquaredError()
        callbacks = [SamplerEpochCallback(source)]

    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate),
        loss={out: loss},
    )
    protocols = _epoch_protocols(split, config) if implicit else {}
    history_file = HistoryFile(run_dir / "history.json")
    if protocols:
        callbacks.append(
            EvaluationCallback(protocols, every=config.eval_every, output=out)
        )
    if config.early_stopping_patience and "val_" not in protocols:
        raise ValueError(
            f"Early stopping needs a validation part, and this split ({split.name}, "
            f"protocol {config.protocol!r}) has none. Drop --early-stopping or use a "
            "split with validation (leave_one_out on a timestamped data set)."
        )
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=config.monitor,
                mode="max",
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    callbacks += [
        history_file,
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        *extra_callbacks,
    ]
    model.fit(
        dataset,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )

    history = history_file.load()
    metrics = evaluate_model(
        model, split, ks=config.ks, full_ranking=config.full_ranking
    )
    metrics["train_seconds"] = round(time.time() - started, 1)
    metrics["epochs_run"] = len(history["epochs"])
    atomic_write_json(run_dir / "metrics.json", metrics)
    save_model_atomic(model, run_dir / "model.keras")
    plot_curves(
        history, run_dir / "curves.png", title=f"{config.model} on {split.name}"
    )
    return RunResult(run_dir, model, history, metrics, time.time() - started)


def load_run(run_dir: str | os.PathLike):
    """(model, config dict) of a finished run directory."""
    run_dir = Path(run_dir)
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise FileNotFoundError(
            f"{model_path} not found: {run_dir} is not a finished tfrec run "
            "(train it first, or resume it with the same command)."
        )
    import tfrec.layers  # noqa: F401  (registers custom layers)

    try:
        model = keras.saving.load_model(model_path)
    except Exception as err:
        raise ValueError(f"{model_path} could not be loaded (corrupt?): {err}") from err
    config = json.loads((run_dir / "config.json").read_text())
    return model, config
