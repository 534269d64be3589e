"""The one padding convention (`tfrec.data.sequences`)."""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.data.sequences import PAD, SESSION_PAD, pad_left


def test_windows_are_right_aligned_and_keep_the_latest_items():
    values = np.array([5, 6, 7, 8, 9])
    got = pad_left(values, [0, 1, 2, 4], [2, 5, 2, 5], 3, pad=PAD)
    np.testing.assert_array_equal(
        got, [[-1, 5, 6], [7, 8, 9], [-1, -1, -1], [-1, -1, 9]]
    )
    assert got.dtype == values.dtype
    right = pad_left(values, [0, 1, 2, 4], [2, 5, 2, 5], 3, pad=PAD, side="right")
    np.testing.assert_array_equal(
        right, [[5, 6, -1], [7, 8, 9], [-1, -1, -1], [9, -1, -1]]
    )
    # the same multiset of ids per row, whichever side
    np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(right, axis=1))
    assert SESSION_PAD == 0 and PAD == -1


def test_session_prefixes_and_histories_use_the_convention():
    from tfrec.data.sessions import Sessions, padded_prefixes

    s = Sessions(name="s", session_ids=[1, 2], offsets=[0, 3, 5],
                 items=[4, 2, 3, 1, 4], timestamps=np.arange(5.0),
                 item_vocab=[10, 11, 12, 13])
    x, y = padded_prefixes(s, 2)
    np.testing.assert_array_equal(x, [[0, 4], [4, 2], [0, 1]])
    np.testing.assert_array_equal(y, [2, 3, 4])


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="max_length"):
        pad_left(np.arange(3), [0], [1], 0, pad=PAD)
    with pytest.raises(ValueError, match="'left' or 'right'"):
        pad_left(np.arange(3), [0], [1], 2, pad=PAD, side="middle")
    with pytest.raises(ValueError, match="ends >= starts"):
        pad_left(np.arange(3), [2], [1], 2, pad=PAD)
