"""Data set catalogue, download with checksum and cache, and strict rating-file parsers.

Every data set is looked up in this order (see `dataset_dir`):

1. an explicit ``data_dir`` argument (used as-is; must hold the required files),
2. ``$TFREC_DATA_DIR/<name>/`` when that folder exists and is complete,
3. the cache ``$TFREC_CACHE_DIR/<name>/`` (default ``~/.cache/tfrec/<name>/``),
4. a download into the cache with ``keras.utils.get_file``, verified against the
   catalogue's checksum and moved into place atomically.

Every bad-input error is a `DataError` that names the file (and the 1-based line
when there is one), what was found, and what was expected.

Rules every loader applies (here, in `tfrec.data.userfiles` and in the splits):

* **Checksums on every read.** A catalogue file is checked against the
  catalogue's checksum (`DatasetSpec.checksums`, or the `RemoteFile` digest of
  a file stored as downloaded) each time it is read, wherever it was found
  (``data_dir``, ``$TFREC_DATA_DIR``, cache), not only after a download. A
  truncated or edited file is a `DataError` naming it, the expected and the
  actual digest, and what to do. Digests are cached per process by (path,
  size, mtime), so repeated loads hash a file once. `source_files` lists the
  files a data set is read from with their sha256 and size.
* **Encodings.** MovieLens files (``u.data``, ``u.item``, ``u.user``,
  ``ratings.dat``, ``movies.dat``, ``users.dat``) are latin-1, as GroupLens
  wrote them; every other text file (the user's CSV/TSV, session files) is
  UTF-8, and an invalid byte is a `DataError` naming the file and line
  (`decode_text`).
* **Ids.** MovieLens user and item ids start at 1 and NCF ids at 0
  (`ID_MINIMUM`); a smaller id is a `DataError` naming the file and line.
  Raw ids are always re-indexed through sorted vocabularies, so a stray huge
  id adds one row, never sets a model's size.
* **Duplicates.** Repeated (user, item) rows are merged into one
  (`merge_duplicates`): the latest by timestamp is kept, with its rating and
  timestamp (ties, and files without timestamps: the later row in the file).
  `Interactions.duplicates_merged` counts the rows removed.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import difflib
import gzip
import hashlib
import io
import lzma
import math
import os
import pathlib
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetSpec",
    "Interactions",
    "RemoteFile",
    "ID_MINIMUM",
    "check_id_minimum",
    "dataset_dir",
    "decode_text",
    "git_blob_sha1",
    "list_datasets",
    "load_interactions",
    "merge_duplicates",
    "read_ratings_file",
    "sha256_file",
    "source_files",
    "verify_file",
]


class DataError(ValueError):
    """A data file is missing, unreadable, malformed or fails its checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set as published upstream.

    Args:
        url: Where to download it from.
        filename: Its name in the cache.
        sha256: Expected SHA-256 hex digest.
        git_blob_sha1: Expected git blob id, for files whose only known checksum
            is the id of the blob in a git repository.
        extract: Whether the file is a zip archive to extract in the cache.
    """

    url: str
    filename: str
    sha256: str | None = None
    git_blob_sha1: str | None = None
    extract: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """Catalogue entry of a data set.

    Args:
        name: Catalogue key.
        description: One-line description.
        files: Files to download.
        required: Paths, relative to the data set folder, that the loader needs.
        homepage: Where the data set is described.
        license: Its terms of use, in short.
        checksums: sha256 of files as read (relative to the data set folder),
            e.g. the members of a downloaded archive, checked on every read.
        reads: Every file (relative path) a loader of the data set may read,
            besides `required`; `source_files` reports those present.
    """

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    required: tuple[str, ...]
    homepage: str
    license: str
    checksums: dict[str, str] = field(default_factory=dict, hash=False)
    reads: tuple[str, ...] = ()


_MOVIELENS_TERMS = (
    "MovieLens terms: research use only, no redistribution or commercial use "
    "without permission from GroupLens; cite Harper & Konstan (2015)."
)
_NCF_RAW = (
    "https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/"
    "master/Data/"
)

_SESSION_REC_RAW = (
    "https://raw.githubusercontent.com/rn5l/session-rec/"
    "5dcd583cbd8d44703a5248b9a308945f24b91390/data/rsc15/prepared/"
)

_YOOCHOOSE_SAMPLE_SHA256 = {
    "train_full": "9842c90358298ee784fcf0c9dccb2eeb283ab04368e53bdeee896747f4c03e1e",
    "test": "380410c606403531019e1ec0b4d192ef90492d594b9b5a91633b860618dd7136",
    "train_tr": "fb4c6381c8e5bc4de51553cb1ed210fb4016c87d2425d58344cd6b19e81c133a",
    "train_valid": "14fca72e690c19b0da391059b7cf2c1b611cddbd1248ce93578a039ddb26ea69",
}

DATASETS: dict[str, DatasetSpec] = {
    "movielens-100k": DatasetSpec(
        name="movielens-100k",
        description="MovieLens 100K: 100,000 ratings (1-5) from 943 users on "
        "1,682 movies, with timestamps.",
        files=(
            RemoteFile(
                url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                filename="ml-100k.zip",
                sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                extract=True,
            ),
        ),
        required=("u.data",),
        homepage="https://grouplens.org/datasets/movielens/100k/",
        license=_MOVIELENS_TERMS,
        # Members of ml-100k.zip (its sha256 above), checked on every read.
        checksums={
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "u.occupation": (
                "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d"
            ),
        },
        reads=("u.item", "u.user", "u.genre"),
    ),
    "movielens-1m": DatasetSpec(
        name="movielens-1m",
        description="MovieLens 1M: 1,000,209 ratings (1-5) from 6,040 users on "
        "3,706 movies, with timestamps.",
        files=(
            RemoteFile(
                url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                filename="ml-1m.zip",
                sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                extract=True,
            ),
        ),
        required=("ratings.dat",),
        homepage="https://grouplens.org/datasets/movielens/1m/",
        license=_MOVIELENS_TERMS,
        # Members of ml-1m.zip. ratings.dat has no recorded digest of its own
        # (only the archive's): it is fingerprinted, not verified.
        checksums={
            "movies.dat": (
                "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"
            ),
            "users.dat": (
                "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"
            ),
        },
        reads=("movies.dat", "users.dat"),
    ),
    "ncf-ml-1m": DatasetSpec(
        name="ncf-ml-1m",
        description="The leave-one-out split of MovieLens 1M used by Neural "
        "Collaborative Filtering (He et al., WWW 2017), with 99 sampled negatives "
        "per test user.",
        files=(
            RemoteFile(
                url=_NCF_RAW + "ml-1m.train.rating",
                filename="ml-1m.train.rating",
                git_blob_sha1="31ba384fd58dac8fbd09d2dfc6616431f3563ab5",
            ),
            RemoteFile(
                url=_NCF_RAW + "ml-1m.test.rating",
                filename="ml-1m.test.rating",
                sha256="231ae11eb060b643a8c58c063cd17ffc743b54f569afb073d1abb6cf126b88b5",
            ),
            RemoteFile(
                url=_NCF_RAW + "ml-1m.test.negative",
                filename="ml-1m.test.negative",
                sha256="127853228a76b7d21c0481e8ef8d00dd009cd5c88670dbdd9e9debfdb9f93de4",
            ),
        ),
        required=("ml-1m.train.rating", "ml-1m.test.rating", "ml-1m.test.negative"),
        homepage="https://github.com/hexiangnan/neural_collaborative_filtering",
        license=_MOVIELENS_TERMS + " NCF code: Apache-2.0.",
        # The project's reconstruction of the unpublished train file (see
        # ../shared/data/ncf-ml-1m/SOURCE.md) and its id map.
        checksums={
            "reconstructed/ml-1m.train.rating.RECONSTRUCTED.tsv.gz": (
                "855cafe821032f2af629f2e90ac5e635c574f119026d8963ccda072240e36345"
            ),
            "reconstructed/ncf_item_to_movieid.tsv": (
                "5c606a9f9da949b67fca5b075ddb6fb322f7ce7ff725313479998701fbb75aa0"
            ),
        },
        reads=("reconstructed/ncf_item_to_movieid.tsv", "ncf_item_to_movieid.tsv"),
    ),
    # Session data (tfrec.data.sessions). The raw RecSys Challenge 2015 and
    # DIGINETICA files need a registration/7z archive: pass their folder as
    # data_dir to load_yoochoose / load_diginetica instead.
    "yoochoose-rsc15-100k-sample": DatasetSpec(
        name="yoochoose-rsc15-100k-sample",
        description="100k-click sample of the RecSys Challenge 2015 YooChoose "
        "clicks, preprocessed by session-rec in GRU4Rec's layout "
        "(train_full/test, train_tr/train_valid).",
        files=tuple(
            RemoteFile(
                url=_SESSION_REC_RAW + f"yoochoose-clicks-100k_{part}.txt",
                filename=f"yoochoose-clicks-100k_{part}.txt",
                sha256=digest,
            )
            for part, digest in _YOOCHOOSE_SAMPLE_SHA256.items()
        ),
        required=(
            "yoochoose-clicks-100k_train_full.txt",
            "yoochoose-clicks-100k_test.txt",
        ),
        reads=(
            "yoochoose-clicks-100k_train_tr.txt",
            "yoochoose-clicks-100k_train_valid.txt",
        ),
        homepage="https://github.com/rn5l/session-rec",
        license="YooChoose data: CC BY-NC-ND 4.0 (RecSys Challenge 2015).",
    ),
    "diginetica-srgnn-sample": DatasetSpec(
        name="diginetica-srgnn-sample",
        description="12,391-click sample of DIGINETICA train-item-views.csv "
        "(CIKM Cup 2016) shipped with SR-GNN.",
        files=(
            RemoteFile(
                url="https://raw.githubusercontent.com/CRIPAC-DIG/SR-GNN/"
                "e21cfa431f74c25ae6e4ae9261deefe11d1cb488/datasets/"
                "sample_train-item-views.csv",
                filename="sample_train-item-views.csv",
                sha256="98da96e05c87ef12b739e4bfd9bc7b4864106ee77371f1db9eb4413e3f78d37e",
            ),
        ),
        required=("sample_train-item-views.csv",),
        homepage="https://github.com/CRIPAC-DIG/SR-GNN",
        license="DIGINETICA (CIKM Cup 2016): redistribution terms unknown.",
    ),
}

# Sub-folders (relative to a data set folder) that may hold the files, in order.
_SUBDIRS: dict[str, tuple[str, ...]] = {
    "movielens-100k": ("", "ml-100k"),
    "movielens-1m": ("", "ml-1m"),
}
# Accepted stand-ins for a required file (first existing one is used).
_ALTERNATIVES: dict[str, dict[str, tuple[str, ...]]] = {
    "ncf-ml-1m": {
        "ml-1m.train.rating": ("reconstructed/ml-1m.train.rating.RECONSTRUCTED.tsv.gz",)
    },
}
# Explanations added to the error when a required file is missing.
_MISSING_HINTS: dict[str, dict[str, str]] = {
    "movielens-1m": {
        "ratings.dat": (
            "ratings.dat is missing: the original ratings file is required "
            "(partial or transformed copies such as ratings.PARTIAL-*.dat.gz or "
            "ratings.SVDApproximation.rda are not read, because they lack users "
            "or timestamps); get ml-1m.zip from "
            "https://grouplens.org/datasets/movielens/1m/"
        ),
    },
}


def _check_name(name: str) -> DatasetSpec:
    if name in DATASETS:
        return DATASETS[name]
    valid = sorted(DATASETS)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown data set {name!r}. Valid names: {valid}.{hint}")


def list_datasets() -> list[str]:
    """Returns the sorted names of the data sets in the catalogue."""
    return sorted(DATASETS)


def _cache_root() -> pathlib.Path:
    root = os.environ.get("TFREC_CACHE_DIR") or os.path.join("~", ".cache", "tfrec")
    return pathlib.Path(root).expanduser()


def _find_file(name: str, root: pathlib.Path, rel: str) -> pathlib.Path | None:
    """Returns the path of required file `rel` (or a stand-in) under `root`."""
    for candidate in (rel, *_ALTERNATIVES.get(name, {}).get(rel, ())):
        path = root / candidate
        if path.is_file():
            return path
    return None


def _resolve_layout(
    spec: DatasetSpec, folder: pathlib.Path
) -> tuple[pathlib.Path | None, list[str]]:
    """Returns (folder holding every required file, []) or (None, missing files)."""
    first_missing: list[str] | None = None
    for sub in _SUBDIRS.get(spec.name, ("",)):
        root = folder / sub if sub else folder
        missing = [r for r in spec.required if _find_file(spec.name, root, r) is None]
        if not missing:
            return root, []
        if first_missing is None:
            first_missing = missing
    return None, first_missing or []


def _describe_missing(
    spec: DatasetSpec, folder: pathlib.Path, missing: list[str]
) -> str:
    parts = []
    for rel in missing:
        alts = _ALTERNATIVES.get(spec.name, {}).get(rel, ())
        parts.append(rel + (f" (or {' or '.join(alts)})" if alts else ""))
    text = f"{folder} (missing {', '.join(parts)})"
    hints = [_MISSING_HINTS.get(spec.name, {}).get(rel) for rel in missing]
    hints = [h for h in hints if h]
    if hints:
        text += "; " + "; ".join(hints)
    return text


def sha256_file(path: str | os.PathLike) -> str:
    """Returns the SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: str | os.PathLike) -> str:
    """Returns the git blob id of a file (what `git hash-object` prints)."""
    size = os.path.getsize(path)
    digest = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------ verified reads

