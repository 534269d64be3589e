"""Shared pieces of the recipes whose data is time-ordered watch histories.

The YouTube DNN (`tfrec.recipes.youtube`) and MV-DNN (`tfrec.recipes.mv_dnn`)
recipes train on a time split (`tfrec.data.histories.time_split`, protocol
``last``: each user's latest interaction is the test next item) with item and
user content (`tfrec.data.histories.ContentTables`).

Honest selection: the validation part is carved from the training data only,
the same way: each user's latest *training* interaction is the validation next
item (:attr:`HistoryData.fit`, a `TimeSplit` with the same indices whose
``test`` part is that validation item). Models train on ``fit.train``; the test
part is read only by the final evaluation, where requests see every training
interaction before the label (validation items included) as history.

Data: the catalogue sets ``movielens-100k`` and ``movielens-1m`` (genres, title
tokens, release era, demographics), or the user's own interactions file (needs
``user``, ``item`` and ``time``; ``rating`` optional, the watch-time weight)
with an optional item content file (``source.content``: a ``.csv``/``.tsv``
with an ``item`` column and a ``genres`` column of ``|``-separated names, and
optionally ``title``). Own files have no demographics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfrec.data.datasets import DataError, Interactions
from tfrec.data.histories import ContentTables, TimeSplit, content_tables, time_split
from tfrec.recipes.base import DataSource, Vocab

HISTORY_DATASETS = ("movielens-100k", "movielens-1m")


@dataclass
class HistoryData:
    """A time split with content, its validation split and raw ids.

    Attributes:
        split: Training interactions and one test next item per test user.
        fit: ``split`` with each user's latest training interaction moved to
            ``test`` (the validation part); same indices as ``split``.
        content: Content aligned to the indices.
        user_raw, item_raw: Raw id of each user / item index, as strings.
        item_names: Title of each item index ("" when unknown).
        demographics: Whether ``content`` holds real demographic codes.
        has_content: Whether the items have real genres / title tokens.
        max_length: History window of a request (the run's ``max_length``:
            the recipes set it when they load the data; ``vocab`` saves it, so
            ``recommend`` serves the window the model trained on).
    """

    split: TimeSplit
    fit: TimeSplit
    content: ContentTables
    user_raw: list
    item_raw: list
    item_names: list
    demographics: bool = True
    has_content: bool = True
    max_length: int = 50

    @property
    def name(self) -> str:
        return self.split.name


def validation_split(split: TimeSplit) -> TimeSplit:
    """``split`` with each user's latest training interaction (users with at
    least two) as the ``test`` part: the validation split, same indices."""
    tr = split.train
    users = tr["user_id"]
    n = len(users)
    last = np.ones(n, bool)
    last[:-1] = users[1:] != users[:-1]
    first = np.ones(n, bool)
    first[1:] = users[1:] != users[:-1]
    is_valid = last & ~first
    if not is_valid.any():
        raise DataError(
            f"{split.name}: too few interactions to carve a validation part: no user "
            "has two training interactions."
        )
    train = {k: v[~is_valid] for k, v in tr.items()}
    valid = {k: v[is_valid] for k, v in tr.items()}
    return dataclasses.replace(split, train=train, test=valid)


def _item_names(inter: Interactions, item_ids) -> list:
    return [inter.item_names.get(int(i), "") for i in item_ids]


def _finish(split, content, user_raw, item_raw, names, **flags) -> HistoryData:
    return HistoryData(
        split=split,
        fit=validation_split(split),
        content=content,
        user_raw=[str(u) for u in user_raw],
        item_raw=[str(i) for i in item_raw],
        item_names=list(names),
        **flags,
    )


def load_histories(source: DataSource, *, title_vocab: int = 300) -> HistoryData:
    """The :class:`HistoryData` of a catalogue data set or the user's file."""
    split_name = source.split or "last"
    if split_name != "last":
        raise ValueError(
            f"Split {split_name!r} is not available for watch histories; the history "
            "recipes use 'last' (each user's latest interaction is the test next "
            "item, the one before it validation)."
        )
    if source.file:
        return _load_own_file(source, title_vocab=title_vocab)
    from tfrec.data.datasets import load_interactions

    inter = load_interactions(source.dataset, data_dir=source.data_dir)
    split = time_split(inter)
    content = content_tables(split, source.data_dir, title_vocab=title_vocab)
    return _finish(
        split, content, split.user_ids, split.item_ids, _item_names(inter, split.item_ids)
    )


