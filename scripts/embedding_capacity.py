"""The largest embedding table that trains here: MF with N users x d, growing N.

    python scripts/embedding_capacity.py [--dim 32] [--max-gb 6] [--max-step-s 2]
        [--optimizers adam,sgd] [--out capacity.json]

Each size trains in a fresh subprocess (its own peak RSS): ``mf`` with
``num_users = N``, 10,000 items, ``embedding_dim = d``, BCE on random (user,
item, label) batches of 1,024 drawn inside tf.data, 5 warm-up steps then 20
timed steps. N doubles from 250k until a step takes longer than ``--max-step-s``,
the peak RSS passes ``--max-gb``, or a process fails (out of memory). The
figures are for one process on this machine's CPU; a GPU holds the same table
only if it fits in its memory alongside the optimizer slots.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
import keras, tensorflow as tf
from tfrec.registry import create_model
users, items, dim, optimizer = int(sys.argv[1]), 10_000, int(sys.argv[2]), sys.argv[3]
keras.utils.set_random_seed(0)
t0 = time.perf_counter()
model = create_model("mf", num_users=users, num_items=items, embedding_dim=dim)
model.compile(optimizer=keras.optimizers.get({"class_name": optimizer,
              "config": {"learning_rate": 1e-3}}), loss={"score": "binary_crossentropy"})
build_s = time.perf_counter() - t0
def batch(seed):
    g = tf.random.stateless_uniform
    u = g((1024,), (seed, 1), 0, users, dtype=tf.int64)
    i = g((1024,), (seed, 2), 0, items, dtype=tf.int64)
    y = tf.cast(g((1024,), (seed, 3), 0, 2, dtype=tf.int64), tf.float32)
    return {"user_id": u, "item_id": i}, {"score": y}
ds = tf.data.Dataset.range(25).map(batch)
model.fit(ds.take(5), epochs=1, verbose=0)
t0 = time.perf_counter()
model.fit(ds.skip(5), epochs=1, verbose=0)
step_s = (time.perf_counter() - t0) / 20
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"users": users, "dim": dim, "optimizer": optimizer,
                  "table_gb": users * dim * 4 / 2**30, "build_s": round(build_s, 2),
                  "step_s": round(step_s, 4), "peak_rss_gb": round(rss, 2)}))
"""


def measure(users: int, dim: int, optimizer: str, timeout: float) -> dict | None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(users), str(dim), optimizer],
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"users": users, "dim": dim, "optimizer": optimizer, "error": "timeout"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["killed"])[-1][:200]
        return {"users": users, "dim": dim, "optimizer": optimizer,
                "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--max-gb", type=float, default=6.0)
    p.add_argument("--max-step-s", type=float, default=2.0)
    p.add_argument("--start", type=int, default=250_000)
    p.add_argument("--optimizers", default="adam,sgd")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = []
    for optimizer in args.optimizers.split(","):
        users = args.start
        while True:
            row = measure(users, args.dim, optimizer, timeout=600)
            rows.append(row)
            print(json.dumps(row), flush=True)
            # The next size's table alone would pass the memory budget (x3: Adam's
            # two slots), or this one was already too slow / too big / failed.
            slots = 3 if optimizer == "adam" else 1
            next_gb = 2 * users * args.dim * 4 * slots / 2**30
            if ("error" in row or row["step_s"] > args.max_step_s
                    or row["peak_rss_gb"] > args.max_gb or next_gb > args.max_gb):
                break
            users *= 2
    print(f"\n{'optimizer':<9} {'users':>11} {'dim':>4} {'table GB':>9} {'step s':>8} "
          f"{'peak RSS GB':>11}")
    for r in rows:
        if "error" in r:
            print(f"{r['optimizer']:<9} {r['users']:>11,} {r['dim']:>4}  {r['error']}")
        else:
            print(f"{r['optimizer']:<9} {r['users']:>11,} {r['dim']:>4} "
                  f"{r['table_gb']:>9.2f} {r['step_s']:>8.4f} {r['peak_rss_gb']:>11.2f}")
    if args.out:
        from tfrec.io import atomic_write_json

        atomic_write_json(args.out, {"rows": rows, "time": time.time(),
                                     "self_rss_gb": resource.getrusage(
                                         resource.RUSAGE_SELF).ru_maxrss / 2**20})
    return 0


if __name__ == "__main__":
    sys.exit(main())
