"""From a `DataSource` (catalogue name or the user's file) to a `Split`.

Recipes whose data kind is interactions call :func:`interaction_split`; the
session and history recipes build their own kinds on :func:`source_table`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tfrec.data.datasets import DATASETS, DataError
from tfrec.data.splits import Split, load_split
from tfrec.data.userfiles import read_table, split_table


def check_dataset(source, allowed: tuple = ()) -> None:
    """Raises for an unknown catalogue name or one the recipe cannot use."""
    if source.file:
        return
    if source.dataset not in DATASETS:
        import difflib

        close = difflib.get_close_matches(str(source.dataset), list(DATASETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown data set {source.dataset!r}.{hint} Data sets: "
            f"{', '.join(DATASETS)} (or --data FILE for your own file)."
        )
    if allowed and source.dataset not in allowed:
        raise ValueError(
            f"Data set {source.dataset!r} is not of the kind this model trains on; "
            f"use one of {', '.join(allowed)} or --data FILE."
        )


def source_table(source, required=("user", "item")) -> pd.DataFrame:
    """The user's file as canonical columns (see `tfrec.data.userfiles`)."""
    return read_table(Path(source.file), source.columns, required=required)


def interaction_split(source, *, default_split: str = "leave_one_out") -> Split:
    """The `Split` a run trains on, rebuilt the same way by evaluate/recommend.

    Catalogue splits: ``leave_one_out`` (``ncf-ml-1m``: the paper's files),
    ``random`` (``test_fraction`` / ``valid_fraction``); ``ncf_valid`` is the
    paper's files with a validation part carved from training
    (`tfrec.data.splits.ncf_validation`), for choosing settings on the NCF
    protocol without reading its test set. Own files also take ``time``.
    """
    split = source.split or default_split
    if source.file:
        table = source_table(source)
        return split_table(
            table,
            name=Path(source.file).name,
            split=split,
            seed=source.split_seed,
            test_fraction=source.test_fraction,
            valid_fraction=source.valid_fraction,
            eval_negatives=source.eval_negatives,
        )
    if split == "ncf_valid":
        if source.dataset != "ncf-ml-1m":
            raise DataError(
                f"Split 'ncf_valid' is the NCF paper's split with a validation part; "
                f"it needs --dataset ncf-ml-1m, not {source.dataset!r}."
            )
        from tfrec.data.splits import ncf_validation

        paper = load_split("ncf-ml-1m", protocol="leave_one_out", data_dir=source.data_dir)
        return ncf_validation(paper, seed=source.split_seed)
    if split == "leave_one_out":
        kw = {} if source.dataset == "ncf-ml-1m" else {
            "num_negatives": source.eval_negatives
        }
        return load_split(
            source.dataset,
            protocol="leave_one_out",
            data_dir=source.data_dir,
            seed=source.split_seed,
            **kw,
        )
    if split == "random":
        return load_split(
            source.dataset,
            protocol="random",
            data_dir=source.data_dir,
            seed=source.split_seed,
            test_fraction=source.test_fraction,
            valid_fraction=source.valid_fraction,
        )
    raise DataError(
        f"Split {split!r} is not available for the catalogue data set "
        f"{source.dataset!r}; use leave_one_out or random"
        + (" (or ncf_valid)." if source.dataset == "ncf-ml-1m" else ".")
    )
