"""MovieLens feature tables, CTR / rating splits, vocabularies and tf.data."""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.data import tabular
from tfrec.data.tabular import (
    Examples,
    ctr_split,
    encode_genres,
    fit_crosses,
    fit_vocabularies,
    make_dataset,
    rating_split,
)

GENRES = ("Action", "Comedy", "Drama")


def _examples(ratings):
    n = len(ratings)
    rng = np.random.default_rng(0)
    features = {
        "user_id": np.arange(n, dtype=np.int64) % 7 + 1,
        "item_id": np.arange(n, dtype=np.int64) % 5 + 10,
        "gender": np.array(["M", "F"] * (n // 2) + ["M"] * (n % 2), dtype=object),
        "age": np.array(["25-34"] * n, dtype=object),
        "occupation": rng.choice(np.array(["artist", "writer"], dtype=object), n),
        "zip_prefix": np.array(["5"] * n, dtype=object),
        "genres": (rng.random((n, 3)) < 0.5).astype(np.float32),
        "year": np.full(n, 1990, np.int64),
    }
    return Examples(features, np.asarray(ratings, np.float32), GENRES, "toy")


def test_encode_genres_follows_the_column_order():
    got = encode_genres(["Comedy|Drama", "", "Action"], GENRES)
    np.testing.assert_array_equal(got, [[0, 1, 1], [0, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="Unknown genre 'Western' in row 0"):
        encode_genres(["Western"], GENRES)


def test_ctr_split_labels_drops_rating_three_and_splits_80_10_10():
    ratings = np.tile([1, 2, 3, 4, 5], 40)  # 200 rows, 40 of them rated 3
    data = _examples(ratings)
    parts = ctr_split(data, seed=3)
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [128, 16, 16]
    assert sum(len(p) for p in parts.values()) == 160  # the 40 threes are gone
    for part in parts.values():
        # Label 1 exactly for ratings 4-5: recover the rating from the row order
        # (item id = 10 + row % 5, rating = 1 + row % 5).
        rating = part.features["item_id"] - 9
        assert set(np.unique(rating)) <= {1, 2, 4, 5}
        np.testing.assert_array_equal(part.labels, (rating >= 4).astype(np.float32))
    again = ctr_split(data, seed=3)
    np.testing.assert_array_equal(again["test"].labels, parts["test"].labels)
    other = ctr_split(data, seed=4)
    assert not np.array_equal(other["train"].features["user_id"], parts["train"].features["user_id"])


def test_rating_split_is_a_75_25_partition():
    data = _examples(np.arange(100) % 5 + 1)
    data.features["user_id"] = np.arange(100, dtype=np.int64)  # row ids
    parts = rating_split(data, seed=0)
    train, test = parts["train"].features["user_id"], parts["test"].features["user_id"]
    assert (len(train), len(test)) == (75, 25)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(100))
    np.testing.assert_array_equal(parts["test"].labels, test % 5 + 1)
    with pytest.raises(ValueError, match="test_fraction"):
        rating_split(data, test_fraction=1.0)


def test_vocabularies_and_crosses_from_training_rows():
    features = {
        "gender": np.array(["M", "F", "M", "M"], dtype=object),
        "occupation": np.array(["artist", "artist", "writer", "artist"], dtype=object),
        "user_id": np.array([5, 3, 5, 9], np.int64),
        "genres": np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32),
    }
    vocab = fit_vocabularies(features, columns=("gender", "occupation", "user_id"))
    assert vocab == {
        "gender": ["F", "M"],
        "occupation": ["artist", "writer"],
        "user_id": [3, 5, 9],
    }
    assert fit_vocabularies(features, columns=("occupation",), min_count=2) == {
        "occupation": ["artist"]
    }
    crosses = fit_crosses(features, ["gender_x_genres", "gender_x_occupation"], GENRES)
    # Row 0 (M, Action|Comedy) gives two pairs; rows 2 and 3 repeat M pairs.
    assert crosses["gender_x_genres"] == [["F", "Drama"], ["M", "Action"], ["M", "Comedy"]]
    assert crosses["gender_x_occupation"] == [
        ["F", "artist"], ["M", "artist"], ["M", "writer"]
    ]
    frequent = fit_crosses(features, ["gender_x_genres"], GENRES, min_count=2)
    assert frequent["gender_x_genres"] == [["M", "Action"], ["M", "Comedy"]]
    with pytest.raises(ValueError, match="Cross 'gender_and_genres'"):
        fit_crosses(features, ["gender_and_genres"], GENRES)


def test_make_dataset_batches_every_row_once_with_string_tensors():
    data = _examples(np.arange(10) % 5 + 1)
    data.features["user_id"] = np.arange(10, dtype=np.int64)
    batches = list(make_dataset(data, batch_size=4, shuffle=True, seed=1))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x0, _ = batches[0]
    assert x0["gender"].dtype.name == "string" and x0["genres"].shape == (4, 3)
    seen = np.concatenate([x["user_id"].numpy() for x, _ in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(10))
    labels = np.concatenate([y.numpy() for _, y in batches])
    np.testing.assert_array_equal(labels, data.labels[seen])
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(data, batch_size=0)
    bad = Examples(dict(data.features, year=data.features["year"].astype(str)),
                   data.labels, GENRES)
    with pytest.raises(TypeError, match="'year' must be int64"):
        make_dataset(bad)


def test_movielens_100k_rows_carry_their_user_and_movie_features(shared_data):
    data = tabular.movielens_tabular("movielens-100k", shared_data / "movielens-100k")
    assert len(data) == 100_000 and len(data.genre_names) == 19
    f = data.features
    assert sorted(f) == sorted(tabular.FEATURE_DTYPES)
    # u.user line 1: "1|24|M|technician|85711"; u.data line 1: "196 242 3 ...".
    row = np.flatnonzero(f["user_id"] == 1)[0]
    assert (f["gender"][row], f["age"][row], f["occupation"][row], f["zip_prefix"][row]) == (
        "M", "18-24", "technician", "8"
    )
    row = np.flatnonzero((f["user_id"] == 196) & (f["item_id"] == 242))[0]
    assert data.labels[row] == 3.0
    # Item 242 is "Kolya (1996)", a Comedy.
    assert f["year"][row] == 1997  # u.item's release date: 24-Jan-1997
    assert f["genres"][row][list(data.genre_names).index("Comedy")] == 1.0


def test_movielens_1m_from_the_ncf_copy_maps_ids_to_the_original(
    shared_data, monkeypatch
):
    monkeypatch.setenv("TFREC_DATA_DIR", str(shared_data))
    data = tabular.movielens_tabular("movielens-1m")
    f = data.features
    assert len(data) == 1_000_209 and len(np.unique(f["user_id"])) == 6040
    # First line of the original ratings.dat: 1::1193::5::978300760 (user 1 is
    # F, under 18, K-12 student, zip 48067); MovieID 1193 is "One Flew Over the
    # Cuckoo's Nest (1975)", a Drama.
    row = np.flatnonzero((f["user_id"] == 1) & (f["item_id"] == 1193))
    assert row.size == 1 and data.labels[row[0]] == 5.0
    r = row[0]
    assert (f["gender"][r], f["age"][r], f["occupation"][r], f["zip_prefix"][r]) == (
        "F", "under-18", "k-12 student", "4"
    )
    assert f["year"][r] == 1975
    assert f["genres"][r].tolist() == [
        float(g == "Drama") for g in data.genre_names
    ]
    unknown = f["item_id"] >= tabular.UNKNOWN_MOVIE_OFFSET
    assert unknown.sum() == 150 and len(np.unique(f["item_id"][unknown])) == 91
    assert not f["genres"][unknown].any() and not f["year"][unknown].any()
