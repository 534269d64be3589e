"""Every item's score for a block of users, in one graph call.

`tfrec.evaluation.protocols.FullRanking` scores all items of ``user_chunk``
users per call. Through a pair scorer (`tfrec.evaluation.scoring.keras_scorer`)
that means ``users x items`` int64 index arrays built in numpy and fed in
slices; :func:`row_scorer` tiles the pairs inside one ``tf.function`` instead
(the same model call, so the same numbers to the bit) and returns the
``[users, items]`` block. Attach it to a pair scorer as ``score_fn.score_rows``
and the protocol uses it.

Example:
    >>> score_fn = keras_scorer(model)
    >>> score_fn.score_rows = row_scorer(model)
    >>> FullRanking(num_items, users, items).evaluate(score_fn)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["row_scorer"]


def row_scorer(model, *, output: str | None = None) -> Callable[..., np.ndarray]:
    """``score_rows(users, num_items) -> [len(users), num_items]`` for a pair model.

    Args:
        model: a Keras serving model with ``user_id`` and ``item_id`` inputs only
            (item-side inputs go through `keras_scorer`'s ``item_inputs``).
        output: the output to return; default the model's only output.

    Returns:
        ``score_rows(users, num_items)``: the model's output for every
        ``(user, item)`` with ``item`` in ``0 .. num_items - 1``, users by row.
    """
    import tensorflow as tf

    from tfrec.evaluation.scoring import ID_INPUTS, output_name

    name = output or output_name(model)
    inputs = tuple(model.input) if isinstance(model.input, dict) else ()
    if sorted(inputs) != sorted(ID_INPUTS):
        raise ValueError(
            f"`row_scorer` takes a model with inputs {list(ID_INPUTS)}; model "
            f"{model.name!r} takes {list(inputs)}. Score it through keras_scorer."
        )
    spec = tf.TensorSpec((None,), tf.int64)

    @tf.function(input_signature=[spec, tf.TensorSpec((), tf.int64)])
    def rows(users, num_items):
        b = tf.shape(users, out_type=tf.int64)[0]
        feed = {
            "user_id": tf.repeat(users, num_items),
            "item_id": tf.tile(tf.range(num_items, dtype=tf.int64), [b]),
        }
        out = model(feed, training=False)[name]
        return tf.reshape(out, [b, num_items])

    def score_rows(users, num_items: int) -> np.ndarray:
        users = np.asarray(users, np.int64).reshape(-1)
        return rows(tf.constant(users), tf.constant(int(num_items), tf.int64)).numpy()

    return score_rows