# Digests already computed in this process: (path, size, mtime_ns, algo) -> hex.
_DIGESTS: dict[tuple[str, int, int, str], str] = {}


def _digest(path: pathlib.Path, algo: str) -> str:
    """sha256 (or git blob sha1) of `path`, cached by (path, size, mtime_ns)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, algo)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path) if algo == "sha256" else git_blob_sha1(path)
    return _DIGESTS[key]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of any file, through the same per-process cache as the catalogue
    checks (run fingerprints use it too)."""
    return _digest(pathlib.Path(path), "sha256")


def _expected_digest(name: str, rel: str) -> tuple[str, str] | None:
    """(algorithm, hex) the catalogue records for file `rel` of data set `name`."""
    spec = DATASETS.get(name)
    if spec is None:
        return None
    if rel in spec.checksums:
        return "sha256", spec.checksums[rel]
    for remote in spec.files:
        if remote.filename == rel and not remote.extract:
            if remote.sha256 is not None:
                return "sha256", remote.sha256
            if remote.git_blob_sha1 is not None:
                return "git blob sha1", remote.git_blob_sha1
    return None


def verify_file(name: str, root: str | os.PathLike, rel: str) -> pathlib.Path:
    """Returns ``root / rel`` after checking it against the catalogue's checksum.

    Every loader calls this before parsing a catalogue file, wherever the
    folder came from (``data_dir``, ``$TFREC_DATA_DIR``, the cache). Files the
    catalogue records no digest for are returned unchecked.

    Args:
        name: Catalogue name.
        root: The data set folder (as returned by `dataset_dir`).
        rel: The file's path relative to `root`.

    Returns:
        The file's path.

    Raises:
        DataError: the file's digest differs from the catalogue's (truncated,
            edited or a different release).
    """
    path = pathlib.Path(root) / rel
    expected = _expected_digest(name, rel)
    if expected is None or not path.is_file():
        return path
    algo, want = expected
    got = _digest(path, "sha256" if algo == "sha256" else "git")
    if got != want:
        raise DataError(
            f"{path}: {algo} {got[:12]}... does not match the catalogue's "
            f"{want[:12]}... for {name}/{rel} (the file was truncated or changed); "
            "delete it to download it again, or point --data-dir (data_dir) at a "
            "good copy."
        )
    return path


