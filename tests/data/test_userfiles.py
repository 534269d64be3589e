"""The user's own files: string ids, column mapping, splits, and every bad input
with a one-line error naming the file, line and column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrec.data import DataError
from tfrec.data.userfiles import parse_columns, read_table, split_table


def _csv(tmp_path, text, name="events.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "customer,sku,stars,ts\n" + "".join(
    f"u_{u},sku-{(u * 7 + j) % 11},{1 + (u + j) % 5},2024-03-{1 + j:02d}T10:00:00\n"
    for u in range(6)
    for j in range(5)
)
MAP = "user=customer,item=sku,rating=stars,time=ts"


def test_string_ids_mapping_and_iso_times(tmp_path):
    table = read_table(_csv(tmp_path, GOOD), MAP)
    assert list(table.columns) == ["user", "item", "rating", "time"]
    assert table["user"].iloc[0] == "u_0" and table["item"].iloc[0] == "sku-0"
    assert table["time"].iloc[0] == pd.Timestamp("2024-03-01T10:00:00Z").timestamp()
    split = split_table(table, name="events.csv", eval_negatives=3)
    assert split.num_users == 6 and set(split.user_ids) == {f"u_{u}" for u in range(6)}
    assert all(str(i).startswith("sku-") for i in split.item_ids)
    # Each user's latest event is test, the one before validation.
    assert len(split.test["user_id"]) == 6 and len(split.valid["user_id"]) == 6
    u0 = int(np.flatnonzero(split.user_ids == "u_0")[0])
    test_item = split.item_ids[split.test["item_id"][split.test["user_id"] == u0][0]]
    assert test_item == f"sku-{(0 * 7 + 4) % 11}"


def test_integer_ids_stay_integers_and_tsv_parquet_read_alike(tmp_path):
    text = "user\titem\trating\n" + "".join(f"{u}\t{i}\t1\n" for u in range(3) for i in range(4))
    table = read_table(_csv(tmp_path, text, "x.tsv"))
    assert table["user"].dtype == np.int64
    parquet = tmp_path / "x.parquet"
    table.to_parquet(parquet)
    again = read_table(parquet)
    pd.testing.assert_frame_equal(table, again)


def test_time_and_random_splits(tmp_path):
    table = read_table(_csv(tmp_path, GOOD), MAP)
    by_time = split_table(table, name="e", split="time", test_fraction=0.2, valid_fraction=0.2)
    assert len(by_time.test["user_id"]) == 6 and len(by_time.train["user_id"]) == 18
    rnd = split_table(table, name="e", split="random", test_fraction=0.2, valid_fraction=0.1)
    assert len(rnd.test["user_id"]) + len(rnd.train["user_id"]) + len(rnd.valid["user_id"]) == 30


@pytest.mark.parametrize(
    "text, columns, message",
    [
        (GOOD, "user=cust,item=sku", r"events.csv: column 'cust' \(mapped to user\) is not in the file; its columns are \['customer'"),
        ("", MAP, "events.csv: the file is empty"),
        ("customer,sku,stars,ts\n", MAP, "header but no rows"),
        ("customer,sku,stars,ts\nu_1,3,4,5\nu_2,sku-9,4,6\n", MAP,
         r"line 3, column 'sku': mixed id types: 'sku-9' is not a number but '3' \(line 2\)"),
        ("customer,sku,stars,ts\nu_1,a,4,2024-01-01\nu_1,b,4,yesterday\n", MAP,
         r"line 3, column 'ts': timestamp 'yesterday' does not parse"),
        ("customer,sku,stars,ts\nu_1,a,four,5\n", MAP, r"line 2, column 'stars': 'four' is not a finite number"),
        ("customer,sku,stars,ts\n,a,4,5\n", MAP, r"line 2, column 'customer': empty id"),
        ("a,b\n1,2\n", None, r"no 'user' column; its columns are \['a', 'b'\]"),
    ],
)
def test_bad_input_names_file_line_and_column(tmp_path, text, columns, message):
    with pytest.raises(DataError, match=message):
        read_table(_csv(tmp_path, text), columns)


def test_unsupported_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unsupported file type '.json'"):
        read_table(_csv(tmp_path, "{}", "x.json"))
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")


def test_too_few_interactions_to_split(tmp_path):
    table = read_table(_csv(tmp_path, "user,item\na,x\na,y\nb,x\n"))
    with pytest.raises(DataError, match="too few interactions to split.*at least 3"):
        split_table(table, name="tiny.csv")
    with pytest.raises(DataError, match="too few interactions"):
        split_table(table, name="tiny.csv", split="random")


def test_parse_columns():
    assert parse_columns("user=customer, item=sku") == {"user": "customer", "item": "sku"}
    with pytest.raises(ValueError, match="unknown name"):
        parse_columns("usr=customer")
    with pytest.raises(ValueError, match="name=column"):
        parse_columns("customer")
