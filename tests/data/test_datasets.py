"""Tests for tfrec.data.datasets: catalogue, resolution, download, parsers."""

from __future__ import annotations

import gzip
import hashlib
import pathlib
import shutil
import subprocess
import zipfile

import numpy as np
import pytest

from tfrec.data import datasets as ds
from tfrec.data.datasets import DataError, DatasetSpec, RemoteFile

ROWS = "1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t102\n"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No TFREC_DATA_DIR, and a private cache."""
    monkeypatch.delenv("TFREC_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TFREC_CACHE_DIR", str(cache))
    return cache


def _fake_spec(monkeypatch, *files, required=("r.tsv",)):
    spec = DatasetSpec(
        name="fake-set",
        description="test",
        files=tuple(files),
        required=required,
        homepage="",
        license="",
    )
    monkeypatch.setitem(ds.DATASETS, "fake-set", spec)
    return spec


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ catalogue


def test_catalogue_names_and_checksums():
    assert ds.list_datasets() == [
        "diginetica-srgnn-sample",
        "movielens-100k",
        "movielens-1m",
        "ncf-ml-1m",
        "yoochoose-rsc15-100k-sample",
    ]
    for spec in ds.DATASETS.values():
        assert spec.files and spec.required
        for f in spec.files:
            assert f.sha256 is not None or f.git_blob_sha1 is not None
            assert f.url.startswith("https://")
    ncf = {f.filename: f for f in ds.DATASETS["ncf-ml-1m"].files}
    assert ncf["ml-1m.train.rating"].git_blob_sha1.startswith("31ba384f")
    assert ncf["ml-1m.train.rating"].sha256 is None


def test_unknown_name_lists_valid_and_closest():
    with pytest.raises(ValueError, match=r"Did you mean 'movielens-1m'") as e:
        ds.dataset_dir("movielens_1m")
    assert "ncf-ml-1m" in str(e.value)


# ------------------------------------------------------------------ real files


def test_movielens_100k_real(shared_data):
    inter = ds.load_interactions("movielens-100k", shared_data / "movielens-100k")
    assert len(inter) == 100_000
    assert np.unique(inter.user).size == 943
    assert np.unique(inter.item).size == 1682
    assert inter.user.dtype == np.int64 and inter.item.dtype == np.int64
    assert inter.rating.dtype == np.float32 and inter.timestamp.dtype == np.int64
    assert set(np.unique(inter.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert inter.item_names[1] == "Toy Story (1995)"
    assert len(inter.item_names) == 1682


def test_movielens_100k_subfolder_layout(tmp_path, shared_data):
    sub = tmp_path / "ml-100k"
    sub.mkdir()
    shutil.copy(shared_data / "movielens-100k" / "u.data", sub / "u.data")
    assert ds.dataset_dir("movielens-100k", tmp_path) == sub
    inter = ds.load_interactions("movielens-100k", tmp_path)
    assert len(inter) == 100_000 and inter.item_names == {}


def test_movielens_1m_without_ratings_dat_explains(shared_data):
    with pytest.raises(DataError, match=r"missing ratings\.dat.*not read"):
        ds.load_interactions("movielens-1m", shared_data / "movielens-1m")


def test_ncf_interactions_real(shared_data):
    inter = ds.load_interactions("ncf-ml-1m", shared_data / "ncf-ml-1m")
    assert len(inter) == 994_169 + 6_040
    assert inter.timestamp is None  # the reconstructed train file has none
    assert int(inter.user.max()) == 6039 and int(inter.item.max()) == 3705
    if (shared_data / "movielens-1m" / "movies.dat").is_file():
        assert inter.item_names[0] == "One Flew Over the Cuckoo's Nest (1975)"


# ------------------------------------------------------------------ resolution


def test_explicit_dir_must_hold_required_files(tmp_path, isolated):
    with pytest.raises(DataError, match=r"missing u\.data"):
        ds.dataset_dir("movielens-100k", tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        ds.dataset_dir("movielens-100k", tmp_path / "nope")


def test_resolution_order_env_then_cache(tmp_path, isolated, monkeypatch):
    _fake_spec(monkeypatch, RemoteFile(url="file:///nonexistent", filename="r.tsv"))
    explicit = _write(tmp_path / "explicit" / "r.tsv", ROWS).parent
    env_dir = _write(tmp_path / "env" / "fake-set" / "r.tsv", ROWS).parent
    cache_dir = _write(isolated / "fake-set" / "r.tsv", ROWS).parent

    monkeypatch.setenv("TFREC_DATA_DIR", str(tmp_path / "env"))
    assert ds.dataset_dir("fake-set", explicit) == explicit
    assert ds.dataset_dir("fake-set", download=False) == env_dir
    # An incomplete TFREC_DATA_DIR folder falls through to the cache.
    (env_dir / "r.tsv").unlink()
    assert ds.dataset_dir("fake-set", download=False) == cache_dir
    monkeypatch.delenv("TFREC_DATA_DIR")
    assert ds.dataset_dir("fake-set", download=False) == cache_dir

    shutil.rmtree(cache_dir)
    with pytest.raises(DataError, match=r"not found locally \(looked in: .*disabled"):
        ds.dataset_dir("fake-set", download=False)


def test_download_failure_is_data_error(tmp_path, isolated, monkeypatch):
    _fake_spec(
        monkeypatch, RemoteFile(url=(tmp_path / "gone").as_uri(), filename="r.tsv")
    )
    with pytest.raises(DataError, match=r"download failed.*TFREC_DATA_DIR"):
        ds.dataset_dir("fake-set")
    assert not (isolated / "fake-set").exists()
    assert [p.name for p in isolated.iterdir()] == []  # no staging left behind


# ------------------------------------------------------------------ download


def test_download_file_url_with_sha256(tmp_path, isolated, monkeypatch):
    src = _write(tmp_path / "src" / "r.tsv", ROWS)
    sha = hashlib.sha256(ROWS.encode()).hexdigest()
    _fake_spec(monkeypatch, RemoteFile(url=src.as_uri(), filename="r.tsv", sha256=sha))
    root = ds.dataset_dir("fake-set")
    assert root == isolated / "fake-set"
    assert (root / "r.tsv").read_text() == ROWS
    assert sorted(p.name for p in isolated.iterdir()) == ["fake-set"]
    assert [p.name for p in root.iterdir()] == ["r.tsv"]  # no .part file
    # Second call uses the cache even with downloads disabled.
    src.unlink()
    assert ds.dataset_dir("fake-set", download=False) == root


def test_download_checksum_mismatch_deletes_file(tmp_path, isolated, monkeypatch):
    src = _write(tmp_path / "src" / "r.tsv", ROWS)
    actual = hashlib.sha256(ROWS.encode()).hexdigest()
    wrong = "0" * 64
    _fake_spec(
        monkeypatch, RemoteFile(url=src.as_uri(), filename="r.tsv", sha256=wrong)
    )
    with pytest.raises(DataError, match=f"expected sha256 {wrong}, got {actual}"):
        ds.dataset_dir("fake-set")
    assert list(isolated.rglob("*")) == []  # nothing left in the cache


def test_download_git_blob_checksum(tmp_path, isolated, monkeypatch):
    src = _write(tmp_path / "src" / "r.tsv", ROWS)
    blob = hashlib.sha1(f"blob {len(ROWS)}\0{ROWS}".encode()).hexdigest()
    _fake_spec(
        monkeypatch,
        RemoteFile(url=src.as_uri(), filename="r.tsv", git_blob_sha1="f" * 40),
    )
    with pytest.raises(DataError, match=f"git blob sha1 {'f' * 40}, got {blob}"):
        ds.dataset_dir("fake-set")
    assert list(isolated.rglob("*")) == []
    _fake_spec(
        monkeypatch, RemoteFile(url=src.as_uri(), filename="r.tsv", git_blob_sha1=blob)
    )
    assert (ds.dataset_dir("fake-set") / "r.tsv").read_text() == ROWS


def test_download_extracts_zip(tmp_path, isolated, monkeypatch):
    archive = tmp_path / "src" / "pack.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pack/r.tsv", ROWS)
    sha = ds.sha256_file(archive)
    _fake_spec(
        monkeypatch,
        RemoteFile(url=archive.as_uri(), filename="pack.zip", sha256=sha, extract=True),
        required=("pack/r.tsv",),
    )
    root = ds.dataset_dir("fake-set")
    assert (root / "pack" / "r.tsv").read_text() == ROWS
    assert not (root / "pack.zip").exists()


def test_git_blob_sha1_matches_git(tmp_path):
    path = _write(tmp_path / "x.txt", "hello\nwörld\n")
    expected = hashlib.sha1(
        b"blob %d\0" % path.stat().st_size + path.read_bytes()
    ).hexdigest()
    assert ds.git_blob_sha1(path) == expected
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not installed")
    out = subprocess.run(
        [git, "hash-object", str(path)], capture_output=True, text=True, check=True
    )
    assert ds.git_blob_sha1(path) == out.stdout.strip()


# ------------------------------------------------------------------ parser


def test_read_ratings_file_ok_variants(tmp_path):
    tsv = _write(tmp_path / "a.tsv", ROWS + "\n")  # extra blank line at the end
    inter = ds.read_ratings_file(tsv, sep="\t", columns=4, has_timestamp=True)
    np.testing.assert_array_equal(inter.user, [1, 1, 2])
    np.testing.assert_array_equal(inter.item, [10, 11, 10])
    np.testing.assert_array_equal(inter.rating, np.float32([5, 3, 4]))
    np.testing.assert_array_equal(inter.timestamp, [100, 101, 102])

    dat = _write(tmp_path / "a.dat", ROWS.replace("\t", "::"))
    inter = ds.read_ratings_file(dat, sep="::", columns=4, has_timestamp=True)
    np.testing.assert_array_equal(inter.item, [10, 11, 10])

    gz = tmp_path / "a.tsv.gz"
    gz.write_bytes(gzip.compress(b"0\t1\t2.5\n3\t4\t5\n"))
    inter = ds.read_ratings_file(gz, sep="\t", columns=(3, 4), has_timestamp=False)
    assert inter.timestamp is None
    np.testing.assert_array_equal(inter.rating, np.float32([2.5, 5]))


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("1\t10\t5\t100\n1\t11\t3\n", r"line 2: expected 4 '\\t'-separated.*got 3"),
        ("1\t10\t5\t100\n1\t11\t3\t101\t9\n", r"line 2: expected 4.*got 5"),
        ("1\t10\t5\t100\nx\t11\t3\t101\n", r"line 2: user must be an integer.*'x'"),
        ("1\t10\t5\t100\n1\t1.5\t3\t101\n", r"line 2: item must be an integer"),
        ("1\t10\t\t100\n", r"line 1: empty rating field"),
        ("1\t10\t5\t100\n2\t10\tnan\t100\n", r"line 2: rating must be a finite"),
        ("1\t10\t5\t100\n2\t10\tgood\t100\n", r"line 2: rating must be a number"),
        ("1\t10\t5\tyesterday\n", r"line 1: timestamp must be an integer"),
        ("1\t10\t5\t100\n\n2\t10\t5\t100\n", r"line 2: expected 4.*got 1"),
        ("1\t10\t5\t100\n2\t1", r"line 2: expected 4.*got 2: '2\\t1'"),
        ("1\t10\t5\t100\n2\t10\t5\t", r"line 2: empty timestamp field"),
    ],
)
def test_read_ratings_file_errors_name_file_and_line(tmp_path, text, pattern):
    path = _write(tmp_path / "bad.tsv", text)
    with pytest.raises(DataError, match=pattern) as e:
        ds.read_ratings_file(path, sep="\t", columns=4, has_timestamp=True)
    assert str(path) in str(e.value)


def test_read_ratings_file_empty_and_missing(tmp_path):
    empty = _write(tmp_path / "empty.tsv", "")
    with pytest.raises(DataError, match=r"empty\.tsv: no ratings"):
        ds.read_ratings_file(empty, sep="\t", columns=4, has_timestamp=True)
    blank = _write(tmp_path / "blank.tsv", "\n\n")
    with pytest.raises(DataError, match=r"blank\.tsv: no ratings"):
        ds.read_ratings_file(blank, sep="\t", columns=4, has_timestamp=True)
    with pytest.raises(DataError, match=r"nope\.tsv: file not found"):
        ds.read_ratings_file(
            tmp_path / "nope.tsv", sep="\t", columns=4, has_timestamp=True
        )


def test_read_ratings_file_bad_double_colon_line(tmp_path):
    path = _write(tmp_path / "r.dat", "1::10::5::100\n1::10:5::100\n")
    with pytest.raises(DataError, match=r"r\.dat: line 2: expected 4 '::'"):
        ds.read_ratings_file(path, sep="::", columns=4, has_timestamp=True)


def test_read_ratings_file_bad_title_file(tmp_path, unverified):
    root = tmp_path / "ml"
    _write(root / "u.data", ROWS)
    _write(root / "u.item", "10|Ten (1990)|x\n11\n")
    with pytest.raises(DataError, match=r"u\.item: line 2: expected at least 2"):
        ds.load_interactions("movielens-100k", root)
