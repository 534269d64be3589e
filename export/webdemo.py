"""A static browser page next to an export: the recommender's ``model.onnx`` in
onnxruntime-web (wasm), top-10 items with titles for a chosen user, or next items
for a typed session (``tfrec export RUN --web-demo``).

Layout written into an exported version::

    <version>/web/index.html   the page (js/web/index.html)
    <version>/web/demo.mjs     loads ort, the model and data.json; scores; ranks
    <version>/web/data.json    item ids and titles, users and their seen items
                               (from the export's vocab/), the output to rank by
    <version>/web/ort/         ort.wasm.min.mjs, ort-wasm-simd-threaded.{mjs,wasm}
                               copied from js/node_modules/onnxruntime-web/dist

Serve ``<version>/`` over http (``python -m http.server -d <version>``; wasm does
not load from ``file://``) and open ``/web/``. The page fetches ``../model.onnx``.
``tfrec export RUN --web-demo`` writes ``web/`` inside the version folder while it
is still being built, before the atomic rename, so the page's files are listed
with their sha256 in ``manifest.json`` and verified like every other file, and a
killed export never leaves a half-written page. ``write_web_demo`` on an already
published version (``tfrec export --all``'s browser check) keeps a ``web/`` the
manifest lists and verifies it; otherwise it adds one atomically (not listed).
Two kinds of export are supported: user-item scorers (inputs ``user_id`` and
``item_id``: every item is scored for the user, seen items are left out when the
vocab has ``seen.npz``) and whole-session models (input ``session_items``, as
``gru4rec``: the session's own items are left out).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "js" / "web"
ORT_WEB_DIST = ROOT / "js" / "node_modules" / "onnxruntime-web" / "dist"
ORT_FILES = (
    "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
)
WEB_DIR = "web"
SCORE_OUTPUTS = ("score", "rating", "scores")


def demo_kind(manifest: dict) -> str | None:
    """``"user"``, ``"session"`` or None (no web demo for these inputs)."""
    inputs = {s["name"] for s in manifest["inputs"]}
    if inputs == {"user_id", "item_id"}:
        return "user"
    if inputs == {"session_items"}:
        return "session"
    return None


def _score_output(manifest: dict) -> str:
    names = [s["name"] for s in manifest["outputs"]]
    for name in SCORE_OUTPUTS:
        if name in names:
            return name
    raise ValueError(
        f"{manifest['name']} has no score output the web demo can rank by: outputs "
        f"{names}, expected one of {list(SCORE_OUTPUTS)}."
    )


def ort_web_dist(ort_dist: str | os.PathLike | None = None) -> Path:
    """onnxruntime-web's ``dist`` folder; raises when its files are missing."""
    dist = Path(ort_dist or os.environ.get("TFREC_ORT_WEB_DIST") or ORT_WEB_DIST)
    missing = [f for f in ORT_FILES if not (dist / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"onnxruntime-web files {missing} are missing under {dist}; run "
            "`make js-tools` (npm ci in js/) or set TFREC_ORT_WEB_DIST."
        )
    return dist


def demo_data(version_dir: str | os.PathLike, manifest: dict | None = None) -> dict:
    """What the page needs from the export: its kind, the output to rank by, item
    ids and titles, users and their seen items (CSR), an example session.
    ``manifest``: the manifest of a version still being built (default: read and
    verify ``version_dir/manifest.json``)."""
    from export.artifact import load_manifest
    from tfrec.training.runner import read_vocab

    path = Path(version_dir)
    if manifest is None:
        manifest = load_manifest(path)
    kind = demo_kind(manifest)
    if kind is None:
        raise ValueError(
            f"No web demo for {manifest['name']}: it takes "
            f"{sorted(s['name'] for s in manifest['inputs'])}; the demo takes a "
            "user-item scorer (user_id, item_id) or a session model (session_items)."
        )
    try:
        vocab = read_vocab(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"The web demo needs the item vocabulary: {err} Export a trained run "
            "(tfrec export RUN_DIR --web-demo), which copies the run's vocab/."
        ) from err
    data = {
        "name": manifest["name"],
        "version": manifest["version"],
        "keras_model_name": manifest.get("keras_model_name", ""),
        "kind": kind,
        "onnx": f"../{manifest['onnx']['file']}",
        "output": _score_output(manifest),
        "items": [str(i) for i in vocab.items],
        "titles": list(vocab.item_names) if vocab.item_names else None,
    }
    if kind == "user":
        if not vocab.users:
            raise FileNotFoundError(f"{path / 'vocab' / 'users.tsv'} is missing.")
        data["users"] = [str(u) for u in vocab.users]
        data["seen"] = (
            {"indptr": [int(v) for v in vocab.seen[0]],
             "indices": [int(v) for v in vocab.seen[1]]}
            if vocab.seen is not None
            else None
        )
    else:
        # Index 0 is padding in session models; a short default session to edit.
        data["example_session"] = data["items"][1:4]
    return data


def web_files(manifest: dict) -> list[str]:
    """The ``web/`` files the manifest lists (checksummed), sorted."""
    return sorted(f for f in manifest.get("checksums", {}) if f.startswith(f"{WEB_DIR}/"))


def write_web_demo(
    version_dir: str | os.PathLike,
    *,
    manifest: dict | None = None,
    ort_dist: str | os.PathLike | None = None,
) -> Path:
    """Writes ``<version_dir>/web/`` (replacing an older one atomically).

    Args:
        version_dir: An exported version with ``model.onnx`` and ``vocab/``, or
            the version folder an export is building (then pass ``manifest``).
        manifest: The manifest of the version being built (`export.artifact`'s
            ``before_publish`` hook); its checksums, added at publication, then
            cover ``web/``. Without it, the version's ``manifest.json`` is read
            and verified, and a ``web/`` it lists is verified and kept as is.
        ort_dist: onnxruntime-web's ``dist`` folder (default: the repo's
            ``js/node_modules/onnxruntime-web/dist``, or ``$TFREC_ORT_WEB_DIST``).

    Returns:
        The ``web`` folder; open ``web/index.html`` over http from ``version_dir``.

    Raises:
        ValueError: the export is neither a user-item scorer nor a session model.
        FileNotFoundError: no vocabulary in the export, or no onnxruntime-web files.
        ExportError: a published version's files (``web/`` included) do not
            match its manifest.
    """
    path = Path(version_dir)
    if manifest is None:
        from export.artifact import load_manifest

        if web_files(load_manifest(path)):  # load_manifest verified every file
            return path / WEB_DIR
    data = demo_data(path, manifest)
    dist = ort_web_dist(ort_dist)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-web-", dir=path))
    try:
        shutil.copyfile(TEMPLATES / "index.html", tmp / "index.html")
        shutil.copyfile(TEMPLATES / "demo.mjs", tmp / "demo.mjs")
        (tmp / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(dist / name, tmp / "ort" / name)
        (tmp / "data.json").write_text(
            json.dumps(data, ensure_ascii=False, separators=(",", ":")),
            encoding="utf-8",
        )
        os.chmod(tmp, 0o755)
        final = path / WEB_DIR
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-web-", dir=path))
            os.replace(final, old / WEB_DIR)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
