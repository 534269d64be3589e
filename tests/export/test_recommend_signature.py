"""The ``recommend`` signature (export/recommend.py): k and exclusions per request.

Every model with a catalogue rule (`tfrec.registry.CATALOGUE_SCORING`) is exported
once (the ``zoo_exports`` fixture, which passes the test catalogue); its
SavedModel ``recommend`` (TF1 loader) and ``recommend.onnx`` are compared with a
numpy reference computed here from the Keras model's full-catalogue scores, for
two ``k`` and two exclusion lists against the same loaded artifact.

Rule for ids: scores must be allclose at the registry tolerance everywhere (-inf
equal to -inf); ``item_ids`` must be equal at every position whose score differs
from both neighbours in its row by more than twice that tolerance (near-ties may
legitimately swap between runtimes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfrec
from export.recommend import example_catalogue
from tfrec.registry import model_info

MODELS = [n for n in tfrec.list_models() if model_info(n).catalogue() is not None]
LEFT_OUT = {"wide_deep", "youtube_ranking", "content_cnn", "mv_dnn_user_tower",
            "mv_dnn_item_tower"}  # fmt: skip


def test_every_model_has_a_rule_or_a_reason():
    assert set(tfrec.list_models()) == set(MODELS) | LEFT_OUT
    assert len(MODELS) == 24


# ------------------------------------------------------------------ reference


def full_scores(name: str, model, query: dict) -> np.ndarray:
    """[batch, N] scores from the Keras model, one call per query row."""
    info = model_info(name)
    rule = info.catalogue()
    cat = example_catalogue(name, info.test_kwargs)
    if rule.rule == "vector":
        s = np.array(model(query, training=False)[rule.scores], np.float32)
        s[:, list(rule.never)] = -np.inf
        return s
    if rule.rule == "columns":
        (feat,) = rule.item_features
        recon = np.asarray(model({feat: cat[feat]}, training=False)[rule.scores])
        return recon.T[query["user_id"]].astype(np.float32)
    if rule.rule == "embedding":
        table = np.asarray(model.get_layer(rule.table).embeddings, np.float64)
        unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
        ids = query["item_id"]
        s = (unit[ids] @ unit.T).astype(np.float32)
        s[np.arange(len(ids)), ids] = -np.inf
        return s
    n = len(cat[rule.item_features[0]]) if rule.item_features else cat["num_items"]
    rows = []
    for b in range(len(next(iter(query.values())))):
        feed = {k: np.repeat(v[b : b + 1], n, axis=0) for k, v in query.items()}
        if rule.item_input:
            feed[rule.item_input] = np.arange(n, dtype=np.int64)
        feed.update({k: cat[k] for k in rule.item_features})
        rows.append(np.asarray(model(feed, training=False)[rule.scores]))
    return np.stack(rows).astype(np.float32)


def reference(scores: np.ndarray, k: int, exclude: np.ndarray) -> dict:
    s = scores.copy()
    for b, row in enumerate(exclude):
        s[b, row[(row >= 0) & (row < s.shape[1])]] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(s, order, axis=1)
    return {"item_ids": np.where(np.isneginf(top), -1, order), "scores": top}


def assert_topk(got: dict, want: dict, atol: float, rtol: float) -> int:
    ws, gs = want["scores"], np.asarray(got["scores"])
    assert gs.shape == ws.shape and gs.dtype == np.float32
    assert np.asarray(got["item_ids"]).dtype == np.int64
    fin = np.isfinite(ws)
    assert np.array_equal(fin, np.isfinite(gs))
    np.testing.assert_allclose(gs[fin], ws[fin], atol=atol, rtol=rtol)
    tol = 2 * (atol + rtol * np.abs(np.where(fin, ws, 0)))
    pad = np.pad(np.where(fin, ws, -1e30), ((0, 0), (1, 1)), constant_values=np.inf)
    clear = (np.abs(pad[:, 1:-1] - pad[:, :-2]) > tol) & (
        np.abs(pad[:, 1:-1] - pad[:, 2:]) > tol
    )
    clear |= ~fin
    np.testing.assert_array_equal(np.asarray(got["item_ids"])[clear],
                                  want["item_ids"][clear])  # fmt: skip
    return int(clear.sum())


def query_of(name: str, manifest: dict, batch: int = 3) -> dict:
    info = model_info(name)
    names = [s["name"] for s in manifest["recommend"]["inputs"]][:-2]
    if info.catalogue().rule == "columns":
        return {"user_id": np.array([0, 5, 12][:batch], np.int64)}
    ex = info.example_inputs(info.test_kwargs, batch, np.random.default_rng(7))
    return {n: np.asarray(ex[n]) for n in names}


def ort_run(session, feed: dict) -> dict:
    names = ["item_ids", "scores"]
    return dict(zip(names, session.run(names, feed), strict=True))


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", MODELS)
def test_recommend_matches_keras_in_both_runtimes(name, zoo_exports):
    from export.serving import ExportedModel

    model, path = zoo_exports(name)
    manifest = json.loads((path / "manifest.json").read_text())
    entry = manifest["recommend"]
    assert entry["available"] and entry["signature"] == "recommend"
    assert (path / entry["onnx"]).is_file()
    assert (
        entry["parity"]["onnx"]["passed"] and entry["parity"]["saved_model"]["passed"]
    )
    n = entry["catalogue_size"]
    tol = model_info(name).parity
    query = query_of(name, manifest)
    scores = full_scores(name, model, query)
    assert scores.shape == (3, n)
    rng = np.random.default_rng(3)
    requests = [
        (min(4, n), None),
        (n - 2, rng.integers(0, n, (3, 5))),
        (1, np.array([[-1, -1, 2, 0], [1, -1, -1, -1], [3, 4, 5, 6]])),
    ]
    for runtime in ("saved_model", "onnx"):
        exported = ExportedModel(path, runtime=runtime)  # one load, several requests
        for k, exclude in requests:
            got = exported.recommend(query, k, exclude)
            ex = np.zeros((3, 0), np.int64) if exclude is None else exclude
            want = reference(scores, k, ex)
            assert assert_topk(got, want, tol.atol, tol.rtol) > 0
            for b in range(3):  # the excluded ids never come back
                assert not set(ex[b][ex[b] >= 0]) & set(got["item_ids"][b].tolist())


def test_item2vec_similar_recommend_equals_its_fixed_k_output(zoo_exports):
    from export.serving import ExportedModel

    model, path = zoo_exports("item2vec_similar")
    ids = np.arange(6, dtype=np.int64)
    fixed = model({"item_id": ids}, training=False)
    got = ExportedModel(path).recommend({"item_id": ids}, 5)
    np.testing.assert_array_equal(got["item_ids"], np.asarray(fixed["similar_items"]))
    np.testing.assert_allclose(got["scores"], fixed["similarity"], atol=1e-6)


def test_bad_requests_clear_errors_and_the_graph_clamps(zoo_exports):
    import onnxruntime as ort

    from export.parity import Tf1SignatureRunner
    from export.serving import ExportedModel

    model, path = zoo_exports("neumf")
    client = ExportedModel(path)
    q = {"user_id": np.array([1, 2], np.int64)}
    for k in (0, -3, 18, 2.0):
        with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 17\]"):
            client.recommend(q, k)
    for bad in ([17], [-2], [[0], [99]]):
        with pytest.raises(ValueError, match=r"Exclusion ids must be .* \[0, 17\)"):
            client.recommend(q, 3, bad)
    with pytest.raises(ValueError, match="query inputs"):
        client.recommend({"item_id": np.array([1])}, 3)
    # Inside the graph: k clamped into [1, N], out-of-range exclusions ignored;
    # TF (TF Serving's loader) and ONNX agree.
    runner = Tf1SignatureRunner(path, signature="recommend")
    session = ort.InferenceSession(str(path / "recommend.onnx"))
    scores = full_scores("neumf", model, q)
    try:
        for k, excl, want_k in ((0, [[50, -7], [3, 1000]], 1), (-4, [[1], [2]], 1),
                                (40, [[16, 99], [-1, -1]], 17)):  # fmt: skip
            feed = {
                **q,
                "k": np.array(k, np.int64),
                "exclude": np.array(excl, np.int64),
            }
            tf_out = runner(feed)
            ort_out = ort_run(session, feed)
            want = reference(scores, want_k, np.array(excl))
            for got in (tf_out, ort_out):
                assert got["item_ids"].shape == (2, want_k)
                assert_topk(got, want, 1e-5, 1e-5)
            np.testing.assert_array_equal(tf_out["item_ids"], ort_out["item_ids"])
        # k = N with one item excluded: the last slot is id -1, score -inf.
        feed = {
            **q,
            "k": np.array(17, np.int64),
            "exclude": np.array([[4], [-1]], np.int64),
        }
        for got in (runner(feed), ort_run(session, feed)):
            assert got["item_ids"][0, -1] == -1 and np.isneginf(got["scores"][0, -1])
            assert sorted(got["item_ids"][1]) == list(range(17))
    finally:
        runner.close()


def test_item_side_constants_from_the_run_vocab_or_a_reason(tmp_path):
    """``tfrec export`` copies a run's vocab/item_content.npz: VBPR's recommend
    takes its item features from it; without them the manifest says why."""
    from export import export_model
    from export.serving import ExportedModel

    info = model_info("vbpr")
    model = info.builder(**info.test_kwargs)
    features = np.random.default_rng(5).normal(size=(17, 6)).astype(np.float32)
    np.savez(tmp_path / "content.npz", content=features)
    common = dict(base_dir=tmp_path, example_inputs=lambda b, r: info.example_inputs(
        info.test_kwargs, b, r), model_config={"registry_name": "vbpr",
        "kwargs": info.test_kwargs})  # fmt: skip
    path = export_model(model, "vbpr", **common,
                        extra_files={"vocab/item_content.npz": tmp_path / "content.npz"})  # fmt: skip
    q = {"user_id": np.array([2, 9], np.int64)}
    got = ExportedModel(path).recommend(q, 6, [[1, 2], [-1, 16]])
    feed = {"user_id": np.repeat(q["user_id"], 17), "item_features": np.tile(features, (2, 1)),
            "item_id": np.tile(np.arange(17), 2)}  # fmt: skip
    scores = np.asarray(model(feed, training=False)["score"]).reshape(2, 17)
    assert_topk(got, reference(scores, 6, np.array([[1, 2], [-1, 16]])), 1e-5, 1e-5)
    bare = export_model(model, "vbpr", **common)
    entry = json.loads((bare / "manifest.json").read_text())["recommend"]
    assert not entry["available"] and "item_features" in entry["reason"]
    assert not (bare / "recommend.onnx").exists()
    with pytest.raises(ValueError, match="no `recommend` signature"):
        ExportedModel(bare).recommend(q, 3)


def test_onnx_topk_takes_k_from_the_request(zoo_exports):
    import onnx

    _, path = zoo_exports("neumf")
    graph = onnx.load(str(path / "recommend.onnx")).graph
    (topk,) = [n for n in graph.node if n.op_type == "TopK"]
    constants = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    assert topk.input[1] not in constants  # k is computed from the input "k"
    assert sorted(i.name for i in graph.input) == ["exclude", "k", "user_id"]


@pytest.mark.parametrize("name", ["neumf", "gru4rec"])
def test_recommend_through_tf_serving_loader(name, zoo_exports):
    from export.tfserving import run_loader

    model, path = zoo_exports(name)
    manifest = json.loads((path / "manifest.json").read_text())
    n = manifest["recommend"]["catalogue_size"]
    query = query_of(name, manifest)
    scores = full_scores(name, model, query)
    tol = model_info(name).parity
    for k, exclude in (
        (3, np.array([[0, 1], [-1, 2], [5, -1]])),
        (n - 3, np.zeros((3, 0), np.int64)),
    ):
        feed = {**query, "k": np.int64(k), "exclude": exclude.astype(np.int64)}
        got = run_loader(path, feed, signature="recommend")
        assert assert_topk(got, reference(scores, k, exclude), tol.atol, tol.rtol) > 0
    # The manifest's REST body, decoded with the manifest's dtypes, through the
    # loader equals the reference.
    body = manifest["recommend"]["rest_body"]
    assert body["signature_name"] == "recommend"
    specs = {s["name"]: s["dtype"] for s in manifest["recommend"]["inputs"]}
    feed = {key: np.asarray(v, specs[key]) for key, v in body["inputs"].items()}
    got = run_loader(path, feed, signature="recommend")
    query = {key: v for key, v in feed.items() if key not in ("k", "exclude")}
    want = reference(
        full_scores(name, model, query), body["inputs"]["k"], feed["exclude"]
    )
    assert_topk(got, want, tol.atol, tol.rtol)


def test_gru4rec_step_client_loop_equals_whole_sequence(tmp_path):
    """The client loop of the module docstring, through TF Serving's loader:
    state in, new state out, kept between clicks."""
    from export import export_model
    from export.tfserving import run_loader
    from tfrec.models.gru4rec import serving_models

    info = model_info("gru4rec_step")
    graphs = serving_models(info.builder(**info.test_kwargs))
    paths = {}
    for name in ("gru4rec", "gru4rec_step"):
        paths[name] = export_model(
            graphs[name], name, base_dir=tmp_path, atol=1e-5, rtol=1e-4,
            example_inputs=lambda b, r, n=name: model_info(n).example_inputs(
                info.test_kwargs, b, r),
        )  # fmt: skip
    session = np.array([5, 17, 2, 9], np.int64)
    exclude = session[None, :]  # do not recommend what the session already saw
    state = np.zeros((1, sum(info.test_kwargs["layers"])), np.float32)
    for click in session:
        out = run_loader(paths["gru4rec_step"],
                         {"item_id": np.array([click]), "hidden_state": state,
                          "k": np.int64(10), "exclude": exclude},
                         signature="recommend")  # fmt: skip
        state = out["new_hidden_state"]
    whole = run_loader(paths["gru4rec"],
                       {"session_items": session[None, :], "k": np.int64(10),
                        "exclude": exclude}, signature="recommend")  # fmt: skip
    np.testing.assert_allclose(out["scores"], whole["scores"], atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(out["item_ids"], whole["item_ids"])
    assert not set(session) & set(out["item_ids"][0].tolist())
    assert 0 not in out["item_ids"][0]  # padding is never recommended


FACTOR = ("mf", "gmf", "bpr_mf", "vbpr", "neumf", "ncf_mlp")


@pytest.mark.parametrize("name", FACTOR)
def test_factor_models_score_the_catalogue_in_one_matmul(name, zoo_exports):
    """Factor models (`tfrec.registry.Factor`): no pair tiling in the graph, the
    exclusions scattered (``ScatterElements``, not a comparison with every item);
    repeated and -1 ids change nothing. Parity with the pair model is
    test_recommend_matches_keras_in_both_runtimes."""
    import onnx
    import onnxruntime as ort

    model, path = zoo_exports(name)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["recommend"]["factor"] is True
    ops = {n.op_type for n in onnx.load(str(path / "recommend.onnx")).graph.node}
    # ScatterElements: the graph written node by node (export/recommend_onnx.py)
    assert ops & {"ScatterND", "ScatterElements"} and "MatMul" in ops
    assert manifest["recommend"]["onnx_writer"] == "export.recommend_onnx"
    assert not ops & {"Tile", "ReduceSum", "ReduceMax"}, sorted(ops)
    session = ort.InferenceSession(str(path / "recommend.onnx"))
    q = query_of(name, manifest, batch=2)
    feed = {**q, "k": np.array(17, np.int64)}
    once = ort_run(session, {**feed, "exclude": np.array([[3], [5]], np.int64)})
    again = ort_run(session, {**feed, "exclude": np.array([[3, 3, -1], [-1, 5, 5]],
                                                          np.int64)})  # fmt: skip
    np.testing.assert_array_equal(once["item_ids"], again["item_ids"])
    assert np.isneginf(once["scores"][:, -1]).all()
    assert 3 not in once["item_ids"][0] and 5 not in once["item_ids"][1]


def test_pair_models_scatter_their_exclusions_too(zoo_exports):
    import onnx

    _, path = zoo_exports("youtube_candidate")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["recommend"]["factor"] is False
    ops = {n.op_type for n in onnx.load(str(path / "recommend.onnx")).graph.node}
    assert "ScatterND" in ops
