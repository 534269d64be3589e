"""Data-parallel training on ``tf.distribute``: ``tfrec train MODEL --strategy S``.

``default``      no strategy (one device).
``mirrored``     `tf.distribute.MirroredStrategy` over the local GPUs (or, with no
                 GPU, every logical CPU device), the strategy Keras 3 tests.
``multi-worker`` `tf.distribute.MultiWorkerMirroredStrategy`, configured by the
                 ``TF_CONFIG`` environment variable (one process per worker).

The batch size is the **global** batch: a run under any strategy takes the same
steps over the same examples as a one-device run, so for a fixed seed it ends with
the same weights up to float rounding (tests/training/test_distribute.py). Models
and ``compile`` run under ``strategy.scope()`` (the runner calls ``build_stage``
there).

What Keras 3.15 on TF 2.21 needs here (checked on this machine):

* Rank-1 outputs (``score``, ``rating`` of shape ``[batch]``): Keras' losses
  average over the last axis, so the per-replica loss is already a scalar and
  ``reduce_values`` skips the ``1 / num_replicas`` scaling. Under any strategy
  with two replicas the gradient is then twice the one-device gradient and the
  reported loss twice the true loss. :func:`install_loss_scaling` scales a scalar
  loss like any other mean (a no-op with one replica).
* ``MultiWorkerMirroredStrategy`` and ``fit`` (keras-team/keras#20329, #20585):
  ``fit`` reduces the first batch with ``strategy.reduce`` to build the model
  symbolically, which fails for dict inputs ("Attempt to convert a value
  ({'user_id': PerReplica ...}) with an unsupported type"), and it reduces each
  step's logs with ``strategy.reduce("MEAN", v, axis=0)``, which fails for scalar
  logs ("Invalid reduction dimension 0 for input with 0 dimensions").
  :func:`adapt_plan` repairs both on the training model instance (the model is
  built from a local batch; the step's logs get a leading axis of one, so the
  all-reduce averages the workers' values), and ``fit`` then trains.

Input sharding under ``multi-worker``: every worker builds the same global
epoch (a function of seed and epoch, like any tfrec epoch) and keeps, of each
global batch, the contiguous slices of its own replicas (:func:`shard_batches`,
through ``distribute_datasets_from_function``, auto-sharding off). The workers'
examples are disjoint, together they are the epoch, and a worker's examples,
negatives included, are a function of (seed, epoch, worker index).

Writes: the chief (``task.type == "chief"``, or worker 0 when the cluster has no
chief) owns the run directory. Every other worker trains in a temporary folder
seeded with a copy of the chief's resumable state (config, history, finished
stages, the training backup), so a restarted worker resumes from the chief's last
checkpoint; the folder is removed when the worker ends (a killed worker's is
replaced when it restarts).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

STRATEGIES = ("default", "mirrored", "multi-worker")

#: Training models whose own step cannot run under a strategy, with the reason
#: (any other training model with its own ``train_step`` / ``compute_loss`` is
#: refused with the generic reason of :func:`check_plan`).
UNSUPPORTED_STEPS = {
    "GRU4RecTrainer": "session-parallel GRU4Rec carries each lane's hidden state "
    "from one batch to the next, so a batch cannot be split across replicas",
    "MultiOptimizerTrainer": "its own train_step applies one optimizer per "
    "variable group (FTRL for the wide part) to gradients that are not scaled "
    "per replica",
}

_STRATEGY_CACHE: dict[str, Any] = {}


@dataclass
class Distribution:
    """The resolved ``--strategy``: the strategy and this process's place in it.

    Attributes:
        name: One of :data:`STRATEGIES`.
        strategy: The ``tf.distribute.Strategy``, or None for ``default``.
        num_workers: Processes training together (1 unless ``multi-worker``).
        worker_index: This process's index among them (0-based).
        is_chief: Whether this process writes the run directory.
    """

    name: str = "default"
    strategy: Any = None
    num_workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    @property
    def num_replicas(self) -> int:
        return 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)

    def scope(self):
        """``strategy.scope()``, or a no-op context without a strategy."""
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    def describe(self) -> str:
        if self.strategy is None:
            return "default (one device)"
        devices = ", ".join(self.strategy.extended.worker_devices)
        text = f"{self.name}: {self.num_replicas} replicas ({devices})"
        if self.name == "multi-worker":
            role = "chief" if self.is_chief else "worker"
            text += f"; worker {self.worker_index} of {self.num_workers} ({role})"
        return text


# --------------------------------------------------------------------------- TF_CONFIG


def cluster_role(tf_config: str | None = None) -> tuple[int, int, bool]:
    """``(num_workers, worker_index, is_chief)`` from ``TF_CONFIG``.

    A cluster with a ``chief`` task counts it as worker 0 (TF's numbering);
    without one, worker 0 is the chief. Raises ``ValueError`` with what is wrong.
    """
    text = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    hint = ('Set it on each machine, e.g. TF_CONFIG=\'{"cluster": {"worker": '
            '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\'.')
    if not text:
        raise ValueError(f"--strategy multi-worker needs the TF_CONFIG variable. {hint}")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = str(task["type"]), int(task["index"])
        chiefs = list(cluster.get("chief", []))
        workers = list(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({err}). {hint}") from err
    if kind not in ("chief", "worker"):
        raise ValueError(
            f"TF_CONFIG task type {kind!r} is not supported: multi-worker runs take "
            "'worker' (and at most one 'chief') tasks; no parameter servers."
        )
    if set(cluster) - {"chief", "worker"}:
        raise ValueError(
            f"TF_CONFIG has {sorted(set(cluster) - {'chief', 'worker'})} tasks; "
            "MultiWorkerMirroredStrategy takes 'worker' and 'chief' only."
        )
    group = chiefs if kind == "chief" else workers
    if not 0 <= index < len(group) or len(chiefs) > 1:
        raise ValueError(
            f"TF_CONFIG task {kind}:{index} is not in its cluster "
            f"({len(chiefs)} chief, {len(workers)} workers). {hint}"
        )
    total = len(chiefs) + len(workers)
    position = index if kind == "chief" else len(chiefs) + index
    return total, position, position == 0


# --------------------------------------------------------------------------- strategy


def resolve(name: str | None = "default") -> Distribution:
    """The :class:`Distribution` for ``--strategy name``.

    A process creates each strategy once (TF's collectives are configured at
    start-up), so later calls return the same one.
    """
    name = name or "default"
    if name not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {', '.join(STRATEGIES)}. Received: {name!r}"
        )
    if name == "default":
        return Distribution()
    import tensorflow as tf

    if name == "multi-worker":
        num_workers, index, chief = cluster_role()
    else:
        num_workers, index, chief = 1, 0, True
    if name not in _STRATEGY_CACHE:
        if name == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
            _STRATEGY_CACHE[name] = tf.distribute.MirroredStrategy(devices)
        else:
            _STRATEGY_CACHE[name] = tf.distribute.MultiWorkerMirroredStrategy()
    install_loss_scaling()
    return Distribution(name, _STRATEGY_CACHE[name], num_workers, index, chief)


def install_loss_scaling() -> None:
    """Scales a scalar per-replica loss by ``1 / num_replicas`` (see the module
    docstring); idempotent, and a no-op outside a strategy with 2+ replicas."""
    from keras.src.losses import loss as loss_lib

    if getattr(loss_lib.reduce_values, "_tfrec_scaled", False):
        return
    original = loss_lib.reduce_values
    means = ("sum_over_batch_size", "mean", "mean_with_sample_weight")

    def reduce_values(values, sample_weight=None, reduction="sum_over_batch_size"):
        out = original(values, sample_weight, reduction)
        if tuple(values.shape) == () and reduction in means:
            out = loss_lib.scale_loss_for_distribution(out)
        return out

    reduce_values._tfrec_scaled = True
    loss_lib.reduce_values = reduce_values


# --------------------------------------------------------------------------- plans


def check_plan(plan, recipe: str, stage: str, dist: Distribution) -> None:
    """Raises ``ValueError`` when ``plan``'s training step cannot run under
    ``dist``: a training model listed in :data:`UNSUPPORTED_STEPS`, or one
    with its own ``train_step`` / ``compute_loss`` (their losses are not scaled
    per replica, so the gradients would not be the one-device gradients)."""
    if dist.strategy is None or plan.trainer is None:
        return
    cls = type(plan.trainer)
    reason = UNSUPPORTED_STEPS.get(cls.__name__)
    if reason is None:
        custom = [m for m in ("train_step", "compute_loss")
                  if getattr(cls, m) is not getattr(keras.Model, m)]
        if custom:
            reason = (f"its training model {cls.__name__} has its own "
                      f"{' and '.join(custom)}, which does not scale its loss per replica")
    if reason:
        raise ValueError(
            f"--strategy {dist.name} is not supported for the {recipe} recipe "
            f"(stage {stage!r}): {reason}. Train it with --strategy default."
        )


def adapt_plan(plan, dist: Distribution) -> None:
    """Prepares a built stage for ``fit`` under ``dist`` (see the module
    docstring): multi-worker input sharding and the two ``fit`` repairs."""
    if dist.name != "multi-worker" or plan.trainer is None:
        return
    strategy = dist.strategy
    plan.dataset = distribute_input(plan.dataset, strategy)
    _repair_fit(plan.trainer, strategy)


def shard_batches(dataset, num_replicas: int, replicas: range):
    """Of each global batch of ``dataset``, the contiguous row slices of the
    replicas in ``replicas`` (out of ``num_replicas``), one element per replica.

    Replica ``r`` of a batch of ``n`` rows gets rows ``[n*r//R, n*(r+1)//R)``, the
    split ``MirroredStrategy`` makes, so the replicas' rows are disjoint and
    together are the batch.
    """
    import tensorflow as tf

    wanted = list(replicas)

    def pieces(*batch):
        rows = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]

        def part(r):
            lo, hi = rows * r // num_replicas, rows * (r + 1) // num_replicas
            return tf.nest.map_structure(lambda t: t[lo:hi], batch)

        parts = [part(r) for r in wanted]
        if len(parts) == 1:
            return tf.data.Dataset.from_tensors(parts[0])
        stacked = tf.data.Dataset.from_tensors(parts[0])
        for other in parts[1:]:
            stacked = stacked.concatenate(tf.data.Dataset.from_tensors(other))
        return stacked

    def unwrap(*element):
        return element[0] if len(element) == 1 else element

    out = dataset.flat_map(pieces).map(unwrap)
    cardinality = int(dataset.cardinality())
    if cardinality >= 0:
        out = out.apply(tf.data.experimental.assert_cardinality(cardinality * len(wanted)))
    return out


def distribute_input(dataset, strategy):
    """``dataset`` (global batches) as this worker's share, through
    ``strategy.distribute_datasets_from_function``."""
    import tensorflow as tf

    def per_worker(context: tf.distribute.InputContext):
        total = context.num_replicas_in_sync
        local = total // context.num_input_pipelines
        first = context.input_pipeline_id * local
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
        return shard_batches(dataset, total, range(first, first + local)).with_options(
            options
        )

    return strategy.distribute_datasets_from_function(per_worker)


def _repair_fit(trainer, strategy) -> None:
    """The two ``fit`` repairs under MultiWorkerMirroredStrategy, on ``trainer``."""
    import tensorflow as tf

    if getattr(trainer, "_tfrec_repaired", False):
        return

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    step = trainer.train_step

    def train_step(data):
        return tf.nest.map_structure(lambda t: tf.expand_dims(t, 0), step(data))

    trainer._maybe_symbolic_build = types.MethodType(symbolic_build, trainer)
    trainer.train_step = train_step
    trainer._tfrec_repaired = True


# --------------------------------------------------------------------------- writes


_COPIED = ("config.json", "history.json", "metrics.json", "stages", "backup")


def worker_out(out, dist: Distribution) -> tuple[Path | None, Path | None]:
    """``(run directory this process writes, temporary folder to remove)``.

    The chief writes ``out``. Any other worker writes a fresh temporary folder
    holding a copy of the chief's resumable state in ``out`` (read-only here),
    so it takes the same resume decisions and restores the same checkpoint.
    """
    if out is None or dist.is_chief:
        return (None if out is None else Path(out)), None
    # One folder per (worker, run): a worker killed before it could remove its
    # folder leaves it behind, and its restart replaces it.
    key = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:12]
    tmp = Path(tempfile.gettempdir()) / f"tfrec-worker{dist.worker_index}-{key}"
    shutil.rmtree(tmp, ignore_errors=True)
    run = tmp / "run"
    run.mkdir(parents=True)
    source = Path(out)
    if source.is_dir():
        for name in _COPIED:
            path = source / name
            if path.is_dir():
                shutil.copytree(path, run / name)
            elif path.is_file():
                shutil.copy2(path, run / name)
    return run, tmp


def build_stage(dist: Distribution, recipe, stage: str, *args):
    """``recipe.build_stage(stage, *args)`` under ``dist``'s scope and the run's
    precision (:func:`tfrec.training.precision.build_stage`: dtype policy, XLA,
    float32 serving graphs), checked (:func:`check_plan`) and adapted
    (:func:`adapt_plan`)."""
    from tfrec.training import precision

    with dist.scope():
        plan = precision.build_stage(recipe, stage, *args)
    check_plan(plan, recipe.name, stage, dist)
    adapt_plan(plan, dist)
    return plan


def resume_note(run_dir: Path | None, dist: Distribution) -> str:
    """A note when a resumed run was started under another strategy (allowed:
    the batch is global, so the steps are the same), else ``""``."""
    path = None if run_dir is None else Path(run_dir) / "config.json"
    if path is None or not path.is_file():
        return ""
    before = json.loads(path.read_text()).get("strategy", "default")
    if before == dist.name:
        return ""
    return f"; it was started under --strategy {before}, resumed under {dist.name}"
