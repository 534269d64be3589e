"""``tf.data`` pipeline of BPR (user, positive, negative) triples.

Bayesian Personalized Ranking (Rendle et al., UAI 2009) learns from triples
``(u, i, j)``: user ``u`` interacted with ``i`` in training and not with ``j``.
:class:`TripleSampler` builds one epoch of triples: every training positive
``(u, i)`` appears ``num_negatives`` times (each with its own negative), in a
fresh random order, with ``j`` drawn uniformly from ``[0, num_items)`` minus the
items ``u`` interacted with in training (rejection sampling, exact: a positive
is never returned as a negative). Epoch ``e`` is a pure function of
``(seed, e)``, like `tfrec.data.pipelines.NegativeSampler`, so a resumed run
sees the same triples; `tfrec.data.pipelines.SamplerEpochCallback` keeps the
sampler's epoch in step with ``fit``.

Deviation from the BPR paper: it draws triples by bootstrap sampling (with
replacement); here every positive is visited once per epoch per negative
(sampling without replacement over positives), the common practice of BPR
implementations.

For a warm/cold item split (`tfrec.data.coldstart`) pass
``num_items=split.num_warm_items``: negatives are then drawn among warm items
only, so cold items never enter training, not even as negatives.

Batches are ``(features, dummy_labels)`` with ``features = {"user_id",
"pos_item_id", "neg_item_id"}`` (int64) and an all-zero float32 label (the BPR
loss needs none; Keras ``fit`` wants one).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["TripleSampler", "bpr_dataset"]

TRIPLE_KEYS = ("user_id", "pos_item_id", "neg_item_id")


class TripleSampler:
    """Epochs of BPR triples ``(u, i, j)`` with ``j`` not a training item of ``u``.

    Args:
        users: int64 user index of each training positive.
        items: int64 item index of each training positive.
        num_items: negatives are drawn from ``[0, num_items)``.
        num_negatives: triples per positive per epoch.
        seed: base seed.

    Example:
        >>> sampler = TripleSampler(split.train["user_id"], split.train["item_id"],
        ...                         split.num_warm_items, seed=0)
        >>> u, i, j = sampler.epoch_arrays(0)
    """

    def __init__(
        self, users, items, num_items: int, num_negatives: int = 1, *, seed: int = 0
    ):
        users = np.asarray(users)
        items = np.asarray(items)
        if users.ndim != 1 or users.shape != items.shape:
            raise ValueError(
                "`users` and `items` must be 1-D arrays of equal length. Received "
                f"shapes {users.shape} and {items.shape}."
            )
        if users.size == 0:
            raise ValueError("No positives to train on: the training set is empty.")
        for name, arr in (("users", users), ("items", items)):
            if arr.dtype.kind not in "iu":
                raise ValueError(
                    f"`{name}` must hold integer indices. Received dtype {arr.dtype}."
                )
        if isinstance(num_items, bool) or not isinstance(num_items, (int, np.integer)):
            raise ValueError(f"`num_items` must be an int. Received: {num_items!r}")
        if (
            isinstance(num_negatives, bool)
            or not isinstance(num_negatives, (int, np.integer))
            or num_negatives < 1
        ):
            raise ValueError(
                f"`num_negatives` must be a positive int. Received: {num_negatives!r}"
            )
        users = users.astype(np.int64)
        items = items.astype(np.int64)
        if users.min() < 0:
            raise ValueError(f"User indices must be >= 0; found {users.min()}.")
        if items.min() < 0 or items.max() >= num_items:
            raise ValueError(
                f"Item indices must be in [0, {num_items}); found range "
                f"[{items.min()}, {items.max()}]. Pass num_items covering every "
                "training item."
            )
        keys = np.unique(users * num_items + items)
        per_user = np.bincount(keys // num_items)
        full = np.flatnonzero(per_user >= num_items)
        if full.size:
            raise ValueError(
                f"User indices {full[:5].tolist()} interacted with all {num_items} "
                "items; no negative can be drawn for them. Drop them from training."
            )
        self.users, self.items = users, items
        self.num_items = int(num_items)
        self.num_negatives = int(num_negatives)
        self.seed = int(seed)
        self._keys = keys
        self.epoch = 0

    def __len__(self) -> int:
        return self.users.size * self.num_negatives

    def is_positive(self, users, items) -> np.ndarray:
        """Whether each (user, item) is a training positive."""
        keys = np.asarray(users, np.int64) * self.num_items + np.asarray(items, np.int64)
        pos = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        return self._keys[pos] == keys

    def epoch_arrays(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, positives, negatives)`` of epoch ``epoch``, shuffled."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        users = np.repeat(self.users, self.num_negatives)
        pos = np.repeat(self.items, self.num_negatives)
        neg = rng.integers(0, self.num_items, users.size, dtype=np.int64)
        bad = np.flatnonzero(self.is_positive(users, neg))
        while bad.size:
            neg[bad] = rng.integers(0, self.num_items, bad.size, dtype=np.int64)
            bad = bad[self.is_positive(users[bad], neg[bad])]
        order = rng.permutation(users.size)
        return users[order], pos[order], neg[order]


def bpr_dataset(
    users,
    items,
    num_items: int,
    *,
    num_negatives: int = 1,
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[tf.data.Dataset, TripleSampler]:
    """Batched BPR triples, a fresh epoch (new negatives, new order) per pass.

    Args:
        users: user index of each training positive.
        items: item index of each training positive.
        num_items: negatives come from ``[0, num_items)``.
        num_negatives: triples per positive per epoch.
        batch_size: triples per batch.
        seed: base seed (epoch ``e`` uses ``(seed, e)``).

    Returns:
        ``(dataset, sampler)``; pass ``SamplerEpochCallback(sampler)`` to ``fit``
        for resume-exact epochs. Elements are ``({"user_id", "pos_item_id",
        "neg_item_id"}, zeros)``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    sampler = TripleSampler(users, items, num_items, num_negatives, seed=seed)

    def next_epoch():
        epoch = sampler.epoch
        sampler.epoch += 1
        return sampler.epoch_arrays(epoch)

    def to_batches(u, i, j):
        u, i, j = (tf.ensure_shape(t, (None,)) for t in (u, i, j))
        features = {"user_id": u, "pos_item_id": i, "neg_item_id": j}
        labels = tf.zeros_like(u, dtype=tf.float32)
        return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)

    ds = (
        tf.data.Dataset.from_tensors(0)
        .map(
            lambda _: tf.numpy_function(next_epoch, [], (tf.int64, tf.int64, tf.int64))
        )
        .flat_map(to_batches)
    )
    steps = -(-len(sampler) // batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(tf.data.AUTOTUNE), sampler
