"""Model-agnostic evaluation protocols: sampled ranking and full ranking.

A model is given as a ``score_fn(user_idx, item_idx) -> scores``: two int64
arrays of the same length in, one float array of that length out (a trailing
axis of size 1, as Keras ``predict`` returns, is accepted). Wrapping a Keras
model or an onnxruntime session into that form is the caller's job, so the
protocols run unchanged on every exported artifact.

Both protocols use the pessimistic tie policy of `tfrec.evaluation.metrics`.

Reference:
    He et al., "Neural Collaborative Filtering", WWW 2017 (sampled ranking:
    leave-one-out, 99 sampled negatives, HR@10 and NDCG@10).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from tfrec.evaluation.metrics import _check_ks, mae, ranking_metric_sums, rmse
from tfrec.evaluation.ranking import csr_rows, full_ranking

__all__ = [
    "FullRanking",
    "SampledRanking",
    "evaluate_split",
    "item_popularity",
    "popularity_scorer",
    "split_protocols",
]

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _as_int_array(x, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(
            f"`{name}` must be a {ndim}-D integer array. Received: "
            f"{name}.shape={arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            raise ValueError(
                f"`{name}` must hold integer ids. Received dtype {arr.dtype}"
            )
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(
            f"`{name}` must hold non-negative ids. Received min {arr.min()}"
        )
    return arr


def _call_score_fn(
    score_fn: ScoreFn, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    out = np.asarray(score_fn(users, items))
    if out.size != users.size or (out.ndim > 1 and out.shape[0] != users.size):
        raise ValueError(
            f"`score_fn` must return one score per (user, item) pair. Called with "
            f"{users.size} pairs, received an output of shape {out.shape}."
        )
    out = out.reshape(-1)
    if not np.issubdtype(out.dtype, np.floating):
        out = out.astype(np.float64)
    return out


def _score_in_batches(
    score_fn: ScoreFn, users: np.ndarray, items: np.ndarray, batch_size: int
) -> np.ndarray:
    parts = [
        _call_score_fn(score_fn, users[s : s + batch_size], items[s : s + batch_size])
        for s in range(0, users.size, batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    return int(value)


def _mean(sums: dict[str, float], count: int) -> dict[str, float]:
    if count == 0:
        raise ValueError("No evaluation row has a held-out item; nothing to average.")
    return {key: value / count for key, value in sums.items()}


class SampledRanking:
    """NCF protocol: rank each held-out item among the given sampled negatives.

    Each row's candidates are the positive (column 0) followed by its
    negatives. A negative equal to the row's positive, or repeating an earlier
    negative, is dropped (scored ``-inf``), as the NCF authors' evaluation
    collapsed candidates through a dict; in the NCF ML-1M file 156 users have
    their positive among their negatives.

    Args:
        users: ``[n]`` user ids.
        positives: ``[n]`` held-out item ids.
        negatives: ``[n, n_neg]`` sampled negative item ids.
        ks: cut-offs.
        batch_size: number of (user, item) pairs per `score_fn` call.

    Example:
        >>> protocol = SampledRanking(users, positives, negatives, ks=(10,))
        >>> protocol.evaluate(score_fn)["hr@10"]
    """

    def __init__(
        self,
        users: np.ndarray,
        positives: np.ndarray,
        negatives: np.ndarray,
        *,
        ks: Iterable[int] = (10,),
        batch_size: int = 100_000,
    ) -> None:
        self.users = _as_int_array(users, "users", 1)
        self.positives = _as_int_array(positives, "positives", 1)
        self.negatives = _as_int_array(negatives, "negatives", 2)
        n = self.users.shape[0]
        if self.positives.shape != (n,) or self.negatives.shape[0] != n:
            raise ValueError(
                "`users` [n], `positives` [n] and `negatives` [n, n_neg] must agree "
                f"on n. Received: users.shape={self.users.shape}, "
                f"positives.shape={self.positives.shape}, "
                f"negatives.shape={self.negatives.shape}"
            )
        if n == 0:
            raise ValueError("`users` is empty; nothing to evaluate.")
        self.ks = _check_ks(ks)
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.candidates = np.concatenate([self.positives[:, None], self.negatives], 1)
        self.excluded = _repeated_in_row(self.candidates)

    @property
    def num_dropped(self) -> int:
        """Number of candidates dropped as repeats of the positive or a negative."""
        return int(self.excluded.sum())

    def scores(self, score_fn: ScoreFn) -> np.ndarray:
        """Score matrix ``[n, 1 + n_neg]`` (positive in column 0, drops at -inf)."""
        n, m = self.candidates.shape
        flat = _score_in_batches(
            score_fn,
            np.repeat(self.users, m),
            self.candidates.reshape(-1),
            self.batch_size,
        ).reshape(n, m)
        return np.where(self.excluded, -np.inf, flat)

    def evaluate(self, score_fn: ScoreFn) -> dict[str, float]:
        """Mean ``hr@k``, ``ndcg@k``, ``recall@k``, ``mrr@k``, ``precision@k``."""
        scores = self.scores(score_fn)
        relevant = np.zeros(scores.shape, dtype=bool)
        relevant[:, 0] = True
        sums, count = ranking_metric_sums(scores, relevant, self.ks)
        return _mean(sums, count)


def _repeated_in_row(candidates: np.ndarray) -> np.ndarray:
    """True where an id already occurred earlier in the same row."""
    order = np.argsort(candidates, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(candidates, order, axis=1)
    dup_sorted = np.zeros(candidates.shape, dtype=bool)
    dup_sorted[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    out = np.zeros(candidates.shape, dtype=bool)
    np.put_along_axis(out, order, dup_sorted, axis=1)
    return out


class FullRanking:
    """Rank held-out items against all items, excluding items the user had in training.

    A score function front-end of :func:`tfrec.evaluation.ranking.full_ranking`.
    Held-out (user, item) pairs are grouped by user: a user with several
    held-out items is one row with several relevant items. Training items given
    by the CSR exclusion (``exclude_indptr`` over user ids, ``exclude_indices``
    item ids) are scored ``-inf``, unless the item is itself held out for that
    user, in which case it stays a candidate.

    Args:
        num_items: number of items; candidates are ``0 .. num_items - 1``.
        users: ``[p]`` user id of each held-out pair.
        heldout_items: ``[p]`` item id of each held-out pair.
        exclude_indptr: ``[num_users + 1]`` CSR row pointer over user ids.
        exclude_indices: item ids of the CSR rows.
        ks: cut-offs.
        user_chunk: users scored per chunk (``user_chunk * num_items`` pairs
            per `score_fn` call).

    Example:
        >>> protocol = FullRanking(num_items, test_users, test_items,
        ...                        exclude_indptr=indptr, exclude_indices=indices)
        >>> protocol.evaluate(score_fn)["recall@10"]
    """

    def __init__(
        self,
        num_items: int,
        users: np.ndarray,
        heldout_items: np.ndarray,
        *,
        exclude_indptr: np.ndarray | None = None,
        exclude_indices: np.ndarray | None = None,
        ks: Iterable[int] = (10,),
        user_chunk: int = 256,
    ) -> None:
        self.num_items = _check_positive_int(num_items, "num_items")
        users = _as_int_array(users, "users", 1)
        items = _as_int_array(heldout_items, "heldout_items", 1)
        if users.shape != items.shape:
            raise ValueError(
                "`users` and `heldout_items` must be parallel arrays. Received: "
                f"users.shape={users.shape}, heldout_items.shape={items.shape}"
            )
        if users.size == 0:
            raise ValueError("`users` is empty; nothing to evaluate.")
        if items.max() >= self.num_items:
            raise ValueError(
                f"`heldout_items` holds item id {items.max()} but "
                f"num_items={self.num_items}."
            )
        if (exclude_indptr is None) != (exclude_indices is None):
            raise ValueError(
                "Pass both `exclude_indptr` and `exclude_indices` (CSR), or neither."
            )
        self.ks = _check_ks(ks)
        self.user_chunk = _check_positive_int(user_chunk, "user_chunk")

        # Group held-out pairs by user (users sorted ascending).
        order = np.lexsort((items, users))
        users, items = users[order], items[order]
        self.eval_users, starts = np.unique(users, return_index=True)
        self.heldout_indptr = np.append(starts, users.size).astype(np.int64)
        self.heldout_indices = items

        if exclude_indptr is not None:
            indptr = _as_int_array(exclude_indptr, "exclude_indptr", 1)
            indices = _as_int_array(exclude_indices, "exclude_indices", 1)
            if indptr.size < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
                raise ValueError(
                    "`exclude_indptr` must be a non-decreasing CSR pointer starting "
                    f"at 0. Received: exclude_indptr[:5]={indptr[:5].tolist()}"
                )
            if indptr[-1] != indices.size:
                raise ValueError(
                    "`exclude_indptr[-1]` must equal len(exclude_indices). Received: "
                    f"exclude_indptr[-1]={indptr[-1]}, "
                    f"exclude_indices.shape={indices.shape}"
                )
            if self.eval_users.max() >= indptr.size - 1:
                raise ValueError(
                    f"`exclude_indptr` covers {indptr.size - 1} users but user id "
                    f"{self.eval_users.max()} is held out. Its length must be "
                    "num_users + 1."
                )
            if indices.size and indices.max() >= self.num_items:
                raise ValueError(
                    f"`exclude_indices` holds item id {indices.max()} but "
                    f"num_items={self.num_items}."
                )
        else:
            indptr, indices = None, None
        self.exclude_indptr = indptr
        self.exclude_indices = indices

    @property
    def num_users(self) -> int:
        """Number of evaluated users (rows)."""
        return int(self.eval_users.size)

    def evaluate(self, score_fn: ScoreFn) -> dict[str, float]:
        """Mean ``hr@k``, ``ndcg@k``, ``recall@k``, ``mrr@k``, ``precision@k``
        (:func:`tfrec.evaluation.ranking.full_ranking`, ``user_chunk`` users
        per `score_fn` call).

        A ``score_fn`` with an attribute ``score_rows(users, num_items) -> [len(users),
        num_items]`` (the scores of every item for each user, equal to ``score_fn``
        on the tiled pairs; `tfrec.evaluation.rows.row_scorer`) is called that way
        instead: no ``[users x items]`` index arrays on the host."""
        all_items = np.arange(self.num_items, dtype=np.int64)
        score_rows = getattr(score_fn, "score_rows", None)

        def rows(lo: int, hi: int) -> np.ndarray:
            u = self.eval_users[lo:hi]
            if score_rows is not None:  # every item of a block of users at once
                return np.asarray(score_rows(u, self.num_items))
            return _call_score_fn(
                score_fn, np.repeat(u, self.num_items), np.tile(all_items, hi - lo)
            ).reshape(hi - lo, self.num_items)

        seen = None
        if self.exclude_indptr is not None:
            seen = csr_rows(self.exclude_indptr, self.exclude_indices, self.eval_users)
        return full_ranking(
            rows,
            (self.heldout_indptr, self.heldout_indices),
            seen=seen,
            num_rows=self.num_users,
            num_items=self.num_items,
            ks=self.ks,
            row_chunk=self.user_chunk,
        )


def item_popularity(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """Training count of every item index, ``[num_items]`` float64: the one
    popularity baseline every protocol ranks by (ItemPop; items never seen 0).

    Args:
        train_items: item id of every training interaction.
        num_items: number of item indices.
    """
    train_items = _as_int_array(train_items, "train_items", 1)
    num_items = _check_positive_int(num_items, "num_items")
    if train_items.size and (train_items.max() >= num_items or train_items.min() < 0):
        raise ValueError(
            f"`train_items` holds item ids in [{train_items.min()}, "
            f"{train_items.max()}] but num_items={num_items}."
        )
    return np.bincount(train_items, minlength=num_items).astype(np.float64)


def popularity_scorer(train_items: np.ndarray, num_items: int) -> ScoreFn:
    """ItemPop baseline as a ``score_fn``: every item by its training count
    (:func:`item_popularity`), ignoring the user.

    Returns:
        A `score_fn(user_idx, item_idx)` returning float32 counts.
    """
    counts = item_popularity(train_items, num_items).astype(np.float32)

    def score_fn(user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        del user_idx
        return counts[np.asarray(item_idx, dtype=np.int64)]

    return score_fn


# ------------------------------------------------------------- protocols of a Split


def split_protocols(split, part: str, *, ks=(10,), full: bool = True) -> dict:
    """Ranking protocols of ``part`` (``valid``/``test``): sampled when the split
    has negatives, full ranking (known items excluded) when ``full`` or none."""
    rows = getattr(split, part)
    if rows is None:
        return {}
    negatives = getattr(split, f"{part}_negatives")
    out = {}
    if negatives is not None:
        out["sampled"] = SampledRanking(rows["user_id"], rows["item_id"], negatives, ks=ks)
    if full or negatives is None:
        known = ("train",) if part == "valid" else tuple(
            p for p in ("train", "valid") if getattr(split, p) is not None
        )
        indptr, indices = split.csr(*known)
        out["full"] = FullRanking(
            split.num_items,
            rows["user_id"],
            rows["item_id"],
            exclude_indptr=indptr,
            exclude_indices=indices,
            ks=ks,
        )
    return out


def evaluate_split(split, score_fn, part: str, *, ks=(10,), rating_fn=None) -> dict:
    """Every ranking protocol of ``part``, plus RMSE/MAE when ``rating_fn``."""
    results: dict = {}
    for name, protocol in split_protocols(split, part, ks=ks, full=True).items():
        started = time.time()
        results[name] = protocol.evaluate(score_fn)
        results[name]["seconds"] = round(time.time() - started, 2)
    if rating_fn is not None:
        rows = getattr(split, part)
        pred = rating_fn(rows["user_id"], rows["item_id"])
        results["rating"] = {
            "rmse": rmse(rows["rating"], pred),
            "mae": mae(rows["rating"], pred),
        }
    return results
