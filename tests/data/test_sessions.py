"""Session data: ordering, vocabulary, loaders, bad input, session-parallel batches."""

from __future__ import annotations

import numpy as np
import pytest

from tfrec.data import DataError
from tfrec.data.sessions import (
    Sessions,
    gru4rec_preprocess,
    load_diginetica,
    load_yoochoose,
    padded_prefixes,
    read_diginetica_views,
    read_gru4rec_tsv,
    read_yoochoose_clicks,
    session_parallel_batches,
    session_parallel_dataset,
    user_histories,
    write_gru4rec_tsv,
)


def _hand_sessions():
    # Session 1 starts at 0, 2 at 0.5, 3 at 0.7, 4 at 5 (given out of order).
    return Sessions.from_events(
        [4, 4, 3, 3, 3, 3, 1, 1, 1, 2, 2],
        [40, 41, 30, 31, 32, 33, 10, 11, 12, 20, 21],
        [5, 6, 0.7, 1, 2, 3, 0, 1, 2, 0.5, 1.5],
    )


# ------------------------------------------------------------------ Sessions
def test_from_events_orders_sessions_and_clicks():
    s = Sessions.from_events(
        [7, 7, 7, 3, 3], [100, 50, 60, 60, 100], [3.0, 1.0, 2.0, 0.5, 0.5]
    )
    # Session 3 starts first (0.5); its tie keeps file order (60 then 100).
    assert s.session_ids.tolist() == [3, 7]
    assert s.offsets.tolist() == [0, 2, 5]
    assert s.item_vocab.tolist() == [50, 60, 100]
    assert s.items.tolist() == [2, 3, 1, 2, 3]  # indices from 1; 0 is padding
    assert s.raw_items.tolist() == [60, 100, 50, 60, 100]
    assert s.timestamps.tolist() == [0.5, 0.5, 1.0, 2.0, 3.0]
    assert s.num_items == 3 and s.num_events == 5 and s.lengths.tolist() == [2, 3]
    assert [x.tolist() for x in s.sequences()] == [[2, 3], [1, 2, 3]]


def test_encode_unknown_items():
    s = Sessions.from_events([1, 1], [5, 9], [0, 1])
    assert s.encode_items([9, 5]).tolist() == [2, 1]
    assert s.encode_items([9, 6], unknown="zero").tolist() == [2, 0]
    with pytest.raises(DataError, match=r"not in the vocabulary.*\[6\]"):
        s.encode_items([6])
    assert s.decode_items([2, 1]).tolist() == [9, 5]
    with pytest.raises(ValueError, match="1..2"):
        s.decode_items([0])


def test_from_events_rejects_nan_time_and_bad_shapes():
    with pytest.raises(DataError, match="NaN or infinite"):
        Sessions.from_events([1, 1], [1, 2], [0.0, np.nan])
    with pytest.raises(DataError, match="same length"):
        Sessions.from_events([1, 1], [1], [0.0, 1.0])


def test_user_histories_movielens_100k(shared_data):
    s = user_histories("movielens-100k", shared_data / "movielens-100k")
    assert s.num_sessions == 943 and s.num_events == 100_000
    assert s.num_items == 1682
    for k in (0, 100, 942):
        t = s.timestamps[s.offsets[k] : s.offsets[k + 1]]
        assert np.all(np.diff(t) >= 0)
    starts = s.timestamps[s.offsets[:-1]]
    assert np.all(np.diff(starts) >= 0)  # sessions ordered by start time
    long = user_histories("movielens-100k", shared_data / "movielens-100k", 200)
    assert long.lengths.min() >= 200 and long.num_sessions < 943


