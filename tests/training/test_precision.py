"""Mixed precision and XLA through the one runner (`tfrec.training.precision`):
float16 compute with float32 variables, outputs and exports, loss scaling in the
custom train steps, the global dtype policy left as it was, XLA-compiled training
equal to graph training, the run definition and the ``tfrec train`` console."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrec
from tfrec.registry import model_info
from tfrec.training import precision
from tfrec.training.runner import RunExistsError

ROOT = Path(__file__).resolve().parents[2]

# Tolerances, on the outputs of the main serving graph for one fixed batch after
# the recipe's test training (same seed, same data), measured on this machine:
# NeuMF 4.6e-3 (scores in [0, 1]), GRU4Rec 4e-2 on logits of size ~1 (padding
# column excluded), item2vec 5.5e-4, VBPR 4.1e-3 (scores ~7), Wide & Deep 4.1e-4,
# cbf_profile 2e-5. float16 keeps ~3 significant digits, and two epochs of
# updates from slightly different gradients add to that: the bound is relative
# to the largest output (atol = RTOL_MIXED * max |float32 output|).
RTOL_MIXED = {"neumf": 0.05, "gru4rec": 0.1, "item2vec": 0.02, "vbpr": 0.02,
              "wide_deep": 0.02, "cbf_profile": 0.02}
# XLA vs graph: the same float32 maths fused differently (measured: NeuMF 4.5e-8
# on the scores, 1.2e-7 on the weights; GRU4Rec 3.6e-5 on the weights).
ATOL_JIT = 1e-4

# GRU4Rec without sampled negatives: XLA draws other random numbers than the TF
# kernels for the same seed, so a sampled run cannot be compared step by step.
EXTRA = {"gru4rec": {"n_sample": 0}}


def _train(name: str, **settings):
    recipe = model_info(name).recipe
    keras.utils.set_random_seed(0)
    settings = {**dict(recipe.test_config), "epochs": 1, **EXTRA.get(name, {}), **settings}
    return tfrec.train(name, recipe.synthetic_data(0), **settings)


def _outputs(result, name: str) -> dict[str, np.ndarray]:
    graph = result.serving[name]
    batch = model_info(graph.name).example_inputs(graph.kwargs, 16, np.random.default_rng(0))
    out = {k: np.asarray(v) for k, v in graph.model(batch).items()}
    if "scores" in out and name.startswith("gru4rec"):
        out["scores"] = out["scores"][:, 1:]  # column 0 is padding (-1e9)
    return out


_RUNS: dict = {}


def _run(name: str, kind: str, **settings):
    key = (name, kind)
    if key not in _RUNS:
        flags = {"float32": {}, "mixed": {"mixed_precision": True},
                 "jit": {"jit_compile": True}}[kind]
        _RUNS[key] = _train(name, test=False, **flags, **settings)
    return _RUNS[key]


# --------------------------------------------------------------------------- policy


def test_policy_is_set_only_inside_the_block_and_restored_after_errors():
    assert keras.config.dtype_policy().name == "float32"
    with precision.policy("mixed_float16"):
        assert keras.config.dtype_policy().name == "mixed_float16"
        assert keras.layers.Dense(2).dtype_policy.name == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError, match="boom"):
        with precision.policy("mixed_float16"):
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"
    with precision.policy(None):
        assert keras.config.dtype_policy().name == "float32"


def test_mixed_run_leaves_the_users_policy_alone():
    before = keras.config.dtype_policy().name
    result = _run("neumf", "mixed")
    assert keras.config.dtype_policy().name == before == "float32"
    assert keras.layers.Dense(2).dtype_policy.name == "float32"  # the user's next layer
    assert result.config.mixed_precision is True


def test_bad_values_are_rejected_before_training():
    with pytest.raises(ValueError, match="mixed_precision"):
        tfrec.train("gmf", model_info("gmf").recipe.synthetic_data(0),
                    mixed_precision="maybe")


# --------------------------------------------------------------------------- mixed


def test_mixed_precision_trains_close_to_float32():
    """NeuMF through the runner; GRU4Rec's own step in the stage test below; the
    other families in the slow tests."""
    _check_close("neumf")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gru4rec", "item2vec", "vbpr", "wide_deep",
                                  "cbf_profile"])
def test_mixed_precision_trains_close_to_float32_other_families(name):
    _check_close(name)


# Families whose gradients overflow float16 at Keras' initial loss scale (2**15)
# on the tiny synthetic data: the LossScaleOptimizer skips those steps and halves
# the scale, and the few steps of a test run can all be skipped (MV-DNN: the
# cosine of an all-zero content row has gradients of 1e6). They must still run,
# stay finite and give float32 graphs.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["cdae", "autorec", "content_cnn", "mv_dnn",
                                  "youtube_candidate"])
def test_mixed_precision_runs_for_every_other_family(name):
    result = _run(name, "mixed")
    assert all(np.isfinite(row["loss"]) for row in result.history["epochs"])
    for graph in result.serving.values():
        assert precision.is_float32(graph.model), graph.name
    for key, value in _outputs(result, name).items():
        assert value.dtype == np.float32 or value.dtype.kind == "i", key
        assert np.isfinite(value).all() if value.dtype.kind == "f" else True, key


def _check_close(name):
    mixed, full = _run(name, "mixed"), _run(name, "float32")
    losses = [row["loss"] for row in mixed.history["epochs"]]
    assert losses and all(np.isfinite(losses)), losses
    got, want = _outputs(mixed, name), _outputs(full, name)
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == np.float32, (key, got[key].dtype)
        scale = float(np.abs(want[key]).max())
        np.testing.assert_allclose(got[key], want[key], rtol=0,
                                   atol=RTOL_MIXED[name] * scale, err_msg=key)
        assert not np.array_equal(got[key], want[key]), "mixed precision did not apply"
    for graph in mixed.serving.values():
        assert precision.is_float32(graph.model), graph.name


def test_stage_is_built_mixed_with_loss_scaling_and_float32_outputs(monkeypatch):
    """GRU4Rec's own session-parallel step under mixed precision. A custom step
    that forgets ``optimizer.scale_loss`` fails here (the spy sees no call)."""
    calls = []
    original = keras.optimizers.LossScaleOptimizer.scale_loss

    def spy(self, loss):
        calls.append(loss.dtype)
        return original(self, loss)

    monkeypatch.setattr(keras.optimizers.LossScaleOptimizer, "scale_loss", spy)
    plan = _fit_stage("gru4rec", mixed_precision=True, batch_size=32)
    assert keras.config.dtype_policy().name == "float32"
    trainer = plan.trainer
    assert trainer.dtype_policy.name == "mixed_float16"
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    for model in plan.models.values():
        variables = {v.dtype for v in model.weights}
        assert variables <= {"float32", "int64", "int32"}, variables
        assert not precision.is_float32(model)  # compute is float16 inside
    serving = plan.serving()
    checked = [n for n in plan.models if n in serving]
    assert checked
    for name in checked:  # the trained (mixed) models themselves give float32 outputs
        batch = model_info(name).example_inputs(serving[name].kwargs, 4,
                                                np.random.default_rng(0))
        for key, value in plan.models[name](batch).items():
            assert value.dtype == "float32" or value.dtype.is_integer, (name, key)
    assert calls and all(d == "float32" for d in calls)  # the loss itself is float32
    # Loss scaling ran: the dynamic scale is a power of two and steps were applied.
    opt = trainer.optimizer
    assert opt.inner_optimizer.iterations.numpy() > 0
    assert float(opt.dynamic_scale.numpy()) in {2.0**k for k in range(-10, 31)}
    for graph in plan.serving().values():
        assert precision.is_float32(graph.model)
        batch = model_info(graph.name).example_inputs(graph.kwargs, 4,
                                                      np.random.default_rng(0))
        for value in graph.model(batch).values():
            assert value.dtype == "float32" or value.dtype.is_integer, value.dtype
    # Close to the same epoch in float32 (logits ~1; padding column excluded).
    full = _fit_stage("gru4rec", batch_size=32)
    graph = plan.serving()["gru4rec"]
    batch = model_info("gru4rec").example_inputs(graph.kwargs, 16, np.random.default_rng(0))
    got = np.asarray(graph.model(batch)["scores"])[:, 1:]
    want = np.asarray(full.serving()["gru4rec"].model(batch)["scores"])[:, 1:]
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=RTOL_MIXED["gru4rec"] * np.abs(want).max())
    assert not np.array_equal(got, want)


def test_float32_rebuild_keeps_the_exact_weights():
    with precision.policy("mixed_float16"):
        model = tfrec.create_model("neumf", num_users=7, num_items=9, embedding_dim=4)
    precision.float32_outputs(model)
    batch = model_info("neumf").example_inputs({"num_users": 7, "num_items": 9}, 5,
                                               np.random.default_rng(1))
    assert model(batch)["score"].dtype == "float32"
    rebuilt = precision.as_float32(model)
    assert rebuilt is not model and precision.is_float32(rebuilt)
    for a, b in zip(model.get_weights(), rebuilt.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(rebuilt(batch)["score"], model(batch)["score"], atol=2e-3)
    assert precision.as_float32(rebuilt) is rebuilt  # float32 stays as it is


# --------------------------------------------------------------------------- export


# --------------------------------------------------------------------------- XLA


def test_jit_compiled_training_equals_graph_training_neumf():
    """Keras' own train step, through the runner."""
    jit, graph = _run("neumf", "jit"), _run("neumf", "float32")
    for a, b in zip(jit.model.get_weights(), graph.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL_JIT)
    got, want = _outputs(jit, "neumf"), _outputs(graph, "neumf")
    np.testing.assert_allclose(got["score"], want["score"], rtol=0, atol=ATOL_JIT)
    assert jit.config.jit_compile is True


