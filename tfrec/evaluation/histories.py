"""Next-item evaluation on a time split (`tfrec.data.histories.TimeSplit`).

Full ranking of each test user's next item over every item, the user's training
items excluded (:func:`evaluate_scores`, through the one full-ranking core
:mod:`tfrec.evaluation.ranking`); the scores of the YouTube two-stage
pipeline (:func:`pipeline_scores`: the retrieved candidates re-ranked, every
other item below them) and of a popularity baseline. Used by the YouTube DNN
and MV-DNN recipes and `scripts/reproduce_youtube.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfrec.data.histories import TimeSplit
from tfrec.evaluation.ranking import _mask, csr_rows, full_ranking, top_k


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

    Every training item of the user is excluded; a label that is itself a
    training item (a repeat), or that the caller scored ``-inf``, ranks below
    every unseen item (:func:`tfrec.evaluation.ranking.full_ranking` with
    ``seen_relevant="last"``: the pipeline never retrieves a seen item).
    """
    users, labels = split.test["user_id"], split.test["item_id"]
    if np.shape(scores) != (len(users), split.num_items):
        raise ValueError(
            f"`scores` must be [{len(users)}, {split.num_items}] (test users x items). "
            f"Received shape {np.shape(scores)}."
        )
    return full_ranking(
        scores, labels, seen=csr_rows(*split.train_csr(), users), ks=ks,
        seen_relevant="last",
    )


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

    seen = csr_rows(*split.train_csr(), requests.users)
    s = np.array(candidate_scores, np.float64)
    s[_mask(seen, 0, len(requests.users), s.shape[1])] = -np.inf
    top = top_k(s, num_candidates)
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