# ------------------------------------------------------------------ batching
def test_session_parallel_batches_slot_order_and_resets():
    b = session_parallel_batches(_hand_sessions(), 2)
    # Slot 0: session 1 (2 pairs), then session 4; slot 1: session 2, then 3.
    np.testing.assert_array_equal(b.inputs.T, [[1, 2, 10, 0], [4, 6, 7, 8]])
    np.testing.assert_array_equal(b.targets.T, [[2, 3, 11, 0], [5, 7, 8, 9]])
    np.testing.assert_array_equal(b.reset.T, [[1, 0, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(b.valid.T, [[1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(b.session.T, [[0, 0, 3, -1], [1, 2, 2, 2]])
    assert b.num_events == 7 and b.num_steps == 4


def test_session_parallel_batches_skip_single_clicks_and_reject_empty():
    s = Sessions.from_events([1, 2, 2], [1, 2, 3], [0, 1, 2])
    b = session_parallel_batches(s, 3)
    assert b.inputs.tolist() == [[2, 0, 0]] and b.targets.tolist() == [[3, 0, 0]]
    with pytest.raises(DataError, match="no session has 2"):
        session_parallel_batches(Sessions.from_events([1], [1], [0]), 2)
    with pytest.raises(ValueError, match="batch_size"):
        session_parallel_batches(s, 0)


def test_session_parallel_dataset_matches_arrays():
    s = _hand_sessions()
    b = session_parallel_batches(s, 2)
    rows = list(session_parallel_dataset(s, 2).as_numpy_iterator())
    assert len(rows) == b.num_steps
    for t, row in enumerate(rows):
        np.testing.assert_array_equal(row["item_id"], b.inputs[t])
        np.testing.assert_array_equal(row["reset"], b.reset[t])


def test_padded_prefixes_left_pad():
    x, y = padded_prefixes(_hand_sessions(), 3)
    np.testing.assert_array_equal(
        x,
        [[0, 0, 1], [0, 1, 2], [0, 0, 4], [0, 0, 6], [0, 6, 7], [6, 7, 8], [0, 0, 10]],
    )
    assert y.tolist() == [2, 3, 5, 7, 8, 9, 11]


# ------------------------------------------------------------------ files
def _write(path, text):
    path.write_text(text)
    return path


def test_read_gru4rec_tsv_and_round_trip(tmp_path):
    p = _write(
        tmp_path / "a.txt",
        "SessionId\tItemId\tTime\n2\t5\t10.5\n1\t7\t3.0\n2\t6\t9.0\n1\t5\t4.0\n",
    )
    df = read_gru4rec_tsv(p)
    assert df["SessionId"].tolist() == [2, 1, 2, 1]
    s = Sessions.from_events(df.SessionId, df.ItemId, df.Time)
    # Unsorted times are sorted (as the official code does): session 1 first.
    assert s.raw_items.tolist() == [7, 5, 6, 5]
    out = tmp_path / "out" / "b.tsv"
    write_gru4rec_tsv(s, out)
    back = read_gru4rec_tsv(out)
    assert back["ItemId"].tolist() == [7, 5, 6, 5]
    assert back["Time"].tolist() == [3.0, 4.0, 9.0, 10.5]


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("SessionId\tItemId\tTime\n", "only the header"),
        ("Session\tItem\tTime\n1\t2\t3\n", "expected the header"),
        (
            "SessionId\tItemId\tTime\n1\t2\t3\n1\tx\t4\n",
            r"line 3: ItemId must be an integer",
        ),
        ("SessionId\tItemId\tTime\n1\t2\t3\n1\t2\n", r"line 3: expected 3"),
        ("SessionId\tItemId\tTime\n1\t2\t3\t4\n", r"line 2: expected 3"),
        ("SessionId\tItemId\tTime\n1\t2\tnan\n", "finite"),
    ],
)
def test_read_gru4rec_tsv_bad_input(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_gru4rec_tsv(_write(tmp_path / "bad.txt", text))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_gru4rec_tsv(tmp_path / "nope.txt")


def _raw_clicks(rows):
    return "".join(
        f"{s},2014-04-{d:02d}T10:00:{sec:02d}.000Z,{i},0\n" for s, d, sec, i in rows
    )


def test_yoochoose_raw_preprocessing(tmp_path):
    rows = []
    # Items 1..3 get >= 5 clicks; item 9 only 1 (dropped); session 50 has 1 click.
    for s in range(1, 6):  # train days
        rows += [(s, 1, 0, 1), (s, 1, 1, 2), (s, 1, 2, 3)]
    rows += [(6, 1, 0, 9), (6, 1, 1, 1)]  # loses item 9 -> length 1 -> dropped
    rows += [(50, 1, 0, 2)]
    rows += [(7, 3, 0, 1), (7, 3, 1, 2), (8, 3, 0, 3), (8, 3, 1, 1)]  # last day
    _write(tmp_path / "yoochoose-clicks.dat", _raw_clicks(rows))
    events = read_yoochoose_clicks(tmp_path / "yoochoose-clicks.dat")
    assert events["Time"].iloc[0] == pytest.approx(1396346400.0)  # 2014-04-01 10:00
    split = load_yoochoose(tmp_path)
    assert split.train.num_sessions == 5 and split.train.num_items == 3
    assert split.test.session_ids.tolist() == [7, 8]
    assert split.test.raw_items.tolist() == [1, 2, 3, 1]
    assert split.settings["min_item_support"] == 5


def test_yoochoose_raw_bad_timestamp(tmp_path):
    _write(tmp_path / "yoochoose-clicks.dat", "1,2014-04-01 10:00:00,5,0\n")
    with pytest.raises(DataError, match=r"line 1: Timestamp must look like"):
        read_yoochoose_clicks(tmp_path / "yoochoose-clicks.dat")


def test_preprocess_test_items_must_be_in_train():
    import pandas as pd

    day = 86400.0
    ev = pd.DataFrame(
        {
            "SessionId": [1, 1, 2, 2, 3, 3, 3],
            "ItemId": [1, 2, 1, 2, 1, 3, 2],
            "Time": [0, 1, 2, 3, 3 * day, 3 * day + 1, 3 * day + 2],
        }
    )
    train, test, stats = gru4rec_preprocess(ev, min_item_support=1)
    assert sorted(train.SessionId.unique()) == [1, 2]
    assert test.ItemId.tolist() == [1, 2]  # item 3 is not in train
    assert stats["test_events_dropped_unknown_item"] == 1
    with pytest.raises(DataError, match="no session is left"):
        gru4rec_preprocess(ev, min_item_support=100)


def test_yoochoose_preprocessed_drops_unknown_and_short(tmp_path):
    h = "SessionId\tItemId\tTime\n"
    _write(tmp_path / "x_train_full.txt", h + "1\t1\t0\n1\t2\t1\n2\t3\t5\n")
    _write(tmp_path / "x_test.txt", h + "5\t1\t9\n5\t2\t10\n6\t1\t11\n6\t9\t12\n")
    split = load_yoochoose(tmp_path)
    assert split.train.num_sessions == 1  # session 2 has one click
    assert split.stats["train_events_dropped_short_session"] == 1
    assert split.test.session_ids.tolist() == [5]  # 6 loses item 9, then too short
    assert split.stats["test_events_dropped_unknown_item"] == 1
    assert split.stats["test_events_dropped_short_session"] == 1
    with pytest.raises(DataError, match=r"x_train_tr.txt: file not found"):
        load_yoochoose(tmp_path, split="valid")
    with pytest.raises(DataError, match="neither yoochoose-clicks.dat"):
        load_yoochoose(_empty(tmp_path))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_diginetica_reader_orders_by_date_then_timeframe(tmp_path):
    text = (
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;10;5000;2016-05-09\n1;NA;11;1000;2016-05-09\n"
        "2;7;12;100;2016-05-10\n2;7;10;50;2016-05-10"  # no final newline
    )
    df = read_diginetica_views(_write(tmp_path / "v.csv", text))
    s = Sessions.from_events(df.SessionId, df.ItemId, df.Time)
    assert s.raw_items.tolist() == [11, 10, 10, 12]
    assert df["Time"].iloc[1] == pytest.approx(1462752000.0 + 1.0)
    bad = text.replace("2016-05-10\n", "2016/05/10\n", 1)
    with pytest.raises(DataError, match=r"line 4: eventdate"):
        read_diginetica_views(_write(tmp_path / "b.csv", bad))


# ------------------------------------------------------------------ shared samples
def test_yoochoose_sample_matches_source(shared_data):
    split = load_yoochoose(shared_data / "yoochoose-rsc15-100k-sample")
    assert (split.train.num_events, split.train.num_sessions) == (70_278, 17_794)
    assert split.train.num_items == 2_933
    assert (split.test.num_events, split.test.num_sessions) == (13_568, 3_416)
    assert split.stats["test_events_dropped_unknown_item"] == 0
    valid = load_yoochoose(shared_data / "yoochoose-rsc15-100k-sample", split="valid")
    assert valid.train.num_events == 53_254


def test_diginetica_sample_split(shared_data):
    split = load_diginetica(shared_data / "diginetica-srgnn-sample")
    assert split.settings["min_item_support"] == 2
    assert split.settings["test_days"] == 14
    assert split.train.num_items == 1947
    assert (split.test.num_events, split.test.num_sessions) == (508, 137)
    # Test sessions start after the train sessions end (time-based split).
    assert split.test.timestamps.max() > split.train.timestamps.max()
    assert np.isin(split.test.items, split.train.items).all()
