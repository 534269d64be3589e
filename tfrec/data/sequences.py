"""The one padding convention for item sequences, and its helper.

Every model input holding a sequence of item ids (GRU4Rec's ``session_items``,
the YouTube DNN's and MV-DNN's ``item_history``) is an int64 ``[batch,
max_length]`` matrix, **left-padded**: the latest ``max_length`` items in time
order, the most recent one in the last column, padding in front. The pad id is
the id just below the family's first item index, and every model masks it:

* ``PAD = -1`` where item indices start at 0 (YouTube DNN and MV-DNN
  histories, :mod:`tfrec.data.histories`; also item2vec's CBOW context bags,
  :mod:`tfrec.data.word2vec`, which are unordered bags and therefore packed to
  the front instead);
* ``SESSION_PAD = 0`` for GRU4Rec, whose session vocabulary numbers items
  ``1..num_items`` and reserves index 0 (:mod:`tfrec.data.sessions`; the
  serving graph masks it with ``mask_zero``).

:func:`pad_left` builds such rows from windows of one flat array; the session
prefixes (:func:`tfrec.data.sessions.padded_prefixes`), the rolled-back
training histories (:func:`tfrec.data.histories.rolled_back_examples`), the
serving histories (:class:`tfrec.youtube_serving.PipelineTables`) and the
recipes' one-user histories all use it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PAD", "SESSION_PAD", "pad_left"]

PAD = -1
SESSION_PAD = 0


def pad_left(
    values, starts, ends, max_length: int, *, pad, side: str = "left"
) -> np.ndarray:
    """Rows ``values[max(starts[r], ends[r] - max_length) : ends[r]]``, padded.

    Args:
        values: the flat array the windows index (item ids, timestamps).
        starts, ends: ``[n]`` window bounds into ``values`` (``ends`` exclusive);
            a window longer than ``max_length`` keeps its last items.
        max_length: row width.
        pad: the value of the padding cells (``PAD``, ``SESSION_PAD``, 0 for
            timestamps).
        side: ``"left"`` (the convention: items right-aligned) or ``"right"``
            (items first; the models mask padding, so it gives the same
            results, which a test checks).

    Returns:
        ``[n, max_length]`` array of ``values``' dtype.

    Example:
        >>> pad_left(np.array([5, 6, 7, 8]), [0, 1], [2, 4], 3, pad=-1)
        array([[-1,  5,  6],
               [ 6,  7,  8]])
    """
    if isinstance(max_length, bool) or int(max_length) != max_length or max_length < 1:
        raise ValueError(
            f"`max_length` must be a positive int. Received: max_length={max_length!r}"
        )
    if side not in ("left", "right"):
        raise ValueError(f"`padding` must be 'left' or 'right'. Received: {side!r}")
    values = np.asarray(values)
    starts = np.asarray(starts, np.int64).reshape(-1)
    ends = np.asarray(ends, np.int64).reshape(-1)
    if starts.shape != ends.shape or np.any(ends < starts):
        raise ValueError(
            "`starts` and `ends` must be parallel window bounds with ends >= starts. "
            f"Received shapes {starts.shape} and {ends.shape}."
        )
    length = int(max_length)
    lengths = np.minimum(ends - starts, length)
    k = np.arange(length)[None, :]
    if side == "left":
        valid = k >= (length - lengths)[:, None]
        idx = ends[:, None] - length + k
    else:
        valid = k < lengths[:, None]
        idx = ends[:, None] - lengths[:, None] + k
    idx = np.where(valid, idx, 0)
    if values.size == 0:
        return np.full((starts.size, length), pad, values.dtype)
    return np.where(valid, values[idx], pad).astype(values.dtype, copy=False)
