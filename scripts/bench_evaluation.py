"""Bench section ``evaluation``: the time the runner's evaluation takes on NCF ML-1M.

Through the code the runner runs (`tfrec.evaluation.protocols` via
`split_protocols`, scored by `tfrec.evaluation.scoring.keras_scorer`), with
untrained NeuMF-8 and MF models of the real sizes (the time does not depend on
the weights):

* full ranking: all 6,040 test users against all 3,706 items, training items
  excluded (22.4 M scored pairs);
* sampled ranking (the NCF protocol): each user's held-out item and its 99
  published negatives.

The runner's scorer scores every item of a block of users at once
(``score_fn.score_rows``): for these factor models one matmul against the item
table (NeuMF: its GMF part as a matmul and its MLP over the user's half of the
first layer plus every item's precomputed half; `tfrec.evaluation.factors`). The
pair scorer it replaced (``keras_scorer(model, rows="none")``: users x items
index arrays through the pair model) runs in the same invocation as the
baseline, with the largest metric difference between the two.

Each figure is the median of a few evaluations after one warm-up call (tracing
excluded), with the ranking alone (scores precomputed) beside it, so the share of
the model and of the protocol shows. Goals: full ranking under 3 s, sampled under
1 s (``evaluation.full_ranking_ml1m_s``, ``evaluation.sampled_ncf_s``).
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _timed(fn, reps: int, warm=None) -> tuple[float, object]:
    """Median seconds of ``reps`` calls of ``fn`` after ``warm()`` (default one
    call of ``fn``), and the last result."""
    out = fn() if warm is None else warm()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def _tiny_protocols():
    """Smoke sizes: 60 users x 45 items, 1 held-out item each, 20 negatives."""
    from tfrec.evaluation.protocols import FullRanking, SampledRanking

    rng = np.random.default_rng(0)
    nu, ni = 60, 45
    seen = [np.sort(rng.choice(ni, 8, replace=False)) for _ in range(nu)]
    held = np.array([rng.choice(np.setdiff1d(np.arange(ni), s)) for s in seen])
    indptr = np.arange(0, 8 * nu + 1, 8)
    full = FullRanking(ni, np.arange(nu), held, exclude_indptr=indptr,
                       exclude_indices=np.concatenate(seen))
    negs = rng.integers(0, ni, (nu, 20))
    return nu, ni, {"full": full, "sampled": SampledRanking(np.arange(nu), held, negs)}


def run(quick: bool, threads: int, *, smoke: bool = False) -> dict:
    import keras

    from tfrec.evaluation.ranking import csr_rows, full_ranking
    from tfrec.evaluation.scoring import keras_scorer
    from tfrec.registry import create_model

    if smoke:
        nu, ni, protocols = _tiny_protocols()
        data = "synthetic 60 users x 45 items (smoke)"
    else:
        from tfrec.data import ncf_split
        from tfrec.evaluation.protocols import split_protocols

        split = ncf_split()
        nu, ni = split.num_users, split.num_items
        protocols = split_protocols(split, "test", ks=(10,), full=True)
        data = "NCF ML-1M test (leave-one-out), training items excluded"
    reps = 1 if smoke or quick else 3
    full, sampled = protocols["full"], protocols["sampled"]
    out: dict = {
        "data": data,
        "users": int(full.num_users),
        "items": int(ni),
        "full_ranking_pairs": int(full.num_users) * int(ni),
        "sampled_candidates_per_user": int(sampled.candidates.shape[1]),
        "repeats": reps,
        "threads": threads,
        "models": {},
    }
    few = np.zeros(4, np.int64)
    for name in ("neumf", "mf"):
        keras.utils.set_random_seed(0)
        model = create_model(name, num_users=nu, num_items=ni)
        # The runner's scorer: its `score_rows` is the factor matmul (MF; NeuMF:
        # the MLP over the user's half of the first layer plus every item's).
        score_fn = keras_scorer(model)

        def warm(f=score_fn, x=few):  # traces the scorers (one fixed signature)
            f(x, x)
            return f.score_rows(x, ni)

        t_full, metrics = _timed(lambda f=score_fn: full.evaluate(f), reps, warm)
        t_sampled, s_metrics = _timed(
            lambda f=score_fn: sampled.evaluate(f), reps, lambda f=score_fn: f(few, few)
        )
        # The protocol's own share: the same ranking on precomputed scores.
        scores = np.concatenate([
            score_fn.score_rows(full.eval_users[lo : lo + 512], ni)
            for lo in range(0, full.num_users, 512)
        ])
        seen = csr_rows(full.exclude_indptr, full.exclude_indices, full.eval_users)
        t_rank, ranked = _timed(
            lambda s=scores, e=seen: full_ranking(
                s, (full.heldout_indptr, full.heldout_indices), seen=e, ks=full.ks
            ),
            reps,
        )
        assert ranked == metrics, "the protocol and the core disagree"
        # Baselines in the same invocation: the pair scorer (users x items index
        # arrays through the pair model, what the runner did before) and, but in
        # --quick, the tiled pair model in one graph call per block (equal to
        # the bit to the pair scorer).
        pair_fn = keras_scorer(model, rows="none")
        t_pair, pair_metrics = _timed(lambda f=pair_fn: full.evaluate(f), reps,
                                      lambda f=pair_fn: f(few, few))
        variants = {"factor": (t_full, metrics)}
        if not quick:
            tiled = keras_scorer(model, rows="pairs")
            variants["row_scorer"] = _timed(lambda f=tiled: full.evaluate(f), reps,
                                            lambda f=tiled: f.score_rows(few, ni))
        with_rows = {
            label: {
                "full_ranking_s": round(t, 3),
                "speedup_over_pair_scorer": t_pair / t,
                "metrics_equal_pair_scorer": m == pair_metrics,
                "max_metric_diff": max(abs(m[k] - pair_metrics[k]) for k in m),
            }
            for label, (t, m) in variants.items()
        }
        out["models"][name] = {
            "full_ranking_s": round(t_full, 3),
            "full_ranking_pair_scorer_s": round(t_pair, 3),
            "full_ranking_rank_only_s": round(t_rank, 3),
            "full_ranking_scoring_s": round(max(t_full - t_rank, 0.0), 3),
            "sampled_s": round(t_sampled, 3),
            "full_hr@10_untrained": metrics["hr@10"],
            "sampled_hr@10_untrained": s_metrics["hr@10"],
            "with_score_rows": with_rows,
        }
        print(f"evaluation {name}: {out['models'][name]}", flush=True)
    out["full_ranking_ml1m_s"] = out["models"]["neumf"]["full_ranking_s"]
    out["full_ranking_ml1m_mf_s"] = out["models"]["mf"]["full_ranking_s"]
    out["sampled_ncf_s"] = out["models"]["neumf"]["sampled_s"]
    out["sampled_ncf_mf_s"] = out["models"]["mf"]["sampled_s"]
    out["full_ranking_ml1m_pair_scorer_s"] = (
        out["models"]["neumf"]["full_ranking_pair_scorer_s"])
    out["full_ranking_ml1m_mf_pair_scorer_s"] = (
        out["models"]["mf"]["full_ranking_pair_scorer_s"])
    out["full_ranking_ml1m_mf_matmul_s"] = out["full_ranking_ml1m_mf_s"]
    return out
