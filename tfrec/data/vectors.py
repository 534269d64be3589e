"""Rating-vector pipelines for autoencoder recommenders (AutoRec, CDAE).

An autoencoder recommender reads one *vector* per user or per item: row ``r`` of the
rating matrix, with ``0`` marking "not observed". The matrix is kept sparse
(:class:`RatingVectors`, CSR: row pointer, column indices, values); dense rows are
built only one batch at a time, inside the ``tf.data`` graph
(:func:`vector_dataset`), so a 6,040 x 3,706 MovieLens-1M matrix never sits in
memory densely.

Orientation:

* ``by="item"`` (I-AutoRec): one row per item, columns are users;
* ``by="user"`` (U-AutoRec, CDAE): one row per user, columns are items.

Batches are ``(features, labels)`` with ``features = {input_name: float32 [b, n]}``
(plus ``row_id_name: int64 [b]`` when asked, e.g. CDAE's ``user_id``) and
``labels = {"target": float32 [b, n], "mask": float32 [b, n]}``: the target is the
same dense row, the mask is 1 where a rating was observed. A training wrapper
(:class:`tfrec.recipes.autoencoders.ReconstructionTrainer`) turns these into a loss
on observed entries only.

:func:`vector_dataset` reshuffles with ``tf.data``'s own seeded shuffle (each new
iterator continues the sequence); :func:`epoch_vector_dataset` draws epoch ``e``'s
row order from ``(seed, e)`` alone, so a run resumed at epoch ``e`` sees the same
batches as an uninterrupted one (the recipes use it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfrec.data.datasets import DataError

__all__ = [
    "RatingVectors",
    "VectorEpochs",
    "epoch_vector_dataset",
    "rating_vectors",
    "split_vectors",
    "vector_dataset",
]

_BY = ("item", "user")


@dataclass(frozen=True)
class RatingVectors:
    """A sparse rating matrix in CSR form (build with :func:`rating_vectors`).

    Args:
        indptr: int64 ``[num_rows + 1]``; row r's entries are
            ``indptr[r]:indptr[r + 1]``.
        indices: int64 column of each entry, ascending within a row.
        values: float32 value of each entry (never 0: 0 means unobserved).
        num_cols: length of every dense row.
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    num_cols: int

    @property
    def num_rows(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def row_counts(self) -> np.ndarray:
        """Number of observed entries of each row, int64 ``[num_rows]``."""
        return np.diff(self.indptr)

    def col_counts(self) -> np.ndarray:
        """Number of observed entries of each column, int64 ``[num_cols]``."""
        return np.bincount(self.indices, minlength=self.num_cols)

    def dense(self, rows=None) -> np.ndarray:
        """Dense float32 ``[len(rows), num_cols]`` of the given rows (all by default)."""
        rows = (
            np.arange(self.num_rows)
            if rows is None
            else np.asarray(rows, dtype=np.int64).reshape(-1)
        )
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise ValueError(
                f"Row ids must be in [0, {self.num_rows}). Received range "
                f"[{rows.min()}, {rows.max()}]."
            )
        out = np.zeros((rows.size, self.num_cols), dtype=np.float32)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        which = np.repeat(np.arange(rows.size), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(
            np.cumsum(lengths) - lengths, lengths
        )
        pos = np.repeat(starts, lengths) + offsets
        out[which, self.indices[pos]] = self.values[pos]
        return out


def _int_ids(x, name: str, size: int, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D. Received shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"`{name}` must hold integer {what} indices. Received dtype {arr.dtype}."
        )
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)]
        raise DataError(
            f"`{name}` holds {what} index {int(bad[0])} outside [0, {size}) "
            f"({bad.size} such entries); {what} indices must come from the split's "
            "vocabulary."
        )
    return arr


