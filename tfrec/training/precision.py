"""Mixed precision, XLA and the devices a run uses (``--mixed-precision``,
``--jit-compile``).

Every recipe gets both settings through the one runner, without knowing about them:

- **Mixed precision** (``mixed_float16``): the global Keras dtype policy is set
  only while a stage's models are built and compiled (:func:`build_stage`) and is
  restored right after, so the user's own code never sees it changed. Layers then
  compute in float16 and keep float32 variables; Keras' ``compile`` sees a
  ``mixed_float16`` training model and wraps its optimizer in a
  ``LossScaleOptimizer`` (``auto_scale_loss``); Keras losses compute in float32.
  Custom train steps call ``self.optimizer.scale_loss(loss)`` before the
  gradient, and the wrapped optimizer unscales (and skips non-finite steps).
- **Exports are float32**: the serving graphs a mixed-precision run returns,
  saves and exports are rebuilt from their config with every dtype policy set to
  float32 and given the trained weights (:func:`float32_serving`), so their
  outputs are float32 and export parity is checked exactly as for any run.
- **XLA** (``jit_compile``): set on the compiled training model before its first
  ``fit`` (Keras compiles ``train_step`` with ``jit_compile=True``). A step XLA
  cannot compile falls back to the ordinary graph with a one-line notice
  (:func:`fit_with_fallback`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import keras

MIXED_POLICY = "mixed_float16"


def wanted(config) -> tuple[bool, bool]:
    """``(mixed_precision, jit_compile)`` of a run's config."""
    return (bool(getattr(config, "mixed_precision", False)),
            bool(getattr(config, "jit_compile", False)))


@contextlib.contextmanager
def policy(name: str | None) -> Iterator[None]:
    """The global Keras dtype policy is ``name`` inside the block, and whatever it
    was before afterwards (also when the block raises). None changes nothing."""
    if name is None:
        yield
        return
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def build_stage(recipe, stage: str, model: str, data, config, model_kwargs: dict,
                previous: dict):
    """``recipe.build_stage(...)`` under the run's precision, with its XLA setting."""
    mixed, jit = wanted(config)
    with policy(MIXED_POLICY if mixed else None):
        plan = recipe.build_stage(stage, model, data, config, model_kwargs, previous)
    if mixed:
        for m in plan.models.values():
            float32_outputs(m)
    trainer = getattr(plan, "trainer", None)
    if jit and trainer is not None and getattr(trainer, "compiled", False):
        set_jit(trainer)  # before the first fit (the step is not built yet)
    if plan.serving is not None:  # exports are float32, whatever built the graphs
        serving = plan.serving
        plan.serving = lambda: float32_serving(serving())
    return plan


# --------------------------------------------------------------------------- float32


def float32_outputs(model) -> list[str]:
    """Sets the layers that produce the outputs of ``model`` and of every
    functional model nested in it (towers) to compute in float32, so a mixed-precision model's outputs
    (scores, embeddings, states) are float32, as the losses, metrics and
    evaluations expect. Returns the names of the layers changed."""
    changed: list[str] = []
    seen: set[int] = set()

    def visit(tensor) -> None:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return
        op = history.operation
        if id(op) in seen:
            return
        seen.add(id(op))
        if isinstance(op, keras.Model) and hasattr(op, "outputs") and op.outputs:
            for inner in keras.tree.flatten(op.outputs):
                visit(inner)
        if isinstance(op, keras.layers.Layer):
            if op.dtype_policy.compute_dtype != "float32":
                op.dtype_policy = "float32"
                changed.append(op.name)
            return
        node = op._inbound_nodes[history.node_index]  # a keras.ops operation
        for inner in node.input_tensors:
            visit(inner)

    nested = [m for m in model._flatten_layers(include_self=True)
              if isinstance(m, keras.Model) and getattr(m, "outputs", None)]
    for m in nested:  # towers and sub-models too: their embeddings are outputs
        for tensor in keras.tree.flatten(m.outputs):
            visit(tensor)
    return changed


