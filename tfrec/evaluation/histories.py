"""Next-item evaluation on a time split (`tfrec.data.histories.TimeSplit`).

Full ranking of each test user's next item over every item, the user's training
items excluded (:func:`evaluate_scores`); the scores of the YouTube two-stage
pipeline (:func:`pipeline_scores`: the retrieved candidates re-ranked, every
other item below them) and of a popularity baseline. Used by the YouTube DNN
and MV-DNN recipes and `scripts/reproduce_youtube.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfrec.data.histories import TimeSplit
from tfrec.evaluation.metrics import ranking_metrics


@dataclass
class EvalRequests:
    """Test users of a split with their serving histories and features."""

    users: np.ndarray
    labels: np.ndarray
    now: np.ndarray
    item_history: np.ndarray
    history_timestamp: np.ndarray


def eval_requests(split: TimeSplit, tables) -> EvalRequests:
    """One request per test user at the label's time, with every training
    interaction strictly before it as history."""
    users = split.test["user_id"]
    now = split.test["timestamp"]
    hist, htime = tables.histories(users, now)
    return EvalRequests(users, split.test["item_id"], now, hist, htime)


def evaluate_scores(
    scores: np.ndarray, split: TimeSplit, ks=(10, 50, 100)
) -> dict[str, float]:
    """Full-ranking metrics of the next item; ``scores`` is ``[test users, N]``.

    Every training item of the user is excluded (``-inf``) unless it is the label.
    """
    scores = np.array(scores, np.float64)
    users, labels = split.test["user_id"], split.test["item_id"]
    if scores.shape != (len(users), split.num_items):
        raise ValueError(
            f"`scores` must be [{len(users)}, {split.num_items}] (test users x items). "
            f"Received shape {scores.shape}."
        )
    indptr, indices = split.train_csr()
    rows = np.repeat(np.arange(len(users)), np.diff(indptr)[users])
    cols = np.concatenate([indices[indptr[u]:indptr[u + 1]] for u in users])
    scores[rows, cols] = -np.inf
    relevant = np.zeros_like(scores, dtype=bool)
    relevant[np.arange(len(users)), labels] = True
    scores[relevant] = np.where(np.isinf(scores[relevant]), -1e30, scores[relevant])
    return ranking_metrics(scores, relevant, ks=ks)


def pipeline_scores(
    candidate_scores: np.ndarray,
    split: TimeSplit,
    requests: EvalRequests,
    tables,
    rank,
    *,
    num_candidates: int = 100,
) -> np.ndarray:
    """Scores of the two-stage pipeline, ``[test users, N]``: the top
    `num_candidates` unseen items by ``candidate_scores`` get ``1e6 + odds``
    rank order (the ranking model decides among them); other items keep their
    candidate order far below (they were not retrieved)."""
    from tfrec.youtube_serving import ranking_features

    indptr, indices = split.train_csr()
    s = np.array(candidate_scores, np.float64)
    for row, u in enumerate(requests.users):
        s[row, indices[indptr[u]:indptr[u + 1]]] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :num_candidates]
    n_users = len(requests.users)
    rows = np.repeat(np.arange(n_users), num_candidates)
    feats = ranking_features(
        requests.item_history[rows],
        requests.history_timestamp[rows],
        requests.now[rows],
        top.reshape(-1),
        tables.item_genres,
        tables.demographics(requests.users[rows]),
        candidate_scores=np.take_along_axis(s, top, axis=1).reshape(-1),
    )
    # Sigmoid and odds order alike; the sigmoid cannot overflow.
    odds = np.asarray(rank(feats)["score"], np.float64).reshape(n_users, -1)
    out = np.where(np.isinf(s), s, -1e6 + np.tanh(s / 1e3))
    np.put_along_axis(out, top, 1.0 + odds, axis=1)
    out[np.isinf(s)] = -np.inf  # fewer unseen items than candidates: seen stay out
    return out


def popularity_scores(split: TimeSplit, n_rows: int) -> np.ndarray:
    from tfrec.evaluation.protocols import item_popularity

    counts = item_popularity(split.train["item_id"], split.num_items)
    return np.tile(counts, (n_rows, 1))
