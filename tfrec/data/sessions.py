"""Session data: click sequences with a contiguous item vocabulary.

A `Sessions` holds many variable-length click sequences in a CSR-like layout:
the clicks of session ``s`` are ``items[offsets[s]:offsets[s + 1]]``. Sessions
are ordered by their start time (ties: raw session id), and the clicks of a
session by time (ties: the order in the source file). Item indices are
contiguous ``1..num_items``; index 0 is reserved for padding, so
``item_vocab[k - 1]`` is the raw id of item index ``k``.

Sources:

- `user_histories`: each MovieLens user's ratings ordered by time, one
  "session" per user (for sequence models such as item2vec / prod2vec).
- `load_yoochoose`: RecSys Challenge 2015 clicks, from the raw
  ``yoochoose-clicks.dat`` (preprocessed here the way GRU4Rec does) or from
  GRU4Rec's preprocessed ``*_train_full.txt`` / ``*_test.txt`` layout.
- `load_diginetica`: DIGINETICA item views (``train-item-views.csv`` or SR-GNN's
  sample), preprocessed the same way (`DIGINETICA_SETTINGS`).

Bad input: missing, empty or malformed files (wrong header, field count,
non-numeric ids, unparsable or non-finite times, bytes that are not UTF-8)
raise `DataError` naming the file and line; the catalogue's sample files are
checked against their sha256 each time they are read
(`tfrec.data.datasets.verify_file`). Repeated clicks on an item within a
session are kept: a click log is a sequence, not a rating matrix, so the
duplicate-merging rule of the interaction loaders does not apply. Handled, documented and tested: clicks out of time order are
sorted (stable), as the official code does; sessions of length 1 are dropped
from train (no next-click pair) and test; test clicks on items unknown to
train are dropped before sessions are formed, as the official evaluation does
(both counted in `SessionSplit.stats`).

Pipelines: `session_parallel_batches` / `session_parallel_dataset` (GRU4Rec's
session-parallel mini-batches with reset flags) and `padded_prefixes` /
`sequence_dataset` (left-padded click prefixes for the whole-sequence model;
0 is padding, which the model masks).
"""

from __future__ import annotations

import io
import os
import pathlib
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tfrec.data.datasets import DataError, decode_text, load_interactions, verify_file
from tfrec.data.sequences import SESSION_PAD, pad_left

__all__ = [
    "DIGINETICA_SETTINGS",
    "SessionParallelBatches",
    "SessionSplit",
    "Sessions",
    "YOOCHOOSE_SETTINGS",
    "gru4rec_preprocess",
    "load_diginetica",
    "load_yoochoose",
    "read_diginetica_views",
    "padded_prefixes",
    "read_gru4rec_tsv",
    "read_yoochoose_clicks",
    "sequence_dataset",
    "session_parallel_batches",
    "session_parallel_dataset",
    "user_histories",
    "write_gru4rec_tsv",
]


