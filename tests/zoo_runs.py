"""The zoo's runs and run exports, made once per test session and shared by every
pytest process of it (``pytest -n auto`` workers included).

``tfrec train`` of every registered model at its recipe's test settings, and
``tfrec export RUN`` of each run, are the expensive part of the zoo-wide tests
(tests/recipes/test_zoo_training.py trains and exports every model;
tests/export/test_export_all.py checks every export in every runtime). Both ask
here: the first process to need a model trains it (or exports it) under a per-model
file lock, in a folder every worker of the session sees (the parent of the
worker's ``basetemp``, the pattern pytest-xdist documents for session-wide data),
and the others wait for it and reuse it. Different models proceed in parallel.

Example:
    >>> run = zoo_run(tmp_path_factory, "neumf")
    >>> versions = zoo_export(tmp_path_factory, "neumf")  # [(model, graph, dir)]
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUNS = "zoo-runs"
EXPORTS = "zoo-run-exports"


def shared_dir(tmp_path_factory, name: str) -> Path:
    """``<session temp>/<name>``, the same folder for every worker."""
    base = Path(tmp_path_factory.getbasetemp())
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the controller's session folder
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(path: Path, value) -> None:
    from tfrec.io import atomic_write_json

    atomic_write_json(path, value)


def zoo_run(tmp_path_factory, name: str) -> Path:
    """The run directory of ``tfrec.train(name, recipe.synthetic_data(0),
    **recipe.test_config)``, trained once per session."""
    root = shared_dir(tmp_path_factory, RUNS)
    run = root / name
    done = root / f"{name}.done"
    with _locked(root / f".{name}.lock"):
        if not done.is_file():
            import tfrec
            from tfrec.registry import model_info

            recipe = model_info(name).recipe
            tfrec.train(name, recipe.synthetic_data(0), out=run, overwrite=True,
                        **dict(recipe.test_config))
            done.write_text("")
    return run


def zoo_export(tmp_path_factory, name: str) -> list[tuple[str, str, Path]]:
    """Every serving graph of ``zoo_run(name)`` exported once per session
    (`export.zoo.export_runs`: folders ``<name>`` and ``<name>-<graph>``):
    ``[(run model, graph, version folder)]``."""
    root = shared_dir(tmp_path_factory, EXPORTS)
    record = root / f".{name}.json"
    with _locked(root / f".{name}.lock"):
        if not record.is_file():
            from export.zoo import export_runs

            run = zoo_run(tmp_path_factory, name)
            versions = export_runs([run], root)
            _write_json(record, [[m, g, str(p)] for m, g, p in versions])
    return [(m, g, Path(p)) for m, g, p in json.loads(record.read_text())]


def exports_root(tmp_path_factory) -> Path:
    """The folder :func:`zoo_export` writes (``export_all``'s ``base_dir``)."""
    return shared_dir(tmp_path_factory, EXPORTS)