def rating_vectors(
    rows, cols, values, *, num_rows: int, num_cols: int
) -> RatingVectors:
    """Builds a :class:`RatingVectors` from (row, column, value) triples.

    Args:
        rows: row index of each rating (item index for I-AutoRec vectors).
        cols: column index of each rating.
        values: the ratings; must be finite and non-zero (0 means unobserved).
        num_rows: number of rows (rows without ratings are all-zero vectors).
        num_cols: length of each vector.

    Returns:
        The CSR matrix, columns sorted within each row.

    Raises:
        DataError: NaN/infinite or zero values, indices out of range, or a
            (row, column) pair given twice.
    """
    for name, v in (("num_rows", num_rows), ("num_cols", num_cols)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={v!r}")
    r = _int_ids(rows, "rows", int(num_rows), "row")
    c = _int_ids(cols, "cols", int(num_cols), "column")
    v = np.asarray(values, dtype=np.float32)
    if not r.shape == c.shape == v.shape:
        raise ValueError(
            "`rows`, `cols` and `values` must have the same length. Received shapes "
            f"{r.shape}, {c.shape}, {np.shape(values)}."
        )
    bad = ~np.isfinite(v)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"{int(bad.sum())} rating(s) are NaN or infinite, first at position {k} "
            f"(row {r[k]}, column {c[k]}, value {v[k]}); ratings must be finite."
        )
    if (v == 0).any():
        k = int(np.argmax(v == 0))
        raise DataError(
            f"Rating 0 at position {k} (row {r[k]}, column {c[k]}): in a rating "
            "vector 0 means 'not observed'. Shift the rating scale so every observed "
            "rating is non-zero."
        )
    keys = r * int(num_cols) + c
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    dup = np.flatnonzero(keys[1:] == keys[:-1])
    if dup.size:
        k = keys[dup[0]]
        raise DataError(
            f"{dup.size} duplicate (row, column) pair(s), first ({k // num_cols}, "
            f"{k % num_cols}); each rating vector entry must be given once."
        )
    indptr = np.zeros(int(num_rows) + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=int(num_rows)), out=indptr[1:])
    return RatingVectors(
        indptr=indptr,
        indices=c[order],
        values=v[order],
        num_cols=int(num_cols),
    )


def split_vectors(
    split, *, by: str = "item", part: str = "train", implicit: bool = False
) -> RatingVectors:
    """Rating vectors of one part of a :class:`tfrec.data.Split`.

    Args:
        split: the split.
        by: ``"item"`` (rows are items, columns users: I-AutoRec) or ``"user"``
            (rows are users, columns items: U-AutoRec, CDAE).
        part: ``"train"``, ``"valid"`` or ``"test"``.
        implicit: replace every rating by 1 (CDAE's implicit feedback); repeated
            (user, item) pairs are then merged.

    Returns:
        A :class:`RatingVectors` with ``split.num_items`` (or ``num_users``) rows.
    """
    if by not in _BY:
        raise ValueError(f"`by` must be one of {_BY}. Received: by={by!r}")
    data = getattr(split, part, None) if isinstance(part, str) else None
    if data is None:
        raise ValueError(
            f"Split {split.name!r} has no part {part!r}; use 'train', 'valid' or "
            "'test' (valid only when the split has one)."
        )
    users, items = data["user_id"], data["item_id"]
    values = np.asarray(data["rating"], np.float32)
    if implicit:
        keys = np.unique(np.asarray(users, np.int64) * split.num_items + items)
        users, items = keys // split.num_items, keys % split.num_items
        values = np.ones(keys.size, np.float32)
    if by == "item":
        return rating_vectors(
            items, users, values, num_rows=split.num_items, num_cols=split.num_users
        )
    return rating_vectors(
        users, items, values, num_rows=split.num_users, num_cols=split.num_items
    )


