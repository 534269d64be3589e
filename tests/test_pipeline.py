"""Time splits, rolled-back histories and the two-stage YouTube pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfrec.data.datasets import DataError, Interactions
from tfrec.data.histories import (
    PAD,
    days_since_same_genre,
    history_mean,
    rolled_back_examples,
    serving_histories,
    time_split,
)
from tfrec.evaluation.histories import eval_requests, evaluate_scores, pipeline_scores
from tfrec.youtube_serving import PipelineTables, YouTubePipeline, chain, keras_fn

DAY = 86400


def _toy():
    # user 1: items 10, 11 (same second), 12, 13 ; user 2: 11, 14, 10 ; user 3: 12 only
    rows = [
        (1, 10, 5, 100), (1, 11, 3, 100), (1, 12, 4, 200), (1, 13, 2, 300),
        (2, 11, 4, 50), (2, 14, 1, 60), (2, 10, 5, 400),
        (3, 12, 3, 70),
    ]
    order = [3, 0, 6, 1, 7, 2, 5, 4]  # files are not in time order
    r = np.array([rows[i] for i in order])
    return Interactions("toy", r[:, 0], r[:, 1], r[:, 2].astype(np.float32),
                        r[:, 3].astype(np.int64))


def test_per_user_time_split_holds_out_the_latest_interaction():
    split = time_split(_toy())
    assert split.protocol == "last"
    np.testing.assert_array_equal(split.user_ids, [1, 2, 3])
    np.testing.assert_array_equal(split.item_ids, [10, 11, 12, 14])  # 13 only in test
    # user 1's latest item (13) is unknown from training -> no test row for user 1;
    # user 2's latest is item 10; user 3 has one interaction -> training only.
    np.testing.assert_array_equal(split.test["user_id"], [1])
    np.testing.assert_array_equal(split.item_ids[split.test["item_id"]], [10])
    assert split.test["timestamp"].tolist() == [400]
    # training is sorted by user then time
    assert split.train["timestamp"].tolist() == [100, 100, 200, 50, 60, 70]


def test_unknown_raw_ids_are_rejected_with_the_ids():
    split = time_split(_toy())
    np.testing.assert_array_equal(split.encode_items([14, 10]), [3, 0])
    with pytest.raises(DataError, match=r"unknown raw item id.*\[13\]"):
        split.encode_items([10, 13])
    with pytest.raises(DataError, match="unknown raw user"):
        split.encode_users([4])


def test_global_time_split_uses_a_cutoff():
    split = time_split(_toy(), test_fraction=0.25)
    assert split.cutoff is not None
    assert split.train["timestamp"].max() < split.cutoff
    assert np.all(split.test["timestamp"] >= split.cutoff)
    with pytest.raises(ValueError, match="test_fraction"):
        time_split(_toy(), test_fraction=1.5)
    bad = _toy()
    bad.timestamp = None
    with pytest.raises(DataError, match="timestamps"):
        time_split(bad)


def test_rolled_back_histories_only_hold_strictly_earlier_items():
    split = time_split(_toy())
    ex = rolled_back_examples(split, max_length=3)
    raw = lambda idx: [int(split.item_ids[i]) if i >= 0 else -1 for i in idx]  # noqa: E731
    got = {(int(split.user_ids[u]), int(split.item_ids[i])): raw(h)
           for u, i, h in zip(ex.user_id, ex.item_id, ex.item_history, strict=True)}
    assert got[(1, 10)] == [-1, -1, -1]          # first watch: empty history
    assert got[(1, 11)] == [-1, -1, -1]          # same second as item 10: not history
    assert got[(1, 12)] == [-1, 10, 11]          # left-padded, most recent last
    assert got[(2, 14)] == [-1, -1, 11]
    right = rolled_back_examples(split, max_length=3, padding="right")
    assert sorted(h for h in right.item_history[2].tolist() if h != PAD) == sorted(
        h for h in ex.item_history[2].tolist() if h != PAD)
    assert right.item_history[2].tolist()[-1] == PAD
    short = rolled_back_examples(split, max_length=1)
    assert raw(short.item_history[2]) == [11]     # window keeps the latest
    assert len(rolled_back_examples(split, min_history=1)) == 2  # (1,12), (2,14)
    assert len(rolled_back_examples(split, max_per_user=1)) == 3
    with pytest.raises(ValueError, match="padding"):
        rolled_back_examples(split, padding="middle")


def test_serving_histories_respect_the_request_time():
    split = time_split(_toy())
    hist, times = serving_histories(split, [0, 0], [150, 10**9], max_length=4)
    assert [int(split.item_ids[i]) for i in hist[0] if i >= 0] == [10, 11]
    assert [int(split.item_ids[i]) for i in hist[1] if i >= 0] == [10, 11, 12]
    assert times[1].tolist() == [0, 100, 100, 200]
    with pytest.raises(DataError, match="User indices"):
        serving_histories(split, [7])


def test_history_mean_and_days_since_same_genre_match_hand_computation():
    genres = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    hist = np.array([[-1, 0, 1], [-1, -1, -1], [2, 5, -1]])
    np.testing.assert_allclose(
        history_mean(hist, genres), [[0.5, 0.5], [0, 0], [1, 1]]
    )
    htime = np.array([[0, 1 * DAY, 3 * DAY], [0, 0, 0], [2 * DAY, 0, 0]])
    now = np.array([10 * DAY, 10 * DAY, 4 * DAY])
    cand = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    got = days_since_same_genre(hist, htime, now, cand, genres)
    np.testing.assert_allclose(got, [9.0, -1.0, 2.0])


def test_evaluate_scores_excludes_training_items_and_ranks_the_label():
    split = time_split(_toy())
    # The one test user is user 2 (index 1): label item 10 (index 0); training
    # items 11 and 14 (indices 1 and 3) are excluded.
    scores = np.array([[0.1, 0.9, 0.8, 0.2]])
    m = evaluate_scores(scores, split, ks=(1, 2))
    # only item 12 (0.8) remains above the label (0.1)
    assert m["hr@1"] == 0.0 and m["hr@2"] == 1.0
    with pytest.raises(ValueError, match="test users x items"):
        evaluate_scores(np.zeros((2, 4)), split)


# ------------------------------------------------------------ tiny pipeline


@pytest.fixture(scope="module")
def trained():
    """Both stages trained through the runner on the recipe's tiny histories."""
    import tfrec
    from tfrec.registry import model_info

    recipe = model_info("youtube_ranking").recipe
    data = recipe.synthetic_data(0)
    settings = {**recipe.test_config, "epochs": 1, "ranking_epochs": 1}
    result = tfrec.train("youtube_ranking", data, **settings)
    cand = result.serving["youtube_candidate"].model
    rank = result.serving["youtube_ranking"].model
    split, content = data.split, data.content
    names = [f"movie {i}" for i in split.item_ids]
    tables = PipelineTables.from_split(split, content, max_length=settings["max_length"],
                                       item_names=names)
    return split, content, YouTubePipeline(cand, rank, tables, num_candidates=10)


