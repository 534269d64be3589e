"""Genre consistency, SVD baseline and next-item evaluation of item embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.evaluation.embeddings import (
    align_genres,
    chance_share,
    genre_consistency,
    leave_last_out,
    movielens_genres,
    nearest_neighbours,
    next_item_metrics,
    popularity_next_item_metrics,
    svd_item_embeddings,
)

# Five items on a circle; genres: A = 0, B = 1.
ANGLES = np.deg2rad([0, 10, 90, 100, 180])
EMB = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
GENRES = np.array(
    [[1, 0], [1, 0], [0, 1], [1, 1], [0, 1]], bool
)  # item 3 is both A and B


def test_nearest_neighbours_by_cosine_excluding_self():
    nn = nearest_neighbours(EMB, np.arange(5), k=2)
    # 0: 10deg -> 1, 90deg -> 2. 1: 0 (10), 2 (80). 2: 3 (10), 1 (80).
    # 3: 2 (10), 4 (80). 4: 3 (80), 2 (90).
    np.testing.assert_array_equal(nn, [[1, 2], [0, 2], [3, 1], [2, 4], [3, 2]])
    # Candidates restrict the neighbours.
    nn = nearest_neighbours(EMB, [0, 2], k=1, candidates=[0, 2, 4])
    np.testing.assert_array_equal(nn, [[2], [0]])


def test_genre_consistency_hand_made():
    got = genre_consistency(EMB, GENRES, np.arange(5), k=1)
    # NN: 0->1 (A,A yes), 1->0 yes, 2->3 (B vs AB yes), 3->2 (AB vs B yes),
    # 4->3 (B vs AB yes): 5/5.
    # Votes with k=1 are the neighbour's genres; tied genres share the credit:
    # 0: {A} hit, 1: {A} hit, 2 (B): {A, B} -> 1/2, 3 (AB): {B} hit,
    # 4 (B): {A, B} -> 1/2.
    assert got == {"share@1": 1.0, "vote@1": pytest.approx(4 / 5), "queries": 5}
    got = genre_consistency(EMB, GENRES, np.arange(5), k=2)
    # Second neighbours: 0->2 (A vs B no), 1->2 no, 2->1 (B vs A no),
    # 3->4 (AB vs B yes), 4->2 yes: shares 1/2, 1/2, 1/2, 1, 1.
    assert got["share@2"] == pytest.approx((0.5 * 3 + 2) / 5)
    # Votes: 0: nbrs A, B -> {A, B}, query A: 1/2. 1: same, 1/2.
    # 2: nbrs AB, A -> {A}, query B: 0. 3: nbrs B, B -> {B}: 1. 4: AB, B -> {B}: 1.
    assert got["vote@2"] == pytest.approx(3 / 5)


def test_items_without_genre_are_not_queries():
    genres = GENRES.copy()
    genres[0] = False
    got = genre_consistency(EMB, genres, np.arange(5), k=1)
    # Query 0 is dropped; query 1's neighbour 0 has no genre: inconsistent.
    assert got["queries"] == 4 and got["share@1"] == pytest.approx(3 / 4)


def test_chance_share_hand_made():
    # Query 0 (A): others 1 (A), 2 (B), 3 (AB), 4 (B): 2 of 4 share.
    assert chance_share(GENRES, [0]) == pytest.approx(0.5)
    # Query 2 (B) among candidates {0, 1, 2, 3}: 0 no, 1 no, 3 yes -> 1/3.
    assert chance_share(GENRES, [2], candidates=[0, 1, 2, 3]) == pytest.approx(1 / 3)


def test_align_genres_reorders_rows_and_rejects_unknown_items():
    flags = np.array([[1, 0], [0, 1], [1, 1]], bool)
    got = align_genres([30, 10], [10, 20, 30], flags)
    np.testing.assert_array_equal(got, flags[[2, 0]])
    with pytest.raises(Exception, match=r"1 item\(s\) have no genre entry.*\[99\]"):
        align_genres([10, 99], [10, 20, 30], flags)


def test_svd_embeddings_are_the_scaled_left_singular_vectors(rng):
    seqs = [rng.choice(12, size=rng.integers(2, 7), replace=False) for _ in range(9)]
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    items = np.concatenate(seqs)
    emb = svd_item_embeddings(offsets, items, 12, 4)
    matrix = np.zeros((12, 9))
    for j, s in enumerate(seqs):
        matrix[s, j] = 1
    u, s, _ = np.linalg.svd(matrix)
    # E^T E = diag(top singular values); E E^T = U_k S_k U_k^T.
    np.testing.assert_allclose(emb.T @ emb, np.diag(s[:4]), atol=1e-4)
    np.testing.assert_allclose(
        emb @ emb.T, u[:, :4] @ np.diag(s[:4]) @ u[:, :4].T, atol=1e-4
    )
    with pytest.raises(ValueError, match="exceeds min"):
        svd_item_embeddings(offsets, items, 12, 10)


def test_leave_last_out():
    off, items, test = leave_last_out(np.array([0, 3, 5]), np.array([4, 5, 6, 7, 8]))
    assert off.tolist() == [0, 2, 3]
    assert items.tolist() == [4, 5, 7] and test.tolist() == [6, 8]
    with pytest.raises(ValueError, match="at least 2 items"):
        leave_last_out(np.array([0, 1, 3]), np.array([1, 2, 3]))


def test_next_item_metrics_hand_made():
    # User 0 history [0, 2], profile = mean of unit(0deg), unit(90deg) -> 45deg.
    # Candidates (history excluded): 1 (10deg) cos 35 = .819, 3 (100) cos 55 =
    # .574, 4 (180) cos 135 = -.707. Target 3 -> rank 1: NDCG 1/log2(3).
    # User 1 history [4], target 3: profile 180deg; 3 (100deg) cos 80 = .17,
    # 2 (90) .0, 1 (10) -.98, 0 -1: rank 0.
    got = next_item_metrics(
        EMB, np.array([0, 2, 3]), np.array([0, 2, 4]), np.array([3, 3]), recent=5
    )
    assert got["hr@10"] == 1.0
    assert got["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1) / 2)
    got = next_item_metrics(
        EMB, np.array([0, 2, 3]), np.array([0, 2, 4]), np.array([3, 3]),
        recent=1, ks=(1,),
    )  # fmt: skip
    # recent=1: user 0's profile is item 2 (90deg): 3 is nearest -> rank 0.
    assert got["hr@1"] == 1.0


def test_popularity_baseline_hand_made():
    off, items = np.array([0, 2, 4, 5]), np.array([0, 1, 0, 2, 0])
    # Counts: 0 -> 3, 1 -> 1, 2 -> 1, 3 -> 0. User 2 (history [0]) target 2:
    # candidates 1 (1), 2 (1), 3 (0): pessimistic tie -> rank 1.
    got = popularity_next_item_metrics(off, items, np.array([2, 1, 2]), 4, ks=(1,))
    # User 0 target 2 (history 0, 1): 2 (1) vs 3 (0) -> rank 0. User 1
    # target 1 (history 0, 2): 1 (1) vs 3 (0) -> rank 0.
    assert got["hr@1"] == pytest.approx(2 / 3)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        nearest_neighbours(np.array([[np.nan, 1.0], [1.0, 0.0]]), [0])
    with pytest.raises(ValueError, match=r"ids in \[0, 5\); found range \[0, 7\]"):
        nearest_neighbours(EMB, [0, 7])
    with pytest.raises(ValueError, match="needs more candidates"):
        nearest_neighbours(EMB, [0], k=5)
    with pytest.raises(ValueError, match=r"\[num_items=5, G\]"):
        genre_consistency(EMB, GENRES[:3], [0])
    with pytest.raises(ValueError, match="No query item has a genre"):
        genre_consistency(EMB, np.zeros((5, 2), bool), [0, 1])
    with pytest.raises(ValueError, match="One target per sequence"):
        next_item_metrics(EMB, np.array([0, 1]), np.array([0]), np.array([1, 2]))
    with pytest.raises(ValueError, match="held-out item also occurs"):
        next_item_metrics(EMB, np.array([0, 1]), np.array([0]), np.array([0]))


def test_movielens_genres(shared_data):
    ids, names, flags = movielens_genres(
        "movielens-100k", shared_data / "movielens-100k"
    )
    assert len(ids) == 1682 and len(names) == 18 and "unknown" not in names
    # Toy Story (1995): Animation, Children's, Comedy.
    row = flags[np.searchsorted(ids, 1)]
    assert sorted(n for n, on in zip(names, row, strict=True) if on) == [
        "Animation",
        "Children's",
        "Comedy",
    ]
