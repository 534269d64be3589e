"""What a training recipe is: the contract between a model family and the runner.

A **recipe** says how one model family trains. It is registered for the family's
model names (``register_recipe``) and found through the registry
(``tfrec.model_info(name).recipe``). The runner (`tfrec.training.runner`) drives
every recipe the same way:

1. ``config = recipe.make_config(model, preset=..., **overrides)``: a typed config
   (a dataclass deriving from :class:`TrainSettings`) with the paper's defaults,
   validated before any data is loaded; keys that are neither config fields nor
   builder keyword arguments raise with the valid ones.
2. ``data = recipe.load_data(source, config)``: the recipe's data kind, from a
   catalogue data set or the user's own files (:class:`DataSource`), or
   ``recipe.synthetic_data(seed)`` for tests.
3. For each name in ``recipe.stage_names(model, config)``:
   ``plan = recipe.build_stage(stage, model, data, config, previous)`` returns a
   :class:`StagePlan`: a compiled training ``keras.Model`` (whose ``compute_loss``
   or ``train_step`` holds the objective; never exported) and its ``tf.data``
   input, or a ``compute`` function for a non-Keras stage (ALS). The runner fits
   it (``BackupAndRestore``, per-epoch validation, early stopping) or, when the
   stage finished in an earlier attempt, loads its saved weights instead.
4. The last stage's ``plan.serving()`` gives the serving graphs
   (:class:`ServingGraph`, each a registered model name + builder kwargs + the
   functional model), saved in the run and exported one by one.
5. ``recipe.evaluate(model, serving, data, config, part="test")`` once, at the end.

Validation metrics come from ``plan.validate()`` (the validation split carved from
training data); the test part is read only by the final ``evaluate``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DATA_KINDS = ("interactions", "sessions", "histories", "tabular")
QUERY_KINDS = ("user", "session", "item", "pipeline")


# --------------------------------------------------------------------------- config


@dataclass
class TrainSettings:
    """Settings every recipe has. Recipes subclass this and add their own fields
    (redeclaring a field changes its default, e.g. GRU4Rec's batch of 32).

    Attributes:
        epochs: Passes over the training data (per stage, unless the recipe has
            per-stage epoch fields).
        batch_size: Examples per step.
        optimizer: A `tfrec.training.make_optimizer` name.
        learning_rate: Step size.
        seed: Seed of the weights, the sampling and the data order.
        early_stopping: Patience in epochs on the validation monitor, or None.
        ks: Cut-offs of the ranking metrics.
        mixed_precision: Train with ``mixed_float16`` compute (float32 variables,
            loss scaling); serving graphs and exports stay float32
            (`tfrec.training.precision`).
        jit_compile: XLA-compile the training step (a step XLA cannot compile
            falls back to the ordinary graph with a notice); False leaves
            Keras' default (XLA on GPU where the model allows it, never on CPU).
    """

    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: float = 0.001
    seed: int = 0
    early_stopping: int | None = None
    ks: tuple = (10,)
    mixed_precision: bool = False
    jit_compile: bool = False

    def validate(self) -> None:
        """Raises ``ValueError`` for a bad value. Subclasses call ``super()``."""
        from tfrec.training.optimizers import OPTIMIZERS

        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive int. Received: {name}={value!r}"
                )
        if self.optimizer not in OPTIMIZERS and self.optimizer not in getattr(
            self, "extra_optimizers", ()
        ):
            valid = (*OPTIMIZERS, *getattr(self, "extra_optimizers", ()))
            raise ValueError(
                f"`optimizer` must be one of {valid}. Received: {self.optimizer!r}"
            )
        if not isinstance(self.learning_rate, (int, float)) or not (
            self.learning_rate > 0
        ):
            raise ValueError(
                f"`learning_rate` must be > 0. Received: {self.learning_rate!r}"
            )
        if self.early_stopping is not None and (
            not isinstance(self.early_stopping, int) or self.early_stopping < 1
        ):
            raise ValueError(
                "`early_stopping` must be a positive int (patience) or None. "
                f"Received: {self.early_stopping!r}"
            )
        for name in ("mixed_precision", "jit_compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"`{name}` must be true or false. Received: "
                    f"{name}={getattr(self, name)!r}"
                )
        if not self.ks or not all(isinstance(k, int) and k > 0 for k in self.ks):
            raise ValueError(f"`ks` must be positive ints. Received: {self.ks!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """CLI strings and JSON lists into the type of the field's default."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise ValueError(f"`{name}` must be true or false. Received: {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(
        value, bool
    ):
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        return (value,)
    return value


