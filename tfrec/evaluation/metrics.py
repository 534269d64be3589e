"""Ranking and rating metrics, vectorised in numpy.

Ranking metrics work on a dense candidate matrix: ``scores`` of shape
``[n, m]`` (one row per query/user, one column per candidate item) and a
boolean mask ``relevant`` of the same shape.

Tie policy (pessimistic)
------------------------
The 0-based rank of a relevant candidate is

* the number of **non-relevant** candidates whose score is ``>=`` its score,
* plus the number of **relevant** candidates whose score is strictly greater,
* plus the number of relevant candidates with exactly the same score that
  come earlier in the row (column order).

So a relevant item loses every tie against a non-relevant one: a model that
gives every candidate the same score gets the worst possible rank, never a
lucky hit. The third term only breaks ties among relevant items so that the
ranks of one row are distinct (they form a real ranking: at most ``k`` hits in
the top ``k`` and NDCG never exceeds 1). Every metric here depends only on the
set of relevant ranks, so which of two tied relevant items comes first does not
change any value.

Excluded candidates
-------------------
A score of ``-inf`` marks an excluded candidate (for example an item the user
already had in training): it never ranks above anything. A relevant
candidate may not be ``-inf`` and ``NaN`` scores are rejected, both with
``ValueError``.

Metric definitions (``hits`` = relevant items with rank ``< k``)
-----------------------------------------------------------------
* ``hr@k``: 1 if at least one relevant item has rank ``< k``.
* ``recall@k``: ``hits / n_relevant``. Note: the denominator is the number of
  relevant items, not ``min(k, n_relevant)``.
* ``precision@k``: ``hits / k``.
* ``ndcg@k``: ``sum_hits 1 / log2(rank + 2)`` divided by
  ``IDCG = sum_{r < min(k, n_relevant)} 1 / log2(r + 2)``.
* ``mrr@k``: ``1 / (best_rank + 1)`` if ``best_rank < k`` else 0.

Rows without any relevant item are skipped when averaging.

Example:
    >>> scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    >>> relevant = np.array([[False, False, True, False]])
    >>> ranking_metrics(scores, relevant, ks=(10,))["ndcg@10"]  # 1 / log2(4)
    0.5
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "auc",
    "log_loss",
    "mae",
    "ranking_metric_rows",
    "ranking_metric_sums",
    "ranking_metrics",
    "ranks_of_relevant",
    "rmse",
]

METRIC_NAMES = ("hr", "ndcg", "recall", "mrr", "precision")

# Upper bound on the number of booleans in one comparison block of
# `ranks_of_relevant` (relevant entries x candidates), to bound memory.
_BLOCK_ELEMENTS = 1 << 22


def _check_ranking_inputs(scores, relevant) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    relevant = np.asarray(relevant)
    if scores.ndim != 2 or scores.shape != relevant.shape:
        raise ValueError(
            "`scores` and `relevant` must be 2-D arrays of the same shape "
            f"[n, m]. Received: scores.shape={scores.shape}, "
            f"relevant.shape={relevant.shape}"
        )
    if relevant.dtype != np.bool_:
        if not np.all((relevant == 0) | (relevant == 1)):
            raise ValueError(
                "`relevant` must be a boolean (or 0/1) mask. Received values "
                f"{np.unique(relevant)[:10]}"
            )
        relevant = relevant.astype(bool)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        bad_rows = np.unique(np.nonzero(np.isnan(scores))[0])
        raise ValueError(
            "scores contain NaN (rows "
            f"{bad_rows[:10].tolist()}{'...' if bad_rows.size > 10 else ''}); "
            "check the model output."
        )
    if np.any(np.isneginf(scores) & relevant):
        rows = np.unique(np.nonzero(np.isneginf(scores) & relevant)[0])
        raise ValueError(
            "A relevant candidate has score -inf (the marker for excluded "
            f"candidates) in rows {rows[:10].tolist()}. Relevant items must "
            "never be excluded."
        )
    return scores, relevant


def _check_ks(ks) -> tuple[int, ...]:
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    ks = tuple(ks)
    if not ks or not all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > 0
        for k in ks
    ):
        raise ValueError(
            f"`ks` must be a non-empty tuple of positive ints. Received: ks={ks}"
        )
    return tuple(int(k) for k in ks)


def ranks_of_relevant(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """0-based rank of every relevant candidate under the pessimistic tie policy.

    Args:
        scores: float array ``[n, m]``; ``-inf`` marks excluded candidates.
        relevant: bool array ``[n, m]``.

    Returns:
        int64 array ``[n, m]``: the rank of each relevant entry, ``-1`` for
        non-relevant entries.

    Example:
        >>> ranks_of_relevant(np.array([[0.5, 0.5, 0.2]]),
        ...                   np.array([[False, True, False]]))
        array([[-1,  1, -1]])
    """
    scores, relevant = _check_ranking_inputs(scores, relevant)
    n, m = scores.shape
    ranks = np.full((n, m), -1, dtype=np.int64)
    rows, cols = np.nonzero(relevant)
    if rows.size == 0:
        return ranks
    block = max(1, _BLOCK_ELEMENTS // max(m, 1))
    col_ids = np.arange(m)
    for start in range(0, rows.size, block):
        r = rows[start : start + block]
        c = cols[start : start + block]
        row_scores = scores[r]  # [b, m]
        row_rel = relevant[r]  # [b, m]
        own = scores[r, c][:, None]  # [b, 1]
        nonrel_ge = (~row_rel & (row_scores >= own)).sum(axis=1)
        rel_gt = (row_rel & (row_scores > own)).sum(axis=1)
        rel_tied_before = (
            row_rel & (row_scores == own) & (col_ids[None, :] < c[:, None])
        ).sum(axis=1)
        ranks[r, c] = nonrel_ge + rel_gt + rel_tied_before
    return ranks


def _per_row_metrics(
    ranks: np.ndarray, n_rel: np.ndarray, ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Per-row metric values for rows with ``n_rel > 0``."""
    is_rel = ranks >= 0
    # Discount 1/log2(rank + 2) for relevant entries, 0 elsewhere.
    discount = np.where(is_rel, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    big = np.iinfo(np.int64).max
    best = np.where(is_rel, ranks, big).min(axis=1)
    out: dict[str, np.ndarray] = {}
    max_ideal = int(min(max(ks), n_rel.max())) if n_rel.size else 0
    ideal_cum = np.concatenate(
        [[0.0], np.cumsum(1.0 / np.log2(np.arange(max_ideal) + 2.0))]
    )
    for k in ks:
        hit = is_rel & (ranks < k)
        hits = hit.sum(axis=1).astype(np.float64)
        dcg = np.where(hit, discount, 0.0).sum(axis=1)
        idcg = ideal_cum[np.minimum(k, n_rel)]
        out[f"hr@{k}"] = (hits > 0).astype(np.float64)
        out[f"ndcg@{k}"] = dcg / idcg
        out[f"recall@{k}"] = hits / n_rel
        out[f"mrr@{k}"] = np.where(best < k, 1.0 / (best.astype(np.float64) + 1.0), 0.0)
        out[f"precision@{k}"] = hits / k
    return out


def ranking_metric_rows(
    scores: np.ndarray, relevant: np.ndarray, ks: Iterable[int] = (10,)
) -> dict[str, np.ndarray]:
    """Per-row ranking metrics of the rows that have a relevant item.

    Args:
        scores: float array ``[n, m]``; ``-inf`` marks excluded candidates.
        relevant: bool array ``[n, m]``.
        ks: cut-offs.

    Returns:
        A dict with keys ``hr@k``, ``ndcg@k``, ``recall@k``, ``mrr@k`` and
        ``precision@k`` for each ``k``, each a float64 array over the rows with
        at least one relevant item (in row order). Concatenating the rows of
        several chunks and averaging once gives results independent of the
        chunking (`tfrec.evaluation.ranking`).
    """
    ks = _check_ks(ks)
    ranks = ranks_of_relevant(scores, relevant)
    n_rel = (ranks >= 0).sum(axis=1)
    keep = n_rel > 0
    if not keep.any():
        return {f"{name}@{k}": np.zeros(0) for k in ks for name in METRIC_NAMES}
    per_row = _per_row_metrics(ranks[keep], n_rel[keep], ks)
    return {f"{name}@{k}": per_row[f"{name}@{k}"] for k in ks for name in METRIC_NAMES}


def ranking_metric_sums(
    scores: np.ndarray, relevant: np.ndarray, ks: Iterable[int] = (10,)
) -> tuple[dict[str, float], int]:
    """Sums of the per-row ranking metrics, for accumulation over chunks.

    Rows without any relevant item are skipped. Divide every sum by the count
    (after adding up several chunks) to get the means of `ranking_metrics`.

    Args:
        scores: float array ``[n, m]``; ``-inf`` marks excluded candidates.
        relevant: bool array ``[n, m]``.
        ks: cut-offs.

    Returns:
        ``(sums, count)``: a dict with keys ``hr@k``, ``ndcg@k``, ``recall@k``,
        ``mrr@k`` and ``precision@k`` for each ``k``, and the number of rows
        counted.
    """
    rows = ranking_metric_rows(scores, relevant, ks)
    count = int(next(iter(rows.values())).size)
    return {key: float(value.sum()) for key, value in rows.items()}, count


def ranking_metrics(
    scores: np.ndarray,
    relevant: np.ndarray,
    ks: Iterable[int] = (10,),
    *,
    prefix: str = "",
) -> dict[str, float]:
    """Mean HR, NDCG, Recall, MRR and Precision at each cut-off.

    Averaged over the rows that have at least one relevant item; see the
    module docstring for the definitions and the tie policy.

    Args:
        scores: float array ``[n, m]``; ``-inf`` marks excluded candidates.
        relevant: bool array ``[n, m]``.
        ks: cut-offs.
        prefix: prepended to every key (e.g. ``"val_"``).

    Returns:
        Dict with keys ``f"{prefix}hr@{k}"``, ``ndcg@{k}``, ``recall@{k}``,
        ``mrr@{k}`` and ``precision@{k}`` (all prefixed).

    Example:
        >>> ranking_metrics(np.array([[0.3, 0.9, 0.1]]),
        ...                 np.array([[True, False, False]]), ks=(1, 2))["hr@2"]
        1.0
    """
    sums, count = ranking_metric_sums(scores, relevant, ks)
    if count == 0:
        raise ValueError(
            "No row of `relevant` has a relevant item; ranking metrics are "
            f"undefined. Received: relevant.shape={np.shape(relevant)}"
        )
    return {f"{prefix}{key}": value / count for key, value in sums.items()}


def _check_pair(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same shape. Received: "
            f"{names[0]}.shape={a.shape}, {names[1]}.shape={b.shape}"
        )
    if a.size == 0:
        raise ValueError(f"`{names[0]}` and `{names[1]}` are empty.")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError(f"`{names[0]}` or `{names[1]}` contain NaN.")
    return a.ravel(), b.ravel()


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney U); a tied positive/negative pair counts 1/2.

    Args:
        labels: binary labels (bool or 0/1).
        scores: scores, higher means more likely positive.

    Returns:
        The fraction of (positive, negative) pairs ranked correctly.
    """
    labels, scores = _check_pair(labels, scores, ("labels", "scores"))
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(
            f"`labels` must be 0/1. Received values {np.unique(labels)[:10]}"
        )
    pos = labels == 1
    n_pos = int(pos.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "AUC needs both classes in `labels`. Received: "
            f"{n_pos} positives and {n_neg} negatives."
        )
    # Average (1-based) ranks with ties sharing the mean rank.
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0  # 1-based mean rank of each group
    ranks = np.empty(labels.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, counts)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    y_true, y_pred = _check_pair(y_true, y_pred, ("y_true", "y_pred"))
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    y_true, y_pred = _check_pair(y_true, y_pred, ("y_true", "y_pred"))
    return float(np.mean(np.abs(y_true - y_pred)))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; ``probs`` are clipped to ``[eps, 1 - eps]``."""
    labels, probs = _check_pair(labels, probs, ("labels", "probs"))
    if np.any((labels < 0) | (labels > 1)):
        raise ValueError("`labels` must lie in [0, 1].")
    p = np.clip(probs, eps, 1.0 - eps)
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log1p(-p)))
