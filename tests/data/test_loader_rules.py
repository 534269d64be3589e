"""The rules every loader enforces (issue 12, "data that changed is noticed").

Real files are copied to tmp_path and doctored: a truncated or edited catalogue
file, an id of 0, repeated (user, item) rows, a byte that is not UTF-8, a stray
huge id, a held-out pair that is also in training, held-out rows of users or
items without training rows. A few cases go through the CLI in a subprocess.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrec.data import datasets as ds
from tfrec.data.datasets import DataError, Interactions, merge_duplicates
from tfrec.data.histories import time_split
from tfrec.data.recbole import recbole_split
from tfrec.data.sessions import read_gru4rec_tsv
from tfrec.data.splits import leave_one_out, ncf_split, random_split
from tfrec.data.userfiles import read_table, split_table, table_interactions

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ml100k(tmp_path, shared_data):
    """A private copy of the real ML-100K u.data and u.item."""
    root = tmp_path / "ml-100k"
    root.mkdir()
    for name in ("u.data", "u.item"):
        shutil.copy(shared_data / "movielens-100k" / name, root / name)
        os.chmod(root / name, 0o644)
    return root


def _edit_line(path: Path, lineno: int, new: str) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = new.encode()
    path.write_bytes(b"\n".join(lines))


# ------------------------------------------------------------------ checksums


def test_truncated_catalogue_file_is_refused_from_data_dir(ml100k):
    data = ml100k / "u.data"
    data.write_bytes(data.read_bytes()[: 1_000_000])
    with pytest.raises(DataError) as e:
        ds.load_interactions("movielens-100k", ml100k, download=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(data) in msg and "06416e597f82" in msg  # file, expected digest
    assert re.search(r"sha256 [0-9a-f]{12}\.\.\. does not match", msg)
    assert "delete it" in msg and "--data-dir" in msg


@pytest.mark.parametrize("where", ["TFREC_DATA_DIR", "cache"])
def test_changed_byte_is_refused_from_env_dir_and_cache(where, tmp_path, shared_data,
                                                        monkeypatch):
    folder = tmp_path / "root" / "movielens-100k"
    folder.mkdir(parents=True)
    shutil.copy(shared_data / "movielens-100k" / "u.data", folder / "u.data")
    os.chmod(folder / "u.data", 0o644)
    raw = bytearray((folder / "u.data").read_bytes())
    raw[500] = ord("9") if raw[500] != ord("9") else ord("8")  # same size
    (folder / "u.data").write_bytes(bytes(raw))
    if where == "cache":
        monkeypatch.delenv("TFREC_DATA_DIR", raising=False)
        monkeypatch.setenv("TFREC_CACHE_DIR", str(tmp_path / "root"))
    else:
        monkeypatch.setenv("TFREC_DATA_DIR", str(tmp_path / "root"))
        monkeypatch.setenv("TFREC_CACHE_DIR", str(tmp_path / "nocache"))
    with pytest.raises(DataError, match=r"u\.data: sha256 .* does not match"):
        ds.load_interactions("movielens-100k", download=False)


def test_digest_cached_by_path_size_and_mtime(ml100k, monkeypatch):
    calls = []
    real = ds.sha256_file
    monkeypatch.setattr(ds, "sha256_file", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(ds, "_DIGESTS", {})
    ds.load_interactions("movielens-100k", ml100k, download=False)
    ds.load_interactions("movielens-100k", ml100k, download=False)
    assert sorted(Path(p).name for p in calls) == ["u.data", "u.item"]  # once each
    # A rewrite changes size/mtime: hashed again, and refused.
    data = ml100k / "u.data"
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(DataError, match="does not match"):
        ds.load_interactions("movielens-100k", ml100k, download=False)
    assert [Path(p).name for p in calls].count("u.data") == 2


def test_every_reader_verifies(tmp_path, shared_data):
    """Content, NCF and session loaders check their files too."""
    from tfrec.data.content import movielens_items
    from tfrec.data.sessions import load_yoochoose

    ml = tmp_path / "ml"
    shutil.copytree(shared_data / "movielens-100k", ml)
    os.chmod(ml / "u.item", 0o644)
    (ml / "u.item").write_bytes((ml / "u.item").read_bytes()[:-100])
    with pytest.raises(DataError, match=r"u\.item: sha256"):
        movielens_items("movielens-100k", ml)

    ncf = tmp_path / "ncf"
    shutil.copytree(shared_data / "ncf-ml-1m", ncf)
    os.chmod(ncf / "ml-1m.test.negative", 0o644)
    with open(ncf / "ml-1m.test.negative", "ab") as f:
        f.write(b"\n")
    with pytest.raises(DataError, match=r"ml-1m\.test\.negative: sha256"):
        ncf_split(ncf, download=False)

    yc = tmp_path / "yc"
    shutil.copytree(shared_data / "yoochoose-rsc15-100k-sample", yc)
    test_file = yc / "yoochoose-clicks-100k_test.txt"
    os.chmod(test_file, 0o644)
    test_file.write_bytes(test_file.read_bytes()[:-1000])
    with pytest.raises(DataError, match=r"100k_test\.txt: sha256"):
        load_yoochoose(yc)


def test_source_files_lists_verified_digests(ml100k):
    files = ds.source_files("movielens-100k", ml100k)
    assert [Path(p).name for p, _, _ in files] == ["u.data", "u.item"]
    path, digest, size = files[0]
    assert digest == ds.DATASETS["movielens-100k"].checksums["u.data"]
    assert size == 1_979_173 and Path(path).is_absolute()
    (ml100k / "u.item").write_bytes(b"1|x\n")
    with pytest.raises(DataError, match=r"u\.item: sha256"):
        ds.source_files("movielens-100k", ml100k)


# ------------------------------------------------------------------ ids


def test_zero_id_is_an_error_naming_file_and_line(ml100k, unverified):
    _edit_line(ml100k / "u.data", 7, "0\t242\t3\t881250949")
    with pytest.raises(DataError) as e:
        ds.load_interactions("movielens-100k", ml100k, download=False)
    assert re.search(r"u\.data: line 7: user id 0 is invalid; ids in this data "
                     r"set start at 1", str(e.value))
    _edit_line(ml100k / "u.data", 7, "196\t-3\t3\t881250949")
    with pytest.raises(DataError, match=r"u\.data: line 7: item id -3 is invalid"):
        ds.load_interactions("movielens-100k", ml100k, download=False)


def test_zero_id_in_titles_and_ncf(tmp_path, unverified):
    from tfrec.data.content import movielens_users

    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n0|53|F|other|94043\n")
    with pytest.raises(DataError, match=r"u\.user: line 2: user id 0 is invalid"):
        movielens_users("movielens-100k", tmp_path)
    ncf = tmp_path / "ncf"
    ncf.mkdir()
    (ncf / "ml-1m.train.rating").write_text("0\t1\t5\t10\n-1\t2\t3\t11\n")
    (ncf / "ml-1m.test.rating").write_text("0\t2\t4\t20\n")
    (ncf / "ml-1m.test.negative").write_text("(0,2)\t3\n")
    with pytest.raises(DataError, match=r"train\.rating: line 2: user id -1 is "
                       r"invalid; ids in this data set start at 0"):
        ncf_split(ncf, download=False)


def test_huge_stray_id_does_not_size_the_model(ml100k, unverified, tmp_path):
    _edit_line(ml100k / "u.data", 3, f"196\t{10**12}\t3\t881250949")
    s = leave_one_out(ds.load_interactions("movielens-100k", ml100k), num_negatives=0)
    assert s.num_items < 1700 and s.num_users == 943
    csv = tmp_path / "big.csv"
    csv.write_text("user,item\n" + "".join(
        f"{u},{i}\n" for u in (1, 2, 3) for i in (5, 6, 7, 8)) + f"1,{10**15}\n")
    r = split_table(read_table(csv), name="big.csv", split="random", seed=0)
    assert r.num_items <= 5 and r.num_users == 3
    ncf = tmp_path / "ncf"
    ncf.mkdir()
    (ncf / "ml-1m.train.rating").write_text(
        f"0\t1\t5\t10\n0\t2\t3\t11\n1\t{10**9}\t4\t12\n1\t0\t4\t13\n")
    (ncf / "ml-1m.test.rating").write_text("0\t0\t4\t20\n1\t1\t2\t21\n")
    (ncf / "ml-1m.test.negative").write_text("(0,0)\t2\n(1,1)\t2\n")
    n = ncf_split(ncf, download=False)
    assert n.num_items == 4 and n.item_ids[-1] == 10**9


# ------------------------------------------------------------------ duplicates


def test_merge_duplicates_keeps_the_latest_row():
    inter = Interactions(
        name="d",
        user=np.array([1, 1, 2, 1, 1]),
        item=np.array([7, 8, 7, 7, 8]),
        rating=np.array([1, 2, 3, 4, 5], np.float32),
        timestamp=np.array([50, 10, 5, 20, 10]),
    )
    m = merge_duplicates(inter)
    # (1, 7): t=50 beats t=20; (1, 8): a tie at t=10, the later row wins.
    assert m.duplicates_merged == 2
    assert list(zip(m.user.tolist(), m.item.tolist(), m.rating.tolist(),
                    strict=True)) == [(1, 7, 1.0), (2, 7, 3.0), (1, 8, 5.0)]
    inter.timestamp = None  # no times: the later row in the file
    m = merge_duplicates(inter)
    assert m.rating.tolist() == [3.0, 4.0, 5.0]
    same = Interactions("d", np.array([1]), np.array([2]), np.ones(1, np.float32),
                        None)
    assert merge_duplicates(same) is same


def test_duplicates_merged_in_every_loader(ml100k, unverified, tmp_path):
    # Catalogue: line 1 (196, 242) repeated later with another rating and time.
    with open(ml100k / "u.data", "a") as f:
        f.write("196\t242\t1\t999999999\n")
    inter = ds.load_interactions("movielens-100k", ml100k)
    assert len(inter) == 100_000 and inter.duplicates_merged == 1
    row = np.flatnonzero((inter.user == 196) & (inter.item == 242))
    assert inter.rating[row].tolist() == [1.0]
    # User file.
    csv = tmp_path / "dups.csv"
    csv.write_text("user,item,rating,time\nu1,a,5,1\nu1,a,2,3\nu1,b,4,2\nu2,a,1,1\n")
    merged, users, items = table_interactions(read_table(csv), "dups.csv")
    assert merged.duplicates_merged == 1 and len(merged) == 3
    assert merged.rating[(merged.user == 0) & (merged.item == 0)].tolist() == [2.0]


def _pairs(part, split):
    return set(zip(split.user_ids[part["user_id"]].tolist(),
                   split.item_ids[part["item_id"]].tolist(), strict=True))


def _with_repeats(n_users=30, n_items=12, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(1, n_users + 1), 8)
    item = rng.integers(1, n_items + 1, user.size)  # many repeated pairs
    return Interactions("rep", user, item, rng.integers(1, 6, user.size).astype(
        np.float32), rng.integers(0, 1000, user.size))


def test_no_held_out_pair_is_in_training_for_any_split(tmp_path):
    inter = _with_repeats()
    assert merge_duplicates(inter).duplicates_merged > 20
    splits = {
        "leave_one_out": leave_one_out(inter, num_negatives=0, min_interactions=3),
        "random": random_split(inter, test_fraction=0.2, valid_fraction=0.1),
        "recbole": recbole_split(inter, min_rating=None, core=1),
    }
    csv = tmp_path / "rep.csv"
    pd.DataFrame({"user": inter.user, "item": inter.item, "rating": inter.rating,
                  "time": inter.timestamp}).to_csv(csv, index=False)
    for split in ("time", "random", "leave_one_out"):
        splits["file " + split] = split_table(read_table(csv), name="rep.csv",
                                              split=split, eval_negatives=0)
    for name, s in splits.items():
        train = _pairs(s.train, s)
        for part in (s.valid, s.test):
            if part is not None:
                assert not train & _pairs(part, s), name
    ts = time_split(inter, test_fraction=0.3)
    train = set(zip(ts.train["user_id"].tolist(), ts.train["item_id"].tolist(),
                    strict=True))
    test = set(zip(ts.test["user_id"].tolist(), ts.test["item_id"].tolist(),
                   strict=True))
    assert not train & test and ts.dropped["duplicates_merged"] > 0


def test_test_item_in_ncf_train_file_is_refused(tmp_path, unverified):
    ncf = tmp_path / "ncf"
    ncf.mkdir()
    (ncf / "ml-1m.train.rating").write_text("0\t1\t5\t10\n0\t2\t3\t11\n1\t2\t4\t12\n")
    (ncf / "ml-1m.test.rating").write_text("0\t2\t4\t20\n1\t1\t2\t21\n")  # (0, 2)
    (ncf / "ml-1m.test.negative").write_text("(0,2)\t0\n(1,1)\t0\n")
    with pytest.raises(DataError, match=r"test\.rating: line 1: the test pair "
                       r"\(user 0, item 2\) also appears in the train file"):
        ncf_split(ncf, download=False)


# ------------------------------------------------------------------ cold rows


def test_held_out_rows_without_training_rows_are_dropped_and_counted():
    # Item 99 occurs once; user 50 once: wherever they land outside training,
    # they are dropped, counted and named by describe().
    user = np.r_[np.repeat(np.arange(10), 10), 50]
    item = np.r_[np.tile(np.arange(10), 10), 7]
    user[5], item[5] = 3, 99
    inter = Interactions("cold", user, item, np.ones(user.size, np.float32), None)
    for seed in range(20):
        s = random_split(inter, test_fraction=0.3, valid_fraction=0.2, seed=seed)
        held = sum(len(p["user_id"]) for p in (s.valid, s.test))
        assert held + len(s.train["user_id"]) + sum(
            n for k, n in s.dropped.items() if "unknown" in k) == user.size
        # The vocabularies are exactly the training users and items.
        assert s.num_users == len(set(s.train["user_id"].tolist()))
        assert s.num_items == len(set(s.train["item_id"].tolist()))
        if s.dropped["test_unknown_user"] or s.dropped["valid_unknown_user"]:
            assert "(user not in training)" in s.describe()
            return
    pytest.fail("user 50 never landed outside training")


# ------------------------------------------------------------------ encodings


def test_invalid_utf8_in_a_user_file_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"user,item\nu1,caf\xc3\xa9\nu2,caf\xe9\nu3,x\n")
    with pytest.raises(DataError) as e:
        read_table(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: line 3: byte 0xe9 at column 7 is not valid utf-8")
    good = tmp_path / "good.tsv"
    good.write_bytes(b"\xef\xbb\xbfuser\titem\nu1\tcaf\xc3\xa9\n")  # BOM + UTF-8
    assert read_table(good)["item"].tolist() == ["café"]


def test_invalid_utf8_in_a_session_file_names_the_line(tmp_path):
    path = tmp_path / "s_train_full.txt"
    path.write_bytes(b"SessionId\tItemId\tTime\n1\t2\t3.0\n1\t\xff3\t4.0\n")
    with pytest.raises(DataError, match=r"s_train_full\.txt: line 3: byte 0xff"):
        read_gru4rec_tsv(path)


def test_movielens_titles_are_latin1(ml100k):
    inter = ds.load_interactions("movielens-100k", ml100k)
    # u.item line 1107 holds the latin-1 byte 0xe9 (é); it is read as é.
    raw = (ml100k / "u.item").read_bytes()
    assert b"\xe9" in raw and "\ufffd" not in "".join(inter.item_names.values())
    assert any("é" in t for t in inter.item_names.values())


# ------------------------------------------------------------------ the CLI


def _tfrec(*argv, cwd, env=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "tfrec.cli", *argv],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_cli_bad_utf8_csv_fails_with_one_line(tmp_path):
    data = tmp_path / "bad.csv"
    rows = [f"u{u},i{i}" for u in range(5) for i in range(6)]
    rows[12] = "u2,\xff\xfe"
    data.write_bytes(("user,item\n" + "\n".join(rows) + "\n").encode("latin-1"))
    run = tmp_path / "run"
    out = _tfrec("train", "neumf", "--data", str(data), "--epochs", "1",
                 "--out", str(run), cwd=tmp_path)
    assert out.returncode == 1
    line = _one_line(out.stderr)
    assert f"{data}: line 14: byte 0xff" in line
    assert not run.exists() and not (tmp_path / "runs").exists()


def test_cli_truncated_data_dir_fails_with_one_line(tmp_path, shared_data):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.data").write_bytes(
        (shared_data / "movielens-100k" / "u.data").read_bytes()[:500_000])
    run = tmp_path / "run"
    out = _tfrec("train", "neumf", "--dataset", "movielens-100k", "--data-dir",
                 str(folder), "--epochs", "1", "--out", str(run), cwd=tmp_path)
    assert out.returncode == 1
    line = _one_line(out.stderr)
    assert f"{folder / 'u.data'}: sha256" in line and "06416e597f82" in line
    assert "delete it" in line
    assert not run.exists() and not (tmp_path / "runs").exists()