def source_files(
    name: str, data_dir: str | os.PathLike | None = None
) -> list[tuple[str, str, int]]:
    """The files data set `name` is read from: ``[(path, sha256, size), ...]``.

    The folder is found like `dataset_dir` (no download); the list holds its
    required files (or their stand-ins) and every other file a loader of the
    data set reads (titles, user features, id maps) that is present, in a
    fixed order. Each is verified with `verify_file` first, so a damaged file
    raises instead of being fingerprinted.

    Args:
        name: Catalogue name.
        data_dir: Folder holding the files (see `dataset_dir`).

    Returns:
        ``(absolute path, sha256 hex, size in bytes)`` per file.
    """
    spec = _check_name(name)
    root = dataset_dir(name, data_dir, download=False)
    rels: list[str] = []
    for rel in spec.required:
        found = _find_file(name, root, rel)
        if found is not None:
            rels.append(found.relative_to(root).as_posix())
    rels += [r for r in spec.reads if (root / r).is_file() and r not in rels]
    out = []
    for rel in rels:
        path = verify_file(name, root, rel)
        out.append((str(path.resolve()), _digest(path, "sha256"), path.stat().st_size))
    return out


def decode_text(path: str | os.PathLike, data: bytes, encoding: str = "utf-8") -> str:
    """Decodes a file's bytes; an invalid byte is a `DataError` naming the line.

    A UTF-8 byte-order mark is dropped. latin-1 (MovieLens) never fails.
    """
    if encoding.replace("-", "").lower() in ("utf8", "utf8sig"):
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"{path}: line {line}: byte 0x{data[e.start]:02x} at column {column} is "
            f"not valid {encoding}; the file must be {encoding}-encoded (re-save it "
            f"as {encoding})."
        ) from None


