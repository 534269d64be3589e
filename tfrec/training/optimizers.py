"""The optimiser choices of the lecture, by name."""

from __future__ import annotations

import keras

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam")


def make_optimizer(
    name: str = "adam",
    learning_rate: float = 0.001,
    *,
    momentum: float = 0.9,
    clipnorm: float | None = None,
) -> keras.optimizers.Optimizer:
    """Builds a Keras optimiser.

    Args:
        name: ``sgd`` (plain), ``momentum`` (SGD with momentum), ``nesterov`` (SGD
            with Nesterov momentum), ``adagrad``, ``rmsprop``, ``adadelta``, ``adam``.
        learning_rate: step size (Adadelta's paper value is 1.0).
        momentum: momentum for ``momentum`` / ``nesterov``.
        clipnorm: optional per-variable gradient norm clip.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}. Received: {name!r}")
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be > 0. Received: {learning_rate!r}")
    extra = {"clipnorm": clipnorm} if clipnorm else {}
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, **extra)
    if name in ("momentum", "nesterov"):
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1). Received: {momentum!r}")
        return keras.optimizers.SGD(
            learning_rate, momentum=momentum, nesterov=name == "nesterov", **extra
        )
    cls = {
        "adagrad": keras.optimizers.Adagrad,
        "rmsprop": keras.optimizers.RMSprop,
        "adadelta": keras.optimizers.Adadelta,
        "adam": keras.optimizers.Adam,
    }[name]
    return cls(learning_rate, **extra)
