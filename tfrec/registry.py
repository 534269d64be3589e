"""Model registry: every model is built, tested and exported the same way.

A model family registers its builder with :func:`register_model`, recording

* ``task``: what the serving model computes (``ranking``, ``rating``, ``retrieval``,
  ``session``, ``embedding``);
* ``example_inputs``: a function ``(kwargs, batch_size, rng) -> dict of numpy arrays``
  giving a valid input batch for a model built with ``kwargs``; tests and the export
  parity check feed it;
* ``test_kwargs``: the smallest arguments that build a working model (zoo-wide tests);
* ``parity``: the export tolerance, with a one-line reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TASKS = ("ranking", "rating", "retrieval", "session", "embedding")


@dataclass(frozen=True)
class Tolerance:
    """Export tolerance: |onnx - keras| <= atol + rtol * |keras| elementwise."""

    atol: float
    rtol: float
    reason: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., Any]
    task: str
    example_inputs: Callable[[dict, int, np.random.Generator], dict]
    test_kwargs: dict = field(default_factory=dict)
    parity: Tolerance = Tolerance(1e-5, 1e-5, "float32 embedding/MLP arithmetic")
    paper: str = ""

    @property
    def recipe(self):
        """The family's training recipe (`tfrec.recipes.base.Recipe`)."""
        from tfrec.recipes.base import recipe_for

        return recipe_for(self.name)

    def summary(self) -> str:
        return f"{self.name:<16} {self.task:<10} {self.paper}"


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    task: str,
    example_inputs: Callable[[dict, int, np.random.Generator], dict],
    test_kwargs: dict | None = None,
    parity: Tolerance | None = None,
    paper: str = "",
    name: str | None = None,
) -> Callable:
    """Decorator that records a model builder in the registry."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}. Received: task={task!r}")

    def decorator(builder: Callable) -> Callable:
        model_name = name or builder.__name__
        if model_name in _REGISTRY:
            raise ValueError(
                f"Model {model_name!r} is already registered "
                f"(by {_REGISTRY[model_name].builder.__module__})."
            )
        _REGISTRY[model_name] = ModelInfo(
            name=model_name,
            builder=builder,
            task=task,
            example_inputs=example_inputs,
            test_kwargs=dict(test_kwargs or {}),
            parity=parity or Tolerance(1e-5, 1e-5, "float32 embedding/MLP arithmetic"),
            paper=paper,
        )
        return builder

    return decorator


def _ensure_loaded() -> None:
    # Registration happens by explicit imports in tfrec.models.
    import tfrec.models  # noqa: F401


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered models, sorted, optionally of one task."""
    _ensure_loaded()
    return sorted(n for n, i in _REGISTRY.items() if task is None or i.task == task)


def model_info(name: str) -> ModelInfo:
    """The registry record of ``name``; unknown names raise with the valid ones."""
    _ensure_loaded()
    if name not in _REGISTRY:
        valid = sorted(_REGISTRY)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} Valid models: {', '.join(valid)}."
        )
    return _REGISTRY[name]


def create_model(name: str, **kwargs: Any):
    """Builds the registered model ``name`` with ``kwargs``; returns a ``keras.Model``."""
    return model_info(name).builder(**kwargs)
