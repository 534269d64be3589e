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


def _check_positives(users, items, num_negatives) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` as arrays, or a ``ValueError`` for mismatched shapes, no
    positives or a negative ``num_negatives`` (both negative samplers)."""
    users, items = np.asarray(users), np.asarray(items)
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
    return users, items


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
        users, items = _check_positives(users, items, num_negatives)
        users, items = users.astype(np.int64), items.astype(np.int64)
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


# ------------------------------------------------------- negatives inside the graph


_SLICE = 1 << 22  # positives per slice of GraphNegatives' setup loops


def _fill_bitset(bits, items_sorted, offsets, rows, words, step) -> None:
    """Sets bit ``item`` of row ``rows[user]`` in ``bits`` for every positive of
    a user with a row, in slices (a function: its views of ``items_sorted`` are
    gone when it returns, so the caller's ``del`` frees the array)."""
    for at in range(0, len(items_sorted) if len(bits) else 0, step):
        lo = max(at - 1, 0)  # one position back: repeats across the slices
        item = items_sorted[lo : at + step]
        owner = np.searchsorted(offsets[1:], np.arange(lo, lo + len(item)),
                                side="right")
        sel = rows[owner] >= 0
        # A repeated pair (sorted: next to its twin) sets its bit once.
        sel[1:] &= (item[1:] != item[:-1]) | (owner[1:] != owner[:-1])
        if at:
            sel[0] = False  # the previous slice's last position
        if sel.any():
            word = rows[owner[sel]] * words + item[sel] // 32
            acc = np.bincount(
                word - word[0],
                weights=np.left_shift(1, item[sel] % 32).astype(np.float64),
            )  # distinct bits of a word: their sum is their OR, exact in float64
            bits[word[0] : word[0] + len(acc)] |= acc.astype(np.uint32)


class GraphNegatives:
    """Positives in a fresh order plus fresh negatives, drawn inside ``tf.data``.

    Holds the positives sorted by ``(user, item)`` as per-user offsets (one int64
    per user) and the items (int32: 4 bytes per positive, the training data
    itself), both in ``tf.Variable`` s so the ``tf.data`` graph refers to them
    instead of copying them, and nothing per epoch. Epoch ``e`` is a pure function
    of ``(seed, e)``:

    * order: positive ``i`` of the epoch is key ``(a_e * i + b_e) mod N``, an
      affine permutation of the ``N`` positives (``a_e`` coprime with ``N``), so
      every positive is seen exactly once per epoch, then each chunk of
      ``chunk_positives`` positives is shuffled with its negatives;
    * negatives: ``num_negatives`` uniform items per positive of the chunk's
      users; any that hit one of the user's training positives is redrawn, up to
      ``rounds`` times. What still collides after
      that stays a negative: :meth:`residual_collision_rate` gives the expected
      fraction, and it is reported by the benchmark.

    Membership ("is item ``i`` a positive of user ``u``?") is one lookup in a
    bitset row (``num_items`` bits) for the heaviest users, as many as
    ``bitset_budget`` times the items' own bytes allow, and a binary search
    within the user's slice of the sorted items for the rest (``log2`` of the
    largest such user's degree steps). Both are exact, so the negatives drawn do
    not depend on the split between them. Negatives are drawn in proportion to
    a user's positives, so the heavy users the bitset covers ask most of the
    queries; a search step is a gather at a random place in the items, which
    costs a cache miss once they outgrow the cache.

    Memory is the items and offsets, the bitset rows (at most ``bitset_budget``
    times the items), plus one chunk of examples in flight (and
    ``prefetch``), independent of the number of epochs. :class:`SamplerEpochCallback` sets
    :attr:`epoch` so a resumed run draws the same epochs; without it each pass
    over the dataset draws the next epoch.

    Args:
        users: user index of each positive.
        items: item index of each positive.
        num_items: catalogue size; negatives are drawn from ``[0, num_items)``.
        num_negatives: negatives per positive.
        seed: base seed.
        batch_size: examples per batch.
        chunk_batches: batches per chunk (a chunk holds ``batch_size *
            chunk_batches`` positives and their negatives).
        rounds: redraws of negatives that hit a positive.
        bitset_budget: bytes of bitset rows allowed, as a multiple of the
            items' bytes (4 per positive); 0 answers every query by binary
            search.
        group_negatives: keep each positive and its negatives together (the
            chunk shuffles whole groups): a batch then holds about
            ``batch_size / (1 + num_negatives)`` users instead of up to
            ``batch_size``, so the training step gathers and updates fewer
            random embedding rows. Off by default (it changes what shares a
            batch, not which examples an epoch holds).
    """

    def __init__(
        self,
        users,
        items,
        num_items: int,
        num_negatives: int,
        *,
        seed: int = 0,
        batch_size: int = 256,
        chunk_batches: int = 64,
        rounds: int = 8,
        bitset_budget: float = 1.0,
        group_negatives: bool = False,
    ):
        _check_batch_size(batch_size)
        users, items = _check_positives(users, items, num_negatives)
        if items.min() < 0 or items.max() >= num_items or users.min() < 0:
            raise ValueError(
                f"Item indices must be in [0, {num_items}) and user indices >= 0; "
                f"found items in [{items.min()}, {items.max()}], users from "
                f"{users.min()}."
            )
        if int(rounds) < 0 or int(chunk_batches) < 1 or not bitset_budget >= 0:
            raise ValueError(
                f"`rounds` and `bitset_budget` must be >= 0 and `chunk_batches` >= 1. "
                f"Received: rounds={rounds!r}, chunk_batches={chunk_batches!r}, "
                f"bitset_budget={bitset_budget!r}"
            )
        if int(num_items) >= 2**31:
            raise ValueError(
                f"`num_items` must be < 2**31 (items are held as int32). Received: "
                f"num_items={num_items!r}"
            )
        self.num_items = int(num_items)
        keys = users.astype(np.int64)  # the one full-size temporary
        keys *= self.num_items
        keys += items
        if len(keys) > 1 and not np.all(keys[1:] >= keys[:-1]):
            keys.sort()
        num_users = int(users.max()) + 1
        distinct = np.zeros(num_users, np.int64)  # distinct items per user
        per_user = np.zeros(num_users, np.int64)  # positives per user
        step = _SLICE  # counted in slices: no temporaries the size of the data
        for at in range(0, len(keys), step):
            part = keys[at : at + step]
            first = np.ones(len(part), bool)
            first[1:] = part[1:] != part[:-1]
            if at:
                first[0] = part[0] != keys[at - 1]
            owner = part // self.num_items
            per_user += np.bincount(owner, minlength=num_users)
            distinct += np.bincount(owner[first], minlength=num_users)
        del part, owner, first  # `part` is a view: it would keep `keys` alive
        full = np.flatnonzero(distinct >= self.num_items)
        if num_negatives and len(full):
            raise ValueError(
                f"Users {full[:5].tolist()} interacted with all {num_items} items "
                "(every item); no negatives can be drawn for them. Drop them or use "
                "num_negatives=0."
            )
        self.num_positives = len(keys)
        self.num_negatives = int(num_negatives)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.chunk_positives = self.batch_size * int(chunk_batches)
        self.rounds = int(rounds)
        self.group_negatives = bool(group_negatives)
        # Expected share of each positive's user's catalogue that is positive,
        # weighted by that user's share of the negatives (for the residual rate).
        self._density, self._per_user = distinct / self.num_items, per_user
        # Multipliers of the per-epoch affine permutation: coprime with N, spread
        # over [N/4, 3N/4) so neighbouring positions land far apart.
        rng = np.random.default_rng([self.seed, 7919])
        n = self.num_positives
        cands = rng.integers(max(1, n // 4), max(2, 3 * n // 4), 4096)
        mults = [int(a) for a in cands if np.gcd(int(a), n) == 1][:256] or [1]
        # Sorted keys -> items (int32) and per-user offsets: user u owns positions
        # [offsets[u], offsets[u + 1]). Variables, not constants: a constant
        # captured by a tf.data function is copied into the dataset's graph.
        offsets = np.zeros(num_users + 1, np.int64)
        np.cumsum(per_user, out=offsets[1:])
        items_sorted = np.empty(len(keys), np.int32)
        for at in range(0, len(keys), step):
            items_sorted[at : at + step] = keys[at : at + step] % self.num_items
        del keys
        self._offsets = tf.Variable(offsets, trainable=False, name="offsets")
        self._items = tf.Variable(items_sorted, trainable=False, name="items")
        # Bitset rows for the heaviest users, numbered in user order (so a slice
        # of the sorted items fills a contiguous run of words); built after the
        # keys are freed, so it adds nothing to the peak of the setup.
        self._words = -(-self.num_items // 32)  # int32 words per bitset row
        fit = int(float(bitset_budget) * len(items_sorted) // self._words)
        heavy = np.zeros(num_users, bool)
        heavy[np.argsort(-per_user, kind="stable")[:fit]] = True
        heavy &= per_user > 0
        rows = np.where(heavy, np.cumsum(heavy) - 1, -1)
        bits = np.zeros(int(heavy.sum()) * self._words, np.uint32)
        light = per_user[~heavy]
        self._steps = int(light.max()).bit_length() if len(light) else 0
        _fill_bitset(bits, items_sorted, offsets, rows, self._words, step)
        del items_sorted
        self._rows = self._bits = None
        if len(bits):
            self._rows = tf.Variable(rows, trainable=False, name="bitset_rows")
            self._bits = tf.Variable(bits.view(np.int32), trainable=False,
                                     name="bitset")
        self.bitset_users = int(heavy.sum())
        del bits
        self._mults = tf.constant(np.asarray(mults, np.int64))
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")

    # ---- state --------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._epoch.numpy())

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.assign(int(value))

    def __len__(self) -> int:
        return self.num_positives * (1 + self.num_negatives)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self) // self.batch_size)

    @property
    def num_chunks(self) -> int:
        return -(-self.num_positives // self.chunk_positives)

    def residual_collision_rate(self) -> float:
        """Expected fraction of negatives that are still training positives after
        ``rounds`` redraws: sum over users of (their negatives) x density^(rounds+1)."""
        w = self._per_user / self._per_user.sum()
        return float(np.sum(w * self._density ** (self.rounds + 1)))

    # ---- the graph ----------------------------------------------------------
    def _seed(self, epoch, *data):
        s = tf.constant([self.seed, 0x5EED], tf.int64)
        s = tf.random.experimental.stateless_fold_in(s, epoch)
        for d in data:
            s = tf.random.experimental.stateless_fold_in(s, d)
        return s

    def _is_positive(self, users, items):
        """Whether each (user, item) is a training positive: a bit of the user's
        bitset row, or a search in the user's slice for users without one."""
        items = tf.cast(items, tf.int32)
        if self._rows is None:
            return self._search(users, items)
        row = tf.gather(self._rows, users)
        word = tf.gather(
            self._bits,
            tf.maximum(row, 0) * self._words + tf.cast(items // 32, tf.int64),
        )
        bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(word, items % 32), 1)
        hit = tf.logical_and(row >= 0, tf.equal(bit, 1))
        if not self._steps:  # every user with positives has a row
            return hit
        light = tf.where(row < 0)[:, 0]
        found = self._search(tf.gather(users, light), tf.gather(items, light))
        return tf.tensor_scatter_nd_update(hit, light[:, None], found)

    def _search(self, users, items):
        """A lower-bound binary search, vectorised, within each user's slice of
        the sorted items (``items`` int32)."""
        lo = tf.gather(self._offsets, users)
        end = tf.gather(self._offsets, users + 1)
        hi = end
        last = self.num_positives - 1
        # The largest slice halves each step. A converged lane (lo == hi) can
        # still step to lo = hi + 1, but only where lo == end (nothing >= the
        # item in the slice), and the answer there is "not found" either way.
        for _ in range(self._steps):
            mid = (lo + hi) // 2
            less = tf.gather(self._items, tf.minimum(mid, last)) < items
            lo = tf.where(less, mid + 1, lo)
            hi = tf.where(less, hi, mid)
        found = tf.gather(self._items, tf.minimum(lo, last))
        return tf.logical_and(lo < end, tf.equal(found, items))

    def _positives(self, pos):
        """(users, items), int64, of the positives at sorted positions ``pos``."""
        users = tf.searchsorted(self._offsets[1:], pos, side="right")
        items = tf.cast(tf.gather(self._items, pos), tf.int64)
        return tf.cast(users, tf.int64), items

    def chunk(self, epoch, chunk):
        """(users, items, labels) of chunk ``chunk`` of epoch ``epoch``, shuffled."""
        epoch = tf.cast(epoch, tf.int64)
        chunk = tf.cast(chunk, tf.int64)
        n = tf.constant(self.num_positives, tf.int64)
        ni = tf.constant(self.num_items, tf.int64)
        pick = tf.random.stateless_uniform(
            [2], self._seed(epoch, 1), minval=0, maxval=2**62, dtype=tf.int64
        )
        a = tf.gather(self._mults, pick[0] % tf.size(self._mults, tf.int64))
        b = pick[1] % n
        start = chunk * self.chunk_positives
        idx = tf.range(start, tf.minimum(start + self.chunk_positives, n))
        users, items = self._positives((a * idx + b) % n)
        ones = tf.ones_like(items, tf.float32)  # the positives' labels
        if self.num_negatives:
            neg_users = tf.repeat(users, self.num_negatives)
            shape = tf.shape(neg_users)

            def draw(r, n):
                return tf.random.stateless_uniform(
                    [n], self._seed(epoch, 2, chunk, r), minval=0, maxval=ni,
                    dtype=tf.int64,
                )

            # Redraw only the negatives that hit a positive: the set shrinks
            # geometrically, so a round costs what its collisions cost.
            cand = draw(0, tf.size(neg_users))
            bad = tf.where(self._is_positive(neg_users, cand))[:, 0]

            def cond(r, cand, bad):
                return tf.logical_and(r <= self.rounds, tf.size(bad) > 0)

            def body(r, cand, bad):
                bad_users = tf.gather(neg_users, bad)
                new = draw(r, tf.size(bad))
                cand = tf.tensor_scatter_nd_update(cand, bad[:, None], new)
                still = self._is_positive(bad_users, new)
                return r + 1, cand, tf.boolean_mask(bad, still)

            _, neg_items, _ = tf.while_loop(
                cond,
                body,
                (tf.constant(1, tf.int64), cand, bad),
                shape_invariants=(
                    tf.TensorShape([]), cand.shape, tf.TensorShape([None])
                ),
            )
            users = tf.concat([users, neg_users], 0)
            items = tf.concat([items, neg_items], 0)
            labels = tf.concat(
                [ones, tf.zeros(shape, tf.float32)], 0
            )
        else:
            labels = ones
        if self.group_negatives and self.num_negatives:
            # Whole groups (a positive, then its negatives) in a shuffled order.
            m, k = tf.size(ones), self.num_negatives
            perm = tf.random.experimental.stateless_shuffle(
                tf.range(m), self._seed(epoch, 3, chunk)
            )
            order = tf.reshape(tf.concat(
                [perm[:, None], m + perm[:, None] * k + tf.range(k)[None, :]], 1
            ), [-1])
        else:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.size(users)), self._seed(epoch, 3, chunk)
            )
        return (
            tf.gather(users, order), tf.gather(items, order), tf.gather(labels, order)
        )

    def epoch_arrays(self, epoch: int):
        """The whole epoch as numpy arrays (for tests; training never builds it)."""
        parts = [self.chunk(epoch, c) for c in range(self.num_chunks)]
        return tuple(np.concatenate([p[k].numpy() for p in parts]) for k in range(3))

    def dataset(self, output_name: str = "score") -> tf.data.Dataset:
        bs = self.batch_size

        def batches(u, i, y):
            full = tf.size(u) // bs * bs

            def whole(t):
                return tf.reshape(t[:full], (-1, bs))

            def elems(u, i, y):
                return ({"user_id": u, "item_id": i}, {output_name: y})

            head = tf.data.Dataset.from_tensor_slices(
                elems(whole(u), whole(i), whole(y))
            )
            tail = tf.data.Dataset.from_tensors(
                elems(u[full:], i[full:], y[full:])
            ).filter(plain(lambda x, _: tf.size(x["user_id"]) > 0))
            return head.concatenate(tail)

        def next_epoch(_):
            return self._epoch.assign_add(1) - 1

        def chunks(e):
            return tf.data.Dataset.range(num_chunks).map(plain(lambda c: (e, c)))

        # Plain graph code: no AutoGraph conversion (which re-reads the source
        # file and so breaks when the file changes under a running process).
        plain = tf.autograph.experimental.do_not_convert
        num_chunks = self.num_chunks
        ds = (
            tf.data.Dataset.from_tensors(tf.constant(0, tf.int64))
            .map(plain(next_epoch))
            .flat_map(plain(chunks))
            .map(plain(self.chunk), num_parallel_calls=2, deterministic=True)
            .flat_map(plain(batches))
        )
        ds = ds.apply(tf.data.experimental.assert_cardinality(self.steps_per_epoch))
        return ds.prefetch(tf.data.AUTOTUNE)


def graph_implicit_dataset(
    users,
    items,
    num_items: int,
    *,
    num_negatives: int = 4,
    batch_size: int = 256,
    seed: int = 0,
    output_name: str = "score",
    chunk_batches: int = 64,
    rounds: int = 8,
    bitset_budget: float = 1.0,
    group_negatives: bool = False,
) -> tuple[tf.data.Dataset, GraphNegatives]:
    """Like :func:`implicit_dataset`, with the negatives drawn inside ``tf.data``
    (:class:`GraphNegatives`): no epoch is ever materialised, no Python runs per
    step. Pass ``SamplerEpochCallback(sampler)`` to ``fit`` (resume-safe)."""
    sampler = GraphNegatives(
        users, items, num_items, num_negatives, seed=seed, batch_size=batch_size,
        chunk_batches=chunk_batches, rounds=rounds, bitset_budget=bitset_budget,
        group_negatives=group_negatives,
    )
    return sampler.dataset(output_name), sampler
