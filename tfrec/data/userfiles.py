"""The user's own interaction files: ``.csv``, ``.tsv`` or ``.parquet``.

:func:`read_table` reads a file into canonical columns (``user``, ``item``,
``rating``, ``time``, ``session``) through a column mapping
(``user=customer,item=sku,rating=stars,time=ts``), with raw ids of any type
(integers, or strings such as ``u_17`` / ``sku-42``). Every problem is a
:class:`~tfrec.data.DataError` naming the file, and the line and column where
there is one: a mapped column that is missing, an empty file, mixed id types,
timestamps or ratings that do not parse, empty fields.

:func:`table_interactions` turns the table into `Interactions` (integer codes)
plus the raw ids behind the codes, and :func:`split_table` splits it
(``leave_one_out`` by time, ``time`` cut, ``random`` ratio) into a `Split` whose
``user_ids`` / ``item_ids`` are the raw ids, so a run's vocabulary and every
export take the user's own ids.

Rules (the same as for the catalogue data sets, `tfrec.data.datasets`):

* ``.csv`` / ``.tsv`` files are UTF-8 (a byte-order mark is allowed); an
  invalid byte is a `DataError` naming the file and line.
* Ids are any integers (0 and negative ones included: the file defines them)
  or strings; they are re-indexed through sorted vocabularies, so a huge id
  never sets a model's size.
* Repeated (user, item) rows are merged into one by
  `tfrec.data.datasets.merge_duplicates`: the latest by ``time`` is kept, with
  its rating (ties, or no ``time`` column: the later row in the file).
* Splits take their vocabularies from the training rows; validation and test
  rows whose user or item has no training row are dropped and counted
  (`Split.dropped`, `Split.describe`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tfrec.data.datasets import DataError, Interactions, decode_text, merge_duplicates

CANONICAL = ("user", "item", "rating", "time", "session")
SUFFIXES = (".csv", ".tsv", ".parquet")


def parse_columns(text: str | dict | None) -> dict[str, str]:
    """``"user=customer,item=sku"`` -> ``{"user": "customer", "item": "sku"}``."""
    if not text:
        return {}
    if isinstance(text, dict):
        pairs = dict(text)
    else:
        pairs = {}
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ValueError(
                    f"--columns takes name=column pairs such as user=customer,"
                    f"item=sku. Received: {part!r}"
                )
            key, col = (t.strip() for t in part.split("=", 1))
            pairs[key] = col
    unknown = sorted(set(pairs) - set(CANONICAL))
    if unknown:
        raise ValueError(
            f"--columns: unknown name(s) {unknown}; the names are {list(CANONICAL)}."
        )
    return pairs


def _line(df_index: int, suffix: str) -> str:
    # Text files: the header is line 1, so data row k is line k + 2.
    return f"line {df_index + 2}" if suffix != ".parquet" else f"row {df_index + 1}"


def _read_raw(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use "
            f"{', '.join(SUFFIXES)}."
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        sep = "\t" if suffix == ".tsv" else ","
        text = decode_text(path, path.read_bytes(), "utf-8")
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except DataError:
        raise
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path}: the file is empty.") from err
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: could not be parsed: {err}".splitlines()[0]) from err
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: could not be read: {err}".splitlines()[0]) from err


def _ids(values: pd.Series, path: Path, column: str, suffix: str) -> np.ndarray:
    """Raw ids as int64 when every value is an integer, else as strings."""
    if suffix == ".parquet" and values.dtype != object:
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"{path}: {_line(row, suffix)}, column {column!r}: empty id.")
        if np.issubdtype(values.dtype, np.integer):
            return values.to_numpy(np.int64)
        if np.issubdtype(values.dtype, np.floating):
            arr = values.to_numpy()
            bad = np.flatnonzero(arr != np.round(arr))
            if len(bad):
                raise DataError(
                    f"{path}: {_line(int(bad[0]), suffix)}, column {column!r}: id "
                    f"{arr[bad[0]]!r} is not an integer or a string."
                )
            return arr.astype(np.int64)
        return values.astype(str).to_numpy()
    if suffix == ".parquet":
        kinds = values.map(lambda v: type(v).__name__)
        if kinds.nunique() > 1:
            first = kinds.iloc[0]
            row = int(np.flatnonzero((kinds != first).to_numpy())[0])
            raise DataError(
                f"{path}: {_line(row, suffix)}, column {column!r}: mixed id types "
                f"({first} in row 1, {kinds.iloc[row]} here); use one type per column."
            )
    text = values.astype(str).str.strip()
    empty = np.flatnonzero((text == "").to_numpy())
    if len(empty):
        raise DataError(
            f"{path}: {_line(int(empty[0]), suffix)}, column {column!r}: empty id."
        )
    is_int = text.str.fullmatch(r"[+-]?\d{1,18}").to_numpy()
    if is_int.all():
        return text.astype(np.int64).to_numpy()
    if is_int.any():
        i, s = int(np.flatnonzero(is_int)[0]), int(np.flatnonzero(~is_int)[0])
        raise DataError(
            f"{path}: {_line(s, suffix)}, column {column!r}: mixed id types: "
            f"{text.iloc[s]!r} is not a number but {text.iloc[i]!r} "
            f"({_line(i, suffix)}) is; use one kind of id per column."
        )
    return text.to_numpy().astype(str)


def _numbers(values: pd.Series, path: Path, column: str, suffix: str) -> np.ndarray:
    out = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        raise DataError(
            f"{path}: {_line(int(bad[0]), suffix)}, column {column!r}: "
            f"{values.iloc[bad[0]]!r} is not a finite number."
        )
    return out


def _times(values: pd.Series, path: Path, column: str, suffix: str) -> np.ndarray:
    """Unix seconds (int64) from numbers or date strings."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().any() and not numeric.notna().all():
        row = int(np.flatnonzero(numeric.isna().to_numpy())[0])
        raise DataError(
            f"{path}: {_line(row, suffix)}, column {column!r}: timestamp "
            f"{values.iloc[row]!r} is not a number like the other rows (use Unix "
            "seconds throughout, or ISO dates throughout)."
        )
    if numeric.notna().all():
        arr = numeric.to_numpy(np.float64)
        if not np.isfinite(arr).all():
            row = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise DataError(
                f"{path}: {_line(row, suffix)}, column {column!r}: bad timestamp."
            )
        return arr.astype(np.int64)
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataError(
            f"{path}: {_line(int(bad[0]), suffix)}, column {column!r}: timestamp "
            f"{values.iloc[bad[0]]!r} does not parse (use Unix seconds or an ISO "
            "date such as 2024-03-01T12:00:00)."
        )
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def read_table(
    path: str | os.PathLike,
    columns: dict | str | None = None,
    *,
    required: tuple[str, ...] = ("user", "item"),
) -> pd.DataFrame:
    """Reads ``path`` into the canonical columns that are mapped or present.

    Args:
        path: A ``.csv``, ``.tsv`` or ``.parquet`` file with a header.
        columns: Canonical name -> file column (``parse_columns``); a canonical
            name that is not mapped is looked for under its own name.
        required: Canonical columns that must be present.

    Returns:
        A DataFrame with columns among ``user``, ``item`` (int64 or str ids),
        ``rating`` (float64), ``time`` (int64 Unix seconds), ``session``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    mapping = parse_columns(columns)
    raw = _read_raw(path)
    if raw.empty:
        raise DataError(f"{path}: the file has a header but no rows.")
    present = list(raw.columns)
    out = {}
    for name in CANONICAL:
        col = mapping.get(name, name)
        if col not in raw.columns:
            if name in mapping:
                raise DataError(
                    f"{path}: column {col!r} (mapped to {name}) is not in the file; "
                    f"its columns are {present}."
                )
            if name in required:
                raise DataError(
                    f"{path}: no {name!r} column; its columns are {present}. Map one "
                    f"with --columns {name}=COLUMN."
                )
            continue
        series = raw[col].reset_index(drop=True)
        if name in ("user", "item", "session"):
            out[name] = _ids(series, path, col, suffix)
        elif name == "rating":
            out[name] = _numbers(series, path, col, suffix)
        else:
            out[name] = _times(series, path, col, suffix)
    return pd.DataFrame(out)


def encode_ids(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, vocab)``: int64 codes into the sorted unique raw ids."""
    vocab, codes = np.unique(raw, return_inverse=True)
    return codes.astype(np.int64), vocab


