"""Content: what items and users are, not who interacted with whom.

Two sources:

* MovieLens metadata (:func:`movielens_items`, :func:`movielens_users`): genres,
  release year and title tokens of movies; gender, age, occupation and zip code
  of users. Read from ``u.item``/``u.user``/``u.genre`` (ML-100K) or
  ``movies.dat``/``users.dat`` (ML-1M), found like the ratings
  (`data_dir`, ``$TFREC_DATA_DIR``, cache, download).
* Precomputed feature files (:func:`load_item_features`), the way real
  deployments feed content models: CNN image embeddings for VBPR, audio
  spectrograms for a content CNN, text embeddings. One row (or one 2-D array)
  per item id, in ``.npz`` (arrays ``item_id`` and ``features``), ``.npy``
  (row ``i`` is item id ``i``) or Parquet (an ``item_id`` column and either one
  list column ``features`` or numeric columns).

Everything is validated: unknown or missing item ids, a wrong feature shape and
non-finite values raise :class:`~tfrec.data.datasets.DataError` naming the file
and the offending ids. MovieLens metadata files are read as latin-1 (the
encoding GroupLens used: ``u.item`` titles such as "Café au lait" are latin-1
bytes), after a check against the catalogue's sha256
(`tfrec.data.datasets.verify_file`); MovieLens ids must be >= 1.
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass

import numpy as np

from tfrec.data.datasets import DataError, dataset_dir, decode_text, verify_file

# ML-1M age codes (README): the bucket a code stands for. ML-100K ages (in
# years) are bucketed into the same ranges so both data sets share features.
AGE_BUCKETS: dict[int, str] = {
    1: "under-18",
    18: "18-24",
    25: "25-34",
    35: "35-44",
    45: "45-49",
    50: "50-55",
    56: "56+",
}
# ML-1M occupation codes (README), spelled like ML-100K's u.occupation where the
# two agree.
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other",
    "educator",
    "artist",
    "administrator",
    "student",
    "customer service",
    "healthcare",
    "executive",
    "farmer",
    "homemaker",
    "k-12 student",
    "lawyer",
    "programmer",
    "retired",
    "marketing",
    "scientist",
    "self-employed",
    "engineer",
    "tradesman",
    "none",
    "writer",
)
ML1M_GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_CONTENT_FILES = {
    "movielens-100k": {"items": ("u.item", "u.genre"), "users": ("u.user",)},
    "movielens-1m": {"items": ("movies.dat",), "users": ("users.dat",)},
}
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
_TOKEN = re.compile(r"[a-z0-9]+")


def age_bucket(age_years: int) -> str:
    """The ML-1M age bucket of an age in years (used for ML-100K users)."""
    codes = sorted(AGE_BUCKETS)
    code = codes[0]
    for c in codes:
        if age_years >= c:
            code = c
    return AGE_BUCKETS[code]


def _index_of(known: np.ndarray, ids, what: str, source: str) -> np.ndarray:
    """Positions of `ids` in the sorted array `known`; DataError on unknown ids."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise DataError(f"{what} ids must be integers. Received dtype {ids.dtype}.")
    pos = np.searchsorted(known, ids)
    pos = np.clip(pos, 0, max(len(known) - 1, 0))
    bad = ids[(len(known) == 0) | (known[pos] != ids)] if len(known) else ids
    if bad.size:
        shown = ", ".join(str(x) for x in np.unique(bad)[:5])
        raise DataError(
            f"{source}: {np.unique(bad).size} {what} id(s) have no content "
            f"(e.g. {shown}); known ids: {len(known)} from {known[:1]} to "
            f"{known[-1:]}."
        )
    return pos


