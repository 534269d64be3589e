"""The input pipelines keep an accelerator fed: every recipe's training
``tf.data`` (every stage of every registered model) ends with
``prefetch(AUTOTUNE)`` and runs no Python per step; Python runs at most once per
pass (the recipes' vectorised epoch builders: ``from_tensors(0).map(numpy_function)``
then ``flat_map`` into batches). Read from the dataset graph
(`tfrec.training.precision.input_report`)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfrec
from tfrec.registry import model_info
from tfrec.training import precision
from tfrec.training.runner import _run_plan


def _stage_datasets() -> dict[str, object]:
    """``{"model/stage": dataset}``, one per (recipe, stage) kind. Earlier stages
    are built (not trained) so later ones can be; non-Keras stages compute."""
    found, seen = {}, set()
    for name in tfrec.list_models():
        recipe = model_info(name).recipe
        config, kwargs = recipe.make_config(name, **dict(recipe.test_config))
        stages = recipe.stage_names(name, config)
        if all((recipe.name, s) in seen for s in stages):
            continue
        data, previous = recipe.synthetic_data(0), {}
        for stage in stages:
            plan = recipe.build_stage(stage, name, data, config, kwargs, previous)
            if plan.compute is not None:
                _run_plan(plan, stage, config, callbacks=[], verbose=0)
            elif (recipe.name, stage) not in seen:
                found[f"{name}/{stage}"] = plan.dataset
            seen.add((recipe.name, stage))
            previous[stage] = plan
    return found


@pytest.fixture(scope="module")
def datasets():
    return _stage_datasets()


def test_every_recipe_has_its_training_data_inspected(datasets):
    from tfrec.recipes.base import recipes

    covered = {model_info(key.split("/")[0]).recipe.name for key in datasets}
    assert covered == {r.name for r in recipes().values()}


def test_every_training_pipeline_prefetches_and_runs_no_python_per_step(datasets):
    problems = {}
    for key, ds in datasets.items():
        if not isinstance(ds, tf.data.Dataset):
            problems[key] = f"not a tf.data.Dataset: {type(ds).__name__}"
            continue
        report = precision.input_report(ds)
        if not report["prefetch_autotune"]:
            problems[key] = f"ends with {report['last_op']}, not prefetch(AUTOTUNE)"
        elif report["per_step_python"]:
            problems[key] = f"Python per element: {report['per_step_python']}"
    assert not problems, problems


def test_the_report_sees_what_starves_a_device():
    base = tf.data.Dataset.from_tensor_slices(np.arange(8, dtype=np.int64))
    fed = base.batch(4).prefetch(tf.data.AUTOTUNE)
    assert precision.input_report(fed) == {
        "last_op": "PrefetchDataset", "prefetch_autotune": True,
        "per_step_python": [], "per_epoch_python": []}
    assert not precision.input_report(base.batch(4))["prefetch_autotune"]
    assert not precision.input_report(base.batch(4).prefetch(2))["prefetch_autotune"]
    per_step = base.map(lambda x: tf.numpy_function(lambda v: v * 2, [x], tf.int64))
    assert precision.input_report(per_step.prefetch(-1))["per_step_python"] == [
        "MapDataset"]
    per_batch = base.batch(4).map(lambda x: tf.py_function(lambda v: v, [x], tf.int64),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    assert precision.input_report(per_batch.prefetch(-1))["per_step_python"]
    generated = tf.data.Dataset.from_generator(
        lambda: iter(range(3)), output_signature=tf.TensorSpec((), tf.int64))
    assert precision.input_report(generated.prefetch(-1))["per_step_python"]
    epoch = tf.data.Dataset.from_tensors(0).map(
        lambda _: tf.numpy_function(lambda: np.arange(8), [], tf.int64)
    ).flat_map(tf.data.Dataset.from_tensor_slices).batch(4).prefetch(-1)
    report = precision.input_report(epoch)
    assert report["per_step_python"] == [] and report["per_epoch_python"] == ["MapDataset"]
    opts = tf.data.Options()
    opts.experimental_deterministic = True
    assert precision.input_report(fed.with_options(opts))["prefetch_autotune"]