def table_interactions(
    table: pd.DataFrame, name: str
) -> tuple[Interactions, np.ndarray, np.ndarray]:
    """``(interactions with int64 codes, raw user vocab, raw item vocab)``.

    Codes are positions in the sorted raw ids, so a `Split` made from the
    interactions (whose vocabularies are the sorted codes it keeps) maps back to
    raw ids by indexing the returned vocabularies. Repeated (user, item) rows
    are merged into the latest (`merge_duplicates`); the count is
    ``Interactions.duplicates_merged``.
    """
    users, user_vocab = encode_ids(table["user"].to_numpy())
    items, item_vocab = encode_ids(table["item"].to_numpy())
    rating = (
        table["rating"].to_numpy(np.float32)
        if "rating" in table
        else np.ones(len(table), np.float32)
    )
    ts = table["time"].to_numpy(np.int64) if "time" in table else None
    inter = merge_duplicates(Interactions(name, users, items, rating, ts))
    return inter, user_vocab, item_vocab


SPLITS = ("leave_one_out", "time", "random")


def split_table(
    table: pd.DataFrame,
    *,
    name: str,
    split: str = "leave_one_out",
    seed: int = 0,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    eval_negatives: int = 99,
):
    """Splits a user table into a `Split` whose vocabularies are the raw ids.

    Splits: ``leave_one_out`` (each user's latest interaction is test, the one
    before validation; needs a ``time`` column, or the file order is used),
    ``time`` (the latest ``test_fraction`` of interactions by time are test, the
    ``valid_fraction`` before them validation), ``random`` (random rows).
    """
    from tfrec.data.splits import leave_one_out, random_split

    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {list(SPLITS)}.")
    inter, user_vocab, item_vocab = table_interactions(table, name)
    if split == "leave_one_out":
        if inter.timestamp is None:
            inter.timestamp = np.arange(len(inter), dtype=np.int64)
        counts = np.bincount(inter.user)
        if not (counts >= 3).any():
            raise DataError(
                f"{name}: too few interactions to split: leave_one_out needs users "
                f"with at least 3 interactions (train, validation, test); the most "
                f"any user has is {counts.max()} in {len(inter)} rows."
            )
        out = leave_one_out(inter, num_negatives=eval_negatives, seed=seed)
    elif split == "random":
        if len(inter) < 10:
            raise DataError(
                f"{name}: too few interactions to split: {len(inter)} rows (a random "
                "split needs at least 10)."
            )
        out = random_split(
            inter, test_fraction=test_fraction, valid_fraction=valid_fraction, seed=seed
        )
    else:
        out = _time_split(inter, test_fraction, valid_fraction)
    out.user_ids = user_vocab[out.user_ids]
    out.item_ids = item_vocab[out.item_ids]
    return out


