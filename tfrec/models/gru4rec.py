"""GRU4Rec: session-based recommendations with recurrent neural networks.

References:
    Balázs Hidasi, Alexandros Karatzoglou, Linas Baltrunas, Domonkos Tikk.
    "Session-based Recommendations with Recurrent Neural Networks". ICLR 2016.
    Balázs Hidasi, Alexandros Karatzoglou. "Recurrent Neural Networks with Top-k
    Gains for Session-based Recommendations". CIKM 2018.
    Balázs Hidasi, Ádám Czapp. "The Effect of Third Party Implementations on
    Reproducibility". RecSys 2023 (and the official code,
    github.com/hidasib/GRU4Rec and GRU4Rec_PyTorch_Official).

This module holds the *serving* graphs, built from one weight set:

* ``gru4rec`` (whole sequence): ``session_items`` (int64 ``[batch, time]``,
  left-padded with 0) -> ``scores`` (float32 ``[batch, num_items + 1]``, the
  score of item index ``k`` in column ``k``);
* ``gru4rec_topk``: the same, plus ``top_items`` / ``top_scores`` (the ``k``
  best item indices and their scores);
* ``gru4rec_step``: ``item_id`` (int64 ``[batch]``) and ``hidden_state``
  (float32 ``[batch, sum(layers)]``, the layers' states concatenated) ->
  ``scores`` and ``new_hidden_state`` (the input of the next click; an ONNX
  graph cannot use one name for an input and an output): one click at a time, the way a
  session recommender serves. A new session starts from a zero state.

Training (session-parallel mini-batches, sampled negatives, BPR-max /
cross-entropy / TOP1-max, Adagrad with momentum) lives in
:mod:`tfrec.training.session` (`GRU4RecTrainer`), which trains the layers of a
``gru4rec_step`` model; :func:`serving_models` turns it into all three graphs.
The recipe :mod:`tfrec.recipes.gru4rec` drives it for ``tfrec train`` (any of
the three names; presets = the official paramfiles).

Architecture, as in the official code:

* item input: with ``constrained_embedding=True`` (the official default) the
  input embedding *is* the output item table (dimension ``layers[-1]``); else a
  separate embedding of ``embedding_dim``, or with ``embedding_dim=0`` the
  one-hot item vector straight into the first GRU layer (its input kernel then
  has one row per item).
* GRU layers in the original formulation (reset gate applied to the state
  before the recurrent matmul, Keras ``reset_after=False``), one bias per gate;
  the weights are drawn per gate from U(-s, s), ``s = sqrt(6 / (fan_in +
  units))`` (`GRU4RecUniform`), biases zero.
* scores: ``h W_y^T + b_y`` over all items; the output table ``W_y`` is drawn
  the same way, the bias ``b_y`` starts at zero.

Ids: item indices are ``1..num_items`` (`tfrec.data.sessions.Sessions`).
Index 0 is padding: masked in ``session_items``; in ``gru4rec_step`` an
``item_id`` of 0 returns the state unchanged (so stepping through a
left-padded row equals the whole-sequence model). Ids outside ``0..num_items``
(negative, too large) are unknown items: they look up a zero input vector
(`tfrec.layers.IdEmbedding`'s rule) and still advance the state, identically in
TF and ONNX. The padding column 0 of ``scores`` is fixed at ``-1e9`` so it is
never recommended.

Deviations: dropout and the final ELU of BPR-max are training-time only (the
serving graphs return the linear scores, whose ranking the ELU does not
change). With ``embedding_dim=0`` (one-hot input) the input kernel is updated
densely, not row-wise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from tfrec.registry import Tolerance, register_model

PAD_SCORE = -1e9


def _check_positive_int(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _check_layers(layers):
    if isinstance(layers, (int, np.integer)):
        layers = (int(layers),)
    layers = tuple(layers) if isinstance(layers, Sequence) else layers
    if (
        not isinstance(layers, tuple)
        or not layers
        or any(
            not isinstance(u, (int, np.integer)) or isinstance(u, bool) or u < 1
            for u in layers
        )
    ):
        raise ValueError(
            "`layers` must be a non-empty tuple of positive ints (GRU units per "
            f"layer). Received: layers={layers!r}"
        )
    return tuple(int(u) for u in layers)


def _check_dropout(name, value):
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="tfrec")
class GRU4RecUniform(keras.initializers.Initializer):
    """U(-s, s) per gate block, ``s = sqrt(6 / (fan_in + fan_out / gates))``.

    The official GRU4Rec draws each gate's matrix separately with Glorot's
    uniform bound; a Keras GRU kernel stacks ``gates`` of them side by side.
    """

    def __init__(self, gates: int = 1, seed: int | None = None):
        self.gates = int(gates)
        self.seed = seed
        self._seed_gen = keras.random.SeedGenerator(seed) if seed is not None else None

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = int(shape[0]), int(shape[-1]) // self.gates
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return keras.random.uniform(
            shape, -bound, bound, dtype=dtype, seed=self._seed_gen
        )

    def get_config(self):
        return {"gates": self.gates, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfrec")
class ItemTable(keras.layers.Layer):
    """The item table: looks items up (int input) or scores all items (float input).

    One layer serves both roles so the shared ("constrained") input/output
    embedding of GRU4Rec is one variable. Row/column ``k`` is item index ``k``;
    row 0 (padding) and ids outside ``1..num_items`` look up zeros, and column 0
    of the scores is `PAD_SCORE`.

    Args:
        num_items: Number of items (indices ``1..num_items``).
        output_dim: Width of the item vectors.
        use_bias: Whether scores get a per-item bias (the output table).
    """

    def __init__(self, num_items: int, output_dim: int, *, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("num_items", num_items)
        _check_positive_int("output_dim", output_dim)
        self.num_items = int(num_items)
        self.output_dim = int(output_dim)
        self.use_bias = bool(use_bias)
        self.supports_masking = True

    def build(self, input_shape=None):
        if self.built:
            return
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_items + 1, self.output_dim),
            initializer=GRU4RecUniform(),
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.num_items + 1,), initializer="zeros"
            )
        self.built = True

    # -- used by the training wrapper directly (gathers rows only) --
    def lookup(self, ids):
        ids = ops.cast(ids, "int64")
        valid = ops.logical_and(
            ops.greater_equal(ids, 1), ops.less_equal(ids, self.num_items)
        )
        safe = ops.where(valid, ids, ops.zeros_like(ids))
        vectors = ops.take(self.embeddings, safe, axis=0)
        return vectors * ops.expand_dims(ops.cast(valid, vectors.dtype), -1)

    def score_all(self, hidden):
        scores = ops.matmul(hidden, ops.transpose(self.embeddings))
        if self.use_bias:
            scores = scores + self.bias
        pad = ops.concatenate(
            [
                ops.full((1,), PAD_SCORE, dtype=scores.dtype),
                ops.zeros((self.num_items,), dtype=scores.dtype),
            ]
        )
        keep = ops.concatenate(
            [ops.zeros((1,), scores.dtype), ops.ones((self.num_items,), scores.dtype)]
        )
        return scores * keep + pad

    def call(self, inputs):
        if "int" in str(inputs.dtype):
            return self.lookup(inputs)
        return self.score_all(inputs)

    def compute_mask(self, inputs, mask=None):
        # Sequences of ids ([batch, time]) are masked where padded (0); single
        # ids (the step model) and scores carry no mask.
        if "int" in str(inputs.dtype) and len(inputs.shape) >= 2:
            return ops.not_equal(inputs, 0)
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            num_items=self.num_items,
            output_dim=self.output_dim,
            use_bias=self.use_bias,
        )
        return config


@keras.saving.register_keras_serializable(package="tfrec")
class OneHotItems(keras.layers.Layer):
    """One-hot item vectors ``[..., num_items + 1]``; padding and unknown ids -> 0."""

    def __init__(self, num_items: int, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("num_items", num_items)
        self.num_items = int(num_items)
        self.supports_masking = True

    def call(self, ids):
        ids = ops.cast(ids, "int64")
        valid = ops.logical_and(
            ops.greater_equal(ids, 1), ops.less_equal(ids, self.num_items)
        )
        safe = ops.where(valid, ids, ops.zeros_like(ids))
        onehot = ops.one_hot(safe, self.num_items + 1, dtype=self.compute_dtype)
        return onehot * ops.expand_dims(ops.cast(valid, onehot.dtype), -1)

    def compute_mask(self, inputs, mask=None):
        if len(inputs.shape) >= 2:
            return ops.not_equal(inputs, 0)
        return None

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items}


def _gru_cell(units, name):
    return keras.layers.GRUCell(
        units,
        reset_after=False,
        kernel_initializer=GRU4RecUniform(gates=3),
        recurrent_initializer=GRU4RecUniform(gates=3),
        bias_initializer="zeros",
        name=name,
    )


@keras.saving.register_keras_serializable(package="tfrec")
class StackedGRUStep(keras.layers.Layer):
    """One time step of stacked GRU layers over a concatenated state.

    ``call(x, state, item_id)`` returns ``(top_output, new_state)``; where
    ``item_id == 0`` (padding) the state is returned unchanged. With
    ``dropout > 0`` and ``training=True`` each layer's output is dropped out
    and *stored* as its new state, as the official code does.

    Args:
        layers: GRU units per layer.
        dropout: Hidden dropout rate (training only).
    """

    def __init__(self, layers: Sequence[int], *, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_layers(layers)
        _check_dropout("dropout", dropout)
        self.dropout = float(dropout)
        self.cells = [_gru_cell(u, f"gru_{i + 1}") for i, u in enumerate(self.units)]
        self.drops = [keras.layers.Dropout(self.dropout) for _ in self.units]

    @property
    def state_size(self) -> int:
        return int(sum(self.units))

    def build(self, x_shape, state_shape=None, item_id_shape=None):
        dim = int(x_shape[-1])
        for cell, units in zip(self.cells, self.units, strict=True):
            cell.build((None, dim))
            dim = units
        self.built = True

    def call(self, x, state, item_id=None, training=False):
        new_states = []
        start = 0
        keep = None
        if item_id is not None:
            keep = ops.expand_dims(ops.equal(ops.cast(item_id, "int64"), 0), -1)
        for cell, drop, units in zip(self.cells, self.drops, self.units, strict=True):
            h = state[:, start : start + units]
            start += units
            out, _ = cell(x, [h], training=training)
            out = drop(out, training=training)
            if keep is not None:
                out = ops.where(keep, h, out)
            new_states.append(out)
            x = out
        return x, ops.concatenate(new_states, axis=-1)

    def compute_output_shape(self, x_shape, state_shape=None, item_id_shape=None):
        return (x_shape[0], self.units[-1]), (x_shape[0], self.state_size)

    def get_config(self):
        return {**super().get_config(), "layers": self.units, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="tfrec")
class TopK(keras.layers.Layer):
    """The ``k`` highest scores per row and their column (item) indices."""

    def __init__(self, k: int, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("k", k)
        self.k = int(k)

    def call(self, scores):
        values, indices = ops.top_k(scores, k=self.k, sorted=True)
        return {"top_scores": values, "top_items": ops.cast(indices, "int64")}

    def compute_output_spec(self, scores):
        shape = tuple(scores.shape[:-1]) + (self.k,)
        return {
            "top_scores": keras.KerasTensor(shape, dtype=scores.dtype),
            "top_items": keras.KerasTensor(shape, dtype="int64"),
        }

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def _input_tables(num_items, layers, embedding_dim, constrained_embedding):
    """(input layer, output table); they are one layer when constrained."""
    output = ItemTable(num_items, layers[-1], use_bias=True, name="item_table")
    if constrained_embedding:
        return output, output
    if embedding_dim:
        _check_positive_int("embedding_dim", embedding_dim)
        return (
            ItemTable(num_items, embedding_dim, use_bias=False, name="item_embedding"),
            output,
        )
    return OneHotItems(num_items, name="item_onehot"), output


def _check_common(num_items, layers, embedding_dim, dropout_embed, dropout_hidden):
    _check_positive_int("num_items", num_items)
    layers = _check_layers(layers)
    if not isinstance(embedding_dim, (int, np.integer)) or embedding_dim < 0:
        raise ValueError(
            "`embedding_dim` must be an int >= 0 (0: one-hot input when not "
            f"constrained). Received: embedding_dim={embedding_dim!r}"
        )
    _check_dropout("dropout_embed", dropout_embed)
    _check_dropout("dropout_hidden", dropout_hidden)
    return layers


def _session_example(kwargs, batch, rng):
    n = kwargs["num_items"]
    t = 5
    x = rng.integers(1, n + 1, size=(batch, t)).astype(np.int64)
    lengths = rng.integers(1, t + 1, size=batch)
    for b in range(batch):  # left padding
        x[b, : t - lengths[b]] = 0
    return {"session_items": x}


def _step_example(kwargs, batch, rng):
    n = kwargs["num_items"]
    size = int(sum(_check_layers(kwargs.get("layers", (100,)))))
    ids = rng.integers(0, n + 1, size=batch).astype(np.int64)
    state = rng.uniform(-0.5, 0.5, size=(batch, size)).astype(np.float32)
    return {"item_id": ids, "hidden_state": state}


_PARITY = Tolerance(
    1e-5,
    1e-4,
    "GRU recurrence in float32 (TF kernels vs the ONNX Loop/MatMul graph) "
    "accumulates rounding over time steps; scores are dot products over items",
)
_PAPER = "Hidasi et al., Session-based Recommendations with RNNs, ICLR 2016"
_TEST_KWARGS = {"num_items": 23, "layers": (6,)}


@register_model(
    task="session",
    example_inputs=_session_example,
    test_kwargs=_TEST_KWARGS,
    parity=_PARITY,
    paper=_PAPER,
)
def gru4rec(
    num_items: int,
    *,
    layers: Sequence[int] = (100,),
    embedding_dim: int = 0,
    constrained_embedding: bool = True,
    dropout_embed: float = 0.0,
    dropout_hidden: float = 0.0,
) -> keras.Model:
    """GRU4Rec whole-sequence serving model: a session's clicks -> next-click scores.

    Args:
        num_items: Number of items (indices ``1..num_items``; 0 is padding).
        layers: GRU units per layer.
        embedding_dim: Input embedding width when not constrained; 0 feeds the
            one-hot item vector.
        constrained_embedding: Share the input embedding with the output item
            table (dimension ``layers[-1]``).
        dropout_embed: Embedding dropout (training only; kept in the config).
        dropout_hidden: Hidden dropout (training only; kept in the config).

    Returns:
        A functional model: ``{"session_items"}`` -> ``{"scores"}``.

    Example:
        >>> model = gru4rec(100, layers=(32,))
        >>> model({"session_items": np.array([[0, 3, 7]])})["scores"].shape
        TensorShape([1, 101])
    """
    layers = _check_common(
        num_items, layers, embedding_dim, dropout_embed, dropout_hidden
    )
    items = keras.Input(shape=(None,), dtype="int64", name="session_items")
    in_table, out_table = _input_tables(
        num_items, layers, embedding_dim, constrained_embedding
    )
    x = in_table(items)
    x = keras.layers.Dropout(dropout_embed, name="embedding_dropout")(x)
    for i, units in enumerate(layers):
        x = keras.layers.GRU(
            units,
            reset_after=False,
            return_sequences=i < len(layers) - 1,
            kernel_initializer=GRU4RecUniform(gates=3),
            recurrent_initializer=GRU4RecUniform(gates=3),
            name=f"gru_{i + 1}",
        )(x)
    scores = out_table(x)
    return keras.Model({"session_items": items}, {"scores": scores}, name="gru4rec")


@register_model(
    task="session",
    example_inputs=_session_example,
    test_kwargs={**_TEST_KWARGS, "k": 4},
    parity=_PARITY,
    paper=_PAPER,
)
def gru4rec_topk(num_items: int, *, k: int = 20, **kwargs) -> keras.Model:
    """`gru4rec` plus its top-``k`` items.

    Returns:
        ``{"session_items"}`` -> ``{"scores", "top_items", "top_scores"}``
        (``top_items`` are item indices, best first).
    """
    base = gru4rec(num_items, **kwargs)
    top = TopK(k, name="top_k")(base.output["scores"])
    outputs = {"scores": base.output["scores"], **top}
    return keras.Model(base.input, outputs, name="gru4rec_topk")


@register_model(
    task="session",
    example_inputs=_step_example,
    test_kwargs=_TEST_KWARGS,
    parity=_PARITY,
    paper=_PAPER,
)
def gru4rec_step(
    num_items: int,
    *,
    layers: Sequence[int] = (100,),
    embedding_dim: int = 0,
    constrained_embedding: bool = True,
    dropout_embed: float = 0.0,
    dropout_hidden: float = 0.0,
) -> keras.Model:
    """GRU4Rec step-wise serving model: one click and the state -> scores, new state.

    Args: as `gru4rec`.

    Returns:
        A functional model: ``{"item_id", "hidden_state"}`` ->
        ``{"scores", "new_hidden_state"}``; the states are float32
        ``[batch, sum(layers)]``, zeros at the start of a session.
    """
    layers = _check_common(
        num_items, layers, embedding_dim, dropout_embed, dropout_hidden
    )
    item = keras.Input(shape=(), dtype="int64", name="item_id")
    state = keras.Input(shape=(sum(layers),), dtype="float32", name="hidden_state")
    in_table, out_table = _input_tables(
        num_items, layers, embedding_dim, constrained_embedding
    )
    x = in_table(item)
    x = keras.layers.Dropout(dropout_embed, name="embedding_dropout")(x)
    top, new_state = StackedGRUStep(layers, dropout=dropout_hidden, name="gru_step")(
        x, state, item
    )
    scores = out_table(top)
    return keras.Model(
        {"item_id": item, "hidden_state": state},
        {"scores": scores, "new_hidden_state": new_state},
        name="gru4rec_step",
    )


def _gru_weights_of_step(step_model: keras.Model) -> list[list[np.ndarray]]:
    stack = step_model.get_layer("gru_step")
    return [cell.get_weights() for cell in stack.cells]


def serving_models(step_model: keras.Model, *, k: int = 20) -> dict[str, keras.Model]:
    """The three serving graphs from one trained ``gru4rec_step`` weight set.

    Args:
        step_model: A ``gru4rec_step`` model (e.g. `GRU4RecTrainer.step_model`).
        k: Length of the ``gru4rec_topk`` list.

    Returns:
        ``{"gru4rec": ..., "gru4rec_topk": ..., "gru4rec_step": ...}``; the
        first two are new models carrying copies of the weights, the last is
        `step_model` itself.
    """
    config = step_model_config(step_model)
    whole = gru4rec(**config)
    topk = gru4rec_topk(k=k, **config)
    for model in (whole, topk):
        for name in ("item_table", "item_embedding"):
            try:
                model.get_layer(name).set_weights(
                    step_model.get_layer(name).get_weights()
                )
            except ValueError:
                pass
        for i, weights in enumerate(_gru_weights_of_step(step_model)):
            model.get_layer(f"gru_{i + 1}").set_weights(weights)
    return {"gru4rec": whole, "gru4rec_topk": topk, "gru4rec_step": step_model}


def step_model_config(step_model: keras.Model) -> dict:
    """The builder arguments of a ``gru4rec_step`` model."""
    table = step_model.get_layer("item_table")
    stack = step_model.get_layer("gru_step")
    names = {layer.name for layer in step_model.layers}
    constrained = "item_embedding" not in names and "item_onehot" not in names
    embedding_dim = (
        step_model.get_layer("item_embedding").output_dim
        if "item_embedding" in names
        else 0
    )
    return {
        "num_items": table.num_items,
        "layers": stack.units,
        "embedding_dim": embedding_dim,
        "constrained_embedding": constrained,
        "dropout_embed": step_model.get_layer("embedding_dropout").rate,
        "dropout_hidden": stack.dropout,
    }
