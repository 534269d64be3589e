"""The one scorer adapter: a serving graph as ``score_fn(users, items) -> scores``.

Evaluation protocols (:mod:`tfrec.evaluation.protocols`,
:mod:`tfrec.evaluation.ranking`) are model-agnostic: they call a ``score_fn``
with two int64 index arrays of the same length. :func:`keras_scorer` wraps a
Keras serving model: it feeds ``user_id`` and ``item_id`` and, for models with
item-side inputs (a hybrid's ``item_content``, VBPR's ``item_features``), the
rows ``item_inputs[name][item_idx]``; only the model's own inputs are fed
(``cbf_profile`` has no ``item_id``). :func:`feed_scorer` does the same for any
``predict(feed_dict) -> output_dict`` (an onnxruntime session, a SavedModel
signature).

`keras_scorer`'s ``score_fn`` carries ``score_rows(users, num_items)`` (every
item of a block of users; `tfrec.evaluation.protocols.FullRanking` uses it):
for a factor model (`tfrec.registry.Factor` in ``CATALOGUE_SCORING``, found by
``registry_name`` or the model's name) one matmul against the item table
(`tfrec.evaluation.factors`; float32 sums in another order, so equal within
float tolerance), for other pair models with only id inputs
`tfrec.evaluation.rows.row_scorer` (the pair model on tiled pairs in one graph
call: equal to the bit).

Example:
    >>> score_fn = keras_scorer(model, item_inputs={"item_content": content})
    >>> FullRanking(num_items, users, items).evaluate(score_fn)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["feed_scorer", "keras_scorer", "output_name"]

ID_INPUTS = ("user_id", "item_id")


def output_name(model) -> str:
    """The name of a single-output dict model's output."""
    outputs = model.output
    if not isinstance(outputs, dict) or len(outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} must have exactly one named output to be scored; "
            f"got {list(outputs) if isinstance(outputs, dict) else type(outputs).__name__}."
        )
    return next(iter(outputs))


def _item_tables(model, item_inputs: Mapping | None) -> dict[str, np.ndarray]:
    """The item-side arrays the model takes, float32 (one row per item index)."""
    names = tuple(model.input) if isinstance(model.input, dict) else ()
    given = {k: v for k, v in (item_inputs or {}).items() if v is not None}
    missing = [n for n in names if n not in ID_INPUTS and n not in given]
    if missing:
        raise ValueError(
            f"Model {model.name!r} takes {missing} besides user_id / item_id; pass "
            f"them as item_inputs={{name: [num_items, ...] array}} (one row per item "
            f"index). Received item_inputs for {sorted(given)}."
        )
    return {n: np.asarray(given[n], np.float32) for n in names if n in given}


def _batches(users, items, batch_size: int, score) -> np.ndarray:
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    parts = [
        np.asarray(score(users[s : s + batch_size], items[s : s + batch_size]))
        for s in range(0, len(users), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def keras_scorer(
    model,
    *,
    output: str | None = None,
    item_inputs: Mapping[str, np.ndarray] | None = None,
    batch_size: int = 262_144,
    compiled: bool = True,
    registry_name: str | None = None,
    rows: str = "auto",
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A ``score_fn`` running ``model`` in inference mode on int64 index arrays.

    Args:
        model: a Keras serving model with dict inputs.
        output: the output to return; default the model's only output.
        item_inputs: item-side inputs by input name, each ``[num_items, ...]``
            (row = item index); those the model does not take are ignored.
        batch_size: pairs per model call.
        compiled: run the model in one ``tf.function`` with a fixed signature
            (fast for many large calls); False calls it eagerly (no tracing,
            for runs that build many scorers).

    Returns:
        ``score_fn(users, items)`` returning the output's values, batch first.
    """
    import tensorflow as tf

    name = output or output_name(model)
    tables = _item_tables(model, item_inputs)
    keys = tuple(model.input) if isinstance(model.input, dict) else ID_INPUTS

    def forward(users, items):
        feed = {"user_id": users, "item_id": items}
        feed.update({n: tf.gather(t, items) for n, t in constants.items()})
        return model({k: feed[k] for k in keys}, training=False)[name]

    constants = {n: tf.constant(t) for n, t in tables.items()}
    if compiled:
        spec = tf.TensorSpec((None,), tf.int64)
        forward = tf.function(forward, input_signature=[spec, spec],
                              reduce_retracing=True)

    def score(users, items):
        for n, t in tables.items():
            if items.size and (items.min() < 0 or items.max() >= len(t)):
                raise ValueError(
                    f"Item indices must be in [0, {len(t)}) (rows of `{n}`). "
                    f"Received range [{items.min()}, {items.max()}]."
                )
        return forward(tf.constant(users), tf.constant(items)).numpy()

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return _batches(users, items, batch_size, score)

    if rows not in ("auto", "pairs", "none"):
        raise ValueError(f"`rows` must be auto, pairs or none. Received: {rows!r}")
    score_rows = None
    if rows == "auto":
        score_rows = factor_rows(model, name, tables, registry_name)
    if score_rows is None and rows != "none" and sorted(keys) == sorted(ID_INPUTS):
        from tfrec.evaluation.rows import row_scorer

        score_rows = row_scorer(model, output=name)
    if score_rows is not None:
        score_fn.score_rows = score_rows
    return score_fn


def factor_rows(model, output: str, item_inputs: Mapping, registry_name=None,
                *, block: int = 512):
    """``score_rows(users, num_items)`` of a factor model: each block of
    ``block`` users is one matmul against the item table (NCF's MLP part: the
    MLP over the user's half of its first layer plus every item's); None when
    the model has no factor rule."""
    import tensorflow as tf

    from tfrec.evaluation.factors import FactorScores, factor_rule

    factor = factor_rule(model, registry_name)
    if factor is None:
        return None
    scorer = FactorScores(model, factor, output, item_inputs)
    if factor.tower:
        block = min(block, 64)  # [block, N, width] activations per call

    traced: dict[int, Callable] = {}  # one graph per catalogue size

    def rows(users, num_items: int):
        if num_items not in traced:
            traced[num_items] = tf.function(
                lambda u: scorer.scores(u, scorer.item_side(num_items)),
                input_signature=[tf.TensorSpec((None,), tf.int64)],
            )
        return traced[num_items](users)

    def score_rows(users, num_items: int) -> np.ndarray:
        users = np.asarray(users, np.int64).reshape(-1)
        for n, t in item_inputs.items():
            if num_items > len(t):
                raise ValueError(
                    f"num_items={num_items} exceeds the {len(t)} rows of `{n}`."
                )
        n = int(num_items)
        parts = [rows(tf.constant(users[lo : lo + block]), n).numpy()
                 for lo in range(0, len(users), block)]
        return (np.concatenate(parts) if parts
                else np.zeros((0, int(num_items)), np.float32))

    return score_rows


def feed_scorer(
    predict: Callable[[dict], dict], output: str, *, batch_size: int = 65_536
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A ``score_fn`` for any ``predict(feed_dict) -> output_dict`` (e.g. ONNX);
    the feed holds ``user_id`` and ``item_id``."""

    def score(users, items):
        return predict({"user_id": users, "item_id": items})[output]

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return _batches(users, items, batch_size, score)

    return score_fn