@dataclass(frozen=True)
class ItemContent:
    """Movie metadata, one row per item, sorted by raw item id.

    Attributes:
        name: Data set name.
        item_ids: Raw item ids (int64), ascending.
        titles: Titles as in the file (with the year).
        genres: Multi-hot genres, float32 of shape (n, len(genre_names)).
        genre_names: Genre names in column order.
        year: Release year (int32), 0 where the file has none.
    """

    name: str
    item_ids: np.ndarray
    titles: tuple[str, ...]
    genres: np.ndarray
    genre_names: tuple[str, ...]
    year: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)

    def index(self, item_ids) -> np.ndarray:
        """Row positions of raw `item_ids`; raises DataError for unknown ids."""
        return _index_of(self.item_ids, item_ids, "item", self.name)

    def title_tokens(self) -> list[list[str]]:
        """Lower-cased word tokens of each title, without the trailing year."""
        out = []
        for title in self.titles:
            title = _YEAR_IN_TITLE.sub("", title).lower()
            out.append(_TOKEN.findall(title))
        return out

    def genre_strings(self, sep: str = "|") -> list[str]:
        """Each item's genres joined by `sep` (empty string for none)."""
        return [
            sep.join(g for g, on in zip(self.genre_names, row, strict=True) if on)
            for row in self.genres
        ]

    def features(
        self,
        item_ids=None,
        *,
        genres: bool = True,
        year: bool = True,
        title_vocab: int = 0,
    ) -> np.ndarray:
        """A dense float32 feature matrix for content models.

        Columns: multi-hot genres; the release year scaled to [0, 1] over the
        catalogue's range (0.5 where unknown) plus an "unknown year" flag; and,
        with ``title_vocab > 0``, a binary bag of the `title_vocab` most frequent
        title tokens (ties broken alphabetically).

        Args:
            item_ids: Raw ids whose rows to return (default: every item, in
                `item_ids` order).
        """
        rows = np.arange(len(self)) if item_ids is None else self.index(item_ids)
        parts = []
        if genres:
            parts.append(self.genres)
        if year:
            known = self.year > 0
            lo = self.year[known].min() if known.any() else 0
            hi = self.year[known].max() if known.any() else 1
            scaled = np.where(known, (self.year - lo) / max(hi - lo, 1), 0.5)
            parts.append(np.stack([scaled, (~known).astype(float)], axis=1))
        if title_vocab > 0:
            tokens = self.title_tokens()
            counts: dict[str, int] = {}
            for toks in tokens:
                for t in set(toks):
                    counts[t] = counts.get(t, 0) + 1
            vocab = sorted(counts, key=lambda t: (-counts[t], t))[:title_vocab]
            col = {t: j for j, t in enumerate(vocab)}
            bag = np.zeros((len(self), len(vocab)), np.float32)
            for i, toks in enumerate(tokens):
                for t in toks:
                    if t in col:
                        bag[i, col[t]] = 1.0
            parts.append(bag)
        if not parts:
            raise ValueError("features(): enable at least one of genres, year, title")
        return np.concatenate(parts, axis=1).astype(np.float32)[rows]


@dataclass(frozen=True)
class UserContent:
    """User demographics, one row per user, sorted by raw user id.

    Attributes:
        name: Data set name.
        user_ids: Raw user ids (int64), ascending.
        gender: "M" or "F".
        age: Age bucket (see `AGE_BUCKETS`).
        occupation: Occupation name.
        zip_code: Zip code as written in the file.
    """

    name: str
    user_ids: np.ndarray
    gender: np.ndarray
    age: np.ndarray
    occupation: np.ndarray
    zip_code: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)

    def index(self, user_ids) -> np.ndarray:
        """Row positions of raw `user_ids`; raises DataError for unknown ids."""
        return _index_of(self.user_ids, user_ids, "user", self.name)

    def categorical(self, user_ids=None, zip_digits: int = 1) -> dict[str, np.ndarray]:
        """String features per user: gender, age, occupation and zip prefix."""
        rows = np.arange(len(self)) if user_ids is None else self.index(user_ids)
        prefix = np.array([z[:zip_digits] for z in self.zip_code], dtype=object)
        return {
            "gender": self.gender[rows],
            "age": self.age[rows],
            "occupation": self.occupation[rows],
            "zip_prefix": prefix[rows],
        }


def _content_root(name: str, kind: str, data_dir) -> pathlib.Path:
    if name not in _CONTENT_FILES:
        raise ValueError(
            f"Content is available for {sorted(_CONTENT_FILES)}. Received: {name!r}"
        )
    return dataset_dir(name, data_dir, required=_CONTENT_FILES[name][kind])


def _lines(path: pathlib.Path, name: str) -> list[tuple[int, str]]:
    """Non-blank (line number, line) of a MovieLens file of data set `name`,
    verified against the catalogue and decoded as latin-1."""
    verify_file(name, path.parent, path.name)
    text = decode_text(path, path.read_bytes(), "latin-1")
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _fields(path, lineno, line, sep, count) -> list[str]:
    fields = line.split(sep)
    if len(fields) != count:
        raise DataError(
            f"{path}: line {lineno}: expected {count} {sep!r}-separated fields, "
            f"got {len(fields)}: {line[:120]!r}"
        )
    return fields