def _float32_config(value: Any) -> Any:
    """A serialized Keras object with every ``mixed_*`` dtype policy -> float32."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy" and isinstance(
            value.get("config"), dict
        ):
            name = value["config"].get("name", "")
            if isinstance(name, str) and name.startswith("mixed_"):
                return {**value, "config": {**value["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_float32_config(v) for v in value]
    if isinstance(value, str) and value.startswith("mixed_"):
        return "float32"
    return value


def is_float32(model) -> bool:
    """Whether no layer of ``model`` (nested models included) computes below float32."""
    return all(
        layer.dtype_policy.compute_dtype not in ("float16", "bfloat16")
        for layer in [model, *model._flatten_layers(include_self=False)]
    )


def as_float32(model):
    """``model`` itself when it is float32; else the same architecture rebuilt with
    float32 layers, holding the trained weights (the variables of a mixed-precision
    model are float32 already, so the copy is exact)."""
    if is_float32(model):
        return model
    config = _float32_config(keras.saving.serialize_keras_object(model))
    with policy("float32"):
        rebuilt = keras.saving.deserialize_keras_object(config)
    weights = model.get_weights()
    rebuilt.set_weights(weights)
    if not is_float32(rebuilt):
        raise RuntimeError(f"{model.name} still has float16 layers after the rebuild.")
    return rebuilt


def float32_serving(serving: dict) -> dict:
    """Every serving graph of ``serving`` as a float32 model (see :func:`as_float32`)."""
    import dataclasses

    return {name: dataclasses.replace(graph, model=as_float32(graph.model))
            for name, graph in serving.items()}


# --------------------------------------------------------------------------- XLA


def _notice(text: str) -> None:
    print(f"tfrec: notice: {text}", file=sys.stderr)


def set_jit(trainer) -> bool:
    """``trainer.jit_compile = True`` unless one of its layers cannot be
    XLA-compiled (Keras' ``supports_jit``: lookup and hashing layers); then one
    notice naming them, and the ordinary graph. Returns whether XLA is on."""
    blockers = sorted({f"{layer.name} ({type(layer).__name__})"
                       for layer in trainer._flatten_layers()
                       if not getattr(layer, "supports_jit", True)})
    if blockers:
        _notice(f"{type(trainer).__name__} cannot be XLA-compiled ("
                f"{', '.join(blockers[:3])}{' ...' if len(blockers) > 3 else ''} "
                "do not support it); training without XLA.")
        return False
    trainer.jit_compile = True
    return bool(trainer.jit_compile)


def _xla_failure(err: BaseException) -> bool:
    text = str(err)
    return any(key in text for key in (
        "XLA", "xla", "jit_compile", "Detected unsupported operations",
        "No registered", "not compilable", "Unsupported op",
    ))


def _unsupported(err: BaseException) -> str:
    """The op types XLA rejected, from its error message (or its first line)."""
    import re

    text = str(err)
    ops = re.findall(r"JIT: ([A-Za-z0-9_]+) \(No registered", text)
    ops += re.findall(r"\n\s*([A-Z][A-Za-z0-9_]+) \(No registered", text)
    if ops:
        return "unsupported ops: " + ", ".join(dict.fromkeys(ops))
    return text.strip().splitlines()[0][:120] if text.strip() else type(err).__name__


def fit_with_fallback(trainer, dataset, *, printer=None, **fit_kwargs):
    """``trainer.fit(dataset, **fit_kwargs)``; when the step cannot be XLA-compiled,
    one notice and the same fit without XLA.

    A compile failure surfaces in the first training step, before any epoch ends,
    so nothing of the failed attempt is kept: callbacks restart in the new ``fit``
    and the epoch data are drawn again (the pipelines' epoch callbacks make them a
    function of the epoch).
    """
    if not getattr(trainer, "jit_compile", False):
        return trainer.fit(dataset, **fit_kwargs)
    import tensorflow as tf

    stepped = _Stepped()
    callbacks = [*fit_kwargs.pop("callbacks", []), stepped]
    try:
        return trainer.fit(dataset, callbacks=callbacks, **fit_kwargs)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
            tf.errors.NotFoundError, tf.errors.InternalError) as err:
        if stepped.done or not _xla_failure(err):
            raise
        notice = (f"{type(trainer).__name__}'s step cannot be XLA-compiled "
                  f"({_unsupported(err)}); training without XLA.")
        if printer is not None:
            printer(f"tfrec: notice: {notice}")
        else:
            _notice(notice)
        trainer.jit_compile = False
        trainer.train_function = None
        trainer.make_train_function(force=True)
        return trainer.fit(dataset, callbacks=callbacks[:-1], **fit_kwargs)


class _Stepped(keras.callbacks.Callback):
    """Whether a training step finished (a compile failure comes before any)."""

    done = False

    def on_train_batch_end(self, batch, logs=None):
        self.done = True


# --------------------------------------------------------------------------- devices


def devices_line(config=None, strategy=None) -> str:
    """One line naming the devices a run uses, e.g. ``Devices: CPU:0`` or
    ``Devices: GPU:0, GPU:1 (MirroredStrategy); mixed_float16, XLA``."""
    import tensorflow as tf

    if strategy is not None and hasattr(strategy, "extended"):
        names = list(strategy.extended.worker_devices)
    else:
        gpus = tf.config.list_logical_devices("GPU")
        names = [d.name for d in gpus] or ["CPU:0"]
    shown = [n.split("device:")[-1] for n in names]
    line = "Devices: " + ", ".join(shown)
    if strategy is not None:
        line += f" ({type(strategy).__name__})"
    mixed, jit = wanted(config)
    extra = [name for name, on in ((MIXED_POLICY, mixed), ("XLA", jit)) if on]
    return line + (f"; {', '.join(extra)}" if extra else "")


# --------------------------------------------------------------------------- input


PY_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
MAP_OPS = frozenset({"MapDataset", "ParallelMapDataset", "ParallelMapDatasetV2"})
_WRAPPERS = frozenset({"OptionsDataset", "ModelDataset", "MaxIntraOpParallelismDataset",
                       "PrivateThreadPoolDataset", "Identity"})


def input_report(dataset) -> dict:
    """How a training ``tf.data`` pipeline feeds the device, from its graph.

    Returns:
        ``{"last_op": the op that yields the batches, "prefetch_autotune": whether
        it is ``prefetch(AUTOTUNE)``, "per_step_python": dataset ops that run
        Python for every element (``py_function`` / ``numpy_function`` in a map
        over examples or batches, ``from_generator``), "per_epoch_python": the
        maps that run Python once per pass (over ``from_tensors``: the recipes'
        vectorised epoch builders)}``.
    """
    import tensorflow as tf
    from tensorflow.python.data.ops import options as options_lib

    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph(
        external_state_policy=options_lib.ExternalStatePolicy.IGNORE).numpy())
    functions = {f.signature.name: f for f in graph.library.function}

    def funcs_of(node) -> list[str]:
        names = [v.func.name for v in node.attr.values() if v.func.name]
        for v in node.attr.values():
            names += [f.name for f in v.list.func]
        return names

    memo: dict[str, bool] = {}

    def runs_python(fname: str) -> bool:
        if fname not in memo:
            memo[fname] = False
            body = functions.get(fname)
            memo[fname] = body is not None and any(
                n.op in PY_OPS or any(runs_python(f) for f in funcs_of(n))
                for n in body.node_def
            )
        return memo[fname]

    per_step, per_epoch = [], []

    def scan(nodes) -> None:
        by_name = {n.name: n for n in nodes}
        for node in nodes:
            if node.op == "GeneratorDataset":
                per_step.append(node.op)
                continue
            if not node.op.endswith("Dataset") and "Dataset" not in node.op:
                continue
            if not any(runs_python(f) for f in funcs_of(node)):
                continue
            source = by_name.get(node.input[0].split(":")[0].lstrip("^")) if node.input \
                else None
            if node.op in MAP_OPS and source is not None and source.op == "TensorDataset":
                per_epoch.append(node.op)
            else:
                per_step.append(node.op)

    scan(list(graph.node))
    for body in functions.values():
        scan(list(body.node_def))

    nodes = {n.name: n for n in graph.node}
    last = next(n for n in graph.node if n.op == "_Retval")
    last = nodes[last.input[0].split(":")[0]]
    while last.op in _WRAPPERS and last.input:
        last = nodes[last.input[0].split(":")[0]]
    autotune = False
    if last.op == "PrefetchDataset" and len(last.input) > 1:
        size = nodes.get(last.input[1].split(":")[0])
        if size is not None and size.op == "Const":
            autotune = int(tf.make_ndarray(size.attr["value"].tensor)) == -1
    return {"last_op": last.op, "prefetch_autotune": autotune,
            "per_step_python": per_step, "per_epoch_python": per_epoch}
