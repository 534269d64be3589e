"""Rating-vector pipelines (CSR -> dense rows per batch) and the RecBole split."""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.data import DataError, Interactions, Split
from tfrec.data.recbole import _split_counts, k_core_filter, recbole_split
from tfrec.data.vectors import rating_vectors, split_vectors, vector_dataset

# A hand-made 4 x 5 matrix; row 2 is empty.
ROWS = np.array([3, 0, 0, 1, 3, 1], np.int64)
COLS = np.array([4, 3, 1, 0, 0, 2], np.int64)
VALS = np.array([2.0, 5.0, 3.0, 4.0, 1.0, 4.5], np.float32)
DENSE = np.array(
    [
        [0, 3, 0, 5, 0],
        [4, 0, 4.5, 0, 0],
        [0, 0, 0, 0, 0],
        [1, 0, 0, 0, 2],
    ],
    np.float32,
)


def _vectors():
    return rating_vectors(ROWS, COLS, VALS, num_rows=4, num_cols=5)


def test_csr_layout_and_dense_rows():
    v = _vectors()
    np.testing.assert_array_equal(v.indptr, [0, 2, 4, 4, 6])
    np.testing.assert_array_equal(v.indices, [1, 3, 0, 2, 0, 4])
    np.testing.assert_array_equal(v.values, [3, 5, 4, 4.5, 1, 2])
    np.testing.assert_array_equal(v.dense(), DENSE)
    np.testing.assert_array_equal(v.dense([3, 0, 3]), DENSE[[3, 0, 3]])
    np.testing.assert_array_equal(v.row_counts(), [2, 2, 0, 2])
    np.testing.assert_array_equal(v.col_counts(), [2, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"Row ids must be in \[0, 4\)"):
        v.dense([4])


def _collect(ds):
    feats, targets, masks, ids = [], [], [], []
    for x, y in ds:
        feats.append(x["ratings"].numpy())
        targets.append(y["target"].numpy())
        masks.append(y["mask"].numpy())
        if "user_id" in x:
            ids.append(x["user_id"].numpy())
    ids = np.concatenate(ids) if ids else None
    return np.concatenate(feats), np.concatenate(targets), np.concatenate(masks), ids


def test_vector_dataset_densifies_each_batch_and_drops_empty_rows():
    ds = vector_dataset(_vectors(), batch_size=2, shuffle=False, row_id_name="user_id")
    shapes = [x["ratings"].shape for x, _ in ds]
    assert shapes == [(2, 5), (1, 5)]  # 3 non-empty rows in batches of 2
    x, t, m, ids = _collect(ds)
    np.testing.assert_array_equal(ids, [0, 1, 3])
    np.testing.assert_array_equal(x, DENSE[[0, 1, 3]])
    np.testing.assert_array_equal(t, x)
    np.testing.assert_array_equal(m, (DENSE[[0, 1, 3]] != 0).astype(np.float32))


def test_vector_dataset_keeps_empty_rows_on_request_and_restricts_rows():
    ds = vector_dataset(_vectors(), batch_size=8, shuffle=False, drop_empty=False)
    x, _, m, _ = _collect(ds)
    np.testing.assert_array_equal(x, DENSE)
    assert m[2].sum() == 0
    x, _, _, _ = _collect(
        vector_dataset(_vectors(), batch_size=8, shuffle=False, rows=[3, 1])
    )
    np.testing.assert_array_equal(x, DENSE[[3, 1]])


def test_vector_dataset_reshuffles_every_epoch_and_is_seeded():
    rows = np.repeat(np.arange(40), 2)
    cols = np.tile([0, 1], 40)
    vals = np.repeat(np.arange(1, 41), 2).astype(np.float32)
    v = rating_vectors(rows, cols, vals, num_rows=40, num_cols=2)

    def orders(seed):
        ds = vector_dataset(v, batch_size=7, seed=seed, row_id_name="user_id")
        return [_collect(ds)[3] for _ in range(2)]

    a1, a2 = orders(3)
    b1, _ = orders(3)
    np.testing.assert_array_equal(a1, b1)  # same seed, same first epoch
    assert not np.array_equal(a1, a2)  # a new order in the next epoch
    np.testing.assert_array_equal(np.sort(a1), np.arange(40))
    x, _, _, ids = _collect(vector_dataset(v, batch_size=7, seed=3, row_id_name="u"))
    assert ids is None  # the row id key is the requested one, not "user_id"


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([np.nan, 1, 1, 1, 1, 1], "NaN or infinite"),
        ([1, 1, np.inf, 1, 1, 1], "NaN or infinite"),
        ([1, 0, 1, 1, 1, 1], "Rating 0 at position 1"),
    ],
)
def test_bad_values_raise(values, match):
    with pytest.raises(DataError, match=match):
        rating_vectors(ROWS, COLS, values, num_rows=4, num_cols=5)


