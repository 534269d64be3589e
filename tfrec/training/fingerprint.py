"""Fingerprints of what defines a run: its settings and the data it was trained on.

A run's ``config.json`` records ``data`` (every source file's sha256 and size, the
users / items / rows the recipe saw) and ``fingerprint`` (the sha256 of the whole
definition: model, recipe, preset, config, builder arguments, data source and
data). Resuming compares the definition, and ``evaluate``, ``export`` and
``recommend`` refuse a run whose data files changed since it was trained.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tfrec.data.datasets import file_sha256
from tfrec.io import jsonable

DEFINITION_KEYS = ("model", "recipe", "preset", "config", "model_kwargs", "source")


class DataChangedError(ValueError):
    """The data a run was trained on is no longer the data on disk."""


def source_entries(source) -> list[dict]:
    """The files a `DataSource` reads, each ``{path, sha256, size}``: the user's
    files, or the catalogue set's files in the folder it is read from (each
    verified against the catalogue checksum by `source_files`)."""
    if source is None:
        return []
    found: list[tuple[str, str, int]] = []
    if source.file:
        found.append(_entry(Path(source.file)))
    else:
        from tfrec.data.datasets import source_files

        found += source_files(source.dataset, source.data_dir)
    if source.content:
        found.append(_entry(Path(source.content)))
    return [{"path": p, "sha256": h, "size": n} for p, h, n in found]


def _entry(path: Path) -> tuple[str, str, int]:
    return str(path.resolve()), file_sha256(path), path.stat().st_size


def _sizes(recipe, loaded) -> dict:
    """The users, items and rows the recipe saw (``describe`` holds the rows)."""
    vocab = recipe.vocab(loaded)
    return {
        "describe": recipe.describe(loaded),
        "num_users": len(vocab.users) if vocab.users is not None else None,
        "num_items": len(vocab.items) if vocab.items is not None else None,
    }


def data_fingerprint(source, recipe, loaded) -> dict:
    """What the run was trained on: files (path, sha256, size) and sizes."""
    return {"files": source_entries(source), **_sizes(recipe, loaded)}


def definition_fingerprint(record: dict) -> str:
    """sha256 of the run's whole definition (settings and data)."""
    payload = {k: record.get(k) for k in (*DEFINITION_KEYS, "data")}
    text = json.dumps(payload, sort_keys=True, default=jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def check_data_files(record: dict, run_dir, *, require: bool) -> None:
    """Raises `DataChangedError` when a file the run was trained on changed.

    ``require``: a missing file is an error too (``evaluate`` needs the data;
    ``export`` and ``recommend`` do not read it, so for them only a changed file
    counts).
    """
    for entry in (record.get("data") or {}).get("files", []):
        path = Path(entry["path"])
        if not path.is_file():
            if require:
                raise DataChangedError(
                    f"{path} is gone: the run {run_dir} was trained on it. Restore it "
                    "(or pass --data-dir with the same files)."
                )
            continue
        size = path.stat().st_size
        if size != entry["size"] or file_sha256(path) != entry["sha256"]:
            raise DataChangedError(
                f"{path} changed since {run_dir} was trained on it (sha256 "
                f"{entry['sha256'][:12]}…, {entry['size']} bytes; now "
                f"{file_sha256(path)[:12]}…, {size} bytes). Restore the file, or "
                "train a new run on the new data."
            )


def check_loaded(record: dict, run_dir, recipe, loaded) -> None:
    """Raises `DataChangedError` when the rebuilt data differs from the run's."""
    before = record.get("data")
    if not before:
        return
    now = _sizes(recipe, loaded)
    for key in ("num_users", "num_items", "describe"):
        if before.get(key) != now[key]:
            raise DataChangedError(
                f"The data of {run_dir} is not what it was trained on ({key}: "
                f"{before.get(key)!r} then, {now[key]!r} now). Evaluate it on the "
                "same data, or train a new run."
            )
