"""One worker of the two-worker tests (tests/training/test_distribute.py).

    python distribute_worker.py TF_CONFIG OUT RESULT [KILL_AFTER_EPOCH]

Trains NeuMF on the NCF recipe's synthetic data under ``--strategy
multi-worker`` into the run directory OUT and writes its final weights and
history to RESULT (JSON). With KILL_AFTER_EPOCH this process SIGKILLs itself
at the end of that epoch, after the chief's checkpoint of it is written.
"""

import json
import os
import signal
import sys

if __name__ == "__main__":  # before TensorFlow starts; the tests import SETTINGS
    os.environ["TF_CONFIG"] = sys.argv[1]

import keras  # noqa: E402

import tfrec  # noqa: E402
from tfrec.registry import model_info  # noqa: E402

SETTINGS = {"epochs": 3, "batch_size": 64, "learning_rate": 0.01, "embedding_dim": 4,
            "seed": 5}


class KillAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    out, result_path = sys.argv[2], sys.argv[3]
    kill = [KillAt(int(sys.argv[4]))] if len(sys.argv) > 4 else []
    data = model_info("neumf").recipe.synthetic_data(0)
    result = tfrec.train("neumf", data, out=out, strategy="multi-worker",
                         callbacks=kill, **SETTINGS)
    payload = {
        "weights": [w.tolist() for w in result.model.get_weights()],
        "history": result.history["epochs"],
        "run_dir": str(result.run_dir),
    }
    with open(result_path, "w") as f:
        json.dump(payload, f)


if __name__ == "__main__":
    main()
