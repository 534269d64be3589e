"""Tests for tfrec.data.splits."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tfrec.data import (
    DataError,
    Interactions,
    leave_one_out,
    load_split,
    ncf_split,
    ncf_validation,
    random_split,
)


def _toy() -> Interactions:
    # user 10: items 100(t1) 101(t5) 102(t3) 103(t5, later row) 104(t2)
    #   -> latest 103 (tie with 101 broken by row order), second latest 101
    # user 20: items 105(t9) 100(t7) 106(t8) -> test 105, valid 106
    # user 30: two interactions only -> dropped with min_interactions=3
    # users 50 and 60 train on the items the others hold out (a held-out item
    # must have a training row), and hold out 102/100 and 100/104.
    rows = [
        (10, 100, 1.0, 1),
        (20, 105, 5.0, 9),
        (10, 101, 2.0, 5),
        (30, 107, 3.0, 1),
        (10, 102, 3.0, 3),
        (20, 100, 4.0, 7),
        (10, 103, 4.0, 5),
        (30, 108, 3.0, 2),
        (10, 104, 5.0, 2),
        (20, 106, 1.0, 8),
        (40, 109, 2.0, 1),
        (40, 110, 2.0, 2),
        (40, 111, 2.0, 3),
        (40, 112, 2.0, 4),
        (50, 101, 3.0, 1),
        (50, 103, 3.0, 2),
        (50, 105, 3.0, 3),
        (50, 100, 3.0, 4),
        (50, 102, 3.0, 5),
        (60, 106, 3.0, 1),
        (60, 111, 3.0, 2),
        (60, 112, 3.0, 3),
        (60, 104, 3.0, 4),
        (60, 100, 3.0, 5),
    ]
    u, i, r, t = map(np.array, zip(*rows, strict=True))
    return Interactions(
        name="toy",
        user=u.astype(np.int64),
        item=i.astype(np.int64),
        rating=r.astype(np.float32),
        timestamp=t.astype(np.int64),
        item_names={100: "a", 105: "f"},
    )


def _raw(split, part, key):
    ids = split.user_ids if key == "user_id" else split.item_ids
    return ids[part[key]].tolist()


def test_leave_one_out_holds_out_latest():
    s = leave_one_out(_toy(), num_negatives=3, seed=1)
    np.testing.assert_array_equal(s.user_ids, [10, 20, 40, 50, 60])
    np.testing.assert_array_equal(
        s.item_ids, [100, 101, 102, 103, 104, 105, 106, 109, 110, 111, 112]
    )
    assert (s.num_users, s.num_items) == (5, 11)
    assert _raw(s, s.test, "user_id") == [10, 20, 40, 50, 60]
    assert _raw(s, s.test, "item_id") == [103, 105, 112, 102, 100]
    assert _raw(s, s.valid, "item_id") == [101, 106, 111, 100, 104]
    np.testing.assert_array_equal(s.test["rating"], np.float32([4, 5, 2, 3, 3]))
    train = sorted(
        zip(_raw(s, s.train, "user_id"), _raw(s, s.train, "item_id"), strict=True)
    )
    assert train == [
        (10, 100), (10, 102), (10, 104), (20, 100), (40, 109), (40, 110),
        (50, 101), (50, 103), (50, 105), (60, 106), (60, 111), (60, 112),
    ]
    assert not any(s.dropped.values())
    assert s.train["user_id"].dtype == np.int64
    assert s.train["rating"].dtype == np.float32
    assert set(s.train) == {"user_id", "item_id", "rating"}
    assert s.item_names[0] == "a" and s.item_names[5] == "f" and s.item_names[1] == ""


def test_leave_one_out_negatives_unseen_distinct_and_seeded():
    inter = _toy()
    s = leave_one_out(inter, num_negatives=4, seed=3)
    assert s.test_negatives.shape == (5, 4) and s.valid_negatives.shape == (5, 4)
    assert s.test_negatives.dtype == np.int64
    seen = {}
    for part in (s.train, s.valid, s.test):
        for u, i in zip(part["user_id"], part["item_id"], strict=True):
            seen.setdefault(int(u), set()).add(int(i))
    for part, neg in ((s.test, s.test_negatives), (s.valid, s.valid_negatives)):
        for u, row in zip(part["user_id"], neg, strict=True):
            assert len(set(row.tolist())) == 4
            assert not set(row.tolist()) & seen[int(u)]
            assert ((row >= 0) & (row < s.num_items)).all()
    again = leave_one_out(inter, num_negatives=4, seed=3)
    np.testing.assert_array_equal(again.test_negatives, s.test_negatives)
    np.testing.assert_array_equal(again.valid_negatives, s.valid_negatives)
    other = leave_one_out(inter, num_negatives=4, seed=4)
    assert not np.array_equal(other.test_negatives, s.test_negatives)


def test_negatives_uniform_and_exact_when_crowded():
    # User 10 saw 5 of 11 items: its 6 unseen items must all be returned.
    s = leave_one_out(_toy(), num_negatives=6, seed=0)
    assert sorted(s.test_negatives[0].tolist()) == [5, 6, 7, 8, 9, 10]
    with pytest.raises(ValueError, match="num_negatives"):
        leave_one_out(_toy(), num_negatives=7)
    # Roughly uniform over a user's unseen items.
    rng = np.random.default_rng(0)
    n = 2000
    inter = Interactions(
        name="u",
        user=np.repeat(np.arange(n), 3),
        item=np.tile([0, 1, 2], n),
        rating=np.ones(3 * n, np.float32),
        timestamp=rng.integers(0, 10, 3 * n),
    )
    inter.user = np.r_[inter.user, -1, -1, -1, -1]
    inter.item = np.r_[inter.item, 3, 4, 5, 6]
    inter.rating = np.r_[inter.rating, np.ones(4, np.float32)]
    inter.timestamp = np.r_[inter.timestamp, 0, 1, 2, 3]
    s = leave_one_out(inter, num_negatives=2, validation=False, seed=0)
    # User -1's test item 6 has no training row: dropped, and out of the
    # vocabulary, so the negatives are uniform over items 3, 4, 5.
    assert s.dropped["test_unknown_item"] == 1 and s.num_items == 6
    counts = np.bincount(s.test_negatives.ravel(), minlength=6)
    assert counts[:3].sum() == 0
    np.testing.assert_allclose(counts[3:] / (2 * n), 1 / 3, atol=0.03)


def test_leave_one_out_without_validation_and_errors():
    s = leave_one_out(_toy(), num_negatives=0, validation=False, min_interactions=2)
    assert s.valid is None and s.test_negatives is None
    # User 30's test item 108 has no training row: dropped and counted.
    assert _raw(s, s.test, "user_id") == [10, 20, 40, 50, 60]
    assert s.dropped["test_unknown_item"] == 1
    assert len(s.train["user_id"]) == 24 - 6
    inter = _toy()
    inter.timestamp = None
    with pytest.raises(DataError, match="random_split"):
        leave_one_out(inter)
    with pytest.raises(ValueError, match="min_interactions"):
        leave_one_out(_toy(), min_interactions=2)


def test_encode_users_and_items():
    s = leave_one_out(_toy(), num_negatives=1)
    np.testing.assert_array_equal(s.encode_users([40, 10]), [2, 0])
    np.testing.assert_array_equal(s.encode_items([112, 100]), [10, 0])
    with pytest.raises(DataError, match=r"2 unknown raw user id.*\[30, 999\]"):
        s.encode_users([10, 999, 30])
    with pytest.raises(DataError, match=r"unknown raw item id.*\[107\]"):
        s.encode_items([107])


def test_train_csr_matches_rows():
    s = leave_one_out(_toy(), num_negatives=1)
    indptr, indices = s.train_csr()
    assert indptr.shape == (s.num_users + 1,) and indptr[-1] == indices.size
    for u in range(s.num_users):
        expected = sorted(set(s.train["item_id"][s.train["user_id"] == u].tolist()))
        assert indices[indptr[u] : indptr[u + 1]].tolist() == expected
    assert s.train_csr()[0] is indptr  # cached


def test_random_split_fractions_and_disjoint():
    n = 1000
    rng = np.random.default_rng(0)
    pairs = rng.choice(50 * 80, size=n, replace=False)  # no repeated pair
    inter = Interactions(
        name="r",
        user=pairs // 80,
        item=pairs % 80 + 1000,
        rating=np.arange(n, dtype=np.float32),  # row id, to track rows
        timestamp=None,
    )
    s = random_split(inter, test_fraction=0.2, valid_fraction=0.1, seed=7)
    sizes = [len(p["rating"]) for p in (s.train, s.valid, s.test)]
    assert sizes == [700, 100, 200]
    assert not any(s.dropped.values())
    rows = np.concatenate([p["rating"] for p in (s.train, s.valid, s.test)])
    np.testing.assert_array_equal(np.sort(rows), np.arange(n))  # disjoint + complete
    for p in (s.train, s.valid, s.test):
        r = p["rating"].astype(int)
        np.testing.assert_array_equal(s.user_ids[p["user_id"]], inter.user[r])
        np.testing.assert_array_equal(s.item_ids[p["item_id"]], inter.item[r])
    assert s.num_users == np.unique(inter.user).size
    assert random_split(inter, seed=7).valid is None
    again = random_split(inter, test_fraction=0.2, valid_fraction=0.1, seed=7)
    np.testing.assert_array_equal(again.test["rating"], s.test["rating"])
    with pytest.raises(ValueError, match="valid_fraction"):
        random_split(inter, test_fraction=0.6, valid_fraction=0.5)


# ------------------------------------------------------------------ NCF


def _ncf_dir(tmp_path, negative_lines):
    root = tmp_path / "ncf"
    root.mkdir()
    # Each test item (3, 4) has a train row of the other user.
    (root / "ml-1m.train.rating").write_text(
        "0\t1\t5\t10\n0\t2\t3\t11\n1\t0\t4\t12\n1\t3\t4\t13\n0\t4\t2\t14\n"
    )
    (root / "ml-1m.test.rating").write_text("0\t3\t4\t20\n1\t4\t2\t21\n")
    (root / "ml-1m.test.negative").write_text("\n".join(negative_lines) + "\n")
    return root


def test_ncf_split_tiny(tmp_path, unverified):
    root = _ncf_dir(tmp_path, ["(0,3)\t5\t6", "(1,4)\t1\t6"])
    s = ncf_split(root, download=False)
    assert (s.num_users, s.num_items) == (2, 7)
    np.testing.assert_array_equal(s.test_negatives, [[5, 6], [1, 6]])
    np.testing.assert_array_equal(s.test["item_id"], [3, 4])
    np.testing.assert_array_equal(s.item_ids, np.arange(7))
    assert s.valid is None and len(s.train["user_id"]) == 5
    # Items 5 and 6 have no train row: kept as published negatives, counted.
    assert s.dropped["negatives_untrained"] == 3 and s.dropped["test_unknown_item"] == 0


@pytest.mark.parametrize(
    "lines, pattern",
    [
        (
            ["(0,3)\t4\t5", "(1,5)\t1\t6"],
            r"line 2: header \(1,5\) does not match.*\(1,4\)",
        ),
        (["(0,3)\t4\t5", "1,4\t1\t6"], r"line 2: first field must be '\(user,item\)'"),
        (["(0,3)\t4\t5"], r"expected 2 lines"),
        (["(0,3)\t4\t5", "(1,4)\t1"], r"line 2: expected 2 tab-separated negative"),
        (
            ["(0,3)\t4\t5", "(1,4)\t1\tx"],
            r"line 2: negative item id must be an integer",
        ),
    ],
)
def test_ncf_negatives_errors(tmp_path, lines, pattern, unverified):
    root = _ncf_dir(tmp_path, lines)
    with pytest.raises(DataError, match=pattern) as e:
        ncf_split(root, download=False)
    assert "ml-1m.test.negative" in str(e.value)


def test_ncf_split_real(shared_data):
    start = time.perf_counter()
    s = ncf_split(shared_data / "ncf-ml-1m", download=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert (s.num_users, s.num_items) == (6040, 3706)
    np.testing.assert_array_equal(s.item_ids, np.arange(3706))  # indices are ids
    assert len(s.train["user_id"]) == 994_169
    # The reconstructed train file lacks 2 test items: those 2 test lines are
    # dropped (with their negatives) and counted; 340 negative slots name them.
    assert s.dropped == {
        "test_unknown_user": 0,
        "test_unknown_item": 2,
        "duplicates_merged": 0,
        "negatives_untrained": 340,
    }
    assert "2 test rows (item not in training)" in s.describe()
    assert len(s.test["user_id"]) == 6038
    assert s.test_negatives.shape == (6038, 99)
    assert np.isin(s.test["item_id"], s.train["item_id"]).all()
    # The documented quirk of the published file.
    dup = (s.test_negatives == s.test["item_id"][:, None]).any(axis=1)
    assert int(dup.sum()) == 156
    indptr, indices = s.train_csr()
    assert indptr[-1] == 994_169 and indptr[1] - indptr[0] == 52
    split = load_split("ncf-ml-1m", data_dir=shared_data / "ncf-ml-1m")
    assert split.test_negatives.shape == (6038, 99)


def test_ncf_validation_holds_out_one_training_row_per_user(tmp_path, unverified):
    root = _ncf_dir(tmp_path, ["(0,3)\t5\t6", "(1,4)\t1\t6"])
    s = ncf_split(root, download=False)
    v = ncf_validation(s, seed=3, num_negatives=2)
    def pairs(part):
        return list(zip(part["user_id"].tolist(), part["item_id"].tolist(), strict=True))

    train, kept, held = set(pairs(s.train)), pairs(v.train), pairs(v.valid)
    # Users with >= 2 training rows give exactly one; nothing is lost or duplicated.
    counts = np.bincount(s.train["user_id"], minlength=s.num_users)
    assert sorted(u for u, _ in held) == [u for u in range(s.num_users) if counts[u] >= 2]
    assert sorted(kept + held) == sorted(train) and not set(kept) & set(held)
    # Negatives: never an item of the user in any part, distinct within a row.
    seen = train | set(pairs(s.test))
    for (u, _), row in zip(held, v.valid_negatives.tolist(), strict=True):
        assert len(set(row)) == 2 and not any((u, i) in seen for i in row)
    # Test part untouched; seeded; refuses a split that has a validation part.
    np.testing.assert_array_equal(v.test_negatives, s.test_negatives)
    again = ncf_validation(s, seed=3, num_negatives=2)
    np.testing.assert_array_equal(again.valid["item_id"], v.valid["item_id"])
    np.testing.assert_array_equal(again.valid_negatives, v.valid_negatives)
    with pytest.raises(ValueError, match="already has a validation part"):
        ncf_validation(v)


def test_ncf_validation_real(shared_data):
    s = ncf_split(shared_data / "ncf-ml-1m", download=False)
    v = ncf_validation(s)
    assert len(v.valid["user_id"]) == 6040 and v.valid_negatives.shape == (6040, 99)
    assert len(v.train["user_id"]) == 994_169 - 6040
    assert "valid 6040" in v.describe()
    # What `--split ncf_valid` loads; other data sets refuse it with a reason.
    from tfrec.data.sources import interaction_split
    from tfrec.recipes.base import DataSource

    got = interaction_split(DataSource(
        dataset="ncf-ml-1m", data_dir=shared_data / "ncf-ml-1m", split="ncf_valid"))
    np.testing.assert_array_equal(got.valid_negatives, v.valid_negatives)
    with pytest.raises(DataError, match="needs --dataset ncf-ml-1m"):
        interaction_split(DataSource(dataset="movielens-100k", split="ncf_valid",
                                     data_dir=shared_data / "movielens-100k"))


def test_load_split_movielens_100k(shared_data):
    s = load_split("movielens-100k", data_dir=shared_data / "movielens-100k", seed=0)
    # 4 items occur only in held-out rows: out of the vocabulary, their 3 test
    # and 1 validation rows dropped and counted.
    assert (s.num_users, s.num_items) == (943, 1678)
    assert len(s.test["user_id"]) == 940 and len(s.valid["user_id"]) == 942
    assert s.dropped["test_unknown_item"] == 3 and s.dropped["valid_unknown_item"] == 1
    assert len(s.train["user_id"]) == 100_000 - 2 * 943
    assert s.test_negatives.shape == (940, 99)
    assert s.item_names[0] == "Toy Story (1995)"
    r = load_split(
        "movielens-100k",
        protocol="random",
        data_dir=shared_data / "movielens-100k",
        test_fraction=0.1,
    )
    assert len(r.test["user_id"]) + sum(
        n for k, n in r.dropped.items() if k.startswith("test")
    ) == 10_000
    assert np.isin(r.test["item_id"], r.train["item_id"]).all()
    with pytest.raises(ValueError, match="Unknown protocol 'loo'"):
        load_split("movielens-100k", protocol="loo")