def vector_dataset(
    vectors: RatingVectors,
    *,
    batch_size: int = 256,
    shuffle: bool = True,
    seed: int = 0,
    input_name: str = "ratings",
    row_id_name: str | None = None,
    rows=None,
    drop_empty: bool = True,
) -> tf.data.Dataset:
    """Batches of dense rating vectors, densified per batch inside ``tf.data``.

    The CSR rows are held as a ragged tensor; each batch of rows is scattered into a
    dense ``[b, num_cols]`` block (``tf.scatter_nd``) in the input pipeline.

    Args:
        vectors: the sparse matrix.
        batch_size: rows per batch.
        shuffle: reshuffle the rows every epoch (seeded).
        seed: shuffle seed.
        input_name: feature key of the dense row (the model's input name).
        row_id_name: if set, the row index is also a feature under this key
            (CDAE's ``user_id``).
        rows: restrict to these row indices (default all).
        drop_empty: skip rows without any observed entry (they carry no loss).

    Returns:
        A ``tf.data.Dataset`` of ``(features, {"target", "mask"})``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(
            f"`batch_size` must be a positive int. Received: {batch_size!r}"
        )
    if batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: {batch_size!r}"
        )
    row_ids = (
        np.arange(vectors.num_rows, dtype=np.int64)
        if rows is None
        else _int_ids(rows, "rows", vectors.num_rows, "row")
    )
    if drop_empty:
        row_ids = row_ids[vectors.row_counts()[row_ids] > 0]
    if row_ids.size == 0:
        raise ValueError("No rating vector has an observed entry; nothing to train on.")
    starts, ends = vectors.indptr[row_ids], vectors.indptr[row_ids + 1]
    lengths = ends - starts
    offsets = np.arange(lengths.sum()) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    pos = np.repeat(starts, lengths) + offsets
    cols = tf.RaggedTensor.from_row_lengths(vectors.indices[pos], lengths)
    vals = tf.RaggedTensor.from_row_lengths(vectors.values[pos], lengths)
    num_cols = vectors.num_cols

    ds = tf.data.Dataset.from_tensor_slices((row_ids, cols, vals))
    if shuffle:
        ds = ds.shuffle(row_ids.size, seed=seed, reshuffle_each_iteration=True)
    ds = ds.ragged_batch(int(batch_size))

    def densify(ids, c, v):
        coords = tf.stack([c.value_rowids(), c.flat_values], axis=1)
        shape = tf.stack([tf.shape(ids, out_type=tf.int64)[0], num_cols])
        dense = tf.scatter_nd(coords, v.flat_values, shape)
        mask = tf.scatter_nd(coords, tf.ones_like(v.flat_values), shape)
        features = {input_name: dense}
        if row_id_name:
            features[row_id_name] = ids
        return features, {"target": dense, "mask": mask}

    return ds.map(densify, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


class VectorEpochs:
    """The row order of each epoch, a function of ``(seed, epoch)`` only.

    ``epoch`` is the epoch the next pass over the dataset draws; a
    ``tfrec.data.pipelines.SamplerEpochCallback`` sets it when ``fit`` starts an
    epoch (so resuming at epoch ``e`` draws epoch ``e``'s order), and each pass
    advances it by one otherwise.
    """

    def __init__(self, row_ids: np.ndarray, *, seed: int = 0, shuffle: bool = True):
        self.row_ids = np.asarray(row_ids, np.int64)
        self.seed, self.shuffle, self.epoch = int(seed), bool(shuffle), 0

    def __len__(self) -> int:
        return int(self.row_ids.size)

    def epoch_positions(self, epoch: int) -> np.ndarray:
        """Positions into ``row_ids`` in epoch ``epoch``'s order."""
        if not self.shuffle:
            return np.arange(len(self), dtype=np.int64)
        rng = np.random.default_rng([self.seed, int(epoch)])
        return rng.permutation(len(self)).astype(np.int64)


def epoch_vector_dataset(
    vectors: RatingVectors,
    *,
    batch_size: int = 256,
    shuffle: bool = True,
    seed: int = 0,
    input_name: str = "ratings",
    row_id_name: str | None = None,
    drop_empty: bool = True,
) -> tuple[tf.data.Dataset, VectorEpochs]:
    """Like :func:`vector_dataset`, with each epoch's order drawn from (seed, epoch).

    Returns:
        ``(dataset, source)``: batches of ``(features, {"target", "mask"})`` and
        the :class:`VectorEpochs` behind them; pass
        ``SamplerEpochCallback(source)`` to ``fit`` so epoch ``e`` always gets
        the order of epoch ``e``.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be a positive int. Received: {batch_size!r}"
        )
    row_ids = np.arange(vectors.num_rows, dtype=np.int64)
    if drop_empty:
        row_ids = row_ids[vectors.row_counts() > 0]
    if row_ids.size == 0:
        raise ValueError("No rating vector has an observed entry; nothing to train on.")
    source = VectorEpochs(row_ids, seed=seed, shuffle=shuffle)
    starts, ends = vectors.indptr[row_ids], vectors.indptr[row_ids + 1]
    lengths = ends - starts
    offsets = np.arange(lengths.sum()) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    pos = np.repeat(starts, lengths) + offsets
    ids_t = tf.constant(row_ids)
    cols = tf.RaggedTensor.from_row_lengths(vectors.indices[pos], lengths)
    vals = tf.RaggedTensor.from_row_lengths(vectors.values[pos], lengths)
    num_cols = vectors.num_cols

    def next_epoch():
        epoch = source.epoch
        source.epoch += 1
        return source.epoch_positions(epoch)

    def densify(p):
        ids = tf.gather(ids_t, p)
        c, v = tf.gather(cols, p), tf.gather(vals, p)
        coords = tf.stack([c.value_rowids(), c.flat_values], axis=1)
        shape = tf.stack([tf.shape(ids, out_type=tf.int64)[0], num_cols])
        dense = tf.scatter_nd(coords, v.flat_values, shape)
        mask = tf.scatter_nd(coords, tf.ones_like(v.flat_values), shape)
        features = {input_name: dense}
        if row_id_name:
            features[row_id_name] = ids
        return features, {"target": dense, "mask": mask}

    ds = (
        tf.data.Dataset.from_tensors(0)
        .map(lambda _: tf.numpy_function(next_epoch, [], tf.int64))
        .flat_map(
            lambda p: tf.data.Dataset.from_tensor_slices(
                tf.ensure_shape(p, (None,))
            ).batch(int(batch_size))
        )
        .map(densify, num_parallel_calls=tf.data.AUTOTUNE)
    )
    steps = -(-row_ids.size // int(batch_size))
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(tf.data.AUTOTUNE), source
