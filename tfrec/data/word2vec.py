"""Skip-gram and CBOW training data for item2vec (word2vec over item sequences).

Items play the role of words and sequences (sessions, time-ordered user
histories, or unordered sets such as baskets) the role of sentences.

* :func:`skipgram_pairs`: (target, context) pairs. ``window=w`` pairs every item
  with the items at most ``w`` positions away in the same sequence (word2vec on
  ordered sessions); ``window=None`` treats the whole sequence as one window, so
  every other item of the set is a context (item2vec, Barkan & Koenigstein 2016).
* :func:`cbow_examples`: (context bag, target), bags padded with ``-1``.
* :func:`keep_probabilities`: frequent-item subsampling, the formula of the
  item2vec paper (Eq. 3, after Mikolov et al. 2013):
  ``P(keep i) = min(1, sqrt(t / f(i)))`` with ``f(i)`` the item's share of all
  occurrences and ``t`` the threshold.
* :func:`negative_distribution`: word2vec's noise distribution
  ``P(i) ~ count(i) ** 0.75``.
* :func:`skipgram_dataset` / :func:`cbow_dataset`: ``tf.data`` pipelines whose
  epoch ``e`` is a pure function of ``(seed, e)`` (subsampling, word2vec's
  random window shrinking, negatives and order are all redrawn per epoch), built
  by one vectorised numpy pass per epoch and batched by tf.data's C++ kernels;
  the pattern of :mod:`tfrec.data.pipelines`. Pass
  ``SamplerEpochCallback(source)`` to ``fit`` so a resumed run sees the same
  epochs. Subsampling makes the natural epoch size vary slightly; every epoch is
  cut or topped up (re-drawing its own examples) to the size of epoch 0, so the
  dataset has a fixed cardinality and ``fit`` a fixed number of steps.

Item ids here are **0-based** (``0 .. num_items - 1``), the convention of the
model zoo's embeddings (:class:`tfrec.layers.IdEmbedding`). A
:class:`tfrec.data.sessions.Sessions` numbers items ``1..n`` (0 = padding), so
:func:`as_sequences` maps Sessions index ``k`` to item2vec id ``k - 1``.

Batches are ``(features, labels)``:

* skip-gram, negative sampling: ``{"item_id": [B], "output_item_ids": [B, 1 + n]}``
  (column 0 the true context, then ``n`` noise items), labels
  ``{"logits": [B, 1 + n]}`` = ``[1, 0, ..., 0]``;
* CBOW, negative sampling: ``{"context_item_ids": [B, C], "output_item_ids":
  [B, 1 + n]}`` (column 0 the true target), same labels;
* ``loss="softmax"`` (full softmax, small catalogues): no ``output_item_ids``;
  labels ``{"logits": [B]}`` hold the true context (skip-gram) or target (CBOW).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = [
    "CbowEpochs",
    "SkipGramEpochs",
    "as_sequences",
    "cbow_dataset",
    "cbow_examples",
    "draw_negatives",
    "item_counts",
    "keep_probabilities",
    "negative_distribution",
    "skipgram_dataset",
    "skipgram_pairs",
    "subsample",
]

LOSSES = ("negative_sampling", "softmax")
# Guard against window=None on long sequences (pairs grow with length squared).
MAX_PAIRS = 200_000_000


# --------------------------------------------------------------------- inputs


def as_sequences(
    data, num_items: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validates item sequences and returns them as ``(offsets, items, num_items)``.

    Args:
        data: a :class:`tfrec.data.sessions.Sessions` (its indices ``1..n`` become
            ids ``0..n-1``), a sequence of 1-D integer arrays of 0-based ids, or a
            tuple ``(offsets, items)`` in CSR layout (sequence ``s`` is
            ``items[offsets[s]:offsets[s + 1]]``).
        num_items: catalogue size; ids must lie in ``[0, num_items)``. Default:
            ``Sessions.num_items``, else ``max(id) + 1``.

    Returns:
        int64 ``offsets`` ``[S + 1]``, int64 ``items`` and the catalogue size.

    Raises:
        ValueError: no sequences or no items, non-integer or out-of-range ids.
    """
    if (
        hasattr(data, "offsets")
        and hasattr(data, "items")
        and hasattr(data, "item_vocab")
    ):  # tfrec.data.sessions.Sessions
        offsets = np.asarray(data.offsets, np.int64)
        items = np.asarray(data.items, np.int64) - 1
        if num_items is None:
            num_items = int(data.num_items)
    elif (
        isinstance(data, tuple)
        and len(data) == 2
        and np.ndim(data[0]) == 1
        and np.ndim(data[1]) == 1
        and not isinstance(data[0], (list, tuple))
    ):
        offsets = np.asarray(data[0])
        items = np.asarray(data[1])
        for name, arr in (("offsets", offsets), ("items", items)):
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"`{name}` must hold integers. Received dtype {arr.dtype}."
                )
        offsets, items = offsets.astype(np.int64), items.astype(np.int64)
        if (
            offsets.size < 1
            or offsets[0] != 0
            or offsets[-1] != items.size
            or np.any(np.diff(offsets) < 0)
        ):
            raise ValueError(
                "`offsets` must be non-decreasing, start at 0 and end at "
                f"len(items) = {items.size}. Received {offsets[:5].tolist()}..."
            )
    else:
        seqs = list(data)
        arrays = []
        for s, seq in enumerate(seqs):
            arr = np.asarray(seq)
            if arr.ndim != 1:
                raise ValueError(
                    f"Sequence {s} must be 1-D. Received shape {arr.shape}."
                )
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"Sequence {s} must hold integer item ids. Received dtype "
                    f"{arr.dtype}."
                )
            arrays.append(arr.astype(np.int64))
        lengths = np.array([a.size for a in arrays], np.int64)
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        items = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    if offsets.size < 2 or items.size == 0:
        raise ValueError(
            f"No items to train on: received {offsets.size - 1} sequence(s) with "
            f"{items.size} item(s) in total."
        )
    if num_items is None:
        num_items = int(items.max()) + 1
    if not isinstance(num_items, (int, np.integer)) or num_items < 1:
        raise ValueError(f"`num_items` must be a positive int. Received: {num_items!r}")
    lo, hi = int(items.min()), int(items.max())
    if lo < 0 or hi >= num_items:
        raise ValueError(
            f"Item ids must be in [0, {num_items}) (0-based); found range [{lo}, {hi}]."
        )
    return offsets, items, int(num_items)


