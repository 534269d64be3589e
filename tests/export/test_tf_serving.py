"""Every registered model's export, loaded the way TF Serving loads it.

``export/tfserving/loader.c`` goes through the TensorFlow C API that TF Serving's
loader is built on (``TF_LoadSessionFromSavedModel``, tag ``serve``: restore, init
op, then ``TF_SessionRun`` on the SignatureDef's tensors). Its outputs must equal
Keras' ``model(x, training=False)`` within the registry's SavedModel tolerance, the
one the export's parity check uses: a tenth of the model's tolerance, never tighter
than 1e-6 (the session runs Grappler, whose rewrites may reorder float32 sums).
Most models answer bit-identically; the count is printed by
``test_bit_identical_count`` (run with ``-s``).
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

import tfrec
from export.artifact import ExportError, export_model
from export.parity import as_input_dtype, compare
from export.tfserving import (
    LoaderError,
    build_loader,
    run,
    run_loader,
    run_many,
    signatures,
)
from export.warmup import WARMUP_FILE, read_warmup, write_warmup
from tfrec.registry import model_info

MODELS = tfrec.list_models()
_BIT_IDENTICAL: dict[str, bool] = {}
_LOADER_SECONDS: dict[str, float] = {}
_MAX_DIFF: dict[str, float] = {}


def saved_model_tolerance(name: str) -> tuple[float, float]:
    """(atol, rtol) SavedModel vs Keras, as in ``export.parity.check_parity``."""
    tol = model_info(name).parity
    return max(1e-6, tol.atol / 10), max(1e-6, tol.rtol / 10)


def keras_outputs(model, feed) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in model(feed, training=False).items()}


def as_feed(manifest: dict, batch) -> dict[str, np.ndarray]:
    return {
        s["name"]: as_input_dtype(batch[s["name"]], s["dtype"])
        for s in manifest["inputs"]
    }


def _selected_models(session) -> list[str]:
    """The models whose zoo-wide tests this session will run."""
    names = {
        item.callspec.params["name"]
        for item in session.items
        if item.module.__name__ == __name__ and hasattr(item, "callspec")
    }
    return [n for n in MODELS if n in names]


@pytest.fixture(scope="module")
def loaded(zoo_exports, request):
    """``loaded(name)`` -> the loader's answers for one model: fresh inputs (batch
    5) first, then every warm-up record. All selected models go through ONE loader
    process (TensorFlow's start-up is most of a process's cost); if it fails, each
    model gets its own process so the error lands on the model that caused it."""
    build_loader()  # compile (or find the cached program) once, up front
    cache: dict[str, dict] = {}

    def prepare(name):
        model, path = zoo_exports(name)
        manifest = json.loads((path / "manifest.json").read_text())
        info = model_info(name)
        x = info.example_inputs(info.test_kwargs, 5, np.random.default_rng(7))
        return dict(
            model=model, path=path, manifest=manifest, feed=as_feed(manifest, x)
        )

    def store(name, entry, groups):
        cache[name] = dict(entry, fresh=groups[0], warmup=groups[1:])

    def get(name):
        if not cache:
            names = _selected_models(request.session) or [name]
            entries = {n: prepare(n) for n in names}
            jobs = [
                (e["path"], dict(inputs=e["feed"], warmup=True))
                for e in entries.values()
            ]
            started = time.perf_counter()
            try:
                results = run_many(jobs)
            except LoaderError:
                results = None  # fall back to one process per model, below
            _LOADER_SECONDS["one process, all models"] = time.perf_counter() - started
            for n, groups in zip(entries, results or [], strict=False):
                store(n, entries[n], groups)
        if name not in cache:
            entry = prepare(name)
            store(name, entry, run(entry["path"], inputs=entry["feed"], warmup=True))
        return cache[name]

    return get


@pytest.mark.parametrize("name", MODELS)
def test_loader_matches_keras(loaded, name):
    r = loaded(name)
    ref = keras_outputs(r["model"], r["feed"])
    atol, rtol = saved_model_tolerance(name)
    report = compare(ref, r["fresh"], atol=atol, rtol=rtol)
    assert report["passed"], report
    assert all(r["fresh"][k].shape[0] == 5 for k in ref)
    _BIT_IDENTICAL[name] = all(np.array_equal(ref[k], r["fresh"][k]) for k in ref)
    _MAX_DIFF[name] = report["max_abs_diff"]


def _recommend_reference(name, model):
    """The Keras computation of the export's recommend signature (eager)."""
    from export.recommend import example_catalogue, plan_recommend

    info = model_info(name)
    plan, why = plan_recommend(
        model, name, None, example_catalogue(name, info.test_kwargs)
    )
    assert plan is not None, why
    return plan


