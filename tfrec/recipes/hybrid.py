"""Training recipe of the CF + content hybrids (:mod:`tfrec.models.hybrid`).

Every model of the family trains on a warm/cold item split of implicit feedback
with one content row per item (MovieLens genres, release year and a title bag of
words, or the user's own content file), with pointwise log loss against
``num_negatives`` fresh negatives per positive and epoch drawn among the warm
items (:mod:`tfrec.training.hybrid`). The combinations are named stages:

==========================  ==================================================
model                       stages
==========================  ==================================================
``cbf_profile``             ``cbf``
``hybrid_weighted``         ``cf`` (mf), ``cbf``, ``blend`` (copy both in; with
                            ``learn_weight`` fit w alone, both frozen)
``hybrid_switching``        ``cf``, ``cbf``, ``switch`` (copy in, store counts)
``hybrid_initialized``      ``content`` (content path), ``factors`` (item
                            factors set to ``P x_i``, then MF)
``hybrid_regularized``      one stage: log loss + lambda ||q_i - f(x_i)||^2
``hybrid_joint``            one stage: log loss + lambda MSE(x_i, dec(v_i))
``hybrid_mapping``          ``cf`` (mf), ``map`` (content map fitted by squared
                            error to the factors)
==========================  ==================================================

**Honest selection.** The split (:func:`hybrid_split`) first draws the test parts
exactly as :func:`tfrec.data.coldstart.cold_item_split` does (``cold_fraction`` of
the items cold, ``warm_test_fraction`` of each user's warm pairs held out), then
carves the validation parts from the *training* pairs only: ``valid_cold_fraction``
of the warm items become validation-cold (their training pairs are the cold
validation set; their warm-test pairs are dropped, since the model never trains
on those items) and ``source.valid_fraction`` of each user's remaining training
pairs is the warm validation set. Models train on what is left; each epoch they
are ranked on both validation parts (``warm_*``, ``cold_*`` and ``mean_ndcg@k``,
the monitor for early stopping); the test parts are read once, by ``evaluate``.

Item indices: warm items (the model's ``num_items``) first, then the
validation-cold items, then the test-cold items; every cold index is outside the
models' vocabulary, so they are scored from ``item_content`` alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from tfrec.data.datasets import DataError
from tfrec.recipes import interactions as ix
from tfrec.recipes.base import (
    Preset,
    Recipe,
    StagePlan,
    TrainSettings,
    Vocab,
    register_recipe,
)
from tfrec.registry import create_model
from tfrec.training import hybrid as H
from tfrec.training.optimizers import make_optimizer

HYBRID_DATASETS = ("movielens-100k", "movielens-1m")
MONITORS = ("mean", "warm", "cold")


# --------------------------------------------------------------------------- config


@dataclass
class HybridConfig(TrainSettings):
    """Settings of the hybrid recipe (defaults: the settings of
    ``reports/hybrids.md``; see the presets for where each value comes from).

    Attributes:
        num_negatives: Fresh warm negatives per positive per epoch (log loss).
        content_weight: lambda of the regularizing and joint hybrids.
        pre_epochs: Epochs of the initializing hybrid's content-path stage.
        blend_epochs: Epochs fitting the learned weight of ``hybrid_weighted``
            (``learn_weight=True``; both components frozen).
        map_epochs: Epochs of the mapping hybrid's content-map regression.
        map_learning_rate: Step size of that regression.
        map_batch_size: Items per step of that regression.
        map_passes_per_epoch: Passes over the items per epoch of the ``map``
            stage (validation runs once per epoch): the stage has
            ``ceil(map_epochs / map_passes_per_epoch)`` epochs.
        cold_fraction: Share of all items made cold for the test.
        warm_test_fraction: Share of each user's warm pairs held out for test.
        valid_cold_fraction: Share of the warm items made cold for validation
            (carved from the training pairs).
        title_vocab: Catalogue content: size of the title bag of words (genres
            and year are always included).
        monitor: Which validation NDCG early stopping (and the grids below)
            watch: ``mean`` of warm and cold, ``warm`` or ``cold``.
        threshold_grid: ``hybrid_switching``: candidate thresholds; the
            ``switch`` stage keeps the one with the best validation ``monitor``
            (empty: use ``threshold``).
        weight_grid: ``hybrid_weighted`` with a fixed weight: candidate ``w``;
            the ``blend`` stage keeps the best on validation (empty: use
            ``cf_weight``).
    """

    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 0.002
    num_negatives: int = 4
    content_weight: float = 1.0
    pre_epochs: int = 5
    blend_epochs: int = 1
    map_epochs: int = 200
    map_learning_rate: float = 0.005
    map_batch_size: int = 256
    map_passes_per_epoch: int = 20
    cold_fraction: float = 0.2
    warm_test_fraction: float = 0.2
    valid_cold_fraction: float = 0.1
    title_vocab: int = 50
    monitor: str = "mean"
    threshold_grid: tuple = ()
    weight_grid: tuple = ()

    def validate(self) -> None:
        super().validate()
        for name in ("num_negatives", "pre_epochs", "blend_epochs", "map_epochs",
                     "map_batch_size", "map_passes_per_epoch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive int. Received: {name}={value!r}"
                )
        if isinstance(self.title_vocab, bool) or not isinstance(
            self.title_vocab, int
        ) or self.title_vocab < 0:
            raise ValueError(
                f"`title_vocab` must be an int >= 0. Received: title_vocab="
                f"{self.title_vocab!r}"
            )
        if not isinstance(self.content_weight, (int, float)) or not (
            self.content_weight >= 0
        ):
            raise ValueError(
                "`content_weight` (lambda) must be a number >= 0. Received: "
                f"content_weight={self.content_weight!r}"
            )
        if not isinstance(self.map_learning_rate, (int, float)) or not (
            self.map_learning_rate > 0
        ):
            raise ValueError(
                "`map_learning_rate` must be > 0. Received: "
                f"map_learning_rate={self.map_learning_rate!r}"
            )
        for name in ("cold_fraction", "warm_test_fraction", "valid_cold_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ValueError(
                    f"`{name}` must be in (0, 1). Received: {name}={value!r}"
                )
        for name, low, high in (("threshold_grid", 0.0, np.inf),
                                ("weight_grid", 0.0, 1.0)):
            grid = getattr(self, name)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and low <= v <= high for v in grid):
                raise ValueError(
                    f"`{name}` must be numbers in [{low}, {high}]. Received: "
                    f"{name}={grid!r}"
                )
        if self.monitor not in MONITORS:
            raise ValueError(
                f"`monitor` must be one of {MONITORS}. Received: monitor="
                f"{self.monitor!r}"
            )


# --------------------------------------------------------------------------- data


@dataclass(kw_only=True)
class HybridData:
    """A warm/cold split with validation parts carved from training, and content.

    Item indices: ``0 .. num_warm_items - 1`` warm (the models' vocabulary), then
    ``num_valid_cold`` validation-cold items, then the test-cold items. Every part
    is ``{"user_id", "item_id", "rating"}``; ``content`` has one row per item.
    It has the attributes the training helpers of :mod:`tfrec.training.hybrid`
    read (``train``, ``num_users``, ``num_items``, ``num_warm_items``).
    """

    name: str
    num_users: int
    num_items: int
    num_warm_items: int
    num_valid_cold: int
    train: dict
    warm_valid: dict
    cold_valid: dict
    warm_test: dict
    cold_test: dict
    user_ids: np.ndarray
    item_ids: np.ndarray
    content: np.ndarray
    item_names: list | None = None
    settings: dict = field(default_factory=dict)

    @property
    def valid_cold_items(self) -> np.ndarray:
        start = self.num_warm_items
        return np.arange(start, start + self.num_valid_cold, dtype=np.int64)

    @property
    def test_cold_items(self) -> np.ndarray:
        return np.arange(
            self.num_warm_items + self.num_valid_cold, self.num_items, dtype=np.int64
        )

    def csr(self, *parts: str) -> tuple[np.ndarray, np.ndarray]:
        """Each user's distinct items of ``parts`` as CSR ``(indptr, indices)``."""
        users = np.concatenate([getattr(self, p)["user_id"] for p in parts])
        items = np.concatenate([getattr(self, p)["item_id"] for p in parts])
        keys = np.unique(users * self.num_items + items)
        indptr = np.zeros(self.num_users + 1, np.int64)
        np.cumsum(
            np.bincount(keys // self.num_items, minlength=self.num_users),
            out=indptr[1:],
        )
        return indptr, (keys % self.num_items).astype(np.int64)

    def summary(self) -> dict:
        sizes = {
            p: int(getattr(self, p)["user_id"].size)
            for p in ("train", "warm_valid", "cold_valid", "warm_test", "cold_test")
        }
        return {
            "name": self.name,
            "num_users": self.num_users,
            "num_warm_items": self.num_warm_items,
            "num_valid_cold_items": self.num_valid_cold,
            "num_test_cold_items": int(self.test_cold_items.size),
            "content_dim": int(self.content.shape[1]),
            **{f"{k}_pairs": v for k, v in sizes.items()},
            **self.settings,
        }


def _rows(part: dict, rows: np.ndarray, new_index: np.ndarray) -> dict:
    rows = np.asarray(rows, np.int64)
    out = {
        "user_id": part["user_id"][rows].astype(np.int64),
        "item_id": new_index[part["item_id"][rows]].astype(np.int64),
        "rating": part["rating"][rows].astype(np.float32),
    }
    order = np.lexsort((out["item_id"], out["user_id"]))
    return {k: v[order] for k, v in out.items()}


def hybrid_split(
    split,
    content,
    *,
    valid_cold_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    seed: int = 0,
) -> HybridData:
    """Carves cold and warm validation parts from a `ColdStartSplit`'s training
    pairs (see the module docstring); the test parts are the split's own.

    Args:
        split: A :class:`tfrec.data.coldstart.ColdStartSplit`.
        content: One float32 row per item index of ``split``.
        valid_cold_fraction: Share of the warm items made validation-cold.
        valid_fraction: Share of each user's remaining training pairs held out
            (rounded; one training pair per user and per warm item is kept).
        seed: Seed of both choices.
    """
    content = np.asarray(content, np.float32)
    if content.ndim != 2 or len(content) != split.num_items:
        raise ValueError(
            f"`content` must have one row per item of the split ({split.num_items}). "
            f"Received shape {content.shape}."
        )
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"`valid_fraction` must be in [0, 1). Received: {valid_fraction}")
    nw = split.num_warm_items
    if nw < 2:
        raise DataError(
            f"{split.name}: too few warm items ({nw}) to carve a cold validation part."
        )
    rng = np.random.default_rng([int(seed), 17])
    n_vc = int(min(max(round(valid_cold_fraction * nw), 1), nw - 1))
    is_vc = np.zeros(nw, bool)
    is_vc[rng.choice(nw, size=n_vc, replace=False)] = True
    warm = np.flatnonzero(~is_vc)
    vcold = np.flatnonzero(is_vc)
    new_index = np.empty(split.num_items, np.int64)
    new_index[warm] = np.arange(warm.size)
    new_index[vcold] = warm.size + np.arange(vcold.size)
    new_index[nw:] = warm.size + vcold.size + np.arange(split.num_items - nw)
    order = np.argsort(new_index)  # old index of each new index

    train = split.train
    on_vc = is_vc[train["item_id"]]
    cold_valid_rows = np.flatnonzero(on_vc)
    pool = np.flatnonzero(~on_vc)
    # Per-user random holdout of the remaining training pairs.
    users = train["user_id"][pool]
    within = np.lexsort((rng.random(pool.size), users))
    pool, users = pool[within], users[within]
    counts = np.bincount(users, minlength=split.num_users)
    n_valid = np.minimum(
        np.round(valid_fraction * counts).astype(np.int64), np.maximum(counts - 1, 0)
    )
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(pool.size) - starts[users]
    held = pos >= counts[users] - n_valid[users]
    valid_rows, train_rows = pool[held], pool[~held]
    seen = np.zeros(split.num_items, bool)
    seen[train["item_id"][train_rows]] = True
    back = ~seen[train["item_id"][valid_rows]]
    if back.any():  # keep every warm item in training
        train_rows = np.concatenate([train_rows, valid_rows[back]])
        valid_rows = valid_rows[~back]
    test_keep = np.flatnonzero(~is_vc[split.warm_test["item_id"]])
    names = None
    if split.item_names is not None:
        names = [split.item_names[i] for i in order]
    return HybridData(
        name=split.name,
        num_users=split.num_users,
        num_items=split.num_items,
        num_warm_items=int(warm.size),
        num_valid_cold=int(vcold.size),
        train=_rows(train, train_rows, new_index),
        warm_valid=_rows(train, valid_rows, new_index),
        cold_valid=_rows(train, cold_valid_rows, new_index),
        warm_test=_rows(split.warm_test, test_keep, new_index),
        cold_test=_rows(
            split.cold_test, np.arange(split.cold_test["user_id"].size), new_index
        ),
        user_ids=np.asarray(split.user_ids),
        item_ids=np.asarray(split.item_ids)[order],
        content=content[order],
        item_names=names,
        settings={
            **split.settings,
            "valid_cold_fraction": float(valid_cold_fraction),
            "valid_fraction": float(valid_fraction),
            "warm_test_pairs_dropped_on_valid_cold_items": int(
                split.warm_test["user_id"].size - test_keep.size
            ),
        },
    )


def read_item_content(path, item_ids, columns: dict | None = None) -> np.ndarray:
    """The user's item content file, one float32 row per raw id of ``item_ids``.

    ``.csv`` / ``.tsv`` / ``.parquet``: one row per item, an item id column (the
    ``item`` name of ``columns``, else ``item`` or ``item_id``); every other
    column is a feature: numeric columns as they are, text columns as a
    multi-hot of their ``|``-separated tokens (``Action|Comedy``). ``.npz`` /
    ``.npy``: `tfrec.data.content.load_item_features` (integer ids only).

    Raises:
        DataError: naming the file (and line and column where there is one): no
            id column, no feature column, a duplicated id, a non-finite value,
            items of the interactions missing from the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    item_ids = np.asarray(item_ids)
    if suffix in (".npz", ".npy"):
        if item_ids.dtype.kind not in "iu":
            raise DataError(
                f"{path}: .npz/.npy content files key items by integer id, but the "
                "interactions have string item ids; use a .csv/.tsv/.parquet file "
                "with an item column."
            )
        from tfrec.data.content import load_item_features

        feats = load_item_features(path, item_ids)
        return feats.reshape(len(feats), -1)
    if suffix not in (".csv", ".tsv", ".parquet"):
        raise DataError(
            f"{path}: unsupported content file type {suffix or '(none)'!r}; use .csv, "
            ".tsv, .parquet, .npz or .npy."
        )
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no such content file.")
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(
                path, sep="\t" if suffix == ".tsv" else ",", dtype=str,
                keep_default_na=False, skipinitialspace=True,
            )
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as e:
        msg = f"{path}: could not read the content file: {e}".splitlines()[0]
        raise DataError(msg) from e
    if df.empty:
        raise DataError(f"{path}: the content file has no rows.")

    def line(k: int) -> str:
        return f"row {k + 1}" if suffix == ".parquet" else f"line {k + 2}"

    wanted = (columns or {}).get("item")
    candidates = [c for c in (wanted, "item", "item_id") if c]
    id_col = next((c for c in candidates if c in df.columns), None)
    if id_col is None:
        raise DataError(
            f"{path}: no item id column ({' or '.join(map(repr, candidates))}); its "
            f"columns are {list(df.columns)}."
        )
    raw = df[id_col].astype(str).str.strip().to_numpy()
    if item_ids.dtype.kind in "iu":
        ok = np.array([r.lstrip("+-").isdigit() for r in raw])
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise DataError(
                f"{path}: {line(k)}, column {id_col!r}: item id {raw[k]!r} is not an "
                "integer, but the interactions' item ids are."
            )
        keys = raw.astype(np.int64)
        wanted_keys = item_ids.astype(np.int64)
    else:
        keys, wanted_keys = raw, item_ids.astype(str)
    uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = int(np.sort(first[counts > 1])[0])
        raise DataError(
            f"{path}: {line(dup)}, column {id_col!r}: item {raw[dup]!r} appears more "
            "than once; give one row per item."
        )
    parts, names = [], []
    for col in df.columns:
        if col == id_col:
            continue
        values = df[col]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            arr = numeric.to_numpy(np.float64)
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise DataError(
                    f"{path}: {line(int(bad[0]))}, column {col!r}: "
                    f"{values.iloc[bad[0]]!r} is not a finite number."
                )
            parts.append(arr[:, None])
            names.append(col)
            continue
        text = values.astype(str).str.strip()
        as_number = numeric.notna() & (text != "")
        if as_number.mean() > 0.5:
            k = int(np.flatnonzero(numeric.isna().to_numpy())[0])
            raise DataError(
                f"{path}: {line(k)}, column {col!r}: {values.iloc[k]!r} is not a "
                "number (the column is otherwise numeric)."
            )
        tokens = [[t.strip() for t in v.split("|") if t.strip()] for v in text]
        vocab = sorted({t for row in tokens for t in row})
        col_of = {t: j for j, t in enumerate(vocab)}
        hot = np.zeros((len(df), len(vocab)))
        for r, row in enumerate(tokens):
            for t in row:
                hot[r, col_of[t]] = 1.0
        parts.append(hot)
        names.extend(f"{col}={t}" for t in vocab)
    if not parts or sum(p.shape[1] for p in parts) == 0:
        raise DataError(
            f"{path}: no feature columns besides {id_col!r}; add numeric columns or "
            "|-separated tags."
        )
    feats = np.concatenate(parts, axis=1).astype(np.float32)
    pos = np.searchsorted(uniq, wanted_keys)
    pos = np.minimum(pos, len(uniq) - 1)
    found = uniq[pos] == wanted_keys
    if not found.all():
        missing = wanted_keys[~found]
        raise DataError(
            f"{path}: {missing.size} item(s) of the interactions have no content row, "
            f"e.g. {[str(m) for m in missing[:5]]}; every item needs one."
        )
    return feats[first[pos]]


def _own_split(source, config):
    from tfrec.data.coldstart import cold_item_split
    from tfrec.data.sources import source_table
    from tfrec.data.userfiles import table_interactions

    if not source.content:
        raise ValueError(
            "The hybrid models need item content beside the interactions: pass the "
            "content file with --content FILE (content=... in Python): one row per "
            "item, an item column and numeric or |-separated tag columns."
        )
    table = source_table(source)
    inter, user_vocab, item_vocab = table_interactions(table, Path(source.file).name)
    try:
        split = cold_item_split(
            inter,
            cold_fraction=config.cold_fraction,
            test_fraction=config.warm_test_fraction,
            seed=source.split_seed,
            warm_test="latest" if inter.timestamp is not None else "random",
        )
    except DataError as err:
        raise DataError(f"{source.file}: {err}") from err
    if split.train["user_id"].size < 2 or split.cold_test["user_id"].size == 0:
        raise DataError(
            f"{source.file}: too few interactions to split: {len(inter)} rows give "
            f"{split.train['user_id'].size} training pairs and "
            f"{split.cold_test['user_id'].size} cold-test pairs."
        )
    split.user_ids = user_vocab[split.user_ids]
    split.item_ids = item_vocab[split.item_ids]
    content = read_item_content(source.content, split.item_ids, source.columns)
    return split, content




# --------------------------------------------------------------------------- recipe

_REPORT = "reports/hybrids.md (the README's hybrid table)"
_PILOT = (
    "set from one seed-0 pilot run WITHOUT a validation split (reports/hybrids.md); "
    "kept as the reported setting, not validated"
)

_COMMON = {"embedding_dim": 32, "epochs": 10, "batch_size": 1024, "learning_rate": 0.002,
           "num_negatives": 4}


@register_recipe
class HybridRecipe(Recipe):
    name = "hybrid"
    models = (
        "cbf_profile",
        "hybrid_weighted",
        "hybrid_switching",
        "hybrid_initialized",
        "hybrid_joint",
        "hybrid_regularized",
        "hybrid_mapping",
    )
    data_kind = "interactions"
    needs_content = True
    default_dataset = "movielens-100k"
    datasets = HYBRID_DATASETS
    splits = ("cold_items",)
    query = "user"
    Config = HybridConfig
    presets = (
        Preset(
            "report_ml100k",
            dict(_COMMON),
            f"{_REPORT}: factors 32, Adam 2e-3, batch 1024, 4 negatives; 10 epochs "
            f"{_PILOT}",
            dataset="movielens-100k",
            models=("cbf_profile", "hybrid_mapping", "hybrid_initialized"),
        ),
        Preset(
            "report_weighted_fixed",
            {**_COMMON, "cf_weight": 0.5, "learn_weight": False},
            f"{_REPORT}: w = 0.5 fixed (Burke 2002's plain average); epochs {_PILOT}",
            dataset="movielens-100k",
            models=("hybrid_weighted",),
        ),
        Preset(
            "report_weighted_learned",
            {**_COMMON, "cf_weight": 0.5, "learn_weight": True, "blend_epochs": 1},
            f"{_REPORT}: w learned 1 epoch from 0.5, CF and CBF frozen; epochs {_PILOT}",
            dataset="movielens-100k",
            models=("hybrid_weighted",),
        ),
        Preset(
            "report_switching",
            {**_COMMON, "threshold": 10.0},
            f"{_REPORT}: threshold 10 training interactions, {_PILOT}",
            dataset="movielens-100k",
            models=("hybrid_switching",),
        ),
        Preset(
            "weighted_valid",
            {**_COMMON, "learn_weight": False,
             "weight_grid": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)},
            f"w chosen on the validation parts by the blend stage from a 0.1-0.9 grid "
            f"(monitor: mean of warm and cold NDCG@10); the rest as {_REPORT}",
            dataset="movielens-100k",
            models=("hybrid_weighted",),
        ),
        Preset(
            "switching_valid",
            {**_COMMON, "threshold_grid": (0.0, 2.0, 5.0, 10.0, 20.0, 50.0)},
            "threshold chosen on the validation parts by the switch stage from "
            f"0/2/5/10/20/50 training interactions; the rest as {_REPORT}",
            dataset="movielens-100k",
            models=("hybrid_switching",),
        ),
        Preset(
            "report_joint",
            {**_COMMON, "content_weight": 1.0},
            f"{_REPORT}: lambda 1, confirmed on validation with `tfrec select` (seed "
            "0; mean warm/cold validation NDCG@10 0.2034 / 0.2052 / 0.1991 for lambda "
            "0.1 / 1 / 10; reports/select_hybrid_joint.md, test never read); the "
            f"10-epoch budget {_PILOT}",
            dataset="movielens-100k",
            models=("hybrid_joint",),
        ),
        Preset(
            "report_regularized_001",
            {**_COMMON, "content_weight": 0.01},
            f"{_REPORT}: lambda 0.01 {_PILOT}",
            dataset="movielens-100k",
            models=("hybrid_regularized",),
        ),
        Preset(
            "report_regularized_01",
            {**_COMMON, "content_weight": 0.1},
            f"{_REPORT}: lambda 0.1 {_PILOT}",
            dataset="movielens-100k",
            models=("hybrid_regularized",),
        ),
        Preset(
            "regularized_valid",
            {**_COMMON, "content_weight": 0.01},
            "lambda 0.01: chosen on the validation parts (mean of warm and cold "
            "NDCG@10) over 0.1 in 2 of 3 seeds (reports/hybrids.md, 2026-12-01); "
            f"epochs {_PILOT}",
            dataset="movielens-100k",
            models=("hybrid_regularized",),
        ),
        Preset(
            "report_mapping_mlp",
            {**_COMMON, "hidden_units": (64,)},
            f"{_REPORT}: MLP map (64), 200 regression epochs, {_PILOT}",
            dataset="movielens-100k",
            models=("hybrid_mapping",),
        ),
    )
    test_config = {
        "epochs": 2,
        "batch_size": 64,
        "learning_rate": 0.02,
        "pre_epochs": 2,
        "map_epochs": 2,
        "map_passes_per_epoch": 1,
        "map_learning_rate": 0.02,
        "title_vocab": 0,
    }

    def size_kwargs(self):
        return ("num_users", "num_items", "content_dim", "item_counts")

    # ---- data ----------------------------------------------------------------
    def load_data(self, source, config):
        if source.split not in (None, *self.splits):
            raise ValueError(
                f"The hybrid models train on a warm/cold item split ('cold_items'); "
                f"received split={source.split!r}. Tune it with cold_fraction, "
                "warm_test_fraction, valid_cold_fraction and valid_fraction."
            )
        if source.file:
            split, content = _own_split(source, config)
        else:
            from tfrec.data.coldstart import load_cold_split
            from tfrec.data.content import movielens_items

            split = load_cold_split(
                source.dataset,
                data_dir=source.data_dir,
                cold_fraction=config.cold_fraction,
                test_fraction=config.warm_test_fraction,
                seed=source.split_seed,
            )
            items = movielens_items(source.dataset, source.data_dir)
            content = items.features(split.item_ids, title_vocab=config.title_vocab)
        return hybrid_split(
            split,
            content,
            valid_cold_fraction=config.valid_cold_fraction,
            valid_fraction=source.valid_fraction,
            seed=source.split_seed,
        )

    def synthetic_data(self, seed=0):
        from tfrec.data.coldstart import cold_item_split, synthetic_content

        syn = synthetic_content(60, 50, per_user=10, hidden_dim=4, seed=seed)
        split = cold_item_split(
            syn.interactions, cold_fraction=0.2, test_fraction=0.2, seed=seed
        )
        content = syn.features[split.item_ids - 1]
        return hybrid_split(
            split, content, valid_cold_fraction=0.15, valid_fraction=0.15, seed=seed
        )

    def describe(self, data):
        s = data.summary()
        return (
            f"{s['name']}: {s['num_users']} users, {s['num_warm_items']} warm + "
            f"{s['num_valid_cold_items']} validation-cold + {s['num_test_cold_items']} "
            f"test-cold items, content width {s['content_dim']}; {s['train_pairs']} "
            f"train, {s['warm_valid_pairs']} + {s['cold_valid_pairs']} validation "
            f"(warm + cold), {s['warm_test_pairs']} + {s['cold_test_pairs']} test pairs"
        )

    def vocab(self, data):
        # `Vocab.item_content`: the hybrids take item content as a serving input.
        return Vocab(
            users=[str(u) for u in data.user_ids],
            items=[str(i) for i in data.item_ids],
            item_names=data.item_names,
            seen=data.csr("train", "warm_valid"),
            item_content=data.content,
        )

    # ---- training ------------------------------------------------------------
    def stage_names(self, model, config):
        return {
            "cbf_profile": ("cbf",),
            "hybrid_weighted": ("cf", "cbf", "blend"),
            "hybrid_switching": ("cf", "cbf", "switch"),
            "hybrid_initialized": ("content", "factors"),
            "hybrid_mapping": ("cf", "map"),
        }.get(model, (model,))

    def _kwargs(self, name, data, model_kwargs):
        """Sizes from the data plus the user's kwargs that ``name`` takes."""
        allowed = set(self.builder_kwargs(name))
        kwargs = {k: v for k, v in model_kwargs.items() if k in allowed}
        sizes = {
            "num_users": data.num_users,
            "num_items": data.num_warm_items,
            "content_dim": int(data.content.shape[1]),
        }
        import inspect

        from tfrec.registry import model_info

        params = inspect.signature(model_info(name).builder).parameters
        kwargs.update({k: v for k, v in sizes.items() if k in params})
        return kwargs

    def _dim(self, model, model_kwargs):
        if "embedding_dim" in model_kwargs:
            return model_kwargs["embedding_dim"]
        return self.builder_kwargs(model)["embedding_dim"].default

    def _validator(self, net, data, config, parts=("warm", "cold")):
        k = config.ks[0]
        score_fn = H.content_scorer(net, data.content)

        def validate():
            res = rank(data, score_fn, "valid", ks=config.ks, parts=parts)
            out = {
                f"{p}_{m}": v for p, r in res.items() for m, v in r.items()
                if m.startswith(("recall@", "ndcg@"))
            }
            present = [out[f"{p}_ndcg@{k}"] for p in parts]
            out[f"mean_ndcg@{k}"] = float(np.mean(present))
            return out

        return validate

    def _pointwise(self, net, trainer, data, config, *, epochs, models, parts,
                   serving=None, monitor=None):
        ds, sampler = H.pointwise_dataset(
            net, data, data.content, batch_size=config.batch_size,
            num_negatives=config.num_negatives, seed=config.seed,
        )
        trainer.compile(
            optimizer=make_optimizer(config.optimizer, config.learning_rate),
            loss={"score": keras.losses.BinaryCrossentropy()},
        )
        from tfrec.data.pipelines import SamplerEpochCallback

        k = config.ks[0]
        return StagePlan(
            trainer=trainer,
            dataset=ds,
            epochs=epochs,
            models=models,
            callbacks=[SamplerEpochCallback(sampler)],
            validate=self._validator(net, data, config, parts),
            monitor=monitor or f"{config.monitor if len(parts) > 1 else parts[0]}"
            f"_ndcg@{k}",
            serving=serving,
        )

    def build_stage(self, stage, model, data, config, model_kwargs, previous):
        dim = self._dim(model, model_kwargs) if model != "cbf_profile" else None
        l2 = model_kwargs.get("l2", 0.0)
        if stage == "cf":
            net = create_model(
                "mf", num_users=data.num_users, num_items=data.num_warm_items,
                embedding_dim=dim, l2=l2,
            )
            return self._pointwise(net, net, data, config, epochs=config.epochs,
                                   models={"mf": net}, parts=("warm",))
        if stage == "cbf":
            kwargs = self._kwargs("cbf_profile", data, {"l2": l2})
            net = create_model("cbf_profile", **kwargs)
            serving = (lambda: ix.graph("cbf_profile", kwargs, net)) if (
                model == "cbf_profile") else None
            return self._pointwise(net, net, data, config, epochs=config.epochs,
                                   models={"cbf_profile": net}, parts=("warm", "cold"),
                                   serving=serving)
        kwargs = self._kwargs(model, data, model_kwargs)
        if stage in ("blend", "switch"):
            return self._combine(stage, model, data, config, kwargs, previous)
        if stage == "content":
            net = create_model(model, **kwargs)
            net.get_layer("content_projection").trainable = True
            path = H.content_path_model(net)
            return self._pointwise(path, path, data, config, epochs=config.pre_epochs,
                                   models={model: net}, parts=("warm", "cold"))
        if stage == "factors":
            net = previous["content"].models[model]
            net.get_layer("content_projection").trainable = False
            H.initialize_item_factors(net, data.content[: data.num_warm_items])
            return self._pointwise(net, net, data, config, epochs=config.epochs,
                                   models={model: net}, parts=("warm", "cold"),
                                   serving=lambda: ix.graph(model, kwargs, net))
        if stage == "map":
            from tfrec.data.pipelines import SamplerEpochCallback

            net = create_model(model, **kwargs)
            cf = previous["cf"].models["mf"]
            H.load_mf_into_factor_model(cf, net)
            passes = min(config.map_passes_per_epoch, config.map_epochs)
            regressor, ds, rows = H.map_regression(
                net, data.content[: data.num_warm_items], H.mf_item_vectors(cf),
                batch_size=config.map_batch_size, seed=config.seed, passes=passes,
            )
            regressor.compile(
                optimizer=make_optimizer(config.optimizer, config.map_learning_rate),
                loss="mse",
            )
            return StagePlan(
                trainer=regressor, dataset=ds, epochs=-(-config.map_epochs // passes),
                models={model: net}, callbacks=[SamplerEpochCallback(rows)],
                validate=self._validator(net, data, config),
                monitor=f"{config.monitor}_ndcg@{config.ks[0]}",
                serving=lambda: ix.graph(model, kwargs, net),
            )
        # One-stage objectives: regularizing and joint.
        net = create_model(model, **kwargs)
        if model == "hybrid_regularized":
            trainer = H.regularized_trainer(net, config.content_weight)
        elif model == "hybrid_joint":
            trainer = H.joint_trainer(net, config.content_weight)
        else:
            raise ValueError(f"No stage {stage!r} for {model!r} in the hybrid recipe.")
        return self._pointwise(net, trainer, data, config, epochs=config.epochs,
                               models={model: net}, parts=("warm", "cold"),
                               serving=lambda: ix.graph(model, kwargs, net))

    def _combine(self, stage, model, data, config, kwargs, previous):
        """Weighted / switching: both trained components copied in; a learned
        weight is then fitted alone, or a grid value chosen on validation."""
        from tfrec.models.hybrid import set_item_counts

        net = create_model(model, **kwargs)
        H.copy_weights(previous["cf"].models["mf"], net)
        H.copy_weights(previous["cbf"].models["cbf_profile"], net)
        if stage == "switch":
            set_item_counts(net, H.item_counts(data))
        layer, attr, grid = (
            (net.get_layer("switch"), "threshold", config.threshold_grid)
            if stage == "switch"
            else (net.get_layer("blend"), "cf_weight", config.weight_grid)
        )
        validate = self._validator(net, data, config)
        monitor = f"{config.monitor}_ndcg@{config.ks[0]}"
        plan = StagePlan(models={model: net}, validate=validate, monitor=monitor)

        def serving():
            if "choice" in plan.arrays:  # chosen now, or loaded on resume
                value = float(plan.arrays["choice"])
                setattr(layer, attr, value)
                kwargs[attr] = value
            for other in net.layers:
                if not isinstance(other, H.Blend):
                    other.trainable = True
            return ix.graph(model, kwargs, net)

        plan.serving = serving
        if stage == "blend" and kwargs.get("learn_weight"):
            for other in net.layers:
                other.trainable = isinstance(other, H.Blend)
            fitted = self._pointwise(
                net, net, data, config, epochs=config.blend_epochs,
                models={model: net}, parts=("warm", "cold"), serving=serving,
            )
            plan.trainer, plan.dataset, plan.epochs = (
                fitted.trainer, fitted.dataset, fitted.epochs
            )
            plan.callbacks, plan.monitor = fitted.callbacks, fitted.monitor
            return plan

        def choose() -> dict:
            if not grid:
                return {}
            if stage == "blend" and kwargs.get("learn_weight"):
                return {}
            values = [float(v) for v in grid]
            scores = []
            for value in values:
                setattr(layer, attr, value)
                scores.append(float(validate()[monitor]))
            best = values[int(np.argmax(scores))]  # ties: the first listed
            setattr(layer, attr, best)
            return {"choice": np.float64(best), "grid": np.asarray(values),
                    "valid_scores": np.asarray(scores)}

        plan.compute = choose
        return plan

    # ---- evaluation and use --------------------------------------------------
    def evaluate(self, model, serving, data, config, part="test"):
        """``warm`` and ``cold`` (see :func:`rank`); the weighted and switching
        hybrids also report their two components on the same parts (``cf_warm``,
        ``cf_cold``: the ``mf`` branch, i.e. pure CF; ``cbf_warm``, ``cbf_cold``:
        pure CBF)."""
        net = serving[model].model
        out = rank(data, H.content_scorer(net, data.content), part, ks=config.ks)
        if model in ("hybrid_weighted", "hybrid_switching"):
            for branch in ("cf", "cbf"):
                sub = keras.Model(
                    net.input, {"score": net.get_layer(f"{branch}_score").output}
                )
                res = rank(data, H.content_scorer(sub, data.content), part, ks=config.ks)
                out.update({f"{branch}_{k}": v for k, v in res.items()})
        return out

    def recommend(self, model, serving, vocab, query, *, k=10, exclude_seen=True):
        content = getattr(vocab, "item_content", None)
        if content is None:
            raise ValueError(
                f"{model} scores items from their content, and this vocabulary has "
                "none (vocab/item_content.npz is missing); recommend from the run's "
                "data with recipe.vocab(data), or re-train the run."
            )
        if k < 1:
            raise ValueError(f"k must be a positive int. Received: {k}")
        u = ix.user_index(vocab, query)
        n = len(vocab.items)
        score_fn = H.content_scorer(serving[model].model, content)
        scores = score_fn(np.full(n, u, np.int64), np.arange(n, dtype=np.int64))
        exclude = ix.seen_items(vocab, u) if exclude_seen else ()
        return ix.top_k(scores, vocab, k, exclude)


def rank(data: HybridData, score_fn, part: str, *, ks=(10,), parts=("warm", "cold")):
    """``{"warm": metrics, "cold": metrics}`` of ``score_fn`` on ``part``.

    ``valid``: warm validation pairs ranked among the warm items (training items
    excluded), cold validation pairs among the validation-cold items. ``test``:
    warm test pairs among the warm items (training and validation items
    excluded), cold test pairs among the test-cold items.
    """
    from tfrec.evaluation import FullRanking

    if part not in ("valid", "test"):
        raise ValueError(f"`part` must be 'valid' or 'test'. Received: {part!r}")
    results = {}
    for kind in parts:
        started = time.time()
        rows = getattr(data, f"{kind}_{part}")
        if rows["user_id"].size == 0:
            continue
        if kind == "warm":
            known = ("train",) if part == "valid" else ("train", "warm_valid")
            indptr, indices = data.csr(*known)
            keep = indices < data.num_warm_items
            counts = np.diff(indptr)
            owner = np.repeat(np.arange(data.num_users), counts)[keep]
            indptr = np.zeros(data.num_users + 1, np.int64)
            np.cumsum(np.bincount(owner, minlength=data.num_users), out=indptr[1:])
            protocol = FullRanking(
                data.num_warm_items, rows["user_id"], rows["item_id"],
                exclude_indptr=indptr, exclude_indices=indices[keep], ks=ks,
            )
            fn = score_fn
        else:
            cands = data.valid_cold_items if part == "valid" else data.test_cold_items
            offset = int(cands[0]) if cands.size else 0
            protocol = FullRanking(
                cands.size, rows["user_id"], rows["item_id"] - offset, ks=ks
            )

            def fn(users, items, offset=offset):
                return score_fn(users, np.asarray(items, np.int64) + offset)

        results[kind] = dict(protocol.evaluate(fn))
        results[kind]["seconds"] = round(time.time() - started, 2)
    return results


__all__ = [
    "HybridConfig",
    "HybridData",
    "HybridRecipe",
    "hybrid_split",
    "rank",
    "read_item_content",
]