def test_chain_retrieves_drops_seen_items_and_orders_by_odds(trained):
    split, content, pipe = trained
    raw_user = int(split.user_ids[3])
    recs = pipe.recommend(raw_user, k=5)
    assert len(recs) == 5
    seen = set(split.item_ids[pipe.tables.seen(3)].tolist())
    assert not seen & {r["item_id"] for r in recs}
    odds = [r["odds"] for r in recs]
    assert odds == sorted(odds, reverse=True)
    np.testing.assert_allclose([r["score"] for r in recs],
                               [o / (1 + o) for o in odds], rtol=1e-5)
    # Same result as retrieving with numpy and ranking the survivors by hand.
    hist, htime = pipe.tables.histories([3])
    index = pipe.retrieval_index()
    from tfrec.youtube_serving import candidate_features, ranking_features

    out = index(candidate_features(hist, content.item_genres,
                                   pipe.tables.demographics([3])))
    ids = [i for i in out["item_ids"][0] if split.item_ids[i] not in seen]
    scores = [s for i, s in zip(out["item_ids"][0], out["scores"][0], strict=True)
              if split.item_ids[i] not in seen]
    n = len(ids)
    feats = ranking_features(np.repeat(hist, n, 0), np.repeat(htime, n, 0),
                             np.full(n, int(pipe.tables.times.max()) + 1),
                             np.array(ids), content.item_genres,
                             {k: np.repeat(v, n) for k, v in
                              pipe.tables.demographics([3]).items()},
                             candidate_scores=np.array(scores))
    odds_ref = keras_fn(pipe.ranking_model)(feats)["odds"]
    best = np.array(ids)[np.argsort(-odds_ref, kind="stable")[:5]]
    assert [r["item_id"] for r in recs] == split.item_ids[best].tolist()
    assert recs[0]["title"] == f"movie {recs[0]['item_id']}"