def _read_content(path: Path, item_raw: list, title_vocab: int):
    """Genres and title tokens of ``item_raw`` from the user's content file."""
    import pandas as pd

    from tfrec.data.userfiles import SUFFIXES

    if not path.is_file():
        raise DataError(f"{path}: the content file does not exist.")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: use a .csv, .tsv or .parquet content file.")
    if suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str,
                         keep_default_na=False)
    if df.empty:
        raise DataError(f"{path}: the content file has a header but no rows.")
    for col in ("item", "genres"):
        if col not in df.columns:
            raise DataError(
                f"{path}: no {col!r} column; its columns are {list(df.columns)} (a "
                "content file has 'item', 'genres' (names separated by '|') and "
                "optionally 'title')."
            )
    ids = df["item"].astype(str).tolist()
    row_of = {}
    for k, raw in enumerate(ids):
        if raw in row_of:
            raise DataError(f"{path}: line {k + 2}, column 'item': item {raw!r} repeats.")
        row_of[raw] = k
    missing = [i for i in item_raw if i not in row_of]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} item(s) of the interactions have no content "
            f"row, e.g. {missing[:3]}."
        )
    rows = [row_of[i] for i in item_raw]
    genre_lists = [
        [g for g in str(df["genres"].iloc[r]).split("|") if g.strip()] for r in rows
    ]
    names = sorted({g for gs in genre_lists for g in gs}) or ["(none)"]
    col = {g: j for j, g in enumerate(names)}
    genres = np.zeros((len(rows), len(names)), np.float32)
    for k, gs in enumerate(genre_lists):
        genres[k, [col[g] for g in gs]] = 1.0
    titles = (
        [str(df["title"].iloc[r]) for r in rows] if "title" in df.columns
        else [""] * len(rows)
    )
    return genres, title_tokens(titles, title_vocab), titles, tuple(names)


def title_tokens(titles: list, title_vocab: int) -> np.ndarray:
    """Binary bag of the ``title_vocab`` most frequent lower-case title words."""
    import re
    from collections import Counter

    words = [re.findall(r"[a-z0-9]+", t.lower()) for t in titles]
    counts = Counter(w for ws in words for w in set(ws))
    vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    index = {w: j for j, w in enumerate(vocab[:title_vocab])}
    out = np.zeros((len(titles), max(1, title_vocab)), np.float32)
    for k, ws in enumerate(words):
        for w in ws:
            if w in index:
                out[k, index[w]] = 1.0
    return out


def _plain_content(num_users, genres, tokens, genre_names) -> ContentTables:
    num_items = len(genres)
    zeros = np.zeros(num_users, np.int64)
    return ContentTables(
        item_genres=genres,
        item_title_tokens=tokens,
        item_era=np.full(num_items, 7, np.int64),  # "?": unknown era
        user_gender=zeros,
        user_age=zeros.copy(),
        user_occupation=zeros.copy(),
        vocabs={"genre": genre_names, "era": ("?",) * 8, "gender": ("?",),
                "age": ("?",), "occupation": ("?",)},
    )


def _load_own_file(source: DataSource, *, title_vocab: int) -> HistoryData:
    from tfrec.data.sources import source_table
    from tfrec.data.userfiles import table_interactions

    table = source_table(source, required=("user", "item", "time"))
    name = Path(source.file).name
    inter, user_vocab, item_vocab = table_interactions(table, name)
    if np.bincount(inter.user).max() < 3:
        raise DataError(
            f"{source.file}: too few interactions to split: every user needs at least "
            "3 (train, validation, test) and none has more than "
            f"{np.bincount(inter.user).max()}."
        )
    split = time_split(inter)
    user_raw = user_vocab[split.user_ids]
    item_raw = [str(i) for i in item_vocab[split.item_ids]]
    if source.content:
        genres, tokens, titles, names = _read_content(
            Path(source.content), item_raw, title_vocab
        )
        has_content = True
    else:
        genres = np.zeros((split.num_items, 1), np.float32)
        tokens = np.zeros((split.num_items, max(1, title_vocab)), np.float32)
        titles, names, has_content = [""] * split.num_items, ("(none)",), False
    content = _plain_content(split.num_users, genres, tokens, names)
    return _finish(split, content, user_raw, item_raw, titles, demographics=False,
                   has_content=has_content)


def synthetic_histories(seed: int = 0, *, num_users: int = 40, num_items: int = 30,
                        per_user: int = 10, title_vocab: int = 12) -> HistoryData:
    """Tiny histories with structure, random genres, title tokens and
    demographics (for the zoo tests)."""
    from tfrec.data.synthetic import synthetic_interactions

    inter = synthetic_interactions(num_users, num_items, per_user=per_user, seed=seed)
    split = time_split(inter)
    rng = np.random.default_rng([seed, 7])
    genres = (rng.random((split.num_items, 5)) < 0.35).astype(np.float32)
    tokens = (rng.random((split.num_items, title_vocab)) < 0.25).astype(np.float32)
    content = ContentTables(
        item_genres=genres,
        item_title_tokens=tokens,
        item_era=rng.integers(0, 8, split.num_items),
        user_gender=rng.integers(0, 2, split.num_users),
        user_age=rng.integers(0, 7, split.num_users),
        user_occupation=rng.integers(0, 21, split.num_users),
        vocabs={"genre": tuple(f"g{k}" for k in range(5))},
    )
    return _finish(split, content, split.user_ids, split.item_ids,
                   _item_names(inter, split.item_ids))