def _check_window(window) -> int | None:
    if window is None:
        return None
    if (
        isinstance(window, bool)
        or not isinstance(window, (int, np.integer))
        or window < 1
    ):
        raise ValueError(
            "`window` must be a positive int (items on each side) or None (the "
            f"whole sequence is the window). Received: window={window!r}"
        )
    return int(window)


def _token_layout(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per token: sequence index, position in its sequence, sequence length."""
    lengths = np.diff(offsets)
    seq = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    pos = np.arange(offsets[-1], dtype=np.int64) - offsets[seq]
    return seq, pos, lengths[seq]


# ------------------------------------------------------------- probabilities


def item_counts(items, num_items: int) -> np.ndarray:
    """Occurrences of each id in ``[0, num_items)`` (int64)."""
    return np.bincount(np.asarray(items, np.int64), minlength=num_items).astype(
        np.int64
    )


def keep_probabilities(counts, threshold: float | None) -> np.ndarray:
    """Probability of keeping each occurrence of an item (frequent-item subsampling).

    ``P(keep i) = min(1, sqrt(t / f(i)))``, ``f(i) = count(i) / sum(count)``: the
    item2vec paper's Eq. 3 (Mikolov et al. 2013). ``threshold=None`` keeps all.
    Items with count 0 get 1 (they never occur).
    """
    counts = np.asarray(counts, np.float64)
    if threshold is None:
        return np.ones_like(counts)
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ValueError(
            "`subsample` (threshold t) must be in (0, 1] or None. Received: "
            f"{threshold!r}"
        )
    if counts.sum() <= 0:
        raise ValueError("`counts` sum to zero: no items occur.")
    freq = counts / counts.sum()
    with np.errstate(divide="ignore"):
        keep = np.sqrt(threshold / freq)
    return np.minimum(keep, 1.0)


def negative_distribution(counts, power: float = 0.75) -> np.ndarray:
    """word2vec's noise distribution ``P(i) = count(i)**power / sum_j count(j)**power``."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() <= 0:
        raise ValueError("`counts` sum to zero: no items to draw negatives from.")
    weights = counts**power
    weights[counts == 0] = 0.0
    return weights / weights.sum()


def subsample(
    offsets, items, keep_prob, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Drops each occurrence with probability ``1 - keep_prob[item]``; the kept
    items close up in their sequence (as in word2vec)."""
    offsets = np.asarray(offsets, np.int64)
    items = np.asarray(items, np.int64)
    keep = rng.random(items.size) < np.asarray(keep_prob)[items]
    kept_before = np.r_[0, np.cumsum(keep)]
    return kept_before[offsets].astype(np.int64), items[keep]


def draw_negatives(
    probs: np.ndarray,
    positives: np.ndarray,
    num_negatives: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``[len(positives), num_negatives]`` ids drawn from ``probs``; a draw equal
    to the row's positive is redrawn (word2vec skips such draws)."""
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]

    def draw(n):
        out = np.searchsorted(cdf, rng.random(n), side="right")
        return np.minimum(out, len(cdf) - 1).astype(np.int64)

    neg = draw(positives.size * num_negatives).reshape(-1, num_negatives)
    if np.count_nonzero(probs) < 2:
        return neg  # nothing else to draw
    bad = np.flatnonzero(neg.reshape(-1) == np.repeat(positives, num_negatives))
    flat = neg.reshape(-1)
    rep = np.repeat(positives, num_negatives)
    while bad.size:
        flat[bad] = draw(bad.size)
        bad = bad[flat[bad] == rep[bad]]
    return neg


# ------------------------------------------------------------------ examples


def _window_positions(offsets, window, shrink, rng):
    """Context positions of every token (global indices), [n, 2w], -1 = none."""
    seq, pos, length = _token_layout(offsets)
    n = pos.size
    d = np.r_[np.arange(-window, 0), np.arange(1, window + 1)]  # [2w]
    ctx_pos = pos[:, None] + d[None, :]
    ok = (ctx_pos >= 0) & (ctx_pos < length[:, None])
    if shrink:
        # word2vec: each target uses a window drawn uniformly from 1..w.
        b = rng.integers(1, window + 1, n)
        ok &= np.abs(d)[None, :] <= b[:, None]
    glob = np.arange(n, dtype=np.int64)[:, None] + d[None, :]
    return np.where(ok, glob, -1)


def skipgram_pairs(
    offsets,
    items,
    window: int | None,
    *,
    shrink_window: bool = False,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(target, context) pairs of every item with its neighbours.

    Pairs come ordered by the target's position, then the context's position.

    Args:
        offsets, items: CSR sequences (see :func:`as_sequences`).
        window: items on each side (``d = 1..w``), or None for every other item of
            the same sequence (item2vec's set-as-window).
        shrink_window: draw each target's window uniformly from ``1..w`` (word2vec;
            finite windows only); needs ``rng``.
        rng: random generator for ``shrink_window``.

    Returns:
        int64 ``targets`` and ``contexts`` of equal length.
    """
    window = _check_window(window)
    offsets = np.asarray(offsets, np.int64)
    items = np.asarray(items, np.int64)
    if window is None:
        seq, pos, length = _token_layout(offsets)
        reps = length - 1
        total = int(reps.sum())
        if total > MAX_PAIRS:
            raise ValueError(
                f"window=None would make {total:,} pairs (sequences up to "
                f"{int(length.max())} items); use a finite window for long "
                "sequences."
            )
        token = np.repeat(np.arange(pos.size, dtype=np.int64), reps)
        start = np.r_[0, np.cumsum(reps)[:-1]]
        j = np.arange(total, dtype=np.int64) - np.repeat(start, reps)
        ctx_pos = np.where(j < pos[token], j, j + 1)
        ctx = offsets[seq[token]] + ctx_pos
        return items[token], items[ctx]
    if shrink_window and rng is None:
        raise ValueError("`shrink_window=True` needs a random generator `rng`.")
    ctx = _window_positions(offsets, window, shrink_window, rng)
    t, c = np.nonzero(ctx >= 0)
    return items[t], items[ctx[t, c]]


def cbow_examples(
    offsets,
    items,
    window: int | None,
    *,
    shrink_window: bool = False,
    rng: np.random.Generator | None = None,
    context_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(context bag, target) examples; bags are left-aligned, padded with ``-1``.

    Args:
        offsets, items: CSR sequences (see :func:`as_sequences`).
        window: items on each side, or None for every other item of the sequence.
        shrink_window: word2vec's random window ``1..w`` per target (needs ``rng``).
        rng: random generator for ``shrink_window``.
        context_size: bag width ``C`` (default ``2 * window``, or the longest
            sequence minus one for ``window=None``); must fit every bag.

    Returns:
        int64 ``contexts`` ``[N, C]`` and ``targets`` ``[N]``; items without any
        context (sequences of length 1) make no example.
    """
    window = _check_window(window)
    offsets = np.asarray(offsets, np.int64)
    items = np.asarray(items, np.int64)
    if window is None:
        seq, pos, length = _token_layout(offsets)
        width = int(length.max()) - 1
        if pos.size * max(width, 1) > MAX_PAIRS:
            raise ValueError(
                f"window=None would make a {pos.size:,} x {width:,} context matrix; "
                "use a finite window for long sequences."
            )
        j = np.arange(max(width, 0), dtype=np.int64)[None, :]
        ctx_pos = np.where(j < pos[:, None], j, j + 1)
        ok = j < (length - 1)[:, None]
        ctx = np.where(ok, offsets[seq][:, None] + ctx_pos, -1)
    else:
        if shrink_window and rng is None:
            raise ValueError("`shrink_window=True` needs a random generator `rng`.")
        ctx = _window_positions(offsets, window, shrink_window, rng)
        width = 2 * window
    has = (ctx >= 0).any(axis=1)
    ctx = ctx[has]
    targets_tok = np.flatnonzero(has)
    # Left-align the valid context positions of each row, keeping their order.
    valid = ctx >= 0
    order = np.argsort(~valid, axis=1, kind="stable")
    ctx = np.take_along_axis(ctx, order, axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    width = width if context_size is None else int(context_size)
    need = int(valid.sum(axis=1).max()) if valid.size else 0
    if width < need:
        raise ValueError(
            f"`context_size`={width} is smaller than the largest bag ({need} items)."
        )
    bags = np.full((ctx.shape[0], width), -1, np.int64)
    m = min(width, ctx.shape[1])
    bags[:, :m] = np.where(valid[:, :m], items[np.maximum(ctx[:, :m], 0)], -1)
    return bags, items[targets_tok]


# ------------------------------------------------------------------- epochs


class _Word2VecEpochs:
    """Shared state of the skip-gram and CBOW epoch sources."""

    input_shape: tuple = ()

    def __init__(
        self,
        data,
        num_items: int | None = None,
        *,
        window: int | None = 5,
        num_negatives: int = 15,
        subsample: float | None = 1e-3,
        power: float = 0.75,
        shrink_window: bool = True,
        loss: str = "negative_sampling",
        seed: int = 0,
    ):
        self.offsets, self.items, self.num_items = as_sequences(data, num_items)
        if np.diff(self.offsets).max() < 2:
            raise ValueError(
                "Every sequence has fewer than 2 items, so no item has a context; "
                "item2vec needs sequences of two or more items."
            )
        self.window = _check_window(window)
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}. Received: {loss!r}")
        if loss == "negative_sampling" and (
            not isinstance(num_negatives, (int, np.integer)) or num_negatives < 1
        ):
            raise ValueError(
                "`num_negatives` must be a positive int for negative sampling. "
                f"Received: {num_negatives!r}"
            )
        self.loss = loss
        self.num_negatives = int(num_negatives) if loss == "negative_sampling" else 0
        self.counts = item_counts(self.items, self.num_items)
        self.keep_prob = keep_probabilities(self.counts, subsample)
        self.noise = negative_distribution(self.counts, power)
        self.subsample_threshold = subsample
        self.shrink_window = bool(shrink_window) and self.window is not None
        self.seed = int(seed)
        self.epoch = 0
        self._size: int | None = None
        self._epoch0 = None

    def _tokens(self, rng):
        if self.subsample_threshold is None:
            return self.offsets, self.items
        return subsample(self.offsets, self.items, self.keep_prob, rng)

    def __len__(self) -> int:
        """Examples per epoch (fixed: the size of epoch 0, see :meth:`epoch_arrays`)."""
        if self._size is None:
            self._size = -1  # epoch 0 is drawn at its natural size
            self._epoch0 = self.epoch_arrays(0)
            self._size = int(self._epoch0[1].shape[0])
        return self._size

    def epoch_arrays(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, outputs) of epoch ``epoch``, shuffled, with negatives.

        Subsampling and window shrinking make the natural number of examples vary
        a little between epochs; every epoch is cut to, or topped up (by
        re-drawing its own examples) to, the size of epoch 0, so that ``fit``
        sees a fixed number of steps per epoch.
        """
        if self._size is None:
            len(self)  # fixes the epoch size (draws and caches epoch 0)
        if int(epoch) == 0 and self._epoch0 is not None:
            return self._epoch0
        rng = np.random.default_rng([self.seed, int(epoch)])
        first, positives = self._examples(rng)
        if positives.size == 0:
            raise ValueError(
                f"Epoch {epoch} has no training examples (every sequence has a single "
                "item after subsampling); use longer sequences or subsample=None."
            )
        order = rng.permutation(positives.size)
        size = self._size if self._size and self._size > 0 else positives.size
        if size > order.size:
            order = np.r_[order, rng.integers(0, positives.size, size - order.size)]
        order = order[:size]
        first, positives = first[order], positives[order]
        if self.loss == "softmax":
            return first, positives
        neg = draw_negatives(self.noise, positives, self.num_negatives, rng)
        return first, np.concatenate([positives[:, None], neg], axis=1)


class SkipGramEpochs(_Word2VecEpochs):
    """One epoch of skip-gram examples per call, a pure function of (seed, epoch).

    See :func:`skipgram_dataset` for the arguments.
    """

    input_name = "item_id"

    def _examples(self, rng):
        """(targets ``[P]``, contexts ``[P]``) before shuffling."""
        offsets, items = self._tokens(rng)
        return skipgram_pairs(
            offsets, items, self.window, shrink_window=self.shrink_window, rng=rng
        )


class CbowEpochs(_Word2VecEpochs):
    """One epoch of CBOW examples per call, a pure function of (seed, epoch).

    See :func:`cbow_dataset` for the arguments.
    """

    input_name = "context_item_ids"

    def __init__(self, data, num_items: int | None = None, **kwargs):
        super().__init__(data, num_items, **kwargs)
        if self.window is None:
            width = int(np.diff(self.offsets).max()) - 1
        else:
            width = 2 * self.window
        self.context_size = max(width, 1)
        self.input_shape = (self.context_size,)

    def _examples(self, rng):
        """(bags ``[N, C]``, targets ``[N]``) before shuffling."""
        offsets, items = self._tokens(rng)
        return cbow_examples(
            offsets,
            items,
            self.window,
            shrink_window=self.shrink_window,
            rng=rng,
            context_size=self.context_size,
        )


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(
            f"`batch_size` must be a positive int. Received: {batch_size!r}"
        )
    if batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: {batch_size!r}"
        )


def _epochs_dataset(source: _Word2VecEpochs, batch_size: int) -> tf.data.Dataset:
    """Each pass over the dataset builds the next epoch with one numpy call."""
    _check_batch_size(batch_size)
    negative = source.loss == "negative_sampling"
    width = 1 + source.num_negatives

    def next_epoch():
        epoch = source.epoch
        source.epoch += 1
        first, second = source.epoch_arrays(epoch)
        return first.astype(np.int64), second.astype(np.int64)

    def to_batches(first, second):
        first = tf.ensure_shape(first, (None, *source.input_shape))
        second = tf.ensure_shape(second, (None, width) if negative else (None,))
        ds = tf.data.Dataset.from_tensor_slices((first, second)).batch(batch_size)
        if negative:
            return ds.map(
                lambda x, out: (
                    {source.input_name: x, "output_item_ids": out},
                    {"logits": tf.one_hot(tf.zeros_like(out[:, 0]), width)},
                )
            )
        return ds.map(lambda x, y: ({source.input_name: x}, {"logits": y}))

    steps = -(-len(source) // batch_size)
    return (
        tf.data.Dataset.from_tensors(0)
        .map(lambda _: tf.numpy_function(next_epoch, [], (tf.int64, tf.int64)))
        .flat_map(to_batches)
        .apply(tf.data.experimental.assert_cardinality(steps))
        .prefetch(tf.data.AUTOTUNE)
    )


def skipgram_dataset(
    data,
    num_items: int | None = None,
    *,
    window: int | None = 5,
    num_negatives: int = 15,
    subsample: float | None = 1e-3,
    power: float = 0.75,
    shrink_window: bool = True,
    loss: str = "negative_sampling",
    batch_size: int = 1024,
    seed: int = 0,
) -> tuple[tf.data.Dataset, SkipGramEpochs]:
    """Skip-gram examples with fresh subsampling and negatives each epoch.

    Args:
        data: sequences (see :func:`as_sequences`).
        num_items: catalogue size (ids ``0..num_items-1``).
        window: items on each side, or None (the whole sequence is the window).
        num_negatives: noise items per pair (negative sampling).
        subsample: threshold ``t`` of frequent-item subsampling, or None.
        power: exponent of the noise distribution over item counts.
        shrink_window: word2vec's per-target window drawn from ``1..window``.
        loss: ``negative_sampling`` or ``softmax`` (labels only, no noise items).
        batch_size: examples per batch.
        seed: base seed; epoch ``e`` uses ``default_rng([seed, e])``.

    Returns:
        The dataset and its epoch source (pass
        ``tfrec.data.pipelines.SamplerEpochCallback(source)`` to ``fit``).

    Example:
        >>> ds, source = skipgram_dataset([[0, 1, 2], [2, 3]], window=None)
    """
    source = SkipGramEpochs(
        data,
        num_items,
        window=window,
        num_negatives=num_negatives,
        subsample=subsample,
        power=power,
        shrink_window=shrink_window,
        loss=loss,
        seed=seed,
    )
    return _epochs_dataset(source, batch_size), source


def cbow_dataset(
    data,
    num_items: int | None = None,
    *,
    window: int | None = 5,
    num_negatives: int = 15,
    subsample: float | None = 1e-3,
    power: float = 0.75,
    shrink_window: bool = True,
    loss: str = "negative_sampling",
    batch_size: int = 1024,
    seed: int = 0,
) -> tuple[tf.data.Dataset, CbowEpochs]:
    """CBOW examples (context bag -> target) with fresh sampling each epoch.

    Arguments as :func:`skipgram_dataset`; bags are ``[B, C]`` int64 padded with
    ``-1`` (``C = 2 * window``, or the longest sequence minus one for
    ``window=None``).
    """
    source = CbowEpochs(
        data,
        num_items,
        window=window,
        num_negatives=num_negatives,
        subsample=subsample,
        power=power,
        shrink_window=shrink_window,
        loss=loss,
        seed=seed,
    )
    return _epochs_dataset(source, batch_size), source