def _int(path, lineno, text, what) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DataError(
            f"{path}: line {lineno}: {what} must be an integer, got {text!r}"
        ) from None
    if what.endswith(" id") and value < 1:
        raise DataError(
            f"{path}: line {lineno}: {what} {value} is invalid; MovieLens ids start "
            "at 1."
        )
    return value


def _sorted_items(name, ids, titles, genres, genre_names, years) -> ItemContent:
    ids = np.asarray(ids, np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{name}: duplicate item ids in the item file")
    order = np.argsort(ids, kind="stable")
    return ItemContent(
        name=name,
        item_ids=ids[order],
        titles=tuple(titles[i] for i in order),
        genres=np.asarray(genres, np.float32).reshape(len(ids), -1)[order],
        genre_names=tuple(genre_names),
        year=np.asarray(years, np.int32)[order],
    )


def movielens_items(
    name: str = "movielens-100k", data_dir: str | os.PathLike | None = None
) -> ItemContent:
    """Genres, release year and titles of the MovieLens movies."""
    root = _content_root(name, "items", data_dir)
    ids, titles, genres, years = [], [], [], []
    if name == "movielens-100k":
        genre_path = root / "u.genre"
        names = [
            _fields(genre_path, n, line, "|", 2)[0]
            for n, line in _lines(genre_path, name)
        ]
        path = root / "u.item"
        for lineno, line in _lines(path, name):
            f = _fields(path, lineno, line, "|", 5 + len(names))
            ids.append(_int(path, lineno, f[0], "movie id"))
            titles.append(f[1])
            date = f[2].strip()
            years.append(_int(path, lineno, date[-4:], "release year") if date else 0)
            flags = f[5:]
            if any(x not in ("0", "1") for x in flags):
                raise DataError(f"{path}: line {lineno}: genre flags must be 0 or 1")
            genres.append([float(x) for x in flags])
        return _sorted_items(name, ids, titles, genres, names, years)

    path = root / "movies.dat"
    col = {g: j for j, g in enumerate(ML1M_GENRES)}
    for lineno, line in _lines(path, name):
        f = line.split("::")
        if len(f) < 3:
            raise DataError(
                f"{path}: line {lineno}: expected 'MovieID::Title::Genres', got "
                f"{line[:120]!r}"
            )
        ids.append(_int(path, lineno, f[0], "movie id"))
        title = "::".join(f[1:-1])
        titles.append(title)
        m = _YEAR_IN_TITLE.search(title)
        years.append(int(m.group(1)) if m else 0)
        row = np.zeros(len(ML1M_GENRES), np.float32)
        for g in filter(None, f[-1].split("|")):
            if g not in col:
                raise DataError(
                    f"{path}: line {lineno}: unknown genre {g!r}; expected one of "
                    f"{list(ML1M_GENRES)}"
                )
            row[col[g]] = 1.0
        genres.append(row)
    return _sorted_items(name, ids, titles, genres, ML1M_GENRES, years)


def movielens_users(
    name: str = "movielens-100k", data_dir: str | os.PathLike | None = None
) -> UserContent:
    """Gender, age bucket, occupation and zip code of the MovieLens users."""
    root = _content_root(name, "users", data_dir)
    rows = []
    if name == "movielens-100k":
        path = root / "u.user"
        for lineno, line in _lines(path, name):
            uid, age, gender, occ, zip_code = _fields(path, lineno, line, "|", 5)
            years = _int(path, lineno, age, "age")
            rows.append((_int(path, lineno, uid, "user id"), gender, age_bucket(years),
                         occ, zip_code))
    else:
        path = root / "users.dat"
        for lineno, line in _lines(path, name):
            uid, gender, age, occ, zip_code = _fields(path, lineno, line, "::", 5)
            code = _int(path, lineno, age, "age code")
            occ_code = _int(path, lineno, occ, "occupation code")
            if code not in AGE_BUCKETS or not 0 <= occ_code < len(ML1M_OCCUPATIONS):
                raise DataError(
                    f"{path}: line {lineno}: age code {code} or occupation code "
                    f"{occ_code} is not in the README's lists"
                )
            rows.append((_int(path, lineno, uid, "user id"), gender, AGE_BUCKETS[code],
                         ML1M_OCCUPATIONS[occ_code], zip_code))
    for lineno, row in enumerate(rows, 1):
        if row[1] not in ("M", "F"):
            raise DataError(f"{path}: row {lineno}: gender must be M or F, got {row[1]!r}")
    rows.sort(key=lambda r: r[0])
    ids = np.array([r[0] for r in rows], np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{path}: duplicate user ids")
    col = lambda j: np.array([r[j] for r in rows], dtype=object)  # noqa: E731
    return UserContent(name, ids, col(1), col(2), col(3), col(4))


# ----------------------------------------------------------------- feature files


def _read_feature_file(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        features = np.load(path, allow_pickle=False)
        return np.arange(len(features), dtype=np.int64), features
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = {"item_id", "features"} - set(z.files)
            if missing:
                raise DataError(
                    f"{path}: an .npz feature file needs arrays 'item_id' and "
                    f"'features'; missing {sorted(missing)} (found {z.files})"
                )
            return z["item_id"], z["features"]
    if suffix in (".parquet", ".pq"):
        import pandas as pd

        df = pd.read_parquet(path)
        if "item_id" not in df.columns:
            raise DataError(
                f"{path}: a Parquet feature file needs an 'item_id' column; "
                f"found {list(df.columns)}"
            )
        ids = df["item_id"].to_numpy()
        if "features" in df.columns:
            try:
                feats = np.stack([np.asarray(v, dtype=np.float32) for v in df["features"]])
            except ValueError as e:
                raise DataError(f"{path}: rows of 'features' differ in length: {e}") from e
        else:
            rest = df.drop(columns=["item_id"])
            if rest.empty or not all(np.issubdtype(t, np.number) for t in rest.dtypes):
                raise DataError(
                    f"{path}: besides 'item_id', expected one list column "
                    f"'features' or only numeric columns; found {list(rest.columns)}"
                )
            feats = rest.to_numpy()
        return ids, feats
    raise DataError(
        f"{path}: unsupported feature file type {suffix!r}; use .npz, .npy or "
        ".parquet"
    )


def load_item_features(
    path: str | os.PathLike,
    item_ids=None,
    *,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Loads per-item content features, aligned to `item_ids`.

    Args:
        path: A ``.npz`` (arrays ``item_id`` (n,) and ``features`` (n, ...)),
            ``.npy`` (array (n, ...), row ``i`` is item id ``i``) or Parquet
            file (see the module docstring).
        item_ids: Raw item ids whose features to return, in this order
            (default: all rows, in file order).
        shape: Expected per-item shape, e.g. ``(4096,)`` for VBPR's CNN
            features or ``(frames, bands)`` for a spectrogram.

    Returns:
        float32 array of shape ``(len(item_ids),) + per-item shape``.

    Raises:
        DataError: the file is missing or malformed, an item id is missing or
            duplicated, the shape differs from `shape`, or a value is NaN/inf.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"feature file {path} does not exist")
    ids, feats = _read_feature_file(path)
    ids = np.asarray(ids)
    feats = np.asarray(feats)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise DataError(
            f"{path}: item ids must be a 1-D integer array, got shape {ids.shape} "
            f"dtype {ids.dtype}"
        )
    if feats.ndim < 2 or len(feats) != len(ids):
        raise DataError(
            f"{path}: features must have one row per item id ({len(ids)} ids), got "
            f"shape {feats.shape}"
        )
    if feats.dtype.kind not in "fiu":
        raise DataError(f"{path}: features must be numeric, got dtype {feats.dtype}")
    if shape is not None and tuple(feats.shape[1:]) != tuple(shape):
        raise DataError(
            f"{path}: expected per-item feature shape {tuple(shape)}, got "
            f"{tuple(feats.shape[1:])}"
        )
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: duplicate item ids, e.g. {uniq[counts > 1][:5].tolist()}")
    feats = feats.astype(np.float32, copy=False)
    if item_ids is None:
        rows = np.arange(len(ids))
    else:
        order = np.argsort(ids, kind="stable")
        rows = order[_index_of(ids[order], item_ids, "item", str(path))]
    out = feats[rows]
    finite = np.isfinite(out.reshape(len(out), -1)).all(axis=1)
    if not finite.all():
        bad = (ids[rows][~finite])[:5].tolist()
        raise DataError(
            f"{path}: {int((~finite).sum())} item(s) have NaN or infinite features, "
            f"e.g. item ids {bad}"
        )
    return out


def save_item_features(path: str | os.PathLike, item_ids, features) -> pathlib.Path:
    """Writes an ``.npz`` feature file atomically (the format `load_item_features`
    reads): arrays ``item_id`` and ``features``."""
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"save_item_features writes .npz files. Received: {path}")
    ids = np.asarray(item_ids, np.int64)
    feats = np.asarray(features, np.float32)
    if len(ids) != len(feats):
        raise ValueError(f"{len(ids)} item ids but {len(feats)} feature rows")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, item_id=ids, features=feats)
    os.replace(tmp, path)
    return path
