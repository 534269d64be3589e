"""Bench section ``evaluation``: the time the runner's evaluation takes on NCF ML-1M.

Through the code the runner runs (`tfrec.evaluation.protocols` via
`split_protocols`, scored by `tfrec.evaluation.scoring.keras_scorer`), with
untrained NeuMF-8 and MF models of the real sizes (the time does not depend on
the weights):

* full ranking: all 6,040 test users against all 3,706 items, training items
  excluded (22.4 M scored pairs);
* sampled ranking (the NCF protocol): each user's held-out item and its 99
  published negatives.

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


def mf_matmul_rows(model):
    """Bench only: MF's ``[users, items]`` block as one matmul against the item
    table, ``sigmoid(P_u Q^T + b_u + b_i + b)`` in the model's order of sums (what
    a factor-model row scorer would do; its float32 sums are not the pair
    model's, so its metrics are compared, not assumed)."""
    import tensorflow as tf

    def table(name):
        return tf.constant(model.get_layer(name).embeddings.numpy())

    p, q = table("mf_user_embedding"), table("mf_item_embedding")
    bu, bi = table("mf_user_bias"), table("mf_item_bias")
    g = tf.constant(model.get_layer("global_bias").bias.numpy())

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.int64)])
    def rows(users):
        dot = tf.matmul(tf.gather(p, users), q, transpose_b=True)
        return tf.sigmoid(dot + tf.gather(bu, users) + tf.transpose(bi) + g)

    def score_rows(users, num_items):
        return rows(tf.constant(np.asarray(users, np.int64))).numpy()

    return score_rows


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
    from tfrec.evaluation.rows import row_scorer
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
        score_fn = keras_scorer(model)

        def warm(f=score_fn, x=few):  # traces the scorer (one fixed signature)
            return f(x, x)

        t_full, metrics = _timed(lambda f=score_fn: full.evaluate(f), reps, warm)
        t_sampled, s_metrics = _timed(
            lambda f=score_fn: sampled.evaluate(f), reps, warm
        )
        # The protocol's own share: the same ranking on precomputed scores
        # (from the row scorer: the same numbers, one graph call per block).
        fast = {"row_scorer": row_scorer(model)}
        if name == "mf":
            fast["mf_matmul"] = mf_matmul_rows(model)
        # (quick: random float32 scores; the ranking's cost does not depend on them)
        if quick:
            rng = np.random.default_rng(0)
            scores = rng.normal(size=(full.num_users, ni)).astype(np.float32)
        else:
            scores = np.concatenate([
                fast["row_scorer"](full.eval_users[lo : lo + 256], ni)
                for lo in range(0, full.num_users, 256)
            ])
        seen = csr_rows(full.exclude_indptr, full.exclude_indices, full.eval_users)
        t_rank, ranked = _timed(
            lambda s=scores, e=seen: full_ranking(
                s, (full.heldout_indptr, full.heldout_indices), seen=e, ks=full.ks
            ),
            reps,
        )
        if not quick:
            assert ranked == metrics, "the protocol and the core disagree"
        # The same protocol with every item of a user block scored in one graph
        # call (`tfrec.evaluation.rows`), and, for MF, one matmul per block
        # (quick: the matmul only; full: the row scorer too, whose numbers are
        # the pair scorer's, checked above through `ranked == metrics`).
        variants = {}
        for label, rows in fast.items():
            if quick and label == "row_scorer":
                continue

            def scored(u, i, f=score_fn):
                return f(u, i)

            scored.score_rows = rows
            t, m = _timed(lambda f=scored: full.evaluate(f), reps,
                          lambda r=rows: r(few, ni))
            variants[label] = {
                "full_ranking_s": round(t, 3),
                "metrics_equal_pair_scorer": m == metrics,
                "max_metric_diff": max(abs(m[k] - metrics[k]) for k in m),
            }
        out["models"][name] = {
            "full_ranking_s": round(t_full, 3),
            "full_ranking_rank_only_s": round(t_rank, 3),
            "full_ranking_scoring_s": round(max(t_full - t_rank, 0.0), 3),
            "sampled_s": round(t_sampled, 3),
            "full_hr@10_untrained": metrics["hr@10"],
            "sampled_hr@10_untrained": s_metrics["hr@10"],
            "with_score_rows": variants,
        }
        print(f"evaluation {name}: {out['models'][name]}", flush=True)
    out["full_ranking_ml1m_s"] = out["models"]["neumf"]["full_ranking_s"]
    out["full_ranking_ml1m_mf_s"] = out["models"]["mf"]["full_ranking_s"]
    out["sampled_ncf_s"] = out["models"]["neumf"]["sampled_s"]
    out["sampled_ncf_mf_s"] = out["models"]["mf"]["sampled_s"]
    if not quick:
        rows = {n: m["with_score_rows"]["row_scorer"]["full_ranking_s"]
                for n, m in out["models"].items()}
        out["full_ranking_ml1m_row_scorer_s"] = rows["neumf"]
        out["full_ranking_ml1m_mf_row_scorer_s"] = rows["mf"]
    out["full_ranking_ml1m_mf_matmul_s"] = (
        out["models"]["mf"]["with_score_rows"]["mf_matmul"]["full_ranking_s"]
    )
    return out
