"""``tfrec export --web-demo`` in a real browser: the page runs ``model.onnx`` in
onnxruntime-web (wasm) inside headless Debian chromium (driven by playwright-core);
the items it shows must be Python onnxruntime's top-10 on the same model (ids and
scores) and the trained model's own recommendations. A screenshot of each page is
kept under ``build/test-artefacts/``."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading

import numpy as np
import pytest

import tfrec
from export.cli import export_run
from export.webdemo import ORT_FILES, demo_data
from tests.export.js_tools import JS, ROOT, chromium, node, node_package
from tfrec.recipes.base import recipe_for
from tfrec.recipes.interactions import seen_items, top_k
from tfrec.training.runner import read_vocab

ARTEFACTS = ROOT / "build" / "test-artefacts"
K = 10


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def serve():
    """``serve(folder) -> base URL`` on a loopback port, in a thread."""
    servers = []

    def start(folder):
        handler = functools.partial(_Handler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def drive(url: str, query: dict, screenshot) -> dict:
    node_package("playwright-core")
    chromium()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [node(), str(JS / "drive_page.mjs"), url, json.dumps(query), str(screenshot)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"drive_page.mjs exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    print(f"\nweb demo screenshot: {screenshot}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _onnx(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])


def _check_page(page, want, vocab):
    assert page["state"] == "done", page
    assert "onnxruntime-web 1.30" in page["meta"]
    assert "sha256 of the model checked against manifest.json" in page["meta"]
    assert not [c for c in page["console"] if c.startswith(("error", "pageerror"))]
    assert [r["rank"] for r in page["items"]] == list(range(1, K + 1))
    assert [r["id"] for r in page["items"]] == [i for i, _ in want]
    diff = np.abs(np.subtract([r["score"] for r in page["items"]], [s for _, s in want]))
    print(f"page vs Python onnxruntime: ids equal, max |score diff| {diff.max():.2e}; "
          f"page drive {page['seconds']} s")
    assert diff.max() <= 1e-6
    names = vocab.item_names or [""] * len(vocab.items)
    assert [r["title"] for r in page["items"]] == [names[r["index"]] for r in page["items"]]
    assert [vocab.items[r["index"]] for r in page["items"]] == [r["id"] for r in page["items"]]


@pytest.fixture(scope="module")
def neumf_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "neumf"
    result = tfrec.train("neumf", "movielens-100k", out=run, epochs=1, batch_size=2048)
    return run, result


@pytest.fixture(scope="module")
def gru4rec_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "gru4rec"
    recipe = recipe_for("gru4rec")
    result = tfrec.train("gru4rec", recipe.synthetic_data(0), out=run, **recipe.test_config)
    return run, result


def test_neumf_page_shows_onnxruntime_top10_for_a_user(neumf_run, serve, tmp_path, capsys):
    from tfrec.cli import main

    run, result = neumf_run
    assert main(["export", str(run), "--base-dir", str(tmp_path), "--web-demo"]) == 0
    path = tmp_path / "neumf" / "1"
    web = path / "web"
    assert f"Web demo of neumf -> {web}/index.html" in capsys.readouterr().out
    assert sorted(p.name for p in (web / "ort").iterdir()) == sorted(ORT_FILES)
    assert {"index.html", "demo.mjs", "data.json"} <= {p.name for p in web.iterdir()}
    vocab = read_vocab(path)
    assert vocab.item_names and vocab.seen is not None  # titles, seen items to drop

    user = "42"
    u = vocab.users.index(user)
    page = drive(f"{serve(path)}/web/", {"user": user, "exclude_seen": True},
                 ARTEFACTS / "web_demo_neumf.png")

    n = len(vocab.items)
    scores = _onnx(path).run(
        ["score"], {"user_id": np.full(n, u, np.int64), "item_id": np.arange(n)}
    )[0].reshape(-1)
    seen = seen_items(vocab, u)
    want = top_k(scores, vocab, K, seen)
    _check_page(page, want, vocab)
    assert not set(r["index"] for r in page["items"]) & set(seen.tolist())
    assert f"({len(seen)} seen items left out)" in page["status"]
    # ... and what the trained Keras model recommends from the run.
    keras_recs = recipe_for("neumf").recommend("neumf", result.serving, vocab, user, k=K)
    assert [i for i, _ in keras_recs] == [r["id"] for r in page["items"]]


def test_gru4rec_page_shows_next_items_for_a_typed_session(gru4rec_run, serve, tmp_path):
    run, result = gru4rec_run
    paths = export_run(run, base_dir=tmp_path, web_demo=True, verbose=False)
    demo = [g for g, p in paths.items() if (p / "web").is_dir()]
    assert demo == ["gru4rec"]  # the whole-session graph; the step graph needs a loop
    path = paths["gru4rec"]
    vocab = read_vocab(path)
    session = [vocab.items[i] for i in (5, 9, 2)]
    assert demo_data(path)["kind"] == "session"

    page = drive(f"{serve(path)}/web/", {"session": ",".join(session)},
                 ARTEFACTS / "web_demo_gru4rec.png")

    idx = [vocab.items.index(s) for s in session]
    scores = _onnx(path).run(["scores"], {"session_items": np.array([idx], np.int64)})[0][0]
    want = top_k(scores, vocab, K, [0, *idx])
    _check_page(page, want, vocab)
    assert not set(r["index"] for r in page["items"]) & {0, *idx}
    keras_recs = recipe_for("gru4rec").recommend("gru4rec", result.serving, vocab, session, k=K)
    assert [i for i, _ in keras_recs] == [r["id"] for r in page["items"]]


def test_page_refuses_a_modified_model_or_data_file(gru4rec_run, serve, tmp_path):
    """The page checks model.onnx and web/data.json against the manifest's
    sha256 (SubtleCrypto) before it loads them: one changed byte is an error on
    the page naming the file."""
    import shutil

    run, _ = gru4rec_run
    path = export_run(run, base_dir=tmp_path, web_demo=True, graphs=["gru4rec"],
                      verbose=False)["gru4rec"]
    node_package("playwright-core")
    chromium()
    for rel in ("model.onnx", "web/data.json"):
        copy = shutil.copytree(path, tmp_path / "copies" / rel.replace("/", "_"))
        data = bytearray((copy / rel).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / rel).write_bytes(bytes(data))
        proc = subprocess.run(
            [node(), str(JS / "drive_page.mjs"), f"{serve(copy)}/web/",
             json.dumps({"session": "1"}), str(tmp_path / f"{copy.name}.png")],
            capture_output=True, text=True, timeout=180, check=False,
        )
        page = json.loads(proc.stdout.strip().splitlines()[-1])
        assert proc.returncode == 1 and page["state"] == "error", page
        assert f"Error: {rel} was modified or is corrupt: its sha256" in page["status"]
        assert page["items"] == []


def test_web_demo_refuses_a_graph_it_cannot_drive(gru4rec_run, tmp_path):
    run, _ = gru4rec_run
    with pytest.raises(ValueError, match=r"--web-demo needs a user-item scorer"):
        export_run(run, base_dir=tmp_path, web_demo=True, graphs=["gru4rec_step"],
                   verbose=False)
    assert not (tmp_path / "gru4rec_step").exists()  # refused before exporting


def test_web_demo_without_onnxruntime_web_names_the_fix(gru4rec_run, tmp_path,
                                                        monkeypatch):
    run, _ = gru4rec_run
    monkeypatch.setenv("TFREC_ORT_WEB_DIST", str(tmp_path / "no-dist"))
    with pytest.raises(FileNotFoundError, match=r"ort.wasm.min.mjs.*make js-tools"):
        export_run(run, base_dir=tmp_path / "out", web_demo=True, verbose=False)
    assert not (tmp_path / "out").exists()


def test_screenshot_for_the_readme_is_committed():
    shot = ROOT / "docs" / "web_demo.png"
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