@pytest.mark.parametrize("name", MODELS)
def test_warmup_replays_to_keras(loaded, name):
    """Every signature of the SavedModel has warm-up records (serving_default
    first), and the loader's replay of each equals Keras: the model's outputs for
    serving_default and its twin ``serve``; for ``recommend`` the eager Keras
    top-k (`export.recommend.RecommendPlan.reference`) and the Python client's
    answer (`ExportedModel.recommend`) on the record's query, k and exclude."""
    from export.recommend import compare_topk
    from export.serving import ExportedModel

    r = loaded(name)
    manifest = r["manifest"]
    assert WARMUP_FILE in manifest["files"] and WARMUP_FILE in manifest["checksums"]
    warm = manifest["warmup"]
    assert warm["file"] == WARMUP_FILE
    records = read_warmup(r["path"])
    assert len(records) == warm["records"] == len(r["warmup"])
    sigs = [s for s in signatures(r["path"]) if not s.startswith("__")]
    assert sorted(warm["signatures"]) == sorted(sigs)
    has_recommend = manifest["recommend"]["available"]
    assert ("recommend" in sigs) == has_recommend
    by_sig: dict[str, list] = {}
    for record, out in zip(records, r["warmup"], strict=True):
        assert record["model_name"] == name
        by_sig.setdefault(record["signature_name"], []).append((record, out))
    assert records[0]["signature_name"] == "serving_default"
    assert {s: len(v) for s, v in by_sig.items()} == {
        s: e["records"] for s, e in warm["signatures"].items()
    }
    # serving_default's records are the export's parity batches (seed 0, batch
    # sizes 1 and 37); `serve` holds the same.
    info = model_info(name)
    rng = np.random.default_rng(0)
    sizes = manifest["parity"]["batch_sizes"]
    assert warm["batch_sizes"] == sizes == [1, 37]
    atol, rtol = saved_model_tolerance(name)
    batches = [info.example_inputs(info.test_kwargs, b, rng) for b in sizes]
    for sig in ("serving_default", "serve"):
        for size, batch, (record, out) in zip(sizes, batches, by_sig[sig], strict=True):
            assert sorted(record["inputs"]) == sorted(
                s["name"] for s in manifest["inputs"]
            )
            for spec in manifest["inputs"]:
                got = record["inputs"][spec["name"]]
                want_dtype = np.dtype(
                    object if spec["dtype"] == "string" else spec["dtype"]
                )
                assert got.dtype == want_dtype, spec
                assert got.shape[0] == size
                assert len(got.shape) == len(spec["shape"])
                assert all(
                    d is None or d == g
                    for d, g in zip(spec["shape"], got.shape, strict=True)
                )
            expected = as_feed(manifest, batch)
            for key, value in as_feed(manifest, record["inputs"]).items():
                np.testing.assert_array_equal(value, expected[key])
            ref = keras_outputs(r["model"], as_feed(manifest, record["inputs"]))
            report = compare(ref, out, atol=atol, rtol=rtol)
            assert report["passed"], (sig, report)
    if not has_recommend:
        return
    plan = _recommend_reference(name, r["model"])
    client = ExportedModel(r["path"], runtime="saved_model")
    n = manifest["recommend"]["catalogue_size"]
    tol = model_info(name).parity
    ks = []
    for record, out in by_sig["recommend"]:
        feed = dict(record["inputs"])
        k, exclude = int(feed.pop("k")), feed.pop("exclude")
        ks.append(k)
        assert exclude.ndim == 2 and exclude.shape[0] == sizes[len(ks) - 1]
        assert ((exclude >= -1) & (exclude < n)).all()
        want = plan.reference(feed, k, exclude)
        assert out["item_ids"].shape == want["item_ids"].shape == (len(exclude), k)
        report = compare_topk(out, want, tol.atol, tol.rtol)
        assert report["passed"] and report["ids_compared"] > 0, report
        python = client.recommend(feed, k, exclude)
        for key in ("item_ids", "scores"):  # same SavedModel, TF1 loader: bit-equal
            np.testing.assert_array_equal(out[key], python[key])
    assert ks == [n, min(3, n)]


def test_bit_identical_count():
    """Reports how many models the loader answers bit-identically (all outputs,
    batch of 5); the others are within the SavedModel tolerance (checked above)."""
    if not _BIT_IDENTICAL:
        pytest.skip("run together with test_loader_matches_keras")
    exact = sorted(k for k, v in _BIT_IDENTICAL.items() if v)
    print(
        f"\nTF Serving loader vs Keras: {len(exact)}/{len(_BIT_IDENTICAL)} models "
        f"bit-identical; within tolerance only: "
        f"{sorted(set(_BIT_IDENTICAL) - set(exact))}; largest |diff| "
        f"{max(_MAX_DIFF.values()):.3g} ({max(_MAX_DIFF, key=_MAX_DIFF.get)}); "
        f"loader: {_LOADER_SECONDS}"
    )
    assert len(exact) >= 1


