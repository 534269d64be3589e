"""Shared fixtures. Tests read real data from ../shared/data (or TFREC_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    env = os.environ.get("TFREC_DATA_DIR")
    for candidate in (env, ROOT.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    return None


if shared_data_dir() is not None:  # tests that train on catalogue data read it here
    os.environ.setdefault("TFREC_DATA_DIR", str(shared_data_dir()))


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared data (../shared/data or TFREC_DATA_DIR) not available")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(0)


class ZooExports:
    """Each registered model built at its test sizes and exported once per session
    (SavedModel + ONNX with parity), shared by every export-side test:
    ``zoo_exports(name)`` -> ``(model, version_dir)``."""

    def __init__(self, base: Path):
        self.base, self._done = base, {}

    def __call__(self, name: str):
        if name not in self._done:
            from export import export_model
            from export.recommend import example_catalogue
            from tfrec.registry import model_info

            info = model_info(name)
            model = info.builder(**info.test_kwargs)
            path = export_model(
                model,
                name,
                base_dir=self.base,
                example_inputs=lambda b, r: info.example_inputs(info.test_kwargs, b, r),
                atol=info.parity.atol,
                rtol=info.parity.rtol,
                tolerance_reason=info.parity.reason,
                catalogue=example_catalogue(name, info.test_kwargs),
            )
            self._done[name] = (model, path)
        return self._done[name]


@pytest.fixture(scope="session")
def zoo_exports(tmp_path_factory) -> ZooExports:
    return ZooExports(tmp_path_factory.mktemp("zoo_saved_models"))