@dataclass(kw_only=True)
class Sessions:
    """Click sessions in time order (construct with keywords or `from_events`).

    Args:
        name: Data set name.
        session_ids: int64 ``[num_sessions]`` raw session id of each session.
        offsets: int64 ``[num_sessions + 1]``; the clicks of session ``s`` are
            ``items[offsets[s]:offsets[s + 1]]``.
        items: int64 ``[num_events]`` item indices in ``1..num_items``.
        timestamps: float64 ``[num_events]`` event times (unix seconds, or any
            increasing clock).
        item_vocab: int64 ``[num_items]`` raw id of item index ``k`` at
            position ``k - 1`` (index 0 is padding), sorted ascending.
        item_names: Raw item id -> title, when known.
    """

    name: str
    session_ids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    item_vocab: np.ndarray
    item_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.session_ids = np.asarray(self.session_ids, dtype=np.int64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        self.item_vocab = np.asarray(self.item_vocab, dtype=np.int64)
        n_s = self.session_ids.shape[0]
        if self.offsets.shape != (n_s + 1,):
            raise ValueError(
                f"`offsets` must have num_sessions + 1 = {n_s + 1} entries. "
                f"Received: {self.offsets.shape[0]}"
            )
        if self.offsets[0] != 0 or self.offsets[-1] != self.items.shape[0]:
            raise ValueError(
                "`offsets` must start at 0 and end at len(items) = "
                f"{self.items.shape[0]}. Received: {self.offsets[0]}..{self.offsets[-1]}"
            )
        if np.any(np.diff(self.offsets) < 0):
            raise ValueError("`offsets` must be non-decreasing.")
        if self.timestamps.shape != self.items.shape:
            raise ValueError(
                "`timestamps` and `items` must have the same length. Received: "
                f"{self.timestamps.shape[0]} and {self.items.shape[0]}"
            )
        if self.items.size and (
            self.items.min() < 1 or self.items.max() > self.item_vocab.shape[0]
        ):
            raise ValueError(
                f"`items` must be indices in 1..{self.item_vocab.shape[0]} "
                f"(0 is padding). Received: {self.items.min()}..{self.items.max()}"
            )

    # ------------------------------------------------------------------ sizes
    @property
    def num_sessions(self) -> int:
        return int(self.session_ids.shape[0])

    @property
    def num_events(self) -> int:
        return int(self.items.shape[0])

    @property
    def num_items(self) -> int:
        """Vocabulary size without the padding index (max item index)."""
        return int(self.item_vocab.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """int64 ``[num_sessions]`` number of clicks per session."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.num_sessions

    def session(self, s: int) -> np.ndarray:
        """Item indices of session ``s`` (a view)."""
        return self.items[self.offsets[s] : self.offsets[s + 1]]

    def sequences(self) -> list[np.ndarray]:
        """Item indices of every session, as a list of arrays (views)."""
        return np.split(self.items, self.offsets[1:-1])

    @property
    def event_session(self) -> np.ndarray:
        """int64 ``[num_events]`` position (0..num_sessions-1) of each event's session."""
        return np.repeat(np.arange(self.num_sessions, dtype=np.int64), self.lengths)

    # ------------------------------------------------------------------ ids
    def encode_items(self, raw_ids, *, unknown: str = "raise") -> np.ndarray:
        """Maps raw item ids to indices.

        Args:
            raw_ids: Raw item ids.
            unknown: ``"raise"`` (a `DataError` naming the unknown ids) or
                ``"zero"`` (unknown ids map to 0, the padding / OOV index).
        """
        raw = np.asarray(raw_ids, dtype=np.int64)
        pos = np.searchsorted(self.item_vocab, raw)
        pos_c = np.minimum(pos, max(self.num_items - 1, 0))
        found = (
            (self.item_vocab[pos_c] == raw)
            if self.num_items
            else np.zeros(raw.shape, bool)
        )
        if unknown == "raise" and not found.all():
            bad = np.unique(raw[~found])[:10]
            raise DataError(
                f"{int((~found).sum())} item id(s) not in the vocabulary of "
                f"{self.name!r} ({self.num_items} items), e.g. {bad.tolist()}"
            )
        if unknown not in ("raise", "zero"):
            raise ValueError(
                f"`unknown` must be 'raise' or 'zero'. Received: unknown={unknown!r}"
            )
        return np.where(found, pos_c + 1, 0).astype(np.int64)

    def decode_items(self, indices) -> np.ndarray:
        """Maps item indices (1..num_items) back to raw ids."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 1 or idx.max() > self.num_items):
            raise ValueError(
                f"item indices must be in 1..{self.num_items}. "
                f"Received: {idx.min()}..{idx.max()}"
            )
        return self.item_vocab[idx - 1]

    @property
    def raw_items(self) -> np.ndarray:
        """int64 ``[num_events]`` raw item id of each event."""
        return self.item_vocab[self.items - 1]

    # ------------------------------------------------------------------ build
    @classmethod
    def from_events(
        cls,
        session,
        item,
        time,
        *,
        name: str = "",
        item_vocab: np.ndarray | None = None,
        item_names: dict[int, str] | None = None,
    ) -> Sessions:
        """Builds `Sessions` from per-event raw ids and times.

        Events are grouped by session; within a session they are sorted by time
        (stable: ties keep their input order). Sessions are ordered by their
        first click time, ties by raw session id.

        Args:
            session: Raw session id per event.
            item: Raw item id per event.
            time: Time per event (numbers; NaN is rejected).
            name: Data set name.
            item_vocab: Sorted raw item ids to index against (every item must be
                in it); default: the sorted distinct items of `item`.
            item_names: Raw item id -> title.

        Raises:
            DataError: lengths differ, or a time is NaN, or an item is not in
                `item_vocab`.
        """
        session = np.asarray(session, dtype=np.int64)
        item = np.asarray(item, dtype=np.int64)
        time = np.asarray(time, dtype=np.float64)
        if not (session.shape == item.shape == time.shape) or session.ndim != 1:
            raise DataError(
                "session, item and time must be 1-D arrays of the same length. "
                f"Received shapes {session.shape}, {item.shape}, {time.shape}"
            )
        if not np.isfinite(time).all():
            raise DataError(
                f"{name or 'sessions'}: {int((~np.isfinite(time)).sum())} event "
                "time(s) are NaN or infinite"
            )
        if item_vocab is None:
            item_vocab = np.unique(item)
        else:
            item_vocab = np.asarray(item_vocab, dtype=np.int64)
            if np.any(np.diff(item_vocab) <= 0):
                raise ValueError("`item_vocab` must be sorted ascending and unique.")
        # Group by session and order by time within it (stable on input order).
        order = np.lexsort((np.arange(session.size), time, session))
        session, item, time = session[order], item[order], time[order]
        if session.size:
            starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
        else:
            starts = np.zeros(0, dtype=np.int64)
        ends = np.r_[starts[1:], session.size].astype(np.int64)
        sess_ids = session[starts]
        start_time = time[starts]
        sess_order = np.lexsort((sess_ids, start_time))
        lengths = (ends - starts)[sess_order]
        event_order = (
            np.concatenate([np.arange(starts[s], ends[s]) for s in sess_order])
            if sess_order.size
            else np.zeros(0, dtype=np.int64)
        )
        tmp = cls(
            name=name,
            session_ids=np.zeros(0, np.int64),
            offsets=np.zeros(1, np.int64),
            items=np.zeros(0, np.int64),
            timestamps=np.zeros(0),
            item_vocab=item_vocab,
        )
        items_idx = tmp.encode_items(item[event_order])
        return cls(
            name=name,
            session_ids=sess_ids[sess_order],
            offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
            items=items_idx,
            timestamps=time[event_order],
            item_vocab=item_vocab,
            item_names=dict(item_names or {}),
        )

    def subset(self, keep: np.ndarray) -> Sessions:
        """The sessions where boolean `keep` (``[num_sessions]``) is True."""
        keep = np.asarray(keep, dtype=bool)
        ev = np.repeat(keep, self.lengths)
        return Sessions(
            name=self.name,
            session_ids=self.session_ids[keep],
            offsets=np.r_[0, np.cumsum(self.lengths[keep])].astype(np.int64),
            items=self.items[ev],
            timestamps=self.timestamps[ev],
            item_vocab=self.item_vocab,
            item_names=self.item_names,
        )


def user_histories(
    name: str = "movielens-100k",
    data_dir: str | os.PathLike | None = None,
    min_length: int = 2,
    *,
    download: bool = True,
) -> Sessions:
    """Each user's interactions in time order, as one "session" per user.

    Ties in time keep the order of the rating file. Every rating counts as a
    click (ratings are ignored). The item vocabulary holds the items of the
    kept histories.

    Args:
        name: A catalogue data set with timestamps (``movielens-100k``,
            ``movielens-1m``).
        data_dir: Folder holding its files (see `tfrec.data.dataset_dir`).
        min_length: Users with fewer interactions are dropped.
        download: Whether a download may be attempted.

    Returns:
        `Sessions` whose `session_ids` are the raw user ids.
    """
    if int(min_length) < 1:
        raise ValueError(
            f"`min_length` must be >= 1. Received: min_length={min_length}"
        )
    inter = load_interactions(name, data_dir, download=download)
    if inter.timestamp is None:
        raise DataError(
            f"data set {name!r} has no timestamps, so user histories cannot be "
            "ordered in time"
        )
    users, counts = np.unique(inter.user, return_counts=True)
    keep_users = users[counts >= int(min_length)]
    keep = np.isin(inter.user, keep_users)
    return Sessions.from_events(
        inter.user[keep],
        inter.item[keep],
        inter.timestamp[keep].astype(np.float64),
        name=name,
        item_names=inter.item_names,
    )


# ======================================================================= splits
@dataclass(kw_only=True)
class SessionSplit:
    """A time-based train/test split of sessions sharing one item vocabulary.

    Args:
        name: Data set name.
        train: Training sessions (their items define the vocabulary).
        test: Test sessions, indexed with the training vocabulary.
        settings: How the split was made (filters, test span, source files).
        stats: Counts of what each filter removed.
    """

    name: str
    train: Sessions
    test: Sessions
    settings: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return self.train.num_items


# ======================================================================= parsing
_INT = "int"
_FLOAT = "float"
_STR = "str"


def _first_bad_line(path, text: str, sep: str, columns, header: bool) -> str | None:
    """Returns a description of the first malformed line, or None."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    for lineno, raw in enumerate(lines, start=1):
        if header and lineno == 1:
            continue
        line = raw.rstrip("\r")
        fields = line.split(sep)
        if len(fields) != len(columns):
            return (
                f"{path}: line {lineno}: expected {len(columns)} {sep!r}-separated "
                f"fields ({', '.join(c for c, _ in columns)}), got {len(fields)}: "
                f"{line!r}"
            )
        for (cname, kind), token in zip(columns, fields, strict=True):
            token = token.strip()
            if kind == _STR:
                continue
            if not token:
                return f"{path}: line {lineno}: empty {cname} field: {line!r}"
            try:
                value = int(token) if kind == _INT else float(token)
            except ValueError:
                what = "an integer" if kind == _INT else "a number"
                return (
                    f"{path}: line {lineno}: {cname} must be {what}, got {token!r}: "
                    f"{line!r}"
                )
            if kind == _FLOAT and not np.isfinite(value):
                return (
                    f"{path}: line {lineno}: {cname} must be a finite number, got "
                    f"{token!r}: {line!r}"
                )
    return None


def _read_table(
    path, sep: str, columns, *, header: tuple[str, ...] | None
) -> pd.DataFrame:
    """Reads a delimited file strictly into a DataFrame with the given columns.

    Args:
        path: The file.
        sep: One-character separator.
        columns: ``[(name, "int" | "float" | "str"), ...]`` in file order.
        header: The expected header names, or None when the file has no header.

    Raises:
        DataError: missing or empty file, wrong header, malformed line (named by
            its 1-based line number).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = decode_text(path, path.read_bytes(), "utf-8")
    body = text.strip()
    if not body:
        raise DataError(f"{path}: the file is empty")
    if header is not None:
        first = body.split("\n", 1)[0].rstrip("\r").strip()
        got = [h.strip() for h in first.split(sep)]
        if got != list(header):
            raise DataError(
                f"{path}: line 1: expected the header {sep.join(header)!r}, got "
                f"{first!r}"
            )
        if "\n" not in body:
            raise DataError(f"{path}: no events (only the header)")
    dtypes = {
        name: (np.int64 if kind == _INT else np.float64 if kind == _FLOAT else str)
        for name, kind in columns
    }
    df = None
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=0 if header is not None else None,
            names=[c for c, _ in columns],
            dtype=dtypes,
            engine="c",
            skip_blank_lines=True,
            keep_default_na=False,
            na_values={c: [""] for c, k in columns if k != _STR},
        )
    except (ValueError, pd.errors.ParserError, OverflowError):
        df = None
    if (
        df is None
        or any(df[c].isna().any() for c, k in columns if k != _STR)
        or any(
            not np.isfinite(df[c].to_numpy()).all() for c, k in columns if k == _FLOAT
        )
    ):
        bad = _first_bad_line(path, text, sep, columns, header is not None)
        raise DataError(
            bad
            or f"{path}: could not parse as {sep!r}-separated "
            f"{', '.join(c for c, _ in columns)}"
        )
    # Lines with too few / many fields are caught by `_check_field_counts`.
    return df


_GRU4REC_COLUMNS = (("SessionId", _INT), ("ItemId", _INT), ("Time", _FLOAT))


def read_gru4rec_tsv(path) -> pd.DataFrame:
    """Reads a GRU4Rec-format file: header ``SessionId\\tItemId\\tTime``.

    Returns:
        A DataFrame with int64 ``SessionId``, ``ItemId`` and float64 ``Time``
        in file order (unsorted input is accepted; `Sessions.from_events`
        orders it).
    """
    df = _read_table(
        path, "\t", _GRU4REC_COLUMNS, header=("SessionId", "ItemId", "Time")
    )
    _check_field_counts(path, "\t", 3, header=True)
    return df


def _check_field_counts(path, sep: str, n: int, *, header: bool) -> None:
    """Rejects lines with more or fewer fields than `n` (pandas may pad them)."""
    text = decode_text(path, pathlib.Path(path).read_bytes(), "utf-8")
    counts = np.array([line.count(sep) for line in text.splitlines() if line.strip()])
    wrong = np.flatnonzero(counts != n - 1)
    if wrong.size:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        k = int(wrong[0])
        # 1-based line number in the file (blank lines are not expected inside).
        raise DataError(
            f"{path}: line {k + 1}: expected {n} {sep!r}-separated fields, got "
            f"{counts[k] + 1}: {lines[k]!r}"
        )


def read_yoochoose_clicks(path) -> pd.DataFrame:
    """Reads the raw RecSys Challenge 2015 ``yoochoose-clicks.dat``.

    Lines are ``SessionId,Timestamp,ItemId,Category`` without a header; the
    timestamp is ISO 8601 (``2014-04-07T10:51:09.277Z``) and read as UTC (the
    official preprocessing reads it as local time; only differences of times
    matter). The category column is ignored.

    Returns:
        A DataFrame with ``SessionId``, ``ItemId``, ``Time`` (unix seconds).
    """
    cols = (
        ("SessionId", _INT),
        ("Timestamp", _STR),
        ("ItemId", _INT),
        ("Category", _STR),
    )
    df = _read_table(path, ",", cols, header=None)
    _check_field_counts(path, ",", 4, header=False)
    time = _utc_seconds(
        path, df["Timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ", "2014-04-07T10:51:09.277Z", 1
    )
    return pd.DataFrame(
        {"SessionId": df["SessionId"], "ItemId": df["ItemId"], "Time": time}
    )


def _utc_seconds(path, column: pd.Series, fmt: str, example: str, first_line: int):
    """Unix seconds of UTC date strings; DataError naming the first bad line.

    ``first_line`` is the file line of the column's first value (2 after a header).
    """
    stamps = pd.to_datetime(column, format=fmt, utc=True, errors="coerce")
    if stamps.isna().any():
        k = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise DataError(
            f"{path}: line {k + first_line}: {column.name} must look like "
            f"{example!r}, got {column.iloc[k]!r}"
        )
    return (stamps - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()


def read_diginetica_views(path) -> pd.DataFrame:
    """Reads DIGINETICA ``train-item-views.csv`` (``;``-separated, with header).

    The time of a click is its ``eventdate`` (UTC midnight) plus ``timeframe``
    milliseconds, so the clicks of a session are ordered by date, then
    timeframe, as SR-GNN's preprocessing orders them.

    Returns:
        A DataFrame with ``SessionId``, ``ItemId``, ``Time`` (unix seconds).
    """
    cols = (
        ("session_id", _INT),
        ("user_id", _STR),
        ("item_id", _INT),
        ("timeframe", _INT),
        ("eventdate", _STR),
    )
    df = _read_table(path, ";", cols, header=tuple(c for c, _ in cols))
    _check_field_counts(path, ";", 5, header=True)
    day = _utc_seconds(path, df["eventdate"], "%Y-%m-%d", "2016-05-09", 2)
    return pd.DataFrame(
        {
            "SessionId": df["session_id"],
            "ItemId": df["item_id"],
            "Time": day + df["timeframe"].to_numpy(dtype=np.float64) / 1000.0,
        }
    )


# ================================================================= preprocessing
def _filter_min_session_length(df: pd.DataFrame, min_length: int) -> pd.DataFrame:
    sizes = df.groupby("SessionId").size()
    return df[df["SessionId"].isin(sizes.index[sizes >= min_length])]


def _filter_min_item_support(df: pd.DataFrame, min_support: int) -> pd.DataFrame:
    sizes = df.groupby("ItemId").size()
    return df[df["ItemId"].isin(sizes.index[sizes >= min_support])]


def gru4rec_preprocess(
    events: pd.DataFrame,
    *,
    min_item_support: int = 5,
    min_session_length: int = 2,
    test_days: float = 1.0,
    name: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """GRU4Rec's preprocessing of a click log into a time-based train/test split.

    The steps of the official ``examples/rsc15/preprocess.py``, in its order and
    applied once (not iterated to a fixed point): drop sessions of length 1,
    drop items with fewer than `min_item_support` clicks, drop sessions shorter
    than `min_session_length`; sessions whose last click falls in the final
    `test_days` days (``>= tmax - test_days * 86400``) form the test set; test
    clicks on items absent from train are dropped, then test sessions shorter
    than 2.

    Args:
        events: ``SessionId``, ``ItemId``, ``Time`` (seconds) columns.
        min_item_support: Minimum clicks of an item.
        min_session_length: Minimum clicks of a session after the item filter.
        test_days: Length of the test period in days.
        name: Data set name for messages.

    Returns:
        ``(train, test, stats)``; stats counts what each step kept.

    Raises:
        DataError: nothing is left for train or test.
    """
    stats = {
        "events_in": int(len(events)),
        "sessions_in": int(events.SessionId.nunique()),
    }
    df = _filter_min_session_length(events, 2)
    df = _filter_min_item_support(df, min_item_support)
    df = _filter_min_session_length(df, min_session_length)
    if df.empty:
        raise DataError(
            f"{name or 'sessions'}: no session is left after the filters "
            f"(min_item_support={min_item_support}, "
            f"min_session_length={min_session_length})"
        )
    tmax = float(df["Time"].max())
    session_max = df.groupby("SessionId")["Time"].max()
    cut = tmax - 86400.0 * float(test_days)
    train = df[df["SessionId"].isin(session_max.index[session_max < cut])]
    test = df[df["SessionId"].isin(session_max.index[session_max >= cut])]
    n_test_events = len(test)
    test = test[test["ItemId"].isin(train["ItemId"].unique())]
    dropped_unknown = n_test_events - len(test)
    test = _filter_min_session_length(test, 2)
    if train.empty or test.empty:
        raise DataError(
            f"{name or 'sessions'}: the split at {test_days} test day(s) leaves "
            f"{len(train)} train and {len(test)} test events; choose another "
            "test_days or looser filters"
        )
    stats.update(
        events_after_filters=int(len(df)),
        train_events=int(len(train)),
        train_sessions=int(train.SessionId.nunique()),
        train_items=int(train.ItemId.nunique()),
        test_events=int(len(test)),
        test_sessions=int(test.SessionId.nunique()),
        test_items=int(test.ItemId.nunique()),
        test_events_dropped_unknown_item=int(dropped_unknown),
        split_time=cut,
    )
    return train, test, stats


def _to_split(
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    settings: dict,
    stats: dict | None = None,
) -> SessionSplit:
    """Indexes train and test with the train vocabulary.

    Test clicks on unknown items are dropped (as the official evaluation does)
    and test sessions left with fewer than 2 clicks removed; train sessions of
    length 1 are dropped (they hold no next-click pair). Both are counted in
    `stats`.
    """
    stats = dict(stats or {})
    n_train = len(train)
    train = _filter_min_session_length(train, 2)
    stats["train_events_dropped_short_session"] = n_train - len(train)
    if train.empty:
        raise DataError(f"{name}: the training data has no session with 2+ clicks")
    tr = Sessions.from_events(
        train["SessionId"].to_numpy(),
        train["ItemId"].to_numpy(),
        train["Time"].to_numpy(),
        name=name,
    )
    known = test["ItemId"].isin(tr.item_vocab)
    stats["test_events_dropped_unknown_item"] = stats.get(
        "test_events_dropped_unknown_item", 0
    ) + int((~known).sum())
    n_before = int(known.sum())
    test = _filter_min_session_length(test[known], 2)
    stats["test_events_dropped_short_session"] = n_before - len(test)
    if test.empty:
        raise DataError(
            f"{name}: no test session with 2+ clicks on training items is left"
        )
    te = Sessions.from_events(
        test["SessionId"].to_numpy(),
        test["ItemId"].to_numpy(),
        test["Time"].to_numpy(),
        name=name,
        item_vocab=tr.item_vocab,
    )
    stats.update(
        train_events=tr.num_events,
        train_sessions=tr.num_sessions,
        num_items=tr.num_items,
        test_events=te.num_events,
        test_sessions=te.num_sessions,
    )
    return SessionSplit(name=name, train=tr, test=te, settings=settings, stats=stats)


# ======================================================================= loaders
YOOCHOOSE_RAW = "yoochoose-clicks.dat"
YOOCHOOSE_SAMPLE_PREFIX = "yoochoose-clicks-100k"
DIGINETICA_SAMPLE = "sample_train-item-views.csv"
DIGINETICA_RAW = "train-item-views.csv"
# Preprocessing choices for the DIGINETICA sample (12,391 clicks, 7,139 items):
# GRU4Rec's min. item support of 5 would keep 369 items, so it is lowered to 2;
# the test period is the last 14 days (SR-GNN uses 7 on the full file; on the
# sample 7 days leave only 286 next-click predictions, 14 days leave 371).
DIGINETICA_SETTINGS = {"min_item_support": 2, "min_session_length": 2, "test_days": 14}
YOOCHOOSE_SETTINGS = {"min_item_support": 5, "min_session_length": 2, "test_days": 1}


def _raw_folder(name: str, filename: str) -> pathlib.Path | None:
    """``$TFREC_DATA_DIR/<name>`` or ``$TFREC_CACHE_DIR/<name>`` holding `filename`."""
    roots = []
    if os.environ.get("TFREC_DATA_DIR"):
        roots.append(pathlib.Path(os.environ["TFREC_DATA_DIR"]).expanduser())
    roots.append(
        pathlib.Path(
            os.environ.get("TFREC_CACHE_DIR") or os.path.join("~", ".cache", "tfrec")
        ).expanduser()
    )
    for root in roots:
        if (root / name / filename).is_file():
            return root / name
    return None


def load_yoochoose(
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "test",
    download: bool = True,
) -> SessionSplit:
    """RecSys Challenge 2015 clicks, split the way GRU4Rec does.

    Accepts either layout in the data folder:

    * the raw challenge file ``yoochoose-clicks.dat`` (catalogue name
      ``yoochoose``; get it from the RecSys Challenge 2015 archive): it is
      preprocessed with `gru4rec_preprocess` (item support 5, last day as
      test);
    * GRU4Rec's preprocessed files ``<prefix>_train_full.txt`` /
      ``<prefix>_test.txt`` (and ``_train_tr`` / ``_train_valid``), e.g. the
      100k-click sample ``yoochoose-rsc15-100k-sample`` of session-rec.

    Without `data_dir`, ``yoochoose`` (raw) is looked up first (no download),
    then ``yoochoose-rsc15-100k-sample`` (downloaded if allowed).

    Args:
        data_dir: Folder with either layout.
        split: ``"test"`` (train_full / test) or ``"valid"`` (train_tr /
            train_valid, the validation pair; for the raw file the last day of
            train is the validation period).
        download: Whether the sample may be downloaded.

    Returns:
        A `SessionSplit`.
    """
    from tfrec.data.datasets import dataset_dir

    if split not in ("test", "valid"):
        raise ValueError(
            f"`split` must be 'test' or 'valid'. Received: split={split!r}"
        )
    if data_dir is not None:
        folder = pathlib.Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data_dir {folder} for yoochoose is not a folder")
    else:
        folder = _raw_folder("yoochoose", YOOCHOOSE_RAW) or dataset_dir(
            "yoochoose-rsc15-100k-sample", download=download
        )
    raw = folder / YOOCHOOSE_RAW
    fulls = sorted(folder.glob("*_train_full.txt"))
    if raw.is_file():
        events = read_yoochoose_clicks(raw)
        train, test, stats = gru4rec_preprocess(
            events, name="yoochoose", **YOOCHOOSE_SETTINGS
        )
        if split == "valid":
            train, test, stats = gru4rec_preprocess(
                train, name="yoochoose", min_item_support=1, test_days=1
            )
        settings = dict(YOOCHOOSE_SETTINGS, source=str(raw), split=split)
        return _to_split("yoochoose", train, test, settings, stats)
    if fulls:
        prefix = fulls[0].name[: -len("_train_full.txt")]
        names = (
            ("_train_full.txt", "_test.txt")
            if split == "test"
            else ("_train_tr.txt", "_train_valid.txt")
        )
        paths = [folder / (prefix + suffix) for suffix in names]
        for p in paths:
            if not p.is_file():
                raise DataError(f"{p}: file not found (needed for split={split!r})")
            verify_file("yoochoose-rsc15-100k-sample", folder, p.name)
        train = read_gru4rec_tsv(paths[0])
        test = read_gru4rec_tsv(paths[1])
        settings = {
            "source": [str(p) for p in paths],
            "split": split,
            "preprocessed": True,
        }
        return _to_split("yoochoose", train, test, settings)
    raise DataError(
        f"{folder}: neither {YOOCHOOSE_RAW} (raw RecSys Challenge 2015 clicks) nor "
        "GRU4Rec's preprocessed '<prefix>_train_full.txt' + '<prefix>_test.txt' found"
    )


def load_diginetica(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    min_item_support: int | None = None,
    test_days: float | None = None,
) -> SessionSplit:
    """DIGINETICA item views (CIKM Cup 2016), split the GRU4Rec way.

    Reads ``train-item-views.csv`` (the full file, catalogue name
    ``diginetica``) or SR-GNN's ``sample_train-item-views.csv`` (catalogue name
    ``diginetica-srgnn-sample``). Clicks are ordered within a session by
    eventdate, then timeframe. Filters and split as `gru4rec_preprocess`, with
    the settings in `DIGINETICA_SETTINGS` (item support 2 and a 14-day test
    period, chosen for the small sample; pass `min_item_support=5` for the
    full file).

    Returns:
        A `SessionSplit`.
    """
    from tfrec.data.datasets import dataset_dir

    if data_dir is not None:
        folder = pathlib.Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data_dir {folder} for diginetica is not a folder")
    else:
        folder = _raw_folder("diginetica", DIGINETICA_RAW) or dataset_dir(
            "diginetica-srgnn-sample", download=download
        )
    path = next(
        (
            folder / n
            for n in (DIGINETICA_RAW, DIGINETICA_SAMPLE)
            if (folder / n).is_file()
        ),
        None,
    )
    if path is None:
        raise DataError(
            f"{folder}: neither {DIGINETICA_RAW} nor {DIGINETICA_SAMPLE} found"
        )
    settings = dict(DIGINETICA_SETTINGS)
    if min_item_support is not None:
        settings["min_item_support"] = int(min_item_support)
    if test_days is not None:
        settings["test_days"] = float(test_days)
    verify_file("diginetica-srgnn-sample", folder, path.name)
    events = read_diginetica_views(path)
    train, test, stats = gru4rec_preprocess(events, name="diginetica", **settings)
    return _to_split("diginetica", train, test, dict(settings, source=str(path)), stats)


def write_gru4rec_tsv(sessions: Sessions, path) -> None:
    """Writes sessions in GRU4Rec's ``SessionId\\tItemId\\tTime`` layout (atomic).

    Raw item ids are written; rows are grouped by session in the `Sessions`
    order, clicks in time order.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(
        {
            "SessionId": np.repeat(sessions.session_ids, sessions.lengths),
            "ItemId": sessions.raw_items,
            "Time": sessions.timestamps,
        }
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            df.to_csv(fh, sep="\t", index=False, float_format="%.3f")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


# ===================================================================== pipelines
@dataclass(frozen=True)
class SessionParallelBatches:
    """Session-parallel mini-batches (GRU4Rec), one row per step.

    Each of the `batch_size` slots follows one session in time order; when it
    ends, the next session (in `Sessions` order) takes the lowest free slot, as
    in the official implementation, and ``reset`` is 1 there: the slot's hidden
    state must be zeroed before the step. At the end, slots without a session
    have ``valid`` 0 and items 0.

    Args:
        inputs: int64 ``[steps, batch_size]`` current click (item index).
        targets: int64 ``[steps, batch_size]`` next click.
        reset: float32 ``[steps, batch_size]`` 1 where a new session starts.
        valid: float32 ``[steps, batch_size]`` 1 where the slot holds a session.
        session: int64 ``[steps, batch_size]`` position of the slot's session
            in the `Sessions` (-1 when invalid).
    """

    inputs: np.ndarray
    targets: np.ndarray
    reset: np.ndarray
    valid: np.ndarray
    session: np.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_events(self) -> int:
        """Number of (click, next click) pairs."""
        return int(self.valid.sum())


def session_parallel_batches(
    sessions: Sessions, batch_size: int
) -> SessionParallelBatches:
    """Lays out `sessions` as GRU4Rec's session-parallel mini-batches.

    Sessions are taken in their stored order (start time, not shuffled), and
    a session of length ``n`` occupies its slot for ``n - 1`` steps (one per
    next-click pair); sessions of length 1 have no pair and are skipped.

    Args:
        sessions: The sessions.
        batch_size: Number of parallel slots.

    Returns:
        A `SessionParallelBatches`.
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(
            f"`batch_size` must be >= 1. Received: batch_size={batch_size}"
        )
    pairs = sessions.lengths - 1
    order = np.flatnonzero(pairs > 0)
    if order.size == 0:
        raise DataError(
            f"{sessions.name or 'sessions'}: no session has 2+ clicks, so there "
            "is no next-click pair"
        )
    # The next session goes to the slot that frees first (ties: lowest slot),
    # which is what the official iterator does.
    import heapq

    heap = [(0, slot) for slot in range(batch_size)]
    start_step = np.empty(order.size, dtype=np.int64)
    slot_of = np.empty(order.size, dtype=np.int64)
    for k, s in enumerate(order):
        t, slot = heapq.heappop(heap)
        start_step[k] = t
        slot_of[k] = slot
        heapq.heappush(heap, (t + int(pairs[s]), slot))
    steps = int(max(t for t, _ in heap))
    inputs = np.zeros((steps, batch_size), dtype=np.int64)
    targets = np.zeros((steps, batch_size), dtype=np.int64)
    reset = np.zeros((steps, batch_size), dtype=np.float32)
    valid = np.zeros((steps, batch_size), dtype=np.float32)
    session = np.full((steps, batch_size), -1, dtype=np.int64)
    n = pairs[order]
    # Vectorised fill: event e of session k sits at (start_step[k] + e, slot_of[k]).
    rep = np.repeat(np.arange(order.size), n)
    within = np.arange(rep.size) - np.repeat(np.cumsum(n) - n, n)
    rows = start_step[rep] + within
    cols = slot_of[rep]
    src = sessions.offsets[order][rep] + within
    inputs[rows, cols] = sessions.items[src]
    targets[rows, cols] = sessions.items[src + 1]
    valid[rows, cols] = 1.0
    session[rows, cols] = order[rep]
    reset[start_step, slot_of] = 1.0
    return SessionParallelBatches(inputs, targets, reset, valid, session)


def session_parallel_dataset(sessions: Sessions, batch_size: int):
    """`session_parallel_batches` as a ``tf.data.Dataset`` of per-step dicts.

    Elements: ``{"item_id", "target", "reset", "valid"}`` of shape
    ``[batch_size]``, in step order (never shuffle it: the hidden state of each
    slot carries over from one step to the next).
    """
    import tensorflow as tf

    b = session_parallel_batches(sessions, batch_size)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "item_id": b.inputs,
            "target": b.targets,
            "reset": b.reset,
            "valid": b.valid,
        }
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def padded_prefixes(
    sessions: Sessions, max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every next-click prefix of every session, left-padded with 0
    (``SESSION_PAD``, :func:`tfrec.data.sequences.pad_left`).

    Row ``j`` holds the clicks of a session up to (and including) click ``t``
    (the last `max_length` of them), right-aligned; its target is click
    ``t + 1``. Rows follow the sessions' order, then time.

    Returns:
        ``(session_items int64 [num_pairs, max_length], targets int64 [num_pairs])``.
    """
    max_length = int(max_length)
    if max_length < 1:
        raise ValueError(
            f"`max_length` must be >= 1. Received: max_length={max_length}"
        )
    lengths = sessions.lengths
    n = np.maximum(lengths - 1, 0)
    sess = np.repeat(np.arange(sessions.num_sessions), n)
    t = np.arange(sess.size) - np.repeat(np.cumsum(n) - n, n)  # 0-based click index
    end = sessions.offsets[sess] + t  # index of the last input click
    out = pad_left(
        sessions.items, sessions.offsets[sess], end + 1, max_length, pad=SESSION_PAD
    )
    return out.astype(np.int64), sessions.items[end + 1]


def sequence_dataset(sessions: Sessions, max_length: int, batch_size: int):
    """Left-padded prefixes for the whole-sequence model as a ``tf.data.Dataset``.

    Elements: ``({"session_items": int64 [b, max_length]}, target int64 [b])``;
    0 is padding (the serving model masks it).
    """
    import tensorflow as tf

    x, y = padded_prefixes(sessions, max_length)
    ds = tf.data.Dataset.from_tensor_slices(({"session_items": x}, y))
    return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
