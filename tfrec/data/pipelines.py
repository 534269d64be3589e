"""``tf.data`` pipelines for (user, item) models.

* :func:`implicit_dataset`: every observed (user, item) is a positive; each epoch
  draws ``num_negatives`` **fresh** negatives per positive, uniformly among the items
  the user never interacted with in training (the NCF protocol, He et al. 2017).
* :func:`explicit_dataset`: (user, item) -> rating, for squared-loss training.

Batches are ``(features, labels)`` with ``features = {"user_id", "item_id"}``
(int64) and ``labels = {output_name: float32}`` so they feed a dict-output
functional model's ``fit`` directly.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


class NegativeSampler:
    """Builds one shuffled epoch of positives plus fresh negatives.

    Epoch ``e`` is a pure function of ``(seed, e)``, so a run resumed at epoch ``e``
    sees the same examples as an uninterrupted one. :class:`SamplerEpochCallback`
    keeps the sampler's epoch in step with ``fit``.

    Args:
        users: int64 user index of each positive.
        items: int64 item index of each positive.
        num_items: catalogue size; negatives are drawn from ``[0, num_items)``.
        num_negatives: negatives per positive.
        seed: base seed.
    """

    def __init__(
        self, users, items, num_items: int, num_negatives: int, *, seed: int = 0
    ):
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(
                f"`users` and `items` must be 1-D arrays of equal length. Received "
                f"shapes {users.shape} and {items.shape}."
            )
        if len(users) == 0:
            raise ValueError("No positives to train on: the training set is empty.")
        if int(num_negatives) < 0:
            raise ValueError(
                f"`num_negatives` must be >= 0. Received: num_negatives={num_negatives!r}"
            )
        if items.min() < 0 or items.max() >= num_items:
            raise ValueError(
                f"Item indices must be in [0, {num_items}); found range "
                f"[{items.min()}, {items.max()}]."
            )
        keys = np.unique(users * num_items + items)
        counts = np.bincount(keys // num_items)  # distinct items per user
        full = np.flatnonzero(counts >= num_items)
        if num_negatives and len(full):
            raise ValueError(
                f"Users {full[:5].tolist()} interacted with all {num_items} items "
                "(every item); no negatives can be drawn for them. Drop them or use "
                "num_negatives=0."
            )
        self.users, self.items = users, items
        self.num_items = int(num_items)
        self.num_negatives = int(num_negatives)
        self.seed = int(seed)
        self._keys = keys
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.users) * (1 + self.num_negatives)

    def is_positive(self, users, items) -> np.ndarray:
        keys = np.asarray(users, np.int64) * self.num_items + np.asarray(
            items, np.int64
        )
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        return self._keys[pos] == keys

    def sample_negatives(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform negatives by rejection: redraw any that hit a positive."""
        neg_users = np.repeat(self.users, self.num_negatives)
        neg_items = rng.integers(0, self.num_items, len(neg_users), dtype=np.int64)
        bad = np.flatnonzero(self.is_positive(neg_users, neg_items))
        while len(bad):
            neg_items[bad] = rng.integers(0, self.num_items, len(bad), dtype=np.int64)
            bad = bad[self.is_positive(neg_users[bad], neg_items[bad])]
        return neg_users, neg_items

    def epoch_arrays(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, labels) of epoch ``epoch``, shuffled."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        neg_users, neg_items = self.sample_negatives(rng)
        users = np.concatenate([self.users, neg_users])
        items = np.concatenate([self.items, neg_items])
        labels = np.concatenate(
            [np.ones(len(self.users), np.float32), np.zeros(len(neg_users), np.float32)]
        )
        order = rng.permutation(len(users))
        return users[order], items[order], labels[order]


class SamplerEpochCallback(keras.callbacks.Callback):
    """Tells a :class:`NegativeSampler` (or :class:`RatingEpochs`) which epoch
    ``fit`` is starting."""

    def __init__(self, sampler: NegativeSampler):
        super().__init__()
        self.sampler = sampler

    def on_epoch_begin(self, epoch, logs=None):
        self.sampler.epoch = int(epoch)


