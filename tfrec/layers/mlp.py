"""The multi-layer perceptron tower used across families (NCF's MLP, Wide & Deep's
deep part, YouTube DNN's towers), with the lecture's activation choices."""

from __future__ import annotations

from collections.abc import Sequence

import keras

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "elu", "linear")


def check_hidden_units(
    hidden_units: Sequence[int], name: str = "hidden_units"
) -> tuple:
    if isinstance(hidden_units, int) and not isinstance(hidden_units, bool):
        hidden_units = (hidden_units,)  # `--hidden-units 64` on the command line
    units = tuple(hidden_units) if hidden_units is not None else ()
    if not units or not all(isinstance(u, int) and u > 0 for u in units):
        raise ValueError(
            f"`{name}` must be a non-empty tuple of positive ints. "
            f"Received: {name}={hidden_units!r}"
        )
    return units


def mlp_tower(
    x,
    hidden_units: Sequence[int],
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    l2: float = 0.0,
    name: str = "mlp",
    kernel_initializer="glorot_uniform",
):
    """Applies ``Dense -> activation [-> Dropout]`` for each entry of ``hidden_units``.

    Layers are named ``{name}_dense_{k}`` and ``{name}_dropout_{k}`` (k from 1), so
    weights keep stable names through save/load and export.

    Args:
        x: input tensor (a Keras symbolic tensor).
        hidden_units: width of each layer.
        activation: one of ``ACTIVATIONS`` (``leaky_relu`` uses slope 0.2).
        dropout: dropout rate after each layer, in ``[0, 1)``.
        l2: L2 penalty on each kernel.
        name: prefix for layer names.
    """
    units = check_hidden_units(hidden_units)
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"`activation` must be one of {ACTIVATIONS}. Received: activation={activation!r}"
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    if float(l2) < 0:
        raise ValueError(f"`l2` must be >= 0. Received: l2={l2!r}")
    regularizer = keras.regularizers.L2(l2) if l2 else None
    for k, width in enumerate(units, start=1):
        x = keras.layers.Dense(
            width,
            activation=activation,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=regularizer,
            name=f"{name}_dense_{k}",
        )(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout_{k}")(x)
    return x