@dataclass(frozen=True)
class Preset:
    """Named settings behind a reported result, with where they come from.

    Attributes:
        name: Preset name (``ncf_paper``).
        values: Config fields and builder kwargs.
        source: Provenance: paper table, official parameter file, our validation.
        dataset: The data set the preset was set for (the default ``--dataset``).
        models: Model names it applies to (empty: every model of the recipe).
    """

    name: str
    values: Mapping[str, Any]
    source: str
    dataset: str | None = None
    models: tuple = ()


# --------------------------------------------------------------------------- data


@dataclass
class DataSource:
    """Where a run's data comes from: a catalogue data set or the user's files.

    Attributes:
        dataset: Catalogue name (``tfrec datasets``), or None with ``file``.
        data_dir: Local copy of the catalogue data set.
        file: The user's own ``.csv`` / ``.tsv`` / ``.parquet`` interactions.
        columns: Canonical name -> column of ``file``: ``user``, ``item``,
            ``rating``, ``time``, ``session`` (``user=customer,item=sku``).
        content: Item content / features file, for recipes that need one.
        split: How to split: ``leave_one_out`` (by time), ``time`` (a time cut),
            ``random`` (ratio), ``session_last_day``; None: the recipe's default.
        split_seed: Seed of a random split and of sampled evaluation negatives.
        test_fraction: Share held out for test (``random``, ``time``).
        valid_fraction: Share of training held out for validation.
        eval_negatives: Sampled negatives per held-out item (sampled protocol).
    """

    dataset: str | None = None
    data_dir: str | None = None
    file: str | None = None
    columns: dict = field(default_factory=dict)
    content: str | None = None
    split: str | None = None
    split_seed: int = 0
    test_fraction: float = 0.1
    valid_fraction: float = 0.1
    eval_negatives: int = 99

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        return self.dataset or str(self.file)


@dataclass
class Vocab:
    """Raw ids of the indices a run's models use, saved as ``vocab/`` in the run.

    Attributes:
        items: Raw id of each item index (index 0 .. n-1, or as the recipe's
            models number them: GRU4Rec's index 0 is padding, so ``items[0]`` is
            ``""`` there).
        users: Raw id of each user index, or None (session models).
        item_names: Title of each item index, or None.
        seen: ``(indptr, indices)`` CSR of each user's known items, or None.
        item_content: ``[num_items, ...]`` content of each item index, for models
            that score items from it (VBPR, the content CNN), or None.
        tables: Other arrays a request needs besides the models, by name (watch
            times and item features of the YouTube chain), or None.
        seen_values: float32 rating of each entry of ``seen``'s indices (AutoRec
            rebuilds a user's rating vector from them), or None.
    """

    items: list
    users: list | None = None
    item_names: list | None = None
    seen: tuple[np.ndarray, np.ndarray] | None = None
    item_content: np.ndarray | None = None
    tables: dict | None = None
    seen_values: np.ndarray | None = None


# --------------------------------------------------------------------------- stages


@dataclass
class ServingGraph:
    """One exported model: a registered name, its builder kwargs, the model.

    ``create_model(name, **kwargs)`` builds the same architecture, and
    ``model_info(name).example_inputs(kwargs, ...)`` feeds it (export parity).
    """

    name: str
    kwargs: dict
    model: Any


