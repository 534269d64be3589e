"""``--strategy mirrored`` / ``multi-worker`` (tfrec.training.distribute).

The strategies run in subprocesses: two logical CPU devices must be configured
before TensorFlow initialises, and a multi-worker job is two processes, one
``TF_CONFIG`` each, on free loopback ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfrec.training import distribute

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("distribute_worker.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}

MIRRORED_CHILD = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tfrec
from tfrec.registry import model_info
result = {}
for model in sys.argv[2:]:
    recipe = model_info(model).recipe
    data = recipe.synthetic_data(0)
    settings = {**recipe.test_config, "epochs": 1, "batch_size": 64, "seed": 3}
    for strategy in ("default", "mirrored"):
        r = tfrec.train(model, data, strategy=strategy, test=False, **settings)
        result[f"{model}/{strategy}"] = {
            "weights": [w.tolist() for w in r.model.get_weights()],
            "loss": [row["loss"] for row in r.history["epochs"]],
        }
json.dump(result, open(sys.argv[1], "w"))
"""


def _max_diff(a, b) -> float:
    assert len(a) == len(b)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True))


def test_mirrored_two_devices_equals_one_device(tmp_path):
    """One epoch on two logical CPUs = one epoch on one device, for NeuMF (the
    Keras default step) and BPR-MF (the VBPR recipe's own trainer class)."""
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_CHILD, str(out), "neumf", "bpr_mf"],
        env=ENV, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for model in ("neumf", "bpr_mf"):
        one, two = result[f"{model}/default"], result[f"{model}/mirrored"]
        assert _max_diff(one["weights"], two["weights"]) < 1e-5, model
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5), model


