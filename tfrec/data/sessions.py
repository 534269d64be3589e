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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from tfrec.data.datasets import DataError, load_interactions

__all__ = [
    "Sessions",
    "user_histories",
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
        raise ValueError(f"`min_length` must be >= 1. Received: min_length={min_length}")
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
