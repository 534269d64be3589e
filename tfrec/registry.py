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

    def catalogue(self, kwargs: dict | None = None) -> Catalogue | None:
        """How this model scores a whole catalogue (its ``recommend`` signature,
        `export.recommend`), or None where ranking a catalogue makes no sense
        (see :data:`CATALOGUE_SCORING`)."""
        rule = CATALOGUE_SCORING.get(self.name)
        return rule(dict(kwargs or {})) if callable(rule) else rule

    @property
    def recipe(self):
        """The family's training recipe (`tfrec.recipes.base.Recipe`)."""
        from tfrec.recipes.base import recipe_for

        return recipe_for(self.name)

    def summary(self) -> str:
        return f"{self.name:<16} {self.task:<10} {self.paper}"


@dataclass(frozen=True)
class Factor:
    """Where a factor model keeps its user-side and item-side vectors
    (`tfrec.evaluation.factors`): its scores of every item are then one matmul,
    ``act(U[u] @ I^T + b_u + b_i + b)`` (plus, with ``tower``, an MLP over the
    user's half of the first layer plus every item's precomputed half).

    * ``user`` / ``item``: layers paired in order, their vectors concatenated:
      an ``IdEmbedding`` on the id, or ``"layer@input"`` for a bias-free
      ``Dense`` applied to an item-side input (VBPR's ``E f_i``);
    * ``user_bias``, ``item_bias`` (summed, same two forms), ``offset`` (a
      ``Bias`` layer's scalar);
    * ``head``: the ``Dense(1)`` prediction layer: its kernel weights the
      product elementwise (GMF's ``h``, folded into the user vector) and then the
      tower's output; its bias is added and its activation applied. Without a
      head, the activation of the layer named like the output (MF's sigmoid).
    * ``tower``: ``(user embedding, item embedding, prefix)`` of an NCF MLP over
      ``concat(user, item)`` whose Dense layers are ``{prefix}_dense_{k}``.
    """

    user: tuple[str, ...] = ()
    item: tuple[str, ...] = ()
    user_bias: str | None = None
    item_bias: tuple[str, ...] = ()
    offset: str | None = None
    head: str | None = None
    tower: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Catalogue:
    """How a model scores every item of its catalogue (`export.recommend`).

    Rules:

    * ``pairwise``: the model scores (query, item) pairs; each query row is tiled
      against every item: ``item_input`` takes the item index ``0..N-1`` and the
      ``item_features`` inputs take rows of constants the export holds
      (``[N, ...]``); ``scores`` is the model's per-pair output.
    * ``vector``: the model's output ``scores`` is already ``[batch, N]``.
    * ``columns``: the model maps an item's vector (the constant ``item_features``
      row) to a vector over users (I-AutoRec); the query is a ``user_id`` and its
      scores are that user's column of the reconstruction.
    * ``embedding``: the layer ``table`` holds item embeddings ``[N, d]``; the
      query item's cosine to every item, the item itself excluded.

    ``factor``: a ``pairwise`` model whose score is a dot product of a user-side
    and an item-side vector (plus biases; `Factor`): its recommend graph and its
    evaluation score every item in one matmul instead of tiling the pair model.

    ``never``: item indices never recommended (GRU4Rec's padding index 0).
    ``passthrough``: outputs returned beside ``item_ids``/``scores`` (the new
    GRU state of ``gru4rec_step``).
    """

    rule: str
    scores: str = "score"
    item_input: str | None = None
    item_features: tuple[str, ...] = ()
    table: str | None = None
    never: tuple[int, ...] = ()
    passthrough: tuple[str, ...] = ()
    factor: Factor | None = None


def _autorec_catalogue(kwargs: dict) -> Catalogue:
    # I-AutoRec (default) reconstructs one item's vector over users; U-AutoRec
    # reconstructs one user's vector over items.
    if kwargs.get("variant", "item") == "user":
        return Catalogue("vector", scores="reconstruction")
    return Catalogue("columns", scores="reconstruction", item_features=("ratings",))


def _mv_dnn_catalogue(kwargs: dict) -> Catalogue:
    # One item input per view the model was built with (no ids: content only).
    from tfrec.models.mv_dnn import VIEW_INPUTS, VIEWS

    views = tuple(kwargs.get("views") or VIEWS)
    return Catalogue("pairwise", item_features=tuple(VIEW_INPUTS[v] for v in views))


_PAIR = Catalogue("pairwise", item_input="item_id")
_GMF = {"user": ("gmf_user_embedding",), "item": ("gmf_item_embedding",)}
_MLP = ("mlp_user_embedding", "mlp_item_embedding", "mlp")
_CF = Factor(user=("user_factors",), item=("item_factors",), item_bias=("item_bias",))
_HYBRID = Catalogue("pairwise", item_input="item_id", item_features=("item_content",))
_SESSION = Catalogue("vector", scores="scores", never=(0,))

# The one table of catalogue scoring rules (a model missing here has no
# ``recommend`` signature; the reasons are in export/recommend.py). Item-side
# constants a rule needs (``item_features``) come, in a ``tfrec export RUN``, from
# the run's vocabulary through the recipe's ``serving_catalogue`` (MV-DNN's item
# views, I-AutoRec's rating rows) or from ``vocab/item_content.npz``.
CATALOGUE_SCORING: dict[str, Catalogue | Callable[[dict], Catalogue]] = {
    "gmf": Catalogue("pairwise", item_input="item_id",
                     factor=Factor(**_GMF, head="prediction")),
    "mf": Catalogue("pairwise", item_input="item_id", factor=Factor(
        user=("mf_user_embedding",), item=("mf_item_embedding",),
        user_bias="mf_user_bias", item_bias=("mf_item_bias",), offset="global_bias",
    )),
    "ncf_mlp": Catalogue("pairwise", item_input="item_id",
                         factor=Factor(head="prediction", tower=_MLP)),
    "neumf": Catalogue("pairwise", item_input="item_id",
                       factor=Factor(**_GMF, head="prediction", tower=_MLP)),
    "bpr_mf": Catalogue("pairwise", item_input="item_id", factor=_CF),
    "youtube_candidate": _PAIR,
    "vbpr": Catalogue(
        "pairwise", item_input="item_id", item_features=("item_features",),
        factor=Factor(
            user=("user_factors", "user_visual_factors"),
            item=("item_factors", "visual_projection@item_features"),
            item_bias=("item_bias", "visual_bias@item_features"),
        ),
    ),
    "cbf_profile": Catalogue("pairwise", item_features=("item_content",)),
    "content_cnn_ranker": Catalogue("pairwise", item_features=("content",)),
    "mv_dnn": _mv_dnn_catalogue,
    **{
        f"hybrid_{v}": _HYBRID
        for v in (
            "initialized", "joint", "mapping", "regularized", "switching", "weighted"
        )
    },  # fmt: skip
    "autorec": _autorec_catalogue,
    "autoencoder": _autorec_catalogue,
    "cdae": Catalogue("vector", scores="scores"),
    "gru4rec": _SESSION,
    "gru4rec_topk": _SESSION,
    "gru4rec_step": Catalogue(
        "vector", scores="scores", never=(0,), passthrough=("new_hidden_state",)
    ),
    "item2vec": Catalogue("embedding", table="item_embedding"),
    "item2vec_similar": Catalogue("embedding", table="similar_items"),
}

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
