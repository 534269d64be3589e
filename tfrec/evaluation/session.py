"""Next-click evaluation for session-based recommenders (GRU4Rec's protocol).

Every click of a test session except the last is a query; the next click is the
target, ranked against **all** items (full ranking, nothing excluded, not even
the clicked item), and Recall@K (the target is in the top K) and MRR@K (1/rank
when rank <= K, else 0) are averaged over all queries.

Ties: ``mode="conservative"`` (the official code's default) counts every item
scoring at least as high as the target, the target included, so
``rank = #{j : s_j >= s_target}``: ties count against the model. ``"standard"``
is ``1 + #{j : s_j > s_target}`` (ties in the model's favour) and ``"median"``
puts the target in the middle of its tie group. The conservative rank is the
pessimistic rank of the one full-ranking core (:mod:`tfrec.evaluation.ranking`)
plus one (a test checks it); it is computed here inside the TF step, so the
``[batch, num_items]`` scores never leave the graph, and nothing is excluded.

Queries are run in session-parallel order like the official evaluation: a
batch of slots, each following one test session; a slot's hidden state is
zeroed when a new session enters it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from tfrec.data.sessions import Sessions, session_parallel_batches

__all__ = [
    "MODES",
    "evaluate_next_click",
    "item_knn_step",
    "popularity_step",
    "ranks_from_scores",
    "recall_mrr",
]

MODES = ("conservative", "standard", "median")


def ranks_from_scores(scores, targets, mode: str = "conservative"):
    """Rank (1-based) of each row's target among all columns.

    Args:
        scores: float ``[batch, num_columns]``.
        targets: int ``[batch]`` column of each row's target.
        mode: Tie handling, one of `MODES`.

    Returns:
        float ``[batch]`` ranks (``median`` may give halves).
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    scores = tf.convert_to_tensor(scores)
    targets = tf.cast(tf.convert_to_tensor(targets), tf.int64)
    t = tf.gather(scores, targets, axis=1, batch_dims=1)[:, None]
    greater = tf.reduce_sum(tf.cast(scores > t, tf.float32), axis=1)
    if mode == "standard":
        return greater + 1.0
    ties = tf.reduce_sum(tf.cast(scores == t, tf.float32), axis=1)  # incl. target
    if mode == "conservative":
        return greater + ties
    return greater + 1.0 + 0.5 * (ties - 1.0)


def recall_mrr(ranks, cutoffs: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
    """Recall@K and MRR@K of 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {"queries": int(ranks.size)}
    for k in cutoffs:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean()) if ranks.size else 0.0
        out[f"mrr@{k}"] = (
            float(np.where(hit, 1.0 / ranks, 0.0).mean()) if ranks.size else 0.0
        )
    return out


StepFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def evaluate_next_click(
    step,
    test: Sessions,
    *,
    state_size: int | None = None,
    batch_size: int = 512,
    cutoffs: Sequence[int] = (5, 10, 20),
    mode: str = "conservative",
    return_ranks: bool = False,
) -> dict:
    """Recall@K and MRR@K of next-click prediction over all items.

    Args:
        step: A ``gru4rec_step`` model, or any callable
            ``(item_id [b], hidden_state [b, state_size]) -> (scores
            [b, num_items + 1], new_hidden_state)``; column ``k`` of the
            scores is item index ``k`` (column 0, padding, should score lowest).
        test: Test sessions, indexed with the training vocabulary.
        state_size: Width of the state; read from a Keras model's input
            ``hidden_state`` when omitted.
        batch_size: Parallel sessions per step.
        cutoffs: The K values.
        mode: Tie handling, one of `MODES` (official default: conservative).
        return_ranks: Also return the rank of every query (in test-session
            order, then time).

    Returns:
        ``{"recall@K": ..., "mrr@K": ..., "queries": n, "mode": mode}``.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    import keras

    if isinstance(step, keras.Model):
        model = step
        if state_size is None:
            state_size = int(model.input["hidden_state"].shape[-1])

        def call(items, state):
            out = model({"item_id": items, "hidden_state": state}, training=False)
            return out["scores"], out["new_hidden_state"]

    else:
        call = step
        if state_size is None:
            state_size = 1
    batches = session_parallel_batches(test, batch_size)

    @tf.function(reduce_retracing=True)
    def run(items, targets, reset, state):
        state = state * (1.0 - reset[:, None])
        scores, new_state = call(items, state)
        return ranks_from_scores(scores, targets, mode), new_state

    state = tf.zeros((batch_size, state_size), tf.float32)
    all_ranks = np.zeros(batches.valid.shape, dtype=np.float64)
    for t in range(batches.num_steps):
        ranks, state = run(
            tf.constant(batches.inputs[t]),
            tf.constant(batches.targets[t]),
            tf.constant(batches.reset[t]),
            state,
        )
        all_ranks[t] = ranks.numpy()
    valid = batches.valid > 0
    # Query order: by session, then time (step order within a slot).
    sess = batches.session[valid]
    steps = np.nonzero(valid)[0]
    order = np.lexsort((steps, sess))
    ranks = all_ranks[valid][order]
    out = recall_mrr(ranks, cutoffs)
    out["mode"] = mode
    if return_ranks:
        out["ranks"] = ranks
    return out


# --------------------------------------------------------------------- baselines
def popularity_step(train: Sessions) -> StepFn:
    """Baseline: always the training popularity (score = click count)."""
    from tfrec.evaluation.protocols import item_popularity

    counts = item_popularity(train.items, train.num_items + 1).astype(np.float32)
    counts[0] = -1e9  # index 0 is padding
    table = tf.constant(counts)

    @tf.autograph.experimental.do_not_convert
    def step(items, state):
        b = tf.shape(items)[0]
        return tf.tile(table[None, :], [b, 1]), state

    return step


def item_knn_step(train: Sessions, *, lmbd: float = 20.0, alpha: float = 0.5) -> StepFn:
    """Baseline: item-kNN on session co-occurrence of the last click (Hidasi et al.).

    ``sim(i, j) = c_ij / (n_i**alpha * n_j**(1 - alpha) + lmbd)`` with ``c_ij``
    the number of training sessions holding both items and ``n_i`` those holding
    ``i`` (the official ``baselines.ItemKNN`` defaults ``lmbd=20``,
    ``alpha=0.5``). Dense ``[num_items + 1]**2``: for small item sets.
    """
    n = train.num_items + 1
    sess = train.event_session
    pairs = np.unique(np.stack([sess, train.items], 1), axis=0)  # distinct per session
    k = np.bincount(pairs[:, 0], minlength=train.num_sessions)  # distinct items
    first = np.cumsum(k) - k
    kk = k[pairs[:, 0]]
    a = np.repeat(np.arange(len(pairs)), kk)
    within = np.arange(a.size) - np.repeat(np.cumsum(kk) - kk, kk)
    b = first[pairs[a, 0]] + within
    flat = pairs[a, 1].astype(np.int64) * n + pairs[b, 1]
    co = np.bincount(flat, minlength=n * n).reshape(n, n).astype(np.float32)
    supp = np.bincount(pairs[:, 1], minlength=n).astype(np.float32)
    np.fill_diagonal(co, 0.0)
    denom = supp[:, None] ** alpha * supp[None, :] ** (1 - alpha) + lmbd
    sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)
    sim[:, 0] = -1e9
    table = tf.constant(sim)

    @tf.autograph.experimental.do_not_convert
    def step(items, state):
        return tf.gather(table, tf.cast(items, tf.int64)), state

    return step
