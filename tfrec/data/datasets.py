"""Data set catalogue, download with checksum and cache, and strict rating-file parsers.

Every data set is looked up in this order (see `dataset_dir`):

1. an explicit ``data_dir`` argument (used as-is; must hold the required files),
2. ``$TFREC_DATA_DIR/<name>/`` when that folder exists and is complete,
3. the cache ``$TFREC_CACHE_DIR/<name>/`` (default ``~/.cache/tfrec/<name>/``),
4. a download into the cache with ``keras.utils.get_file``, verified against the
   catalogue's checksum and moved into place atomically.

Every bad-input error is a `DataError` that names the file (and the 1-based line
when there is one), what was found, and what was expected.
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
    "dataset_dir",
    "git_blob_sha1",
    "list_datasets",
    "load_interactions",
    "read_ratings_file",
    "sha256_file",
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
    """

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    required: tuple[str, ...]
    homepage: str
    license: str


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
    archive's sub-folder (``ml-100k/``, ``ml-1m/``).

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
    """

    name: str
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None
    item_names: dict[int, str] = field(default_factory=dict)

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
    """Reads `id<sep>title<sep>...` lines into {id: title}."""
    titles: dict[int, str] = {}
    text = _read_bytes(path, None).decode(encoding)
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
        titles[key] = fields[1]
    return titles


def _movielens_1m_titles(path: pathlib.Path) -> dict[int, str]:
    # movies.dat: MovieID::Title::Genres (a title never contains "::").
    titles = {}
    text = _read_bytes(path, None).decode("latin-1")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            raise DataError(
                f"{path}: line {lineno}: expected 'MovieID::Title::Genres', got "
                f"{line!r}"
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
    """Reads an NCF ``*.rating`` file: user, item, rating[, timestamp]."""
    # The original files have 4 columns; the reconstructed train file has 3.
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gz else open(path, "rb") as f:
        first = f.readline()
    ncols = first.count(b"\t") + 1
    return read_ratings_file(
        path,
        sep="\t",
        columns=4 if ncols >= 4 else 3,
        has_timestamp=ncols >= 4,
        name=name,
        compression="gzip" if gz else None,
    )


def load_interactions(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> Interactions:
    """Loads every rating of a catalogue data set with raw ids.

    For ``ncf-ml-1m`` the train and test files are concatenated (train first);
    the timestamps are None when the train file has none (the reconstructed
    train file). Titles are attached when the metadata file is present
    (``u.item``, ``movies.dat``, or for ``ncf-ml-1m`` the id map
    ``reconstructed/ncf_item_to_movieid.tsv`` plus an ML-1M ``movies.dat``).

    Args:
        name: Catalogue name.
        data_dir: Folder holding the files (see `dataset_dir`).
        download: Whether a download may be attempted.

    Returns:
        An `Interactions`.
    """
    root = dataset_dir(name, data_dir, download=download)
    if name == "movielens-100k":
        inter = read_ratings_file(
            root / "u.data", sep="\t", columns=4, has_timestamp=True, name=name
        )
        if (root / "u.item").is_file():
            inter.item_names = _read_titles(root / "u.item", "|", 2)
        return inter
    if name == "movielens-1m":
        inter = read_ratings_file(
            root / "ratings.dat", sep="::", columns=4, has_timestamp=True, name=name
        )
        if (root / "movies.dat").is_file():
            inter.item_names = _movielens_1m_titles(root / "movies.dat")
        return inter
    if name == "ncf-ml-1m":
        train = _read_ncf_ratings(_ncf_train_path(root), name)
        test = _read_ncf_ratings(root / "ml-1m.test.rating", name)
        inter = _concat(name, [train, test])
        inter.item_names = _ncf_titles(root)
        return inter
    raise ValueError(f"No loader for data set {name!r}")  # pragma: no cover
