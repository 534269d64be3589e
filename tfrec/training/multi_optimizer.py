"""Training one model with several optimisers, each owning a group of variables.

Wide & Deep trains its wide part with FTRL and its deep part with AdaGrad, jointly
(one loss, one backward pass per batch). :class:`MultiOptimizerTrainer` wraps a
functional serving model in a ``keras.Model`` whose ``train_step`` computes the
gradients of the loss once and hands each optimiser the gradients of its own
variables; training is ordinary ``fit``, and export sees only ``trainer.model``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf


class MultiOptimizerTrainer(keras.Model):
    """Trains ``model`` with one optimiser per group of its trainable variables.

    Args:
        model: the functional serving model (dict inputs, dict outputs).
        groups: ``[(optimizer, variables), ...]``; every trainable variable of
            ``model`` must be in exactly one group.
        output: the output the loss and metrics see (default: the only one).

    Compile with ``loss`` and ``metrics`` only (the optimisers come from
    ``groups``); ``fit`` on ``(features, labels)`` batches.
    """

    def __init__(
        self,
        model: keras.Model,
        groups: Sequence[tuple[keras.optimizers.Optimizer, Sequence]],
        *,
        output: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not groups:
            raise ValueError("`groups` must list at least one (optimizer, variables).")
        outputs = list(model.output) if isinstance(model.output, dict) else []
        if output is None:
            if len(outputs) != 1:
                raise ValueError(
                    f"Model {model.name!r} has outputs {outputs}; name the one to "
                    "train with `output=`."
                )
            output = outputs[0]
        elif output not in outputs:
            raise ValueError(f"`output` {output!r} is not one of {outputs}.")
        self.model = model
        self.output_name = output
        owner: dict[int, int] = {}
        for k, (_, variables) in enumerate(groups):
            for v in variables:
                if id(v) in owner:
                    raise ValueError(
                        f"Variable {v.path} is in optimiser groups {owner[id(v)]} "
                        f"and {k}; each variable needs exactly one optimiser."
                    )
                owner[id(v)] = k
        orphans = [v.path for v in model.trainable_variables if id(v) not in owner]
        if orphans:
            raise ValueError(
                f"Trainable variables without an optimiser: {orphans[:5]}"
                f"{' ...' if len(orphans) > 5 else ''}"
            )
        self._groups = [(opt, list(vs)) for opt, vs in groups]
        for opt, variables in self._groups:
            opt.build(variables)
        # The wrapped functional model is built, so the trainer is too (fit's
        # BackupAndRestore refuses unbuilt models).
        self.built = bool(model.built)

    @property
    def optimizers(self) -> list[keras.optimizers.Optimizer]:
        return [opt for opt, _ in self._groups]

    def compile(self, *, loss, metrics=None, **kwargs):
        if "optimizer" in kwargs:
            raise ValueError(
                "MultiOptimizerTrainer takes its optimisers from `groups`; do not "
                "pass `optimizer` to compile()."
            )
        # Keras wants one `optimizer`; the first group's serves for bookkeeping
        # (iteration count). All updates happen in train_step.
        super().compile(optimizer=self._groups[0][0], loss=loss, metrics=metrics, **kwargs)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # Mixed precision: Keras wrapped the first optimiser; every group gets
            # its own loss scale (each unscales and skips non-finite steps).
            self._groups = [
                (self.optimizer if k == 0 else keras.optimizers.LossScaleOptimizer(opt),
                 vs) for k, (opt, vs) in enumerate(self._groups)
            ]
            for opt, variables in self._groups:
                opt.build(variables)

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)[self.output_name]

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = [v for _, vs in self._groups for v in vs]
        mixed = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        with tf.GradientTape(persistent=mixed) as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            scaled = [opt.scale_loss(loss) for opt, _ in self._groups] if mixed else []
        if mixed:  # one backward pass per loss scale
            for (opt, vs), group_loss in zip(self._groups, scaled, strict=True):
                opt.apply_gradients(zip(tape.gradient(group_loss, vs), vs, strict=True))
        else:
            grads = tape.gradient(loss, variables)
            start = 0
            for opt, vs in self._groups:
                opt.apply_gradients(zip(grads[start : start + len(vs)], vs, strict=True))
                start += len(vs)
        del tape
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred, sample_weight=sample_weight)
        return self.get_metrics_result()
