"""Item/user content from MovieLens metadata and precomputed feature files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrec.data.content import (
    age_bucket,
    load_item_features,
    movielens_items,
    movielens_users,
    save_item_features,
)
from tfrec.data.datasets import DataError


def test_movielens_100k_items(shared_data):
    items = movielens_items("movielens-100k", shared_data / "movielens-100k")
    assert len(items) == 1682 and items.genres.shape == (1682, 19)
    row = items.index([1])[0]
    assert items.titles[row] == "Toy Story (1995)" and items.year[row] == 1995
    on = {g for g, v in zip(items.genre_names, items.genres[row], strict=True) if v}
    assert on == {"Animation", "Children's", "Comedy"}
    assert items.title_tokens()[row] == ["toy", "story"]
    # Item 267 has no release date: year 0, flagged in the dense features.
    feats = items.features([267, 1])
    assert feats.shape == (2, 19 + 2)
    assert feats[0, -1] == 1.0 and feats[0, -2] == 0.5 and feats[1, -1] == 0.0


def test_movielens_1m_items_and_users(shared_data):
    items = movielens_items("movielens-1m", shared_data / "movielens-1m")
    assert len(items) == 3883 and items.genres.shape[1] == 18
    assert items.genre_strings()[items.index([1])[0]] == "Animation|Children's|Comedy"
    users = movielens_users("movielens-1m", shared_data / "movielens-1m")
    assert len(users) == 6040
    cat = users.categorical([1, 2])
    assert list(cat["gender"]) == ["F", "M"]
    assert list(cat["age"]) == ["under-18", "56+"]
    assert list(cat["occupation"]) == ["k-12 student", "self-employed"]
    assert list(cat["zip_prefix"]) == ["4", "7"]


def test_movielens_100k_users_share_buckets(shared_data):
    users = movielens_users("movielens-100k", shared_data / "movielens-100k")
    assert len(users) == 943
    assert users.categorical([1])["age"][0] == "18-24"  # 24 years old
    assert age_bucket(17) == "under-18" and age_bucket(56) == "56+"
    assert age_bucket(44) == "35-44" and age_bucket(49) == "45-49"


def test_unknown_ids_name_them(shared_data):
    items = movielens_items("movielens-100k", shared_data / "movielens-100k")
    with pytest.raises(DataError, match="1 item id.*99999"):
        items.index([1, 99999])
    with pytest.raises(DataError, match="integers"):
        items.index(np.array([1.5]))


def test_malformed_item_file(tmp_path, unverified):
    (tmp_path / "u.genre").write_text("unknown|0\nAction|1\n")
    (tmp_path / "u.item").write_text("1|Toy Story (1995)|01-Jan-1995||url|0|1\n2|Bad|\n")
    with pytest.raises(DataError, match=r"u.item: line 2: expected 7"):
        movielens_items("movielens-100k", tmp_path)


def test_feature_file_round_trip_and_alignment(tmp_path):
    feats = np.arange(12, dtype=np.float32).reshape(4, 3)
    path = save_item_features(tmp_path / "f.npz", [10, 30, 20, 40], feats)
    got = load_item_features(path, [20, 10], shape=(3,))
    np.testing.assert_array_equal(got, feats[[2, 0]])
    np.save(tmp_path / "f.npy", feats)
    np.testing.assert_array_equal(load_item_features(tmp_path / "f.npy", [3]), feats[[3]])


def test_parquet_feature_files(tmp_path):
    df = pd.DataFrame({"item_id": [5, 6], "a": [1.0, 2.0], "b": [3.0, 4.0]})
    df.to_parquet(tmp_path / "cols.parquet")
    np.testing.assert_array_equal(
        load_item_features(tmp_path / "cols.parquet", [6]), [[2.0, 4.0]]
    )
    pd.DataFrame({"item_id": [5, 6], "features": [[1.0, 2.0], [3.0, 4.0]]}).to_parquet(
        tmp_path / "list.parquet"
    )
    np.testing.assert_array_equal(
        load_item_features(tmp_path / "list.parquet", [5, 6]), [[1, 2], [3, 4]]
    )
    pd.DataFrame({"id": [1], "a": [1.0]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="'item_id' column"):
        load_item_features(tmp_path / "bad.parquet")


@pytest.mark.parametrize(
    "ids, feats, query, kwargs, message",
    [
        ([1, 2], np.ones((2, 3)), [1, 7], {}, r"1 item id\(s\) have no content.*7"),
        ([1, 2], np.ones((2, 3)), None, {"shape": (4,)}, r"expected per-item .*\(4,\)"),
        ([1, 2], np.array([[1.0, np.nan], [0, 0]]), [2, 1], {}, r"NaN .*item ids \[1\]"),
        ([1, 1], np.ones((2, 3)), None, {}, "duplicate item ids"),
    ],
)
def test_feature_file_errors(tmp_path, ids, feats, query, kwargs, message):
    path = tmp_path / "f.npz"
    np.savez(path, item_id=np.asarray(ids), features=np.asarray(feats, np.float32))
    with pytest.raises(DataError, match=message):
        load_item_features(path, query, **kwargs)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_item_features(tmp_path / "nope.npz")
    (tmp_path / "f.csv").write_text("x")
    with pytest.raises(DataError, match="unsupported feature file type"):
        load_item_features(tmp_path / "f.csv")
    np.savez(tmp_path / "g.npz", ids=np.arange(2), features=np.ones((2, 2)))
    with pytest.raises(DataError, match="missing \\['item_id'\\]"):
        load_item_features(tmp_path / "g.npz")
