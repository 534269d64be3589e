"""YouTube's two-stage pipeline: retrieve candidates, then rank them.

Covington et al. (RecSys 2016, Fig. 2): candidate generation narrows the corpus
to hundreds of items by nearest-neighbour search of the user vector; the
ranking network scores each (user, candidate) pair with richer features and
the top of its ordering (by the expected-watch-time odds) is shown.

This module holds the chaining logic, independent of the runtime:

* :class:`PipelineTables`: what a request needs besides the models - the
  user/item vocabularies, training histories with times, item genres and
  demographics (saved beside an export as ``tables.npz``);
* :func:`candidate_features` / :func:`ranking_features`: the two stages'
  input dicts for a batch of users (history rolled back to the request time);
* :func:`chain`: one user through ``retrieve`` and ``rank`` callables (Keras
  models, a :class:`tfrec.retrieval.RetrievalIndex`, or exported artifacts);
* :class:`YouTubePipeline`: a trained candidate model, ranking model and
  tables, served in process or exported (`export.pipeline`).

Training lives in the recipe (`tfrec.recipes.youtube`); evaluation on a
:class:`~tfrec.data.histories.TimeSplit` in `tfrec.evaluation.histories`.

Request time: the time the request is served; it bounds the history (only
strictly earlier interactions) and sets ``days_since_same_genre``. The
``example_age`` of a served request is 0, as the paper prescribes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import keras
import numpy as np

from tfrec.data.datasets import DataError
from tfrec.data.histories import (
    ContentTables,
    TimeSplit,
    days_since_same_genre,
    history_mean,
)
from tfrec.data.sequences import PAD, pad_left

RankFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass
class PipelineTables:
    """Everything besides the models that a request needs, by index.

    Attributes:
        user_ids, item_ids: raw ids of the user and item indices.
        item_names: titles ("" when unknown).
        indptr, items, times: each user's training interactions in time order
            (CSR: ``items[indptr[u]:indptr[u+1]]``).
        item_genres: ``[num_items, G]``.
        user_gender, user_age, user_occupation: ``[num_users]`` codes.
        max_length: history window.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    item_names: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    times: np.ndarray
    item_genres: np.ndarray
    user_gender: np.ndarray
    user_age: np.ndarray
    user_occupation: np.ndarray
    max_length: int = 50

    _KEYS = ("user_ids", "item_ids", "item_names", "indptr", "items", "times",
             "item_genres", "user_gender", "user_age", "user_occupation")

    @classmethod
    def from_split(cls, split: TimeSplit, content: ContentTables, *,
                   max_length: int = 50, item_names=None) -> PipelineTables:
        names = np.array(
            item_names if item_names is not None else [""] * split.num_items,
            dtype=str,
        )
        return cls(
            user_ids=split.user_ids,
            item_ids=split.item_ids,
            item_names=names,
            indptr=split.user_starts,
            items=split.train["item_id"],
            times=split.train["timestamp"],
            item_genres=content.item_genres,
            user_gender=content.user_gender,
            user_age=content.user_age,
            user_occupation=content.user_occupation,
            max_length=int(max_length),
        )

    @property
    def num_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def num_items(self) -> int:
        return int(len(self.item_ids))

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``tables.npz`` (atomically: temporary file, then rename)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, **{k: getattr(self, k) for k in self._KEYS},
                 max_length=np.int64(self.max_length))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Mapping | None = None):
        if not os.path.isfile(path):
            raise DataError(f"{path} is missing; re-export the pipeline.")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in cls._KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks arrays {missing}; re-export.")
            data = {k: z[k] for k in cls._KEYS}
            data["max_length"] = int(z["max_length"])
        return cls(**data)

    def encode_user(self, raw_user_id) -> int:
        """The index of a raw user id: an int (or its text, ``"42"``) when the
        vocabulary holds integers, else the id's text (``"u_17"``)."""
        ids = np.asarray(self.user_ids)
        if ids.dtype.kind in "iu":
            try:
                raw = int(str(raw_user_id).strip())
            except (TypeError, ValueError):
                raise DataError(
                    f"Unknown user {raw_user_id!r}: this pipeline's user ids are "
                    f"integers ({len(ids)} users, ids {ids.min()}..{ids.max()})."
                ) from None
        else:
            raw = str(raw_user_id)
        hits = np.flatnonzero(ids == raw)
        if hits.size == 0:
            shown = ", ".join(str(u) for u in ids[:3])
            raise DataError(
                f"Unknown user {raw_user_id!r}: not in the training vocabulary "
                f"({len(ids)} users, e.g. {shown})."
            )
        return int(hits[0])

    def histories(self, users, now=None) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded ``(item_history, history_timestamp)`` before ``now``."""
        users = np.asarray(users, np.int64)
        starts = np.asarray(self.indptr, np.int64)[users]
        ends = np.asarray(self.indptr, np.int64)[users + 1]
        if now is not None:
            times = np.broadcast_to(np.asarray(now), users.shape)
            for row, (a, b) in enumerate(zip(starts, ends.copy(), strict=True)):
                ends[row] = a + np.searchsorted(self.times[a:b], times[row])
        L = self.max_length
        hist = pad_left(self.items, starts, ends, L, pad=PAD).astype(np.int64)
        htime = pad_left(self.times, starts, ends, L, pad=0).astype(np.int64)
        return hist, htime

    def seen(self, user: int) -> np.ndarray:
        return np.unique(self.items[self.indptr[user]:self.indptr[user + 1]])

    def demographics(self, users) -> dict[str, np.ndarray]:
        users = np.asarray(users, np.int64)
        return {
            "user_gender": self.user_gender[users],
            "user_age": self.user_age[users],
            "user_occupation": self.user_occupation[users],
        }


def candidate_features(hist, item_genres, demographics, example_age=None):
    """Query-tower inputs from padded histories."""
    feats = {
        "item_history": np.asarray(hist, np.int64),
        "user_genres": history_mean(hist, item_genres),
        **{k: np.asarray(v, np.int64) for k, v in demographics.items()},
    }
    n = len(feats["item_history"])
    feats["example_age"] = (
        np.zeros(n, np.float32)
        if example_age is None
        else np.asarray(example_age, np.float32)
    )
    return feats


def ranking_features(hist, htime, now, candidates, item_genres, demographics,
                     candidate_scores=None):
    """Ranking inputs for ``candidates`` ``[n]`` with rows' histories ``[n, L]``
    (``candidate_score`` included when `candidate_scores` is given)."""
    candidates = np.asarray(candidates, np.int64)
    valid = (candidates >= 0) & (candidates < len(item_genres))
    cand_genres = np.where(
        valid[:, None], item_genres[np.where(valid, candidates, 0)], 0.0
    ).astype(np.float32)
    extra = {}
    if candidate_scores is not None:
        extra["candidate_score"] = np.asarray(candidate_scores, np.float32).reshape(-1)
    return {
        **extra,
        "item_id": candidates,
        "item_history": np.asarray(hist, np.int64),
        "item_genres": cand_genres,
        "days_since_same_genre": days_since_same_genre(
            hist, htime, now, cand_genres, item_genres
        ),
        **{k: np.asarray(v, np.int64) for k, v in demographics.items()},
    }


def _feed_for(fn, feed: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """The columns of ``feed`` that ``fn`` takes (when it declares its inputs)."""
    specs = getattr(fn, "input_specs", None)
    return _select(feed, specs) if specs is not None else feed


def _select(feed: Mapping[str, np.ndarray], names) -> dict[str, np.ndarray]:
    missing = sorted(set(names) - set(feed))
    if missing:
        raise ValueError(f"Missing feature columns {missing}; expected {sorted(names)}.")
    return {k: feed[k] for k in names}


def chain(
    tables: PipelineTables,
    raw_user_id,
    *,
    retrieve: RankFn,
    rank: RankFn,
    k: int = 10,
    now: int | None = None,
) -> list[dict]:
    """Recommends ``k`` items to one user: retrieve, drop seen items, rank.

    Args:
        tables: lookup tables.
        raw_user_id: the user's raw id (unknown ids raise `DataError`).
        retrieve: ``feed -> {"item_ids": [1, K], "scores": [1, K]}`` (the
            candidate index).
        rank: ``feed -> {"odds": [C], "score": [C]}`` (the ranking model).
        k: results.
        now: request time (default: after all training data).

    Returns:
        Up to ``k`` dicts ``{"item_id" (raw), "title", "odds", "score",
        "retrieval_score"}`` ordered by ``odds``, descending.
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive int. Received: k={k!r}")
    user = tables.encode_user(raw_user_id)
    hist, htime = tables.histories([user], now)
    demo = tables.demographics([user])
    out = retrieve(_feed_for(retrieve, candidate_features(hist, tables.item_genres,
                                                          demo)))
    ids = np.asarray(out["item_ids"]).reshape(-1)
    rscores = np.asarray(out["scores"]).reshape(-1)
    keep = (ids >= 0) & (ids < tables.num_items) & ~np.isin(ids, tables.seen(user))
    ids, rscores = ids[keep], rscores[keep]
    if ids.size == 0:
        return []
    n = ids.size
    when = np.full(n, now if now is not None else int(tables.times.max()) + 1)
    feats = ranking_features(
        np.repeat(hist, n, 0), np.repeat(htime, n, 0), when, ids,
        tables.item_genres, {kk: np.repeat(v, n) for kk, v in demo.items()},
        candidate_scores=rscores,
    )
    ranked = rank(_feed_for(rank, feats))
    odds = np.asarray(ranked["odds"]).reshape(-1)
    prob = np.asarray(ranked["score"]).reshape(-1)
    order = np.argsort(-odds, kind="stable")[:k]
    return [
        {
            "item_id": np.asarray(tables.item_ids)[ids[j]].item(),
            "title": str(tables.item_names[ids[j]]),
            "odds": float(odds[j]),
            "score": float(prob[j]),
            "retrieval_score": float(rscores[j]),
        }
        for j in order
    ]