def test_init_op_is_what_initialises_tables(loaded):
    """Without the init op a model with lookup tables fails, so running it is
    meaningful; a model without tables still answers the same from the restored
    variables alone (the --no-init session restores correctly)."""
    r = loaded("wide_deep")
    with pytest.raises(LoaderError, match="FAILED_PRECONDITION.*Table not initialized"):
        run_loader(r["path"], r["feed"], no_init=True)
    n = loaded("neumf")
    out = run_loader(n["path"], n["feed"], no_init=True)
    np.testing.assert_array_equal(out["score"], n["fresh"]["score"])


def test_loader_reads_the_signature_the_manifest_states(loaded):
    """The loader's own MetaGraphDef reader (no libprotobuf) finds the manifest's
    inputs and outputs with their dtypes and a dynamic batch axis (-1)."""
    r = loaded("wide_deep")
    sig = signatures(r["path"])["serving_default"]
    for kind in ("inputs", "outputs"):
        got = {k: (dtype, shape) for k, (_, dtype, shape) in sig[kind].items()}
        want = {
            s["name"]: (s["dtype"], tuple(-1 if d is None else d for d in s["shape"]))
            for s in r["manifest"][kind]
        }
        assert got == want
    assert {d for _, d, _ in sig["inputs"].values()} == {"string", "int64", "float32"}


def test_bad_version_dirs(loaded, tmp_path):
    with pytest.raises(LoaderError, match="no exported version at .*not a directory"):
        run_loader(tmp_path / "missing", {"x": np.zeros(1)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        LoaderError, match="not a SavedModel: .*saved_model.pb is missing"
    ):
        run_loader(tmp_path / "empty", {"x": np.zeros(1)})
    src = loaded("neumf")["path"]
    corrupt = tmp_path / "corrupt"
    shutil.copytree(src, corrupt)
    pb = corrupt / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    with pytest.raises(LoaderError, match=r"saved_model\.pb was modified or is corrupt"):
        run_loader(corrupt, {"x": np.zeros(1)})  # the manifest's sha256, checked first
    with pytest.raises(LoaderError, match="TF_LoadSessionFromSavedModel: "):
        run_loader(corrupt, {"x": np.zeros(1)}, verify=False)  # the C program's own


def test_bad_requests(loaded, tmp_path):
    r = loaded("neumf")
    feed = r["feed"]
    wrong = dict(feed, user_id=feed["user_id"].astype(np.int32))
    with pytest.raises(LoaderError, match="'user_id' has dtype int32; .* takes int64"):
        run_loader(r["path"], wrong)
    with pytest.raises(
        LoaderError, match="'item_id' of signature 'serving_default' is missing"
    ):
        run_loader(r["path"], {"user_id": feed["user_id"]})
    with pytest.raises(LoaderError, match="'bogus' is not an input of signature"):
        run_loader(r["path"], dict(feed, bogus=np.zeros(5)))
    with pytest.raises(LoaderError, match="no signature 'nope'; the SavedModel has: "):
        run_loader(r["path"], feed, signature="nope")
    # A flipped byte in the warm-up file: refused by its sha256 in the manifest,
    # and (unchecked) by the C program's own CRC check of the record.
    copy = tmp_path / "v"
    shutil.copytree(r["path"], copy)
    warm = copy / WARMUP_FILE
    data = bytearray(warm.read_bytes())
    data[len(data) // 2] ^= 0xFF
    warm.write_bytes(bytes(data))
    with pytest.raises(LoaderError, match="tf_serving_warmup_requests was modified"):
        run(copy, warmup=True)
    with pytest.raises(LoaderError, match=r"record \d+: data CRC mismatch"):
        run(copy, warmup=True, verify=False)


def test_warmup_checked_against_signature(loaded, tmp_path):
    r = loaded("neumf")
    copy = tmp_path / "v"
    shutil.copytree(r["path"], copy, ignore=shutil.ignore_patterns("assets.extra"))
    good = r["feed"]
    cases = {
        "not signature inputs": dict(good, bogus=np.zeros(5)),
        r"\['item_id'\] are missing": {"user_id": good["user_id"]},
        "dtype float64, the signature takes int64": dict(
            good, user_id=good["user_id"] + 0.5
        ),
        r"shape \(5, 1\), the signature takes \(-1,\)": dict(
            good, user_id=good["user_id"][:, None]
        ),
    }
    for message, batch in cases.items():
        with pytest.raises(ExportError, match=message):
            write_warmup(copy, "neumf", [good, batch])
        assert not (copy / WARMUP_FILE).exists()


def test_corrupt_warmup_fails_the_export(tmp_path):
    """An export whose warm-up batches do not fit the signature raises and leaves
    neither a version nor a temporary folder."""
    info = model_info("mf")
    model = info.builder(**info.test_kwargs)

    def bad_inputs(batch, rng):
        return dict(
            info.example_inputs(info.test_kwargs, batch, rng), user_age=np.zeros(batch)
        )

    with pytest.raises(
        ExportError, match=r"Warm-up batch 0 .*\['user_age'\] are not signature inputs"
    ):
        export_model(model, "mf", base_dir=tmp_path, example_inputs=bad_inputs)
    assert list((tmp_path / "mf").iterdir()) == []