def test_chain_rejects_unknown_users_and_bad_k(trained):
    split, _, pipe = trained
    with pytest.raises(DataError, match="Unknown user"):
        pipe.recommend(99999)
    with pytest.raises(DataError, match="integers"):
        pipe.recommend("abc")
    with pytest.raises(ValueError, match="`k`"):
        pipe.recommend(int(split.user_ids[0]), k=0)


def test_chain_takes_string_user_and_item_ids(trained):
    import dataclasses

    split, _, pipe = trained
    user = int(split.user_ids[3])
    ref = pipe.recommend(user, k=4)
    assert [r["item_id"] for r in pipe.recommend(str(user), k=4)] == [
        r["item_id"] for r in ref
    ]  # "42" from a command line is user 42
    tables = dataclasses.replace(
        pipe.tables,
        user_ids=np.array([f"u_{u}" for u in split.user_ids]),
        item_ids=np.array([f"sku-{i}" for i in split.item_ids]),
    )
    named = YouTubePipeline(pipe.candidate_model, pipe.ranking_model, tables,
                            num_candidates=pipe.num_candidates)
    got = named.recommend(f"u_{user}", k=4)
    assert [r["item_id"] for r in got] == [f"sku-{r['item_id']}" for r in ref]
    np.testing.assert_allclose([r["odds"] for r in got], [r["odds"] for r in ref])
    with pytest.raises(DataError, match=r"Unknown user 'u_x'.*e\.g\. u_"):
        named.recommend("u_x")


def test_missing_feature_columns_are_named(trained):
    _, _, pipe = trained
    fn = keras_fn(pipe.ranking_model)
    with pytest.raises(ValueError, match="days_since_same_genre"):
        fn({"item_id": np.zeros(2, np.int64)})


def test_pipeline_scores_rerank_only_the_retrieved_candidates(trained):
    split, content, pipe = trained
    req = eval_requests(split, pipe.tables)
    cand = np.random.default_rng(0).normal(size=(len(req.users), split.num_items))
    scores = pipeline_scores(cand, split, req, pipe.tables,
                             keras_fn(pipe.ranking_model), num_candidates=4)
    assert np.all(np.sum(scores > 0, axis=1) == 4)  # exactly 4 re-ranked per user
    m = evaluate_scores(scores, split, ks=(10,))
    assert 0.0 <= m["hr@10"] <= 1.0


def test_empty_history_user_gets_recommendations(trained):
    split, content, pipe = trained
    first_time = pipe.tables.times[pipe.tables.indptr[0]]
    recs = chain(pipe.tables, int(split.user_ids[0]), retrieve=pipe.retrieval_index(),
                 rank=keras_fn(pipe.ranking_model), k=3, now=int(first_time))
    assert len(recs) == 3 and all(np.isfinite(r["odds"]) for r in recs)


def test_pipeline_export_chains_two_artifacts_with_parity(trained, tmp_path, capsys):
    from export.pipeline import ExportedPipeline, export_youtube_pipeline
    from tfrec.cli import main

    split, _, pipe = trained
    path = export_youtube_pipeline(pipe, base_dir=tmp_path)
    manifest = json.loads((path / "pipeline.json").read_text())
    assert [s["stage"] for s in manifest["stages"]] == ["candidate", "ranking"]
    for stage in manifest["stages"]:
        art = json.loads((path / stage["artifact"] / "manifest.json").read_text())
        assert art["parity"]["onnx"]["passed"] and art["parity"]["saved_model"]["passed"]
    user = int(split.user_ids[5])
    ref = pipe.recommend(user, k=4)
    for runtime in ("onnx", "saved_model"):
        got = ExportedPipeline(path, runtime=runtime).recommend(user, k=4)
        assert [r["item_id"] for r in got] == [r["item_id"] for r in ref]
        np.testing.assert_allclose([r["odds"] for r in got], [r["odds"] for r in ref],
                                   rtol=1e-4)
    assert main(["recommend", "--pipeline", "youtube", "--artifact",
                 str(tmp_path / "youtube"), "--user", str(user), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("odds=") == 3 and f"item {ref[0]['item_id']}" in out
    assert main(["recommend", "--pipeline", "youtube", "--artifact", str(tmp_path),
                 "--user", str(user)]) == 1
    assert main(["recommend", "--pipeline", "youtube", "--artifact",
                 str(tmp_path / "youtube"), "--user", "424242"]) == 1
    assert "Unknown user" in capsys.readouterr().err