@dataclass
class StagePlan:
    """One training stage, ready to run.

    A Keras stage has ``trainer`` (compiled), ``dataset`` and ``models``; a
    non-Keras stage has ``compute`` instead. The runner saves ``models``' weights
    (and ``compute``'s arrays) when the stage ends and loads them instead of
    training when a later attempt finds the stage finished.

    Attributes:
        trainer: The training ``keras.Model`` (compiled; holds the objective).
        dataset: Its ``tf.data`` input for ``fit``.
        epochs: Epochs of this stage.
        models: Named models whose weights are the stage's result.
        callbacks: Callbacks the stage needs (e.g. resets per epoch).
        validate: ``() -> {metric: value}`` on the validation part.
        validate_every: Run ``validate`` every this many epochs (and at the
            last epoch).
        monitor: The ``validate`` key early stopping watches (``ndcg@10``).
        monitor_mode: ``max`` or ``min``.
        compute: ``() -> {name: array}`` for a non-Keras stage.
        arrays: A finished non-Keras stage's arrays (set by the runner).
        serving: ``() -> {name: ServingGraph}``; required on the last stage.
        steps_per_epoch: For ``fit`` when the dataset is infinite.
        early_stopping: Whether the config's ``early_stopping`` applies to this
            stage (False for a refit stage whose epochs an earlier stage chose).
        best_epoch: Set by the runner when the stage ends: the epoch (1-based)
            with the best validation ``monitor``, or None without validation.
            Later stages read it (``previous["train"].best_epoch``).
    """

    trainer: Any = None
    dataset: Any = None
    epochs: int = 1
    models: dict = field(default_factory=dict)
    callbacks: list = field(default_factory=list)
    validate: Callable[[], dict] | None = None
    validate_every: int = 1
    monitor: str | None = None
    monitor_mode: str = "max"
    compute: Callable[[], dict] | None = None
    arrays: dict = field(default_factory=dict)
    serving: Callable[[], dict] | None = None
    steps_per_epoch: int | None = None
    early_stopping: bool = True
    best_epoch: int | None = None


# --------------------------------------------------------------------------- recipe