# Smallest id each catalogue data set defines (MovieLens ids start at 1).
ID_MINIMUM: dict[str, int] = {
    "movielens-100k": 1,
    "movielens-1m": 1,
    "ncf-ml-1m": 0,
}


def check_id_minimum(
    path: str | os.PathLike,
    ids: np.ndarray,
    minimum: int,
    what: str,
    *,
    first_line: int = 1,
) -> None:
    """Raises a `DataError` naming the line of the first id below `minimum`.

    Args:
        path: The file, for the message.
        ids: One id per data line, in file order.
        minimum: The smallest valid id.
        what: ``"user id"`` / ``"item id"``.
        first_line: The file line of ``ids[0]``.
    """
    ids = np.asarray(ids)
    bad = np.flatnonzero(ids < minimum)
    if bad.size:
        k = int(bad[0])
        raise DataError(
            f"{path}: line {k + first_line}: {what} {int(ids[k])} is invalid; ids in "
            f"this data set start at {minimum} ({bad.size} such line(s))."
        )


def merge_duplicates(inter: Interactions) -> Interactions:
    """Merges repeated (user, item) rows into one, the latest.

    The rule, the same in every loader: of the rows of one (user, item) pair the
    one with the latest timestamp is kept, with its rating and timestamp; ties
    in time, and data without timestamps, keep the later row in the file. The
    kept rows stay in file order. `Interactions.duplicates_merged` counts the
    rows removed (added to any earlier count).

    Returns:
        `inter` itself when there are no duplicates, else a new `Interactions`.
    """
    n = len(inter)
    if n == 0:
        return inter
    user = np.asarray(inter.user)
    item = np.asarray(inter.item)
    rows = np.arange(n)
    keys = (rows,) if inter.timestamp is None else (rows, inter.timestamp)
    order = np.lexsort((*keys, item, user))
    su, si = user[order], item[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = (su[1:] != su[:-1]) | (si[1:] != si[:-1])
    if last.all():
        return inter
    kept = np.sort(order[last])
    return dataclasses.replace(
        inter,
        user=inter.user[kept],
        item=inter.item[kept],
        rating=inter.rating[kept],
        timestamp=None if inter.timestamp is None else inter.timestamp[kept],
        duplicates_merged=inter.duplicates_merged + int(n - kept.size),
    )


def _download_file(url: str, dest_dir: pathlib.Path, fname: str, sha256: str | None):
    """Downloads `url` to `dest_dir/fname` with `keras.utils.get_file`.

    Kept as a separate function so tests can replace it.
    """
    import keras

    return keras.utils.get_file(
        fname=fname,
        origin=url,
        file_hash=sha256,
        hash_algorithm="sha256",
        cache_dir=str(dest_dir),
        cache_subdir="",
        force_download=True,
    )


def _fetch(remote: RemoteFile, staging: pathlib.Path) -> pathlib.Path:
    """Downloads one file into `staging` under a temp name, verifies, renames."""
    part = staging / (remote.filename + ".part")
    final = staging / remote.filename
    try:
        _download_file(remote.url, staging, part.name, remote.sha256)
    except Exception as e:  # noqa: BLE001 - keras raises bare Exception
        if part.is_file() and remote.sha256 is not None:
            actual = sha256_file(part)
            part.unlink()
            if actual != remote.sha256:
                raise DataError(
                    f"Checksum mismatch for {remote.url}: expected sha256 "
                    f"{remote.sha256}, got {actual}. The file was deleted; retry, or "
                    "download it yourself and pass data_dir."
                ) from e
        if part.exists():
            part.unlink()
        raise
    if not part.is_file():
        raise OSError(f"download of {remote.url} produced no file")
    if remote.sha256 is not None:
        actual = sha256_file(part)
        if actual != remote.sha256:
            part.unlink()
            raise DataError(
                f"Checksum mismatch for {remote.url}: expected sha256 "
                f"{remote.sha256}, got {actual}. The file was deleted."
            )
    if remote.git_blob_sha1 is not None:
        actual = git_blob_sha1(part)
        if actual != remote.git_blob_sha1:
            part.unlink()
            raise DataError(
                f"Checksum mismatch for {remote.url}: expected git blob sha1 "
                f"{remote.git_blob_sha1}, got {actual}. The file was deleted."
            )
    os.replace(part, final)
    if remote.extract:
        try:
            with zipfile.ZipFile(final) as zf:
                zf.extractall(staging)
        except zipfile.BadZipFile as e:
            raise DataError(f"{remote.url}: not a valid zip archive ({e})") from e
        final.unlink()
    return final


def _download(spec: DatasetSpec, target: pathlib.Path) -> None:
    """Downloads every file of `spec` into a staging folder, then renames it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(
        tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".partial", dir=target.parent)
    )
    try:
        for remote in spec.files:
            _fetch(remote, staging)
        root, missing = _resolve_layout(spec, staging)
        if root is None:
            raise DataError(
                f"Downloaded data set {spec.name!r} lacks required files: {missing}"
            )
        if target.exists():  # an incomplete earlier copy
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def dataset_dir(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    required: tuple[str, ...] | None = None,
) -> pathlib.Path:
    """Returns the local folder holding the files of data set `name`.

    Looks in `data_dir` (strict: it must hold the required files), then
    ``$TFREC_DATA_DIR/<name>/``, then the cache ``$TFREC_CACHE_DIR/<name>/``
    (default ``~/.cache/tfrec``), and finally downloads into the cache with
    checksum verification. A folder may hold the files directly or in the
    archive's sub-folder (``ml-100k/``, ``ml-1m/``). Finding a folder checks
    only that the files exist: every loader verifies each file it reads
    against the catalogue (`verify_file`).

    Args:
        name: Catalogue name, one of `list_datasets()`.
        data_dir: Folder to use instead of searching.
        download: Whether a download may be attempted.
        required: Files to require instead of the catalogue's (e.g. only the
            content files ``u.item``/``movies.dat`` for item features).

    Returns:
        The folder that directly holds the required files.

    Raises:
        ValueError: `name` is not in the catalogue.
        DataError: the files are missing and could not be downloaded, or a
            download fails its checksum.
    """
    spec = _check_name(name)
    if required is not None:
        spec = dataclasses.replace(spec, required=tuple(required))
    if data_dir is not None:
        folder = pathlib.Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data_dir {folder} for data set {name!r} is not a folder.")
        root, missing = _resolve_layout(spec, folder)
        if root is None:
            raise DataError(
                f"data_dir for data set {name!r} lacks required files: "
                f"{_describe_missing(spec, folder, missing)}."
            )
        return root

    looked: list[str] = []
    env = os.environ.get("TFREC_DATA_DIR")
    if env:
        folder = pathlib.Path(env).expanduser() / name
        if folder.is_dir():
            root, missing = _resolve_layout(spec, folder)
            if root is not None:
                return root
            looked.append(_describe_missing(spec, folder, missing))
        else:
            looked.append(f"{folder} (does not exist)")
    else:
        looked.append("$TFREC_DATA_DIR (not set)")

    cache = _cache_root() / name
    if cache.is_dir():
        root, missing = _resolve_layout(spec, cache)
        if root is not None:
            return root
        looked.append(_describe_missing(spec, cache, missing))
    else:
        looked.append(f"{cache} (does not exist)")

    where = "; ".join(looked)
    if not download:
        raise DataError(
            f"data set {name!r} not found locally (looked in: {where}) and download "
            "disabled (download=False); set TFREC_DATA_DIR or pass data_dir."
        )
    try:
        _download(spec, cache)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any network or IO failure
        raise DataError(
            f"data set {name!r} not found locally (looked in: {where}) and download "
            f"failed: {type(e).__name__}: {e}; set TFREC_DATA_DIR or pass data_dir."
        ) from e
    root, missing = _resolve_layout(spec, cache)
    if root is None:  # pragma: no cover - _download checks this already
        raise DataError(_describe_missing(spec, cache, missing))
    return root


# --------------------------------------------------------------------------- parsing


@dataclass
class Interactions:
    """User-item interactions with raw ids.

    Args:
        name: Data set name.
        user: Raw user ids, int64.
        item: Raw item ids, int64.
        rating: Ratings, float32.
        timestamp: Unix seconds, int64, or None when the source has none.
        item_names: Raw item id -> title, when known.
        duplicates_merged: Rows removed by `merge_duplicates`.
    """

    name: str
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None
    item_names: dict[int, str] = field(default_factory=dict)
    duplicates_merged: int = 0

    def __len__(self) -> int:
        return int(self.user.shape[0])


_COMPRESSION_SUFFIXES = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}


def _read_bytes(path: pathlib.Path, compression: str | None) -> bytes:
    if compression in (None, "infer"):
        compression = _COMPRESSION_SUFFIXES.get(path.suffix.lower())
    try:
        if compression is None:
            return path.read_bytes()
        if compression == "gzip":
            with gzip.open(path, "rb") as f:
                return f.read()
        if compression == "bz2":
            with bz2.open(path, "rb") as f:
                return f.read()
        if compression == "xz":
            with lzma.open(path, "rb") as f:
                return f.read()
        if compression == "zip":
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                if len(names) != 1:
                    raise DataError(
                        f"{path}: expected a zip archive with one file, found {names}"
                    )
                return zf.read(names[0])
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as e:
        raise DataError(f"{path}: cannot read {compression} data ({e})") from e
    raise ValueError(
        "`compression` must be one of None, 'infer', 'gzip', 'bz2', 'xz', 'zip'. "
        f"Received: compression={compression!r}"
    )


def _field_names(ncols: int, has_timestamp: bool) -> list[str]:
    names = ["user", "item", "rating"]
    if has_timestamp:
        names.append("timestamp")
    return names + [f"field {i + 1}" for i in range(len(names), ncols)]


def _validate_lines(
    path: pathlib.Path,
    text: str,
    sep: str,
    accepted: tuple[int, ...],
    has_timestamp: bool,
) -> None:
    """Line-by-line pass that raises a DataError at the first bad line."""
    lines = text.split("\n")
    # Trailing blank lines (the usual final newline) are fine; blank lines in
    # the middle are not.
    last = len(lines)
    while last > 0 and not lines[last - 1].strip():
        last -= 1
    if last == 0:
        raise DataError(f"{path}: no ratings (the file is empty)")
    expected: int | None = None
    for lineno, raw in enumerate(lines[:last], start=1):
        line = raw.rstrip("\r")
        fields = line.split(sep)
        n = len(fields)
        if expected is None:
            if n not in accepted:
                want = " or ".join(str(a) for a in accepted)
                raise DataError(
                    f"{path}: line {lineno}: expected {want} {sep!r}-separated fields "
                    f"(user, item, rating{', timestamp' if has_timestamp else ''}), "
                    f"got {n}: {line!r}"
                )
            expected = n
        elif n != expected:
            raise DataError(
                f"{path}: line {lineno}: expected {expected} {sep!r}-separated fields "
                f"like the lines before it, got {n}: {line!r}"
            )
        names = _field_names(n, has_timestamp)
        for idx, kind in ((0, "int"), (1, "int"), (2, "float"), (3, "int")):
            if idx == 3 and not has_timestamp:
                continue
            token = fields[idx].strip()
            what = names[idx]
            if not token:
                raise DataError(f"{path}: line {lineno}: empty {what} field: {line!r}")
            try:
                value = int(token) if kind == "int" else float(token)
            except ValueError:
                raise DataError(
                    f"{path}: line {lineno}: {what} must be "
                    f"{'an integer' if kind == 'int' else 'a number'}, "
                    f"got {token!r}: {line!r}"
                ) from None
            if kind == "float" and not math.isfinite(value):
                raise DataError(
                    f"{path}: line {lineno}: {what} must be a finite number, "
                    f"got {token!r}: {line!r}"
                )


def read_ratings_file(
    path: str | os.PathLike,
    *,
    sep: str,
    columns: int | tuple[int, ...],
    has_timestamp: bool,
    name: str = "",
    compression: str | None = None,
) -> Interactions:
    """Reads a delimited ratings file strictly.

    Fields 0, 1 and 2 are user id, item id and rating; field 3 is the timestamp
    when `has_timestamp`. Further fields are ignored. Parsing uses
    `pandas.read_csv`; when that fails or yields missing values, a line-by-line
    pass finds the first bad line and raises a `DataError` naming it.

    Args:
        path: The file.
        sep: Field separator, e.g. ``"\\t"`` or ``"::"``.
        columns: The number of fields every line must have, or a tuple of
            accepted numbers (every line must then have the same number).
        has_timestamp: Whether field 3 holds unix seconds.
        name: Data set name stored in the result.
        compression: None or "infer" (from the suffix), "gzip", "bz2", "xz" or
            "zip".

    Returns:
        An `Interactions` with empty `item_names`.

    Raises:
        DataError: the file is missing, empty or malformed.
    """
    path = pathlib.Path(path)
    accepted = (columns,) if isinstance(columns, int) else tuple(columns)
    minimum = 4 if has_timestamp else 3
    if not accepted or min(accepted) < minimum:
        raise ValueError(
            f"`columns` must be at least {minimum} (user, item, rating"
            f"{', timestamp' if has_timestamp else ''}). Received: columns={columns!r}"
        )
    if not sep:
        raise ValueError("`sep` must be a non-empty string. Received: sep=''")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = _read_bytes(path, compression)
    if not data.strip():
        raise DataError(f"{path}: no ratings (the file is empty)")
    # Blank lines at the end of the file are fine (a final newline or two).
    data = data.rstrip(b"\r\n") + b"\n"

    fast_sep = sep
    if len(sep) > 1:
        # The C parser needs a one-character separator: replace it with one the
        # data does not contain.
        for candidate in ("\t", "\x1f", "\x1e"):
            if candidate.encode() not in data:
                fast_sep = candidate
                data_fast = data.replace(sep.encode("latin-1"), candidate.encode())
                break
        else:  # pragma: no cover - pathological
            data_fast = None
    else:
        data_fast = data

    df = None
    if data_fast is not None:
        try:
            df = pd.read_csv(
                io.BytesIO(data_fast),
                sep=fast_sep,
                header=None,
                engine="c",
                quoting=csv.QUOTE_NONE,
                skip_blank_lines=False,
                encoding="latin-1",
                na_filter=True,
                keep_default_na=False,
                na_values=[""],
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
            df = None
    ok = df is not None and df.shape[1] in accepted and len(df) > 0
    if ok:
        needed = df.iloc[:, :minimum]
        ok = (
            len(df) > 0
            and not needed.isna().to_numpy().any()
            and all(pd.api.types.is_integer_dtype(needed[c]) for c in (0, 1))
            and pd.api.types.is_numeric_dtype(needed[2])
            and (not has_timestamp or pd.api.types.is_integer_dtype(needed[3]))
            and np.isfinite(needed[2].to_numpy(dtype=np.float64)).all()
        )
    if not ok:
        _validate_lines(path, data.decode("latin-1"), sep, accepted, has_timestamp)
        raise DataError(  # the line pass found nothing: report the parser's view
            f"{path}: could not parse as {sep!r}-separated ratings with "
            f"{' or '.join(map(str, accepted))} fields"
        )
    return Interactions(
        name=name,
        user=df[0].to_numpy(dtype=np.int64),
        item=df[1].to_numpy(dtype=np.int64),
        rating=df[2].to_numpy(dtype=np.float32),
        timestamp=df[3].to_numpy(dtype=np.int64) if has_timestamp else None,
    )


def _read_titles(
    path: pathlib.Path, sep: str, min_fields: int, encoding: str = "latin-1"
) -> dict[int, str]:
    """Reads `id<sep>title<sep>...` lines into {id: title} (MovieLens: latin-1).

    Ids must be >= 1 (MovieLens ids start at 1).
    """
    titles: dict[int, str] = {}
    text = decode_text(path, _read_bytes(path, None), encoding)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) < min_fields:
            raise DataError(
                f"{path}: line {lineno}: expected at least {min_fields} "
                f"{sep!r}-separated fields (id, title, ...), got {len(fields)}: "
                f"{line!r}"
            )
        try:
            key = int(fields[0])
        except ValueError:
            raise DataError(
                f"{path}: line {lineno}: item id must be an integer, got {fields[0]!r}"
            ) from None
        if key < 1:
            raise DataError(
                f"{path}: line {lineno}: item id {key} is invalid; MovieLens ids "
                "start at 1."
            )
        titles[key] = fields[1]
    return titles


def _movielens_1m_titles(path: pathlib.Path) -> dict[int, str]:
    # movies.dat: MovieID::Title::Genres (a title never contains "::"); latin-1.
    titles = {}
    text = decode_text(path, _read_bytes(path, None), "latin-1")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            raise DataError(
                f"{path}: line {lineno}: expected 'MovieID::Title::Genres', got "
                f"{line!r}"
            )
        if int(fields[0]) < 1:
            raise DataError(
                f"{path}: line {lineno}: movie id {fields[0]} is invalid; MovieLens "
                "ids start at 1."
            )
        titles[int(fields[0])] = "::".join(fields[1:-1])
    return titles


def _ncf_titles(root: pathlib.Path) -> dict[int, str]:
    """NCF item id -> title, when the id map and an ML-1M movies.dat are found."""
    mapping = root / "reconstructed" / "ncf_item_to_movieid.tsv"
    if not mapping.is_file():
        mapping = root / "ncf_item_to_movieid.tsv"
        if not mapping.is_file():
            return {}
    verify_file("ncf-ml-1m", root, mapping.relative_to(root).as_posix())
    candidates = [root / "movies.dat", root.parent / "movielens-1m" / "movies.dat"]
    env = os.environ.get("TFREC_DATA_DIR")
    if env:
        candidates.append(
            pathlib.Path(env).expanduser() / "movielens-1m" / "movies.dat"
        )
    cache = _cache_root() / "movielens-1m"
    candidates += [cache / "movies.dat", cache / "ml-1m" / "movies.dat"]
    movies = next((p for p in candidates if p.is_file()), None)
    if movies is None:
        return {}
    verify_file("movielens-1m", movies.parent, movies.name)
    titles = _movielens_1m_titles(movies)
    table = pd.read_csv(mapping, sep="\t", dtype={0: np.int64}, keep_default_na=True)
    if table.shape[1] != 2:
        raise DataError(
            f"{mapping}: expected 2 tab-separated columns "
            f"(ncf_item_id, movielens_movie_id), got {table.shape[1]}"
        )
    out = {}
    for ncf_id, movie_id in zip(table.iloc[:, 0], table.iloc[:, 1], strict=True):
        if pd.notna(movie_id) and int(movie_id) in titles:
            out[int(ncf_id)] = titles[int(movie_id)]
    return out


def _concat(name: str, parts: list[Interactions]) -> Interactions:
    has_ts = all(p.timestamp is not None for p in parts)
    return Interactions(
        name=name,
        user=np.concatenate([p.user for p in parts]),
        item=np.concatenate([p.item for p in parts]),
        rating=np.concatenate([p.rating for p in parts]),
        timestamp=np.concatenate([p.timestamp for p in parts]) if has_ts else None,
    )


def _ncf_train_path(root: pathlib.Path) -> pathlib.Path:
    path = _find_file("ncf-ml-1m", root, "ml-1m.train.rating")
    if path is None:
        raise DataError(f"{root}: ml-1m.train.rating not found")
    return path


def _read_ncf_ratings(path: pathlib.Path, name: str) -> Interactions:
    """Reads an NCF ``*.rating`` file: user, item, rating[, timestamp].

    The file is verified against the catalogue (`verify_file`) and its ids must
    be >= 0.
    """
    # The original files have 4 columns; the reconstructed train file has 3.
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    root = path.parent.parent if path.parent.name == "reconstructed" else path.parent
    verify_file(name, root, path.relative_to(root).as_posix())
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gz else open(path, "rb") as f:
        first = f.readline()
    ncols = first.count(b"\t") + 1
    inter = read_ratings_file(
        path,
        sep="\t",
        columns=4 if ncols >= 4 else 3,
        has_timestamp=ncols >= 4,
        name=name,
        compression="gzip" if gz else None,
    )
    return _checked_ids(inter, path, name)


def _checked_ids(inter: Interactions, path: pathlib.Path, name: str) -> Interactions:
    minimum = ID_MINIMUM.get(name)
    if minimum is not None:
        check_id_minimum(path, inter.user, minimum, "user id")
        check_id_minimum(path, inter.item, minimum, "item id")
    return inter


def _ratings(
    name: str, root: pathlib.Path, rel: str, **kw
) -> Interactions:
    """Verifies, parses and checks the ids of one catalogue ratings file."""
    path = verify_file(name, root, rel)
    return _checked_ids(read_ratings_file(path, name=name, **kw), path, name)


def load_interactions(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> Interactions:
    """Loads every rating of a catalogue data set with raw ids.

    For ``ncf-ml-1m`` the train and test files are concatenated (train first);
    the timestamps are None when the train file has none (the reconstructed
    train file). Titles are attached when the metadata file is present
    (``u.item``, ``movies.dat``, or for ``ncf-ml-1m`` the id map
    ``reconstructed/ncf_item_to_movieid.tsv`` plus an ML-1M ``movies.dat``).

    Every file is checked against the catalogue's checksum before it is parsed
    (`verify_file`), MovieLens text is read as latin-1, ids below the data
    set's first id (`ID_MINIMUM`) are an error naming the file and line, and
    repeated (user, item) rows are merged by `merge_duplicates` (the latest
    row is kept).

    Args:
        name: Catalogue name.
        data_dir: Folder holding the files (see `dataset_dir`).
        download: Whether a download may be attempted.

    Returns:
        An `Interactions`.
    """
    root = dataset_dir(name, data_dir, download=download)
    if name == "movielens-100k":
        inter = _ratings(
            name, root, "u.data", sep="\t", columns=4, has_timestamp=True
        )
        if (root / "u.item").is_file():
            inter.item_names = _read_titles(verify_file(name, root, "u.item"), "|", 2)
        return merge_duplicates(inter)
    if name == "movielens-1m":
        inter = _ratings(
            name, root, "ratings.dat", sep="::", columns=4, has_timestamp=True
        )
        if (root / "movies.dat").is_file():
            inter.item_names = _movielens_1m_titles(
                verify_file(name, root, "movies.dat")
            )
        return merge_duplicates(inter)
    if name == "ncf-ml-1m":
        train = _read_ncf_ratings(_ncf_train_path(root), name)
        test = _read_ncf_ratings(root / "ml-1m.test.rating", name)
        inter = _concat(name, [train, test])
        inter.item_names = _ncf_titles(root)
        return merge_duplicates(inter)
    raise ValueError(f"No loader for data set {name!r}")  # pragma: no cover