_STAGES: dict = {}


def _fit_stage(name: str, **settings):
    key = (name, tuple(sorted(settings.items())))
    if key not in _STAGES:
        _STAGES[key] = _fit_new_stage(name, **settings)
    return _STAGES[key]


def _fit_new_stage(name: str, **settings):
    recipe = model_info(name).recipe
    config, kwargs = recipe.make_config(
        name, **{**dict(recipe.test_config), **EXTRA.get(name, {}), **settings})
    keras.utils.set_random_seed(0)
    plan = precision.build_stage(recipe, recipe.stage_names(name, config)[0], name,
                                 recipe.synthetic_data(0), config, kwargs, {})
    plan.trainer.fit(plan.dataset, epochs=1, verbose=0, callbacks=plan.callbacks)
    return plan


def test_jit_compiled_custom_step_equals_graph_training_gru4rec():
    """GRU4Rec's own session-parallel ``train_step`` (hidden state carried in a
    variable across steps), one epoch, same seed."""
    jit = _fit_stage("gru4rec", jit_compile=True, batch_size=32)
    graph = _fit_stage("gru4rec", batch_size=32)
    assert jit.trainer.jit_compile and not graph.trainer.jit_compile
    pairs = list(zip(jit.trainer.weights, graph.trainer.weights, strict=True))
    assert pairs
    for a, b in pairs:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=ATOL_JIT,
                                   err_msg=a.path)
    assert not np.array_equal(np.asarray(pairs[0][0]), np.asarray(
        _fresh_weights("gru4rec")[0])), "no training happened"


