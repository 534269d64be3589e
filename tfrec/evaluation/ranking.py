"""The one full-ranking core: every item is a candidate, seen items excluded.

Every full-ranking evaluation of the package runs through :func:`full_ranking`
(the :class:`~tfrec.evaluation.protocols.FullRanking` protocol and the split
helpers built on it, the cold-start and hybrid rankings, item2vec's next-item
protocol in :mod:`tfrec.evaluation.embeddings`, the YouTube / MV-DNN next-item
evaluation in :mod:`tfrec.evaluation.histories`), and every top-K list with
seen items removed through :func:`top_k`.

Layout: one **row** per query (a user, a sequence); ``scores`` is ``[rows,
num_items]`` (or a function producing it chunk by chunk); the relevant
(held-out) items and the seen (excluded) items of each row are CSR pairs
``(indptr [rows + 1], indices)``. :func:`csr_rows` picks the rows of a CSR kept
per user id.

Metrics and ties are those of :mod:`tfrec.evaluation.metrics` (HR, NDCG,
Recall, MRR, Precision at each cut-off; pessimistic ties: a relevant item loses
every tie against a non-relevant one, so with one relevant item its 1-based
rank is ``#{j : s_j >= s_target}``, the "conservative" rank of GRU4Rec's
evaluation, :func:`tfrec.evaluation.session.ranks_from_scores`). The metrics
are collected per row and averaged once, so the numbers do not depend on the
chunk size.

A relevant item that is also seen (``seen_relevant``):

* ``"keep"`` (default): it stays a candidate with its own score;
* ``"last"``: it is ranked below every unseen candidate (the YouTube / MV-DNN
  evaluation: the two-stage pipeline never retrieves a seen item). A relevant
  item the caller already scored ``-inf`` is treated the same way;
* ``"raise"``: ``ValueError`` (item2vec's histories, which never repeat).

Example:
    >>> scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    >>> full_ranking(scores, np.array([2]), seen=([0, 1], [0]), ks=(1,))["hr@1"]
    0.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from tfrec.evaluation.metrics import (
    _BLOCK_ELEMENTS,
    METRIC_NAMES,
    _check_ks,
    _per_row_metrics,
)

__all__ = ["SEEN_RELEVANT", "csr_rows", "full_ranking", "top_k"]

SEEN_RELEVANT = ("keep", "last", "raise")

Csr = tuple[np.ndarray, np.ndarray]
RowScores = Callable[[int, int], np.ndarray]


def _csr(pair, name: str, num_rows: int, num_items: int) -> Csr:
    indptr, indices = (np.asarray(a) for a in pair)
    if indptr.ndim != 1 or indptr.size != num_rows + 1:
        raise ValueError(
            f"`{name}` must be a CSR pair (indptr [rows + 1], indices) over "
            f"{num_rows} rows. Received indptr.shape={indptr.shape}."
        )
    indptr = indptr.astype(np.int64)
    indices = indices.astype(np.int64).reshape(-1)
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.size:
        raise ValueError(
            f"`{name}` is not a valid CSR pair: indptr must start at 0, never "
            f"decrease and end at len(indices)={indices.size}. Received "
            f"indptr[:5]={indptr[:5].tolist()}, indptr[-1]={indptr[-1]}."
        )
    if indices.size and (indices.min() < 0 or indices.max() >= num_items):
        raise ValueError(
            f"`{name}` holds item ids in [{indices.min()}, {indices.max()}] but "
            f"num_items={num_items}."
        )
    return indptr, indices


def csr_rows(indptr, indices, rows) -> Csr:
    """The CSR rows ``rows`` (in that order) of ``(indptr, indices)``.

    Example:
        >>> csr_rows([0, 2, 3], [4, 5, 6], [1, 0])
        (array([0, 1, 3]), array([6, 4, 5]))
    """
    indptr = np.asarray(indptr, np.int64)
    indices = np.asarray(indices, np.int64)
    rows = np.asarray(rows, np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= indptr.size - 1):
        raise ValueError(
            f"The CSR covers {indptr.size - 1} rows; row ids range over "
            f"[{rows.min()}, {rows.max()}]."
        )
    starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
    out_ptr = np.zeros(rows.size + 1, np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    offsets = np.arange(out_ptr[-1]) - np.repeat(out_ptr[:-1], lengths)
    return out_ptr, indices[np.repeat(starts, lengths) + offsets]


def _mask(csr: Csr, lo: int, hi: int, num_items: int) -> np.ndarray:
    indptr, indices = csr
    out = np.zeros((hi - lo, num_items), bool)
    rows = np.repeat(np.arange(hi - lo), np.diff(indptr[lo : hi + 1]))
    out[rows, indices[indptr[lo] : indptr[hi]]] = True
    return out


def _entries(csr: Csr, lo: int, hi: int, num_items: int) -> np.ndarray:
    """Sorted unique ``row * num_items + item`` keys of CSR rows ``lo..hi``
    (rows counted from ``lo``); a repeated id counts once, as in a mask."""
    indptr, indices = csr
    rows = np.repeat(np.arange(hi - lo, dtype=np.int64), np.diff(indptr[lo : hi + 1]))
    return np.unique(rows * num_items + indices[indptr[lo] : indptr[hi]])


def _chunk_ranks(
    chunk: np.ndarray, rel: Csr, seen: Csr | None, lo: int, hi: int, seen_relevant: str
) -> tuple[np.ndarray, np.ndarray]:
    """Pessimistic 0-based ranks of the relevant items of rows ``lo..hi``.

    The numbers of `tfrec.evaluation.metrics.ranks_of_relevant` on the chunk
    with its exclusions applied, computed without a dense copy or mask of the
    chunk: a relevant item's rank counts the row's scores ``>=`` its own in one
    comparison against the raw row, minus the excluded items and the relevant
    items among them (a few per row), plus the relevant-vs-relevant terms.

    Returns:
        ``ranks`` ``[rows with a relevant item, max relevant per row]`` (-1
        pads) and ``n_rel`` (relevant items of each of those rows).
    """
    b, m = chunk.shape
    if not np.issubdtype(chunk.dtype, np.floating):
        chunk = chunk.astype(np.float64)
    if np.isnan(chunk).any():
        bad_rows = np.unique(np.nonzero(np.isnan(chunk))[0])
        raise ValueError(
            "scores contain NaN (rows "
            f"{bad_rows[:10].tolist()}{'...' if bad_rows.size > 10 else ''}); "
            "check the model output."
        )
    rel_keys = _entries(rel, lo, hi, m)
    r, c = np.divmod(rel_keys, m)
    own = chunk[r, c].astype(np.float64)
    seen_keys = np.zeros(0, np.int64)
    if seen is not None:
        seen_keys = _entries(seen, lo, hi, m)
        both = np.isin(rel_keys, seen_keys, assume_unique=True)
        if seen_relevant == "raise" and both.any():
            raise ValueError("A held-out item also occurs in its training history.")
        if seen_relevant == "last":
            own[both] = -np.inf
        seen_keys = seen_keys[~np.isin(seen_keys, rel_keys, assume_unique=True)]
    if seen_relevant == "last":
        # Below every candidate that has a score (pessimistic ties).
        own[np.isneginf(own)] = np.finfo(np.float64).min
    elif np.isneginf(own).any():
        rows = np.unique(r[np.isneginf(own)]) + lo
        raise ValueError(
            "A relevant candidate has score -inf (the marker for excluded "
            f"candidates) in rows {rows[:10].tolist()}. Relevant items must "
            "never be excluded."
        )
    # Compare in the chunk's dtype where that is exact: a float32 value cast up
    # and back is itself, and float64's lowest finite value stands for "below
    # every finite score", which float32's lowest finite value also is.
    probe = own
    if chunk.dtype == np.float32:
        probe = np.where(
            own == np.finfo(np.float64).min, np.finfo(np.float32).min, own
        ).astype(np.float32)
    ge = np.empty(r.size, np.int64)
    block = max(1, _BLOCK_ELEMENTS // max(m, 1))
    one_per_row = r.size == b and np.array_equal(r, np.arange(b))
    for s in range(0, r.size, block):
        rows = chunk[s : s + block] if one_per_row else chunk[r[s : s + block]]
        ge[s : s + block] = np.count_nonzero(rows >= probe[s : s + block, None], 1)
    # Excluded (non-relevant seen) items never rank above anything: take the
    # ones of each relevant item's row that the raw count included back out.
    if seen_keys.size:
        sr, sc = np.divmod(seen_keys, m)
        first = np.searchsorted(sr, r, "left")
        count = np.searchsorted(sr, r, "right") - first
        entry = np.repeat(np.arange(r.size), count)
        pos = np.arange(entry.size) - np.repeat(np.cumsum(count) - count, count)
        pos += first[entry]
        hit = chunk[sr[pos], sc[pos]] >= probe[entry]
        ge -= np.bincount(entry[hit], minlength=r.size)
    # Relevant items of the same row: out of the >= count, then > plus earlier ties.
    start = np.searchsorted(r, r, "left")
    stop = np.searchsorted(r, r, "right")
    width = int((stop - start).max()) if r.size else 0
    raw_own = chunk[r, c]
    for d in range(width):
        j = start + d
        ok = j < stop
        jj = np.where(ok, j, 0)
        ge -= ok & (raw_own[jj] >= probe)
        ge += ok & ((own[jj] > own) | ((own[jj] == own) & (c[jj] < c)))
    # [rows with a relevant item, width] with -1 pads, rows in order.
    rows_with, n_rel = np.unique(r, return_counts=True)
    ranks = np.full((rows_with.size, max(width, 1)), -1, np.int64)
    slot = np.arange(r.size) - start
    ranks[np.searchsorted(rows_with, r), slot] = ge
    return ranks, n_rel


def full_ranking(
    scores: np.ndarray | RowScores,
    relevant,
    *,
    seen: Csr | None = None,
    num_rows: int | None = None,
    num_items: int | None = None,
    ks: Iterable[int] = (10,),
    row_chunk: int = 256,
    seen_relevant: str = "keep",
) -> dict[str, float]:
    """Mean ranking metrics of every row's relevant items among all items.

    Args:
        scores: ``[rows, num_items]`` scores, or ``scores(lo, hi) -> [hi - lo,
            num_items]`` called once per chunk of rows.
        relevant: one relevant item per row (``[rows]`` ids), or a CSR pair
            ``(indptr, indices)`` of several.
        seen: CSR pair of the items excluded (scored ``-inf``) in each row;
            None excludes nothing.
        num_rows, num_items: required when ``scores`` is a function.
        ks: cut-offs.
        row_chunk: rows ranked at once (bounds the ``[chunk, num_items]``
            masks and ranks).
        seen_relevant: ``"keep"``, ``"last"`` or ``"raise"`` (module docstring).

    Returns:
        ``hr@k``, ``ndcg@k``, ``recall@k``, ``mrr@k``, ``precision@k`` means
        over the rows that have a relevant item.
    """
    if seen_relevant not in SEEN_RELEVANT:
        raise ValueError(
            f"`seen_relevant` must be one of {SEEN_RELEVANT}. Received: "
            f"seen_relevant={seen_relevant!r}"
        )
    ks = _check_ks(ks)
    if callable(scores):
        if num_rows is None or num_items is None:
            raise ValueError("Pass `num_rows` and `num_items` with a `scores` function.")
        score_rows = scores
    else:
        matrix = np.asarray(scores)
        if matrix.ndim != 2:
            raise ValueError(
                f"`scores` must be [rows, num_items]. Received shape {matrix.shape}."
            )
        num_rows, num_items = matrix.shape

        def score_rows(lo, hi):
            return matrix[lo:hi]

    num_rows, num_items = int(num_rows), int(num_items)
    if isinstance(relevant, tuple):
        rel = _csr(relevant, "relevant", num_rows, num_items)
    else:
        targets = np.asarray(relevant).astype(np.int64).reshape(-1)
        if targets.size != num_rows:
            raise ValueError(
                f"One relevant item per row expected: {num_rows} rows, "
                f"{targets.size} items."
            )
        rel = _csr((np.arange(num_rows + 1), targets), "relevant", num_rows, num_items)
    seen = None if seen is None else _csr(seen, "seen", num_rows, num_items)
    if isinstance(row_chunk, bool) or not isinstance(row_chunk, (int, np.integer)) or (
        row_chunk < 1
    ):
        raise ValueError(f"`row_chunk` must be a positive int. Received: {row_chunk!r}")

    parts: dict[str, list[np.ndarray]] = {}
    for lo in range(0, num_rows, int(row_chunk)):
        hi = min(lo + int(row_chunk), num_rows)
        chunk = np.asarray(score_rows(lo, hi))
        if chunk.shape != (hi - lo, num_items):
            raise ValueError(
                f"`scores` rows {lo}..{hi} must have shape {(hi - lo, num_items)}. "
                f"Received {chunk.shape}."
            )
        ranks, n_rel = _chunk_ranks(chunk, rel, seen, lo, hi, seen_relevant)
        for key, value in _per_row_metrics(ranks, n_rel, ks).items():
            parts.setdefault(key, []).append(value)
    values = {key: np.concatenate(v) for key, v in parts.items()}
    count = next(iter(values.values())).size if values else 0
    if count == 0:
        raise ValueError("No evaluation row has a held-out item; nothing to average.")
    return {
        f"{name}@{k}": float(values[f"{name}@{k}"].sum() / count)
        for k in ks
        for name in METRIC_NAMES
    }


def top_k(scores, k: int, *, exclude=None) -> np.ndarray:
    """Indices of the ``k`` highest scores, excluded items last.

    Ties: the lower index first (a stable sort). Excluded items are scored
    ``-inf`` first, so they come after every other item and only fill a row
    that has fewer than ``k`` others.

    Args:
        scores: ``[num_items]`` or ``[rows, num_items]``.
        k: list length (at most ``num_items``).
        exclude: item ids (1-D ``scores``) or a CSR pair of ids per row.

    Returns:
        int64 ``[k]`` or ``[rows, k]``.

    Example:
        >>> top_k(np.array([0.1, 0.9, 0.5, 0.9]), 2, exclude=[1])
        array([3, 2])
    """
    scores = np.array(scores, np.float64)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive int. Received: k={k!r}")
    one = scores.ndim == 1
    if one:
        scores = scores[None, :]
    if scores.ndim != 2:
        raise ValueError(f"`scores` must be 1-D or 2-D. Received shape {scores.shape}.")
    if exclude is not None:
        if one:
            ids = np.asarray(exclude, np.int64).reshape(-1)
            exclude = (np.array([0, ids.size]), ids)
        mask = _mask(_csr(exclude, "exclude", *scores.shape), 0, scores.shape[0],
                     scores.shape[1])
        scores[mask] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, : int(k)]
    return order[0] if one else order
