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

from tfrec.data.pipelines import NegativeSampler

__all__ = ["TripleSampler", "bpr_dataset"]

TRIPLE_KEYS = ("user_id", "pos_item_id", "neg_item_id")


class TripleSampler(NegativeSampler):
    """Epochs of BPR triples ``(u, i, j)`` with ``j`` not a training item of ``u``.

    The negatives are :meth:`NegativeSampler.sample_negatives` (uniform, rejection
    of training positives); this class pairs each with its positive.

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
        # Shapes, emptiness, item range and users who rated every item are
        # checked by NegativeSampler.
        super().__init__(users, items, num_items, num_negatives, seed=seed)
        if self.users.min() < 0:
            raise ValueError(f"User indices must be >= 0; found {self.users.min()}.")

    def __len__(self) -> int:
        return self.users.size * self.num_negatives

    def epoch_arrays(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, positives, negatives)`` of epoch ``epoch``, shuffled."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        users, neg = self.sample_negatives(rng)
        pos = np.repeat(self.items, self.num_negatives)
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