def test_shards_are_disjoint_cover_the_epoch_and_are_deterministic():
    """Each worker keeps its replicas' slices of every global batch: the
    workers' examples (negatives included) are disjoint and together are the
    epoch, and a worker's share is a function of (seed, epoch, worker)."""
    from tfrec.data.pipelines import implicit_dataset
    from tfrec.recipes.interactions import synthetic_split

    split = synthetic_split(0)
    ds, sampler = implicit_dataset(split.train["user_id"], split.train["item_id"],
                                   split.num_items, num_negatives=4, batch_size=45,
                                   seed=7)

    def rows(dataset, epoch):
        sampler.epoch = epoch
        out = []
        for x, y in dataset:
            out += zip(x["user_id"].numpy().tolist(), x["item_id"].numpy().tolist(),
                       y["score"].numpy().tolist(), strict=True)
        return out

    full = rows(ds, 2)
    # Batches of 45 and an uneven last one: slices of unequal sizes.
    assert len(full) == len(sampler) and len(full) % 45 % 4
    # 2 workers x 2 local replicas: worker w keeps replicas 2w and 2w+1.
    shards = [distribute.shard_batches(ds, 4, range(2 * w, 2 * w + 2)) for w in (0, 1)]
    parts = [rows(s, 2) for s in shards]
    assert sorted(parts[0] + parts[1]) == sorted(full)
    assert len(parts[0]) + len(parts[1]) == len(full)
    # Disjoint by position: rebuild each global batch from the four slices.
    per_replica = [[], [], [], []]
    for w, shard in enumerate(shards):
        sampler.epoch = 2
        for k, (x, _) in enumerate(shard):
            per_replica[2 * w + k % 2].append(x["user_id"].numpy().tolist())
    rebuilt = [u for batch in zip(*per_replica, strict=True) for piece in batch for u in piece]
    assert rebuilt == [r[0] for r in full]
    assert rows(shards[1], 2) == parts[1]  # same seed, epoch, worker: same rows
    assert rows(shards[1], 3) != parts[1]  # the next epoch: fresh negatives


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(run: Path, tag: str, kill_after: int | None = None) -> list:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in (0, 1):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        args = [sys.executable, str(WORKER), config, str(run), f"{run}.{tag}.w{index}.json"]
        if kill_after is not None and index == 1:
            args.append(str(kill_after))
        log = open(f"{run}.{tag}.w{index}.log", "w")
        procs.append(subprocess.Popen(args, env=ENV, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _wait(procs, timeout: float) -> list[int]:
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    return [p.returncode for p in procs]


def _log(run: Path, tag: str, index: int) -> str:
    return Path(f"{run}.{tag}.w{index}.log").read_text()[-3000:]


def _single_device_weights():
    import tfrec
    from tfrec.registry import model_info

    sys.path.insert(0, str(WORKER.parent))
    from distribute_worker import SETTINGS

    data = model_info("neumf").recipe.synthetic_data(0)
    return tfrec.train("neumf", data, test=False, **SETTINGS).model.get_weights()


@pytest.mark.slow
def test_two_workers_killed_and_restarted_resume_from_the_chiefs_checkpoint(tmp_path):
    """A real two-worker job: worker 1 is SIGKILLed at the end of epoch 2, the
    chief then fails (or is killed), both are restarted with the same command;
    they resume from the chief's epoch-2 checkpoint, end with identical weights,
    equal to one-device training, and the loss goes down."""
    run = tmp_path / "run"
    procs = _start_workers(run, "first", kill_after=2)
    chief, worker = procs
    worker.wait(timeout=240)
    assert worker.returncode == -signal.SIGKILL, _log(run, "first", 1)
    pointer = run / "backup" / "neumf" / "LATEST"
    deadline = time.time() + 60
    while chief.poll() is None and time.time() < deadline:
        if pointer.is_file() and pointer.read_text().startswith("ckpt-2-"):
            time.sleep(0.5)
            chief.kill()  # the cluster manager restarts every worker
        time.sleep(0.2)
    chief.wait(timeout=30)
    assert chief.returncode != 0
    assert pointer.read_text().startswith("ckpt-2-"), "the chief saved epoch 2"
    assert not (run / "metrics.json").exists()
    restarted_at = time.time()

    codes = _wait(_start_workers(run, "again"), timeout=240)
    assert codes == [0, 0], _log(run, "again", 0) + _log(run, "again", 1)
    results = [json.loads(Path(f"{run}.again.w{i}.json").read_text()) for i in (0, 1)]
    assert _max_diff(results[0]["weights"], results[1]["weights"]) == 0.0
    history = json.loads((run / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    # Epochs 1-2 come from the first attempt; only 3 ran after the restart.
    assert [r["time"] < restarted_at for r in history] == [True, True, False]
    losses = [r["loss"] for r in history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.9 * losses[0]
    assert _max_diff(results[0]["weights"], _single_device_weights()) < 1e-5
    # The chief wrote the run; worker 1 trained in a temporary folder, now gone.
    assert results[0]["run_dir"] == str(run)
    assert results[1]["run_dir"] != str(run)
    assert not Path(results[1]["run_dir"]).exists()
    assert json.loads((run / "config.json").read_text())["strategy"] == "multi-worker"
    assert (run / "metrics.json").is_file() and (run / "model.keras").is_file()


def test_two_workers_end_with_identical_weights_equal_to_one_device(tmp_path):
    """A real two-worker job (two processes, one TF_CONFIG each): both workers
    end with the same weights, equal to one-device training, the loss goes
    down, and only the chief writes the run directory."""
    run = tmp_path / "run"
    codes = _wait(_start_workers(run, "only"), timeout=300)
    assert codes == [0, 0], _log(run, "only", 0) + _log(run, "only", 1)
    results = [json.loads(Path(f"{run}.only.w{i}.json").read_text()) for i in (0, 1)]
    assert _max_diff(results[0]["weights"], results[1]["weights"]) == 0.0
    losses = [r["loss"] for r in results[0]["history"]]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.9 * losses[0]
    assert _max_diff(results[0]["weights"], _single_device_weights()) < 1e-5
    assert results[0]["run_dir"] == str(run)
    assert results[1]["run_dir"] != str(run)
    assert not Path(results[1]["run_dir"]).exists()
    assert json.loads((run / "config.json").read_text())["strategy"] == "multi-worker"
    assert (run / "metrics.json").is_file() and (run / "model.keras").is_file()


class _Stop(Exception):
    pass


def test_a_restarted_worker_resumes_from_the_chiefs_checkpoint(tmp_path):
    """The short version of the kill test: a non-chief worker's folder starts
    as a copy of the chief's resumable state, so a worker restarted after the
    chief saved epoch 1 resumes at epoch 2 with the chief's weights."""
    import keras

    import tfrec
    from tfrec.registry import model_info

    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise _Stop

    data = model_info("neumf").recipe.synthetic_data(0)
    settings = {"epochs": 2, "batch_size": 64, "learning_rate": 0.01,
                "embedding_dim": 4, "seed": 5}
    chief = tmp_path / "chief"
    with pytest.raises(_Stop):
        tfrec.train("neumf", data, out=chief, callbacks=[StopAfterFirst()], **settings)
    assert (chief / "backup" / "neumf" / "LATEST").read_text().startswith("ckpt-1-")
    worker = distribute.Distribution("multi-worker", None, 2, 1, is_chief=False)
    run, tmp = distribute.worker_out(chief, worker)
    try:
        assert run != chief and (run / "backup" / "neumf" / "LATEST").is_file()
        resumed = tfrec.train("neumf", data, out=run, **settings)
        rows = json.loads((chief / "history.json").read_text())["epochs"]
        first = [r for r in resumed.history["epochs"] if r["epoch"] == 1]
        assert first == rows  # epoch 1 was not trained again
    finally:
        import shutil

        shutil.rmtree(tmp)
    assert not (chief / "metrics.json").exists()  # the worker never wrote there
    straight = tfrec.train("neumf", data, test=False, **settings)
    assert _max_diff(resumed.model.get_weights(), straight.model.get_weights()) < 1e-6


# --------------------------------------------------------------------------- errors


def test_cluster_role_reads_tf_config():
    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    role = distribute.cluster_role(json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": 2}}))
    assert role == (3, 2, False)
    role = distribute.cluster_role(json.dumps(
        {"cluster": {**cluster, "chief": ["d:4"]}, "task": {"type": "worker", "index": 0}}))
    assert role == (4, 1, False)
    role = distribute.cluster_role(json.dumps(
        {"cluster": {**cluster, "chief": ["d:4"]}, "task": {"type": "chief", "index": 0}}))
    assert role == (4, 0, True)
    with pytest.raises(ValueError, match="needs the TF_CONFIG variable"):
        distribute.cluster_role("")
    with pytest.raises(ValueError, match="not a valid cluster description"):
        distribute.cluster_role("{not json")
    with pytest.raises(ValueError, match="task worker:3 is not in its cluster"):
        distribute.cluster_role(json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ValueError, match="no parameter servers"):
        distribute.cluster_role(json.dumps(
            {"cluster": {**cluster, "ps": ["e:5"]}, "task": {"type": "ps", "index": 0}}))
    with pytest.raises(ValueError, match="must be one of default, mirrored, multi-worker"):
        distribute.resolve("parameter-server")


def test_custom_training_steps_are_refused_with_the_reason():
    from tfrec.recipes.base import StagePlan
    from tfrec.registry import model_info

    fake = distribute.Distribution("mirrored", strategy=object(), num_workers=1)
    recipe = model_info("gru4rec").recipe
    config, kwargs = recipe.make_config("gru4rec", **recipe.test_config)
    plan = recipe.build_stage("train", "gru4rec", recipe.synthetic_data(0), config,
                              kwargs, {})
    with pytest.raises(ValueError, match="--strategy mirrored is not supported for "
                       "the gru4rec recipe .*hidden state"):
        distribute.check_plan(plan, "gru4rec", "train", fake)
    distribute.check_plan(plan, "gru4rec", "train", distribute.Distribution())

    import keras

    class OwnStep(keras.Model):
        def train_step(self, data):
            return {}

    with pytest.raises(ValueError, match="OwnStep has its own train_step"):
        distribute.check_plan(StagePlan(trainer=OwnStep()), "x", "train", fake)


def test_cli_multi_worker_without_tf_config_is_one_line(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-m", "tfrec.cli", "train", "neumf", "--strategy", "multi-worker",
         "--out", str(tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "TF_CONFIG" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()