def test_bad_indices_and_duplicates_raise():
    with pytest.raises(DataError, match=r"column index 5 outside \[0, 5\)"):
        rating_vectors(ROWS, COLS + 1, VALS, num_rows=4, num_cols=5)
    with pytest.raises(DataError, match=r"row index -1 outside"):
        rating_vectors(ROWS - 1, COLS, VALS, num_rows=4, num_cols=5)
    with pytest.raises(ValueError, match="integer row indices"):
        rating_vectors(ROWS.astype(float), COLS, VALS, num_rows=4, num_cols=5)
    with pytest.raises(DataError, match=r"duplicate \(row, column\) pair.*\(0, 1\)"):
        rating_vectors([0, 0], [1, 1], [1.0, 2.0], num_rows=1, num_cols=2)
    with pytest.raises(ValueError, match="same length"):
        rating_vectors(ROWS, COLS, VALS[:3], num_rows=4, num_cols=5)
    with pytest.raises(ValueError, match="num_cols"):
        rating_vectors(ROWS, COLS, VALS, num_rows=4, num_cols=0)
    with pytest.raises(ValueError, match="batch_size"):
        vector_dataset(_vectors(), batch_size=0)


def _tiny_split():
    train = {
        "user_id": np.array([0, 0, 1, 2, 2], np.int64),
        "item_id": np.array([1, 2, 0, 2, 2], np.int64),
        "rating": np.array([4, 2, 5, 3, 3], np.float32),
    }
    test = {k: v[:1] for k, v in train.items()}
    return Split(
        name="tiny",
        num_users=3,
        num_items=4,
        train=train,
        test=test,
        user_ids=np.arange(3),
        item_ids=np.arange(4),
    )


def test_split_vectors_orientations_and_implicit():
    split = _tiny_split()
    with pytest.raises(DataError, match="duplicate"):
        split_vectors(split, by="item")  # (2, 2) twice: ratings must be unique
    split.train = {k: v[:4] for k, v in split.train.items()}
    by_item = split_vectors(split, by="item").dense()
    by_user = split_vectors(split, by="user").dense()
    assert by_item.shape == (4, 3) and by_user.shape == (3, 4)
    np.testing.assert_array_equal(by_item, by_user.T)
    assert by_user[0, 1] == 4 and by_user[1, 0] == 5 and by_user[2, 2] == 3
    split2 = _tiny_split()
    ones = split_vectors(split2, by="user", implicit=True).dense()
    np.testing.assert_array_equal(ones, (by_user != 0).astype(np.float32))
    with pytest.raises(ValueError, match="has no part 'valid'"):
        split_vectors(split, part="valid")
    with pytest.raises(ValueError, match="`by` must be one of"):
        split_vectors(split, by="users")


def test_recbole_counts_follow_split_by_ratio():
    counts = _split_counts(np.array([10, 19, 3, 1]), (0.8, 0.1, 0.1))
    np.testing.assert_array_equal(counts, [[8, 1, 1], [17, 1, 1], [1, 1, 1], [1, 0, 0]])


def test_k_core_is_iterative():
    # Item 9 has 2 users; removing it leaves user 1 with one item, then item 0 with
    # one user, and so on: only the 2 x 2 block {users 2, 3} x {items 5, 6} survives.
    user = np.array([1, 1, 2, 2, 3, 3, 4], np.int64)
    item = np.array([9, 0, 5, 6, 5, 6, 9], np.int64)
    keep = k_core_filter(user, item, min_user=2, min_item=2)
    np.testing.assert_array_equal(keep, [False, False, True, True, True, True, False])


def test_recbole_split_filters_and_partitions(rng):
    n_users, n_items, n = 60, 40, 2500
    user = rng.integers(0, n_users, n)
    item = rng.integers(0, n_items, n)
    rating = rng.integers(1, 6, n).astype(np.float32)
    inter = Interactions("synthetic", user, item, rating, None)
    split = recbole_split(inter, min_rating=3, core=5, seed=1)
    parts = [split.train, split.valid, split.test]
    keys = [p["user_id"] * split.num_items + p["item_id"] for p in parts]
    allkeys = np.concatenate(keys)
    assert np.unique(allkeys).size == allkeys.size  # disjoint, no repeats
    kept = rating >= 3
    pairs = {(int(u), int(i)) for u, i in zip(user[kept], item[kept], strict=True)}
    got = {
        (int(split.user_ids[u]), int(split.item_ids[i]))
        for u, i in zip(
            allkeys // split.num_items, allkeys % split.num_items, strict=True
        )
    }
    assert got <= pairs
    per_user = np.bincount(allkeys // split.num_items, minlength=split.num_users)
    per_item = np.bincount(allkeys % split.num_items, minlength=split.num_items)
    assert per_user.min() >= 5 and per_item.min() >= 5
    expected = _split_counts(per_user, (0.8, 0.1, 0.1))
    for j, k in enumerate(keys):
        np.testing.assert_array_equal(
            np.bincount(k // split.num_items, minlength=split.num_users),
            expected[:, j],
        )
    assert all(np.all(p["rating"] == 1) for p in parts)
    again = recbole_split(inter, min_rating=3, core=5, seed=1)
    np.testing.assert_array_equal(again.test["item_id"], split.test["item_id"])
    other = recbole_split(inter, min_rating=3, core=5, seed=2)
    assert not np.array_equal(other.test["item_id"], split.test["item_id"])
    with pytest.raises(DataError, match="survive"):
        recbole_split(inter, core=1000)