class RatingEpochs:
    """(user, item, rating) rows in a fresh order each epoch, a function of
    ``(seed, epoch)`` like :class:`NegativeSampler` (so resuming is exact)."""

    def __init__(self, users, items, ratings, *, seed: int = 0, shuffle: bool = True):
        self.users, self.items, self.ratings = users, items, ratings
        self.seed, self.shuffle, self.epoch = int(seed), shuffle, 0

    def __len__(self) -> int:
        return len(self.users)

    def epoch_arrays(self, epoch: int):
        if not self.shuffle:
            return self.users, self.items, self.ratings
        order = np.random.default_rng([self.seed, int(epoch)]).permutation(len(self))
        return self.users[order], self.items[order], self.ratings[order]


def _epoch_dataset(source, batch_size: int, output_name: str) -> tf.data.Dataset:
    """Batches of ``source.epoch_arrays(source.epoch)``; each pass draws the next
    epoch. One numpy call per pass builds the whole epoch (vectorised); batching
    then runs in tf.data's C++ kernels rather than a Python generator per batch."""

    def next_epoch():
        epoch = source.epoch
        source.epoch += 1
        u, i, y = source.epoch_arrays(epoch)
        return u.astype(np.int64), i.astype(np.int64), y.astype(np.float32)

    def to_batches(users, items, labels):
        users, items, labels = (
            tf.ensure_shape(t, (None,)) for t in (users, items, labels)
        )
        return tf.data.Dataset.from_tensor_slices(
            ({"user_id": users, "item_id": items}, {output_name: labels})
        ).batch(batch_size)

    ds = (
        tf.data.Dataset.from_tensors(0)
        .map(
            lambda _: tf.numpy_function(
                next_epoch, [], (tf.int64, tf.int64, tf.float32)
            )
        )
        .flat_map(to_batches)
    )
    steps = -(-len(source) // batch_size)
    return ds.apply(tf.data.experimental.assert_cardinality(steps))


def _check_batch_size(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: {batch_size!r}"
        )


def implicit_dataset(
    users,
    items,
    num_items: int,
    *,
    num_negatives: int = 4,
    batch_size: int = 256,
    seed: int = 0,
    output_name: str = "score",
) -> tuple[tf.data.Dataset, NegativeSampler]:
    """Positives plus fresh negatives each epoch, batched and prefetched.

    Returns the dataset and its sampler; pass ``SamplerEpochCallback(sampler)`` to
    ``fit`` so epoch ``e`` always draws the negatives of epoch ``e`` (resume-safe).
    Without the callback each pass over the dataset simply draws the next epoch.
    """
    _check_batch_size(batch_size)
    sampler = NegativeSampler(users, items, num_items, num_negatives, seed=seed)

    ds = _epoch_dataset(sampler, batch_size, output_name)
    return ds.prefetch(tf.data.AUTOTUNE), sampler


def explicit_dataset(
    users,
    items,
    ratings,
    *,
    batch_size: int = 256,
    seed: int = 0,
    shuffle: bool = True,
    output_name: str = "rating",
) -> tuple[tf.data.Dataset, RatingEpochs]:
    """(user, item) -> rating examples, reshuffled every epoch, batched, prefetched.

    Returns the dataset and its epoch source; pass ``SamplerEpochCallback(source)``
    to ``fit`` so a resumed run sees the same order as an uninterrupted one."""
    _check_batch_size(batch_size)
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    ratings = np.asarray(ratings, np.float32)
    if not (users.shape == items.shape == ratings.shape) or users.ndim != 1:
        raise ValueError(
            "`users`, `items` and `ratings` must be 1-D and of equal length. Received "
            f"shapes {users.shape}, {items.shape}, {ratings.shape}."
        )
    if len(users) == 0:
        raise ValueError("No ratings to train on: the training set is empty.")
    if not np.all(np.isfinite(ratings)):
        raise ValueError("`ratings` contain NaN or infinite values.")
    source = RatingEpochs(users, items, ratings, seed=seed, shuffle=shuffle)
    ds = _epoch_dataset(source, batch_size, output_name)
    return ds.prefetch(tf.data.AUTOTUNE), source


def eval_dataset(users, items, *, batch_size: int = 65536) -> tf.data.Dataset:
    """Features only, in order, for ``model.predict``."""
    _check_batch_size(batch_size)
    return (
        tf.data.Dataset.from_tensor_slices(
            {
                "user_id": np.asarray(users, np.int64),
                "item_id": np.asarray(items, np.int64),
            }
        )
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
