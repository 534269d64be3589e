"""Shared pieces of the recipes whose data is a user-item `Split`.

Loading (catalogue data set or the user's file), the vocabulary, tiny synthetic
data, validation and test protocols on the split, and top-K recommendation for a
user with seen-item exclusion. The NCF, VBPR, autoencoder and hybrid recipes use
these, so each exists once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfrec.evaluation.protocols import evaluate_split, split_protocols
from tfrec.recipes.base import DataSource, ServingGraph, Vocab

__all__ = ["evaluate_split", "split_protocols"]

INTERACTION_DATASETS = ("movielens-100k", "movielens-1m", "ncf-ml-1m")


def load_split(source: DataSource, default_split: str = "leave_one_out"):
    if (source.split or default_split) == "last":
        from tfrec.recipes.histories import as_interaction_split, load_histories

        return as_interaction_split(load_histories(source))
    from tfrec.data.sources import interaction_split

    return interaction_split(source, default_split=default_split)


def synthetic_split(seed: int = 0, *, num_users: int = 40, num_items: int = 30, per_user: int = 10):
    """A tiny leave-one-out split of synthetic interactions with structure."""
    from tfrec.data.splits import leave_one_out
    from tfrec.data.synthetic import synthetic_interactions

    inter = synthetic_interactions(
        num_users, num_items, per_user=per_user, seed=seed, name="synthetic"
    )
    return leave_one_out(inter, num_negatives=19, seed=seed)


def describe_split(split) -> str:
    parts = [f"{split.name}: {split.num_users} users, {split.num_items} items"]
    parts.append(f"{len(split.train['user_id'])} train")
    if split.valid is not None:
        parts.append(f"{len(split.valid['user_id'])} validation")
    parts.append(f"{len(split.test['user_id'])} test rows")
    from tfrec.data.splits import describe_dropped

    dropped = describe_dropped(getattr(split, "dropped", None) or {})
    return ", ".join(parts) + (f"; {dropped}" if dropped else "")


def split_vocab(split) -> Vocab:
    parts = [p for p in ("train", "valid", "test") if getattr(split, p) is not None]
    return Vocab(
        users=[str(u) for u in split.user_ids],
        items=[str(i) for i in split.item_ids],
        item_names=split.item_names,
        seen=split.csr(*parts),
    )


def validation_fn(split, score_fn_factory, *, ks=(10,)):
    """``validate()`` for a StagePlan: the cheapest validation protocol's metrics
    (sampled when the split has negatives), or None without a validation part."""
    if split.valid is None:
        return None
    protos = split_protocols(split, "valid", ks=ks, full=False)
    name = "sampled" if "sampled" in protos else "full"
    protocol = protos[name]

    def validate() -> dict:
        return {
            k: v
            for k, v in protocol.evaluate(score_fn_factory()).items()
            if k.startswith(("hr@", "ndcg@", "recall@"))
        }

    return validate


def user_index(vocab: Vocab, user) -> int:
    if vocab.users is None:
        raise ValueError("This run has no user vocabulary; it takes sessions or items.")
    key = str(user)
    try:
        return vocab.users.index(key)
    except ValueError:
        raise ValueError(
            f"Unknown user {user!r}: not in the training vocabulary ({len(vocab.users)} "
            f"users, e.g. {', '.join(vocab.users[:3])})."
        ) from None


def item_index(vocab: Vocab, item) -> int:
    key = str(item)
    try:
        return vocab.items.index(key)
    except ValueError:
        shown = [i for i in vocab.items if i][:3]
        raise ValueError(
            f"Unknown item {item!r}: not in the training vocabulary "
            f"({len([i for i in vocab.items if i])} items, e.g. {', '.join(shown)})."
        ) from None


def top_k(scores: np.ndarray, vocab: Vocab, k: int, exclude=()) -> list[tuple[Any, float]]:
    """The ``k`` best ``(raw item id, score)``, best first; ``exclude`` indices
    and items without a finite score never appear
    (:func:`tfrec.evaluation.ranking.top_k`, the one top-K of every protocol).

    The top-K of every recipe's ``recommend``. When fewer than ``k`` items
    remain, all of them are returned (the caller sees ``len(result) < k``; the
    CLI says so).

    Raises:
        ValueError: ``k`` is not a positive int.
    """
    from tfrec.evaluation.ranking import top_k as rank_top_k

    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive int. Received: k={k!r}")
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.size == 0:
        return []
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    order = rank_top_k(scores, min(int(k), scores.size), exclude=list(exclude))
    order = order[np.isfinite(scores[order])]
    order = order[~np.isin(order, np.asarray(list(exclude), np.int64))]
    return [(vocab.items[i], float(scores[i])) for i in order]


def seen_items(vocab: Vocab, user: int) -> np.ndarray:
    if vocab.seen is None:
        return np.zeros(0, np.int64)
    indptr, indices = vocab.seen
    return indices[indptr[user] : indptr[user + 1]]


def recommend_for_user(score_fn, vocab: Vocab, user, *, k=10, exclude_seen=True):
    """Top-``k`` items of every item for a raw user id, seen items excluded."""
    if k < 1:
        raise ValueError(f"k must be a positive int. Received: {k}")
    u = user_index(vocab, user)
    n = len(vocab.items)
    scores = score_fn(np.full(n, u, np.int64), np.arange(n, dtype=np.int64))
    exclude = seen_items(vocab, u) if exclude_seen else ()
    return top_k(scores, vocab, k, exclude)


def graph(name: str, kwargs: dict, model) -> dict[str, ServingGraph]:
    return {name: ServingGraph(name, dict(kwargs), model)}