class Recipe:
    """Base class of a family's training recipe (subclass; set the attributes).

    Attributes:
        name: Recipe name (the family, ``ncf``).
        models: Registered model names this recipe trains.
        data_kind: One of :data:`DATA_KINDS`.
        needs_content: Whether item content / features are required.
        default_dataset: The catalogue data set ``tfrec train MODEL`` uses.
        datasets: Catalogue data sets the recipe can load.
        splits: Split names the recipe accepts; the first is the default.
        query: What ``recommend`` takes: one of :data:`QUERY_KINDS`.
        Config: The config dataclass (a :class:`TrainSettings` subclass).
        presets: Named presets (:class:`Preset`).
        test_config: Small settings for the zoo-wide training test.
    """

    name: str = ""
    models: tuple = ()
    data_kind: str = "interactions"
    needs_content: bool = False
    default_dataset: str = "movielens-100k"
    datasets: tuple = ()
    splits: tuple = ("leave_one_out",)
    query: str = "user"
    Config: type = TrainSettings
    presets: tuple = ()
    test_config: Mapping[str, Any] = {}

    # ---- config ------------------------------------------------------------
    def builder_kwargs(self, model: str) -> dict[str, inspect.Parameter]:
        """Keyword-only builder arguments of ``model`` (its hyperparameters)."""
        from tfrec.registry import model_info

        sig = inspect.signature(model_info(model).builder)
        return {
            n: p
            for n, p in sig.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def size_kwargs(self) -> tuple[str, ...]:
        """Builder arguments that come from the data, never from the user."""
        return ()

    def preset(self, name: str) -> Preset:
        by_name = {p.name: p for p in self.presets}
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Unknown preset {name!r} for the {self.name} recipe.{hint} Presets: "
                f"{', '.join(by_name) or 'none'} (`tfrec presets`)."
            )
        return by_name[name]

    def make_config(
        self, model: str, *, preset: str | None = None, **overrides: Any
    ) -> tuple[TrainSettings, dict]:
        """``(config, model_kwargs)`` from the defaults, a preset and overrides.

        Raises ``ValueError`` for an unknown key (naming the valid ones), a bad
        value, or a preset that does not apply to ``model``.
        """
        values: dict[str, Any] = {}
        if preset is not None:
            p = self.preset(preset)
            if p.models and model not in p.models:
                raise ValueError(
                    f"Preset {preset!r} is for {', '.join(p.models)}, not {model!r}."
                )
            values.update(p.values)
        values.update(overrides)
        fields = {f.name: f for f in dataclasses.fields(self.Config)}
        builder = self.builder_kwargs(model)
        sizes = set(self.size_kwargs())
        config_values, model_kwargs = {}, {}
        for key, value in values.items():
            if key in fields:
                default = fields[key].default
                if default is dataclasses.MISSING:
                    default = None
                config_values[key] = _coerce(key, value, default)
            elif key in builder and key not in sizes:
                default = builder[key].default
                model_kwargs[key] = _coerce(
                    key, value, None if default is inspect.Parameter.empty else default
                )
            else:
                valid = sorted(set(fields) | (set(builder) - sizes))
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"Unknown setting {key!r} for {model} ({self.name} recipe).{hint} "
                    f"Valid settings: {', '.join(valid)}."
                )
        config = self.Config(**config_values)
        config.validate()
        return config, model_kwargs

    # ---- data --------------------------------------------------------------
    def load_data(self, source: DataSource, config: TrainSettings) -> Any:
        """The recipe's data (its own kind) from ``source``."""
        raise NotImplementedError(f"{type(self).__name__}.load_data")

    def synthetic_data(self, seed: int = 0) -> Any:
        """Tiny data of the recipe's kind, for the zoo-wide tests."""
        raise NotImplementedError(f"{type(self).__name__}.synthetic_data")

    def describe(self, data: Any) -> str:
        """One line about the loaded data, printed before training."""
        return type(data).__name__

    def vocab(self, data: Any) -> Vocab:
        """Raw ids of the model indices, saved in the run (``vocab/``)."""
        raise NotImplementedError(f"{type(self).__name__}.vocab")

    # ---- training ----------------------------------------------------------
    def stage_names(self, model: str, config: TrainSettings) -> tuple[str, ...]:
        return ("train",)

    def build_stage(
        self,
        stage: str,
        model: str,
        data: Any,
        config: TrainSettings,
        model_kwargs: dict,
        previous: dict[str, StagePlan],
    ) -> StagePlan:
        """The :class:`StagePlan` of ``stage``; ``previous`` holds finished stages
        (their ``models`` trained, their ``arrays`` computed)."""
        raise NotImplementedError(f"{type(self).__name__}.build_stage")

    # ---- serving contract ----------------------------------------------------
    #: What unknown ids do in this family's serving graphs (export manifest);
    #: None: the all-zero embedding of `tfrec.layers.IdEmbedding`.
    oov_policy: str | None = None

    def input_notes(self, graph: str) -> dict[str, str]:
        """``{input name: what it holds}`` for the export manifest. The default
        describes index inputs; recipes whose graphs take raw ids override it."""
        return {
            "user_id": "user index: the row of vocab/users.tsv that holds the raw id "
            "(tfrec recommend maps raw ids)",
            "item_id": "item index: the row of vocab/items.tsv that holds the raw id",
        }

    # ---- evaluation and use ------------------------------------------------
    def evaluate(
        self,
        model: str,
        serving: dict[str, ServingGraph],
        data: Any,
        config: TrainSettings,
        part: str = "test",
    ) -> dict[str, dict[str, float]]:
        """``{protocol: {metric: value}}`` of the trained serving graphs on ``part``
        (``valid`` or ``test``)."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate")

    def recommend(
        self,
        model: str,
        serving: dict[str, ServingGraph],
        vocab: Vocab,
        query: Any,
        *,
        k: int = 10,
        exclude_seen: bool = True,
    ) -> list[tuple[Any, float]]:
        """Top-``k`` ``(raw item id, score)`` for ``query`` (a raw user id, a list
        of raw item ids for a session, or a raw item id)."""
        raise NotImplementedError(f"{type(self).__name__}.recommend")


# --------------------------------------------------------------------------- registry

_RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe_cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: registers an instance of ``recipe_cls`` for its models."""
    recipe = recipe_cls()
    if not recipe.name or not recipe.models:
        raise ValueError(f"{recipe_cls.__name__} must set `name` and `models`.")
    if recipe.data_kind not in DATA_KINDS:
        raise ValueError(
            f"{recipe_cls.__name__}.data_kind must be one of {DATA_KINDS}. "
            f"Received: {recipe.data_kind!r}"
        )
    for model in recipe.models:
        if model in _RECIPES:
            raise ValueError(
                f"Model {model!r} already has the recipe {_RECIPES[model].name!r}."
            )
        _RECIPES[model] = recipe
    return recipe_cls


def recipe_for(model: str) -> Recipe:
    """The recipe registered for ``model``; a model without one raises."""
    import tfrec.recipes  # noqa: F401  (registers every recipe)

    if model not in _RECIPES:
        raise ValueError(
            f"Model {model!r} has no training recipe. Models with one: "
            f"{', '.join(sorted(_RECIPES))}."
        )
    return _RECIPES[model]


def recipes() -> dict[str, Recipe]:
    """Every registered recipe by model name."""
    import tfrec.recipes  # noqa: F401

    return dict(_RECIPES)
