"""Evaluating item embeddings: genre consistency of neighbours, next-item ranking.

* :func:`genre_consistency`: the item2vec paper's qualitative check made numeric
  (Barkan & Koenigstein 2016, Sec. 4): for each query item, are its
  cosine-nearest neighbours of a consistent genre? MovieLens films have several
  genres, so two scores are reported:

  - ``share@k``: the fraction of the ``k`` nearest neighbours that share at
    least one genre with the query (``k=1``: "is the nearest neighbour's genre
    consistent with the item's");
  - ``vote@k``: a ``k``-nearest-neighbour classifier, the paper's check: the
    genre most frequent among the neighbours' genres is one of the query's
    genres (when several genres tie for the most votes, the query scores the
    fraction of them it has: the expected hit of a random tie-break).

  :func:`chance_share` gives the ``share`` a random neighbour would reach.
* :func:`svd_item_embeddings`: the paper's baseline, a truncated SVD of the
  binary item-user (item-sequence) matrix, item vectors ``U_k sqrt(S_k)``.
* :func:`next_item_metrics`: item embeddings used as a next-item recommender on
  a leave-last-out split (:func:`leave_last_out`). Rule: a user's profile is the
  mean of the L2-normalised vectors of the last ``recent`` training items, so an
  item's score is its mean cosine similarity to those items; items already in
  the user's training history are excluded (``exclude_history=False`` keeps
  them, for sessions with repeated clicks); the held-out item is ranked against
  every other item (full ranking, :func:`tfrec.evaluation.ranking.full_ranking`),
  HR@k and NDCG@k.
* :func:`movielens_genres`: genre flags of ML-100K / ML-1M films from
  :mod:`tfrec.data.content`; the "unknown" pseudo-genre is dropped.

Item ids are 0-based rows of the embedding table (see
:mod:`tfrec.data.word2vec`).
"""

from __future__ import annotations

import os

import numpy as np

from tfrec.data.datasets import DataError
from tfrec.evaluation.ranking import full_ranking, top_k

__all__ = [
    "align_genres",
    "chance_share",
    "genre_consistency",
    "leave_last_out",
    "movielens_genres",
    "nearest_neighbours",
    "next_item_metrics",
    "popularity_next_item_metrics",
    "svd_item_embeddings",
]

# --------------------------------------------------------------------- genres


