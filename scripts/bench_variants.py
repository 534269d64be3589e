"""Bench section ``variants``: the ONNX variants of one NeuMF export (`export.optimize`).

Float ``model.onnx`` vs ``model.opt.onnx`` (onnxruntime graph optimisations,
level all, done when written, so it loads with optimisations off) vs
``model.int8.onnx`` (dynamic INT8), each in an onnxruntime session with the same
thread counts (intra ``threads``, inter 1, sequential), at batch 1, batch 100 and
all items of one user, as ratios against the float model measured in the same
run, with each variant's parity report and session start time. An untrained
NeuMF-8 at the NCF ML-1M sizes (latency does not depend on the weights).
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
from bench_serving import ML1M_ITEMS, ML1M_USERS, export, interleaved, latency_feeds


def run(quick: bool, threads: int, *, smoke: bool = False) -> dict:
    import onnxruntime as ort

    from export.optimize import (
        VARIANT_FILES,
        optimize_onnx,
        quantize_onnx,
        session_options,
    )
    from tfrec.registry import model_info

    nu, ni = (40, 30) if smoke else (ML1M_USERS, ML1M_ITEMS)
    reps = 9 if smoke else 90 if quick else 300
    info = model_info("neumf")
    kw = {"num_users": nu, "num_items": ni}

    def example_inputs(b, r):
        return info.example_inputs(kw, b, r)

    out: dict = {"users": nu, "items": ni, "reps": reps, "threads": threads,
                 "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = export("neumf", nu, ni, tmp)
        files = {"float": path / "model.onnx"}
        for variant, write in (
            ("opt", lambda p, **k: optimize_onnx(p, "all", **k)),
            ("int8", quantize_onnx),
        ):
            r = write(path, example_inputs=example_inputs, task="ranking", num_items=ni)
            worst = max(r[k]["max_abs_diff"] for k in r
                        if k in ("golden", "fresh_5", "fresh_64"))
            out["variants"][variant] = {
                "file": r["file"], "kib": r["bytes"] / 1024, "passed": r["passed"],
                "max_abs_diff_vs_float": worst,
                "top10_agreement": r["top10"]["agreement"],
            }
            if r["passed"]:
                files[variant] = path / VARIANT_FILES[variant]
        out["variants"].setdefault("float", {})["kib"] = files["float"].stat().st_size / 1024
        sessions = {}
        for variant, f in files.items():
            options = session_options(variant) or ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            took = []
            for _ in range(3 if quick or smoke else 5):
                started = time.perf_counter()
                sessions[variant] = ort.InferenceSession(
                    str(f), options, providers=["CPUExecutionProvider"]
                )
                took.append(time.perf_counter() - started)
            out["variants"][variant]["session_start_us"] = statistics.median(took) * 1e6
        rng = np.random.default_rng(0)
        for case, feed in latency_feeds(rng, nu, ni):
            t = interleaved(
                {v: (lambda s=s, f=feed: s.run(None, f)) for v, s in sessions.items()},
                reps,
            )
            for variant, us in t.items():
                out["variants"][variant][f"{case}_us"] = round(us, 1)
                out["variants"][variant][f"{case}_vs_float"] = us / t["float"]
    print(f"variants: {out['variants']}", flush=True)
    return out