def _time_split(inter: Interactions, test_fraction, valid_fraction):
    """The latest `test_fraction` of rows by time are test, the ones before
    validation; held-out rows whose user or item has no training row are
    dropped (counted in `Split.dropped`)."""
    from tfrec.data.splits import Split, _part, _restrict_to_train

    if inter.timestamp is None:
        raise DataError(f"{inter.name}: the 'time' split needs a time column.")
    n = len(inter)
    order = np.argsort(inter.timestamp, kind="stable")
    n_test = max(1, int(round(n * test_fraction)))
    n_valid = int(round(n * valid_fraction))
    if n - n_test - n_valid < 1:
        raise DataError(
            f"{inter.name}: too few interactions to split: {n} rows for "
            f"{n_test} test and {n_valid} validation."
        )
    train_rows = order[: n - n_test - n_valid]
    valid_rows = order[n - n_test - n_valid : n - n_test]
    test_rows = order[n - n_test :]
    users, items, u, i, kept, dropped = _restrict_to_train(
        inter.name,
        np.asarray(inter.user, np.int64),
        np.asarray(inter.item, np.int64),
        train_rows,
        {"valid": valid_rows if n_valid else None, "test": test_rows},
    )

    def part(rows):
        return _part(u[rows], i[rows], inter.rating[rows])

    return Split(
        name=inter.name,
        num_users=len(users),
        num_items=len(items),
        train=part(train_rows),
        valid=part(kept["valid"]) if n_valid else None,
        test=part(kept["test"]),
        user_ids=users,
        item_ids=items,
        dropped=dict(dropped, duplicates_merged=inter.duplicates_merged),
    )