def movielens_genres(
    name: str = "movielens-100k", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Genre flags of every MovieLens film (via :func:`tfrec.data.content.movielens_items`).

    Returns:
        ``(raw_item_ids [n] int64, genre_names [G], flags [n, G] bool)``, without
        the "unknown" pseudo-genre of ML-100K.
    """
    from tfrec.data.content import movielens_items

    content = movielens_items(name, data_dir)
    keep = [i for i, g in enumerate(content.genre_names) if g.lower() != "unknown"]
    return (
        np.asarray(content.item_ids, np.int64),
        [content.genre_names[i] for i in keep],
        np.asarray(content.genres)[:, keep] > 0,
    )


def align_genres(item_raw_ids, genre_raw_ids, flags) -> np.ndarray:
    """Rows of ``flags`` reordered to ``item_raw_ids`` (row ``i`` = item id ``i``).

    Raises:
        DataError: an item has no genre row.
    """
    item_raw_ids = np.asarray(item_raw_ids, np.int64)
    genre_raw_ids = np.asarray(genre_raw_ids, np.int64)
    order = np.argsort(genre_raw_ids)
    pos = np.searchsorted(genre_raw_ids, item_raw_ids, sorter=order)
    pos = np.minimum(pos, len(order) - 1)
    found = genre_raw_ids[order[pos]] == item_raw_ids
    if not found.all():
        raise DataError(
            f"{int((~found).sum())} item(s) have no genre entry, e.g. raw ids "
            f"{item_raw_ids[~found][:5].tolist()}."
        )
    return np.asarray(flags, bool)[order[pos]]


# ---------------------------------------------------------------- neighbours


def _unit_rows(embeddings) -> np.ndarray:
    emb = np.asarray(embeddings, np.float64)
    if emb.ndim != 2 or 0 in emb.shape:
        raise ValueError(
            "`embeddings` must be a non-empty 2-D array [num_items, dim]. "
            f"Received shape {emb.shape}."
        )
    if not np.all(np.isfinite(emb)):
        raise ValueError("`embeddings` contain NaN or infinite values.")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norms, 1e-12)


def _as_ids(ids, num_items, what) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"`{what}` must be a 1-D array of integer item ids.")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= num_items):
        raise ValueError(
            f"`{what}` must be ids in [0, {num_items}); found range "
            f"[{ids.min()}, {ids.max()}]."
        )
    return ids


def _candidate_mask(candidates, num_items) -> np.ndarray:
    if candidates is None:
        return np.ones(num_items, bool)
    cand = np.asarray(candidates)
    if cand.dtype == bool:
        if cand.shape != (num_items,):
            raise ValueError(
                f"A boolean `candidates` mask must have shape ({num_items},). "
                f"Received {cand.shape}."
            )
        return cand
    mask = np.zeros(num_items, bool)
    mask[_as_ids(cand, num_items, "candidates")] = True
    return mask


def nearest_neighbours(
    embeddings, queries, k: int = 1, *, candidates=None
) -> np.ndarray:
    """The ``k`` candidates most cosine-similar to each query, excluding itself.

    Args:
        embeddings: ``[num_items, d]`` item table.
        queries: item ids.
        k: neighbours per query.
        candidates: ids (or a boolean mask) of the items that may be neighbours;
            default all.

    Returns:
        int64 ``[len(queries), k]``, most similar first (ties: lower id first).
    """
    unit = _unit_rows(embeddings)
    n = unit.shape[0]
    queries = _as_ids(queries, n, "queries")
    mask = _candidate_mask(candidates, n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive int. Received: k={k!r}")
    if k > int(mask.sum()) - 1:
        raise ValueError(
            f"`k`={k} needs more candidates than the {int(mask.sum())} given "
            "(the query itself is excluded)."
        )
    out = np.empty((queries.size, k), np.int64)
    for lo in range(0, queries.size, 1024):
        q = queries[lo : lo + 1024]
        sims = unit[q] @ unit.T
        sims[:, ~mask] = -np.inf
        sims[np.arange(q.size), q] = -np.inf
        out[lo : lo + 1024] = top_k(sims, k)
    return out


def genre_consistency(
    embeddings, genres, queries, *, k: int = 1, candidates=None
) -> dict[str, float]:
    """Genre consistency of each query's ``k`` nearest neighbours.

    Args:
        embeddings: ``[num_items, d]`` item table.
        genres: bool ``[num_items, G]`` genre flags (row = item id).
        queries: item ids to evaluate (items without any genre are skipped).
        k: neighbours per query.
        candidates: items that may be neighbours (ids or a boolean mask).

    Returns:
        ``{"share@k", "vote@k", "queries"}`` (see the module docstring).
    """
    genres = np.asarray(genres, bool)
    n = np.asarray(embeddings).shape[0]
    if genres.ndim != 2 or genres.shape[0] != n:
        raise ValueError(
            f"`genres` must be [num_items={n}, G] flags. Received {genres.shape}."
        )
    queries = _as_ids(queries, n, "queries")
    queries = queries[genres[queries].any(axis=1)]
    if queries.size == 0:
        raise ValueError("No query item has a genre; nothing to evaluate.")
    nn = nearest_neighbours(embeddings, queries, k, candidates=candidates)
    q_genres = genres[queries]  # [Q, G]
    nb_genres = genres[nn]  # [Q, k, G]
    shares = (nb_genres & q_genres[:, None, :]).any(axis=2).mean(axis=1)
    votes = nb_genres.sum(axis=1)  # [Q, G]
    top = (votes == votes.max(axis=1, keepdims=True)) & (votes > 0)
    # Tied top genres share the credit (the expected hit of a random tie-break).
    vote_hit = (top & q_genres).sum(axis=1) / np.maximum(top.sum(axis=1), 1)
    return {
        f"share@{k}": float(shares.mean()),
        f"vote@{k}": float(vote_hit.mean()),
        "queries": int(queries.size),
    }


def chance_share(genres, queries, *, candidates=None) -> float:
    """Expected ``share@k`` of uniformly random neighbours (the chance level)."""
    genres = np.asarray(genres, bool)
    n = genres.shape[0]
    queries = _as_ids(queries, n, "queries")
    queries = queries[genres[queries].any(axis=1)]
    mask = _candidate_mask(candidates, n)
    g = genres.astype(np.float64)
    shares_any = (g[queries] @ g[mask].T) > 0  # [Q, C]
    own = mask[queries]  # the query itself is not its own neighbour
    hits = shares_any.sum(axis=1) - own
    return float(np.mean(hits / (mask.sum() - own)))


# ------------------------------------------------------------------- SVD


def svd_item_embeddings(offsets, items, num_items: int, dim: int) -> np.ndarray:
    """Truncated SVD of the binary item x sequence matrix: ``U_k sqrt(S_k)``.

    Args:
        offsets, items: CSR sequences of 0-based item ids (one sequence per user).
        num_items: catalogue size.
        dim: rank ``k``.

    Returns:
        float32 ``[num_items, dim]``.
    """
    offsets = np.asarray(offsets, np.int64)
    items = np.asarray(items, np.int64)
    num_seq = offsets.size - 1
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"`dim` must be a positive int. Received: dim={dim!r}")
    if dim > min(num_items, num_seq):
        raise ValueError(
            f"`dim`={dim} exceeds min(num_items, num_sequences) = "
            f"{min(num_items, num_seq)}."
        )
    matrix = np.zeros((num_items, num_seq), np.float64)
    seq = np.repeat(np.arange(num_seq), np.diff(offsets))
    matrix[items, seq] = 1.0
    u, s, _ = np.linalg.svd(matrix, full_matrices=False)
    # Fix the sign of each component (largest |entry| positive): deterministic.
    signs = np.sign(u[np.argmax(np.abs(u[:, :dim]), axis=0), np.arange(dim)])
    return (u[:, :dim] * signs * np.sqrt(s[:dim])).astype(np.float32)


# ----------------------------------------------------------- next item


def leave_last_out(offsets, items) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Holds out the last item of every sequence.

    Returns:
        ``(train_offsets, train_items, test_items)``; sequences need 2+ items.
    """
    offsets = np.asarray(offsets, np.int64)
    items = np.asarray(items, np.int64)
    lengths = np.diff(offsets)
    if lengths.size == 0 or lengths.min() < 2:
        raise ValueError(
            "leave_last_out needs every sequence to have at least 2 items; "
            f"the shortest has {int(lengths.min()) if lengths.size else 0}."
        )
    last = offsets[1:] - 1
    keep = np.ones(items.size, bool)
    keep[last] = False
    return offsets - np.arange(offsets.size), items[keep], items[last]


def next_item_metrics(
    embeddings,
    offsets,
    items,
    targets,
    *,
    recent: int = 5,
    ks=(10,),
    exclude_history: bool = True,
    row_chunk: int = 2048,
) -> dict[str, float]:
    """HR/NDCG of the held-out next item under the mean-cosine rule.

    Args:
        embeddings: ``[num_items, d]`` item table.
        offsets, items: CSR training sequences (in time order).
        targets: the held-out next item of each sequence.
        recent: how many of the latest training items form the profile.
        ks: cut-offs.
        exclude_history: rank only items outside the sequence (user histories);
            False keeps them (sessions, where a click may repeat an earlier one).
        row_chunk: sequences scored at once.

    Returns:
        ``ranking_metrics`` output (``hr@k``, ``ndcg@k``, ...).
    """
    unit = _unit_rows(embeddings)
    offsets = np.asarray(offsets, np.int64)
    items = _as_ids(items, unit.shape[0], "items")
    targets = _as_ids(targets, unit.shape[0], "targets")
    if targets.size != offsets.size - 1:
        raise ValueError(
            f"One target per sequence expected: {offsets.size - 1} sequences, "
            f"{targets.size} targets."
        )
    if (
        isinstance(recent, bool)
        or not isinstance(recent, (int, np.integer))
        or (recent < 1)
    ):
        raise ValueError(f"`recent` must be a positive int. Received: {recent!r}")
    seq = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    from_end = offsets[seq + 1] - np.arange(items.size)  # 1 = the latest item
    use = from_end <= recent
    profile = np.zeros((offsets.size - 1, unit.shape[1]))
    np.add.at(profile, seq[use], unit[items[use]])
    counts = np.bincount(seq[use], minlength=offsets.size - 1)[:, None]
    profile /= np.maximum(counts, 1)

    def scores(lo, hi):
        return profile[lo:hi] @ unit.T

    return full_ranking(
        scores, targets, seen=(offsets, items) if exclude_history else None,
        num_rows=targets.size, num_items=unit.shape[0], ks=ks, row_chunk=row_chunk,
        seen_relevant="raise",
    )


def popularity_next_item_metrics(offsets, items, targets, num_items: int, *, ks=(10,)):
    """The same protocol ranking every user's candidates by training popularity."""
    offsets = np.asarray(offsets, np.int64)
    items = _as_ids(items, num_items, "items")
    targets = _as_ids(targets, num_items, "targets")
    from tfrec.evaluation.protocols import item_popularity

    counts = item_popularity(items, num_items)
    return full_ranking(
        lambda lo, hi: np.broadcast_to(counts, (hi - lo, num_items)), targets,
        seen=(offsets, items), num_rows=offsets.size - 1, num_items=num_items, ks=ks,
        seen_relevant="raise",
    )