def keras_fn(model: keras.Model, batch_size: int = 8192) -> RankFn:
    """A Keras model as a ``feed -> dict of numpy`` callable (inputs selected)."""
    names = list(model.input)

    def fn(feed):
        feed = _select(feed, names)
        out = model.predict(feed, batch_size=batch_size, verbose=0)
        return {k: np.asarray(v) for k, v in out.items()}

    return fn


class YouTubePipeline:
    """A trained candidate model + ranking model + lookup tables.

    Args:
        candidate_model: a trained `youtube_candidate` model.
        ranking_model: a trained `youtube_ranking` model.
        tables: the lookup tables.
        num_candidates: candidates retrieved per request (the index's ``k``).
    """

    def __init__(self, candidate_model, ranking_model, tables: PipelineTables, *,
                 num_candidates: int = 100):
        if not isinstance(num_candidates, (int, np.integer)) or not (
            1 <= num_candidates <= tables.num_items
        ):
            raise ValueError(
                f"`num_candidates` must be an int in [1, {tables.num_items}]. "
                f"Received: {num_candidates!r}"
            )
        self.candidate_model = candidate_model
        self.ranking_model = ranking_model
        self.tables = tables
        self.num_candidates = int(num_candidates)
        self._index = None

    def retrieval_index(self):
        """The TFRS top-K index over the softmax item embeddings (cached)."""
        if self._index is None:
            from tfrec.models.youtube import item_table
            from tfrec.retrieval import RetrievalIndex

            self._index = RetrievalIndex(
                self.candidate_model.get_layer("query_tower"),
                item_table(self.candidate_model),
                k=self.num_candidates,
            )
        return self._index

    def recommend(self, raw_user_id, k: int = 10, now=None) -> list[dict]:
        return chain(self.tables, raw_user_id, retrieve=self.retrieval_index(),
                     rank=keras_fn(self.ranking_model), k=k, now=now)

    def example_requests(self, batch_size, rng, *, stage="candidate"):
        """Real requests for random users (export parity inputs); each ranking
        row is one of the user's retrieved candidates with its retrieval score."""
        users = rng.integers(0, self.tables.num_users, batch_size)
        hist, htime = self.tables.histories(users)
        demo = self.tables.demographics(users)
        if stage == "candidate":
            return candidate_features(hist, self.tables.item_genres, demo)
        # One retrieved candidate per row, with its retrieval score: the range
        # of inputs (and of the odds) the ranking model sees when serving.
        index = self.retrieval_index()
        out = index(candidate_features(hist, self.tables.item_genres, demo))
        pick = rng.integers(0, index.k, batch_size)[:, None]
        cand = np.take_along_axis(out["item_ids"], pick, axis=1)[:, 0]
        scores = np.take_along_axis(out["scores"], pick, axis=1)[:, 0]
        now = np.full(batch_size, int(self.tables.times.max()) + 1)
        feats = ranking_features(hist, htime, now, cand, self.tables.item_genres, demo,
                                 candidate_scores=scores)
        return _select(feats, self.ranking_model.input)

    def save_tables(self, path) -> None:
        self.tables.save(path)

    def chain_manifest(self, *, candidate_artifact: str, ranking_artifact: str):
        """How the two exported artifacts chain (written as ``pipeline.json``)."""
        return {
            "pipeline": "youtube",
            "paper": "Covington et al. 2016",
            "tables": "tables.npz",
            "max_length": self.tables.max_length,
            "stages": [
                {
                    "stage": "candidate",
                    "artifact": candidate_artifact,
                    "inputs": sorted(self.retrieval_index().input_specs),
                    "outputs": ["item_ids", "scores"],
                    "k": self.num_candidates,
                    "input_rules": {
                        "item_history": "last max_length training item indices "
                        "before the request time, left-padded with -1",
                        "user_genres": "mean genre multi-hot of item_history",
                        "example_age": "0 at serving",
                        "user_gender/user_age/user_occupation": "codes from tables",
                    },
                },
                {
                    "stage": "ranking",
                    "artifact": ranking_artifact,
                    "inputs": sorted(self.ranking_model.input),
                    "outputs": ["odds", "score"],
                    "input_rules": {
                        "item_id": "each candidate's item_ids (after dropping items "
                        "the user has seen), one row per candidate",
                        "item_history": "the candidate stage's item_history, repeated",
                        "item_genres": "tables.item_genres[item_id]",
                        "days_since_same_genre": "days from the last history item "
                        "sharing a genre with the candidate to the request time; -1 "
                        "if none",
                        "candidate_score": "the candidate stage's score of item_id "
                        "(if the ranking model takes it)",
                    },
                    "order_by": "odds, descending",
                },
            ],
        }