def as_interaction_split(data: HistoryData):
    """``data``'s time split as a user-item `tfrec.data.splits.Split` (split
    ``last`` of the interaction recipes): ``train`` is the fit part, ``valid``
    each user's latest training interaction, ``test`` the test next items, all
    with ``data``'s indices. Its full-ranking test protocol (training and
    validation items excluded) is the history recipes' one, so MF and the
    YouTube / MV-DNN models are compared on the same users, items and labels."""
    from tfrec.data.splits import Split

    def part(rows):
        return {k: rows[k] for k in ("user_id", "item_id", "rating")}

    s = data.split
    return Split(
        name=s.name,
        num_users=s.num_users,
        num_items=s.num_items,
        train=part(data.fit.train),
        valid=part(data.fit.test),
        test=part(s.test),
        user_ids=np.asarray(data.user_raw),
        item_ids=np.asarray(data.item_raw),
        item_names=list(data.item_names),
    )


def describe(data: HistoryData) -> str:
    s = data.split
    return (
        f"{s.name}: {s.num_users} users, {s.num_items} items, "
        f"{len(data.fit.train['user_id'])} train, {len(data.fit.test['user_id'])} "
        f"validation, {len(s.test['user_id'])} test next items (time split)"
    )


def history_order(split: TimeSplit) -> tuple[np.ndarray, np.ndarray]:
    """Each user's distinct training items, ordered by their last interaction
    (most recent last), as CSR ``(indptr, indices)``."""
    tr = split.train
    n = len(tr["user_id"])
    # train is sorted by (user, time): keep each (user, item)'s last occurrence.
    key = tr["user_id"] * split.num_items + tr["item_id"]
    _, last_rev = np.unique(key[::-1], return_index=True)
    rows = np.sort(n - 1 - last_rev)
    users = tr["user_id"][rows]
    indptr = np.zeros(split.num_users + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=split.num_users), out=indptr[1:])
    return indptr, tr["item_id"][rows].astype(np.int64)


def vocab(data: HistoryData) -> Vocab:
    """Raw ids; ``seen`` holds each user's training items in time order (so a
    run's vocabulary doubles as the serving history); ``tables`` (an extra
    attribute) the content a request needs."""
    out = Vocab(
        items=list(data.item_raw),
        users=list(data.user_raw),
        item_names=list(data.item_names),
        seen=history_order(data.split),
    )
    out.tables = serving_tables(data)
    out.tables["max_length"] = np.int64(data.max_length)
    return out


def serving_tables(data: HistoryData) -> dict:
    """The arrays a request needs besides the models, by index."""
    s, c = data.split, data.content
    return {
        "indptr": s.user_starts,
        "items": s.train["item_id"],
        "times": s.train["timestamp"],
        "item_genres": c.item_genres,
        "item_title_tokens": c.item_title_tokens,
        "item_era": c.item_era,
        "user_gender": c.user_gender,
        "user_age": c.user_age,
        "user_occupation": c.user_occupation,
    }


def tables_from_vocab(vocab_: Vocab, num_genres: int, title_vocab: int = 1) -> dict:
    """``serving_tables`` from a run's vocabulary: the saved ones when the
    vocabulary carries them, else rebuilt from ``seen`` (the history in time
    order, no times) with empty content."""
    tables = getattr(vocab_, "tables", None)
    if tables is not None:
        return tables
    if vocab_.seen is None or vocab_.users is None:
        raise ValueError("This run's vocabulary has no user histories (vocab/seen.npz).")
    indptr, items = vocab_.seen
    n_users, n_items = len(vocab_.users), len(vocab_.items)
    zeros = np.zeros(n_users, np.int64)
    return {
        "indptr": np.asarray(indptr, np.int64),
        "items": np.asarray(items, np.int64),
        "times": np.arange(len(items), dtype=np.int64),
        "item_genres": np.zeros((n_items, num_genres), np.float32),
        "item_title_tokens": np.zeros((n_items, title_vocab), np.float32),
        "item_era": np.full(n_items, 7, np.int64),
        "user_gender": zeros,
        "user_age": zeros,
        "user_occupation": zeros,
    }


def user_history(tables: dict, user: int, max_length: int):
    """``(item_history [1, L], history_timestamp [1, L])`` of ``user``'s last
    ``max_length`` training interactions, left-padded with -1
    (:func:`tfrec.data.sequences.pad_left`)."""
    from tfrec.data.sequences import PAD, pad_left

    a, b = [int(tables["indptr"][user])], [int(tables["indptr"][user + 1])]
    hist = pad_left(np.asarray(tables["items"]), a, b, max_length, pad=PAD)
    htime = pad_left(np.asarray(tables["times"]), a, b, max_length, pad=0)
    return hist.astype(np.int64), htime.astype(np.int64)


def demographics(tables: dict, users) -> dict:
    users = np.asarray(users, np.int64)
    return {k: np.asarray(tables[k])[users] for k in
            ("user_gender", "user_age", "user_occupation")}