def _fresh_weights(name: str):
    recipe = model_info(name).recipe
    config, kwargs = recipe.make_config(
        name, **{**dict(recipe.test_config), **EXTRA.get(name, {}), "batch_size": 32})
    keras.utils.set_random_seed(0)
    plan = precision.build_stage(recipe, "train", name, recipe.synthetic_data(0),
                                 config, kwargs, {})
    return plan.trainer.get_weights()


class StringStep(keras.Model):
    """A step with an op XLA cannot compile (``AsString``)."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        text = tf.strings.as_string(tf.reduce_sum(y_pred))
        zero = tf.cast(tf.strings.length(text), tf.float32) * 0.0
        return tf.reduce_mean(tf.square(y_pred - y)) + zero


def test_step_xla_cannot_compile_falls_back_with_one_notice():
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(16)
    model = StringStep()
    model.compile(optimizer="sgd", loss="mse")
    assert precision.set_jit(model) and model.jit_compile
    lines = []
    history = precision.fit_with_fallback(model, ds, epochs=2, verbose=0,
                                          printer=lines.append)
    assert len(lines) == 1 and "AsString" in lines[0] and "without XLA" in lines[0]
    assert not model.jit_compile
    assert model.optimizer.iterations.numpy() == 8  # 2 epochs x 4 steps, no lost step
    assert len(history.history["loss"]) == 2


def test_layers_without_xla_support_turn_xla_off_with_a_notice(capsys):
    inputs = keras.Input((1,), dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"], name="ids")(inputs)
    out = keras.layers.Dense(1)(keras.ops.cast(ids, "float32"))
    model = keras.Model(inputs, out)
    model.compile(optimizer="sgd", loss="mse")
    assert precision.set_jit(model) is False
    assert "ids (StringLookup)" in capsys.readouterr().err


# --------------------------------------------------------------------------- console


def test_cli_mixed_run_prints_devices_and_exports_float32_with_parity(tmp_path):
    """``tfrec train --mixed-precision`` in a subprocess (a quiet console naming
    the devices), then the export the CLI runs: float32 graphs with the trained
    weights, SavedModel and ONNX parity."""
    from export.cli import export_run

    lines = ["user,item,rating,time"]
    for u in range(20):
        for j in range(6):
            lines.append(f"{u},{(u * 5 + j * 3) % 23},{1 + (u + j) % 5},{1000 + u * 10 + j}")
    data = tmp_path / "ratings.csv"
    data.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    run = tmp_path / "run"
    settings = ["--epochs", "1", "--eval-negatives", "5", "--embedding-dim", "4"]
    proc = subprocess.run(
        [sys.executable, "-m", "tfrec.cli", "train", "neumf", "--data", str(data),
         *settings, "--mixed-precision", "--out", str(run)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no C++ start-up lines, no notices
    devices = [ln for ln in proc.stdout.splitlines() if ln.startswith("Devices: ")]
    assert devices == ["Devices: CPU:0; mixed_float16"], proc.stdout
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["mixed_precision"] is True and config["jit_compile"] is False

    saved = keras.saving.load_model(run / "model.keras")
    assert precision.is_float32(saved)
    kwargs = json.loads((run / "serving" / "serving.json").read_text())["graphs"]["neumf"]
    with precision.policy("mixed_float16"):
        trained = tfrec.create_model("neumf", **kwargs)
    trained.load_weights(run / "stages" / "neumf" / "neumf.weights.h5")  # as trained
    for a, b in zip(saved.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    paths = export_run(run, base_dir=tmp_path / "saved_models", verbose=False)
    manifest = json.loads((paths["neumf"] / "manifest.json").read_text())
    for runtime in ("saved_model", "onnx"):
        assert manifest["parity"][runtime]["passed"], manifest["parity"][runtime]
    assert {o["dtype"] for o in manifest["outputs"]} == {"float32"}

    # Both settings are part of the run definition: resuming with another refuses.
    (run / "metrics.json").unlink()
    for changed in ({}, {"mixed_precision": True, "jit_compile": True}):
        with pytest.raises(RunExistsError, match="mixed_precision|jit_compile"):
            tfrec.train("neumf", str(data), out=run, epochs=1, eval_negatives=5,
                        embedding_dim=4, **changed)


def test_cli_options_reach_the_settings():
    from tfrec.cli import _run_inputs, build_parser

    args, extra = build_parser().parse_known_args(
        ["train", "gmf", "--mixed-precision", "--jit-compile"])
    _, settings = _run_inputs(args, extra)
    assert settings["mixed_precision"] is True and settings["jit_compile"] is True
    args, extra = build_parser().parse_known_args(["train", "gmf"])
    _, settings = _run_inputs(args, extra)
    assert "mixed_precision" not in settings and "jit_compile" not in settings
