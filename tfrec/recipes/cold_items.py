"""Shared pieces of the content recipes (VBPR, content CNN): cold-start data.

The data of both recipes is :class:`ContentData`: a warm/cold item split of
implicit feedback (`tfrec.data.coldstart.cold_item_split`, the protocol of
``reports/content.md``), a validation part carved from its training pairs only,
and one content array per item index (warm and cold).

* **test** (read once, by ``evaluate(..., part="test")``): the split's warm test
  (full ranking over warm items, known items excluded) and cold test (full
  ranking over the cold items, none seen in training);
* **validation** (each epoch): a seeded ``valid_fraction`` of each user's
  training pairs (at least one pair per user and per warm item stays in
  training), ranked over the warm items with the remaining training pairs
  excluded. Models train on ``fit`` = training pairs minus validation pairs.

Content comes from MovieLens metadata for the catalogue sets (a feature vector
per movie for VBPR, a one-hot token matrix for the CNN) or from the user's
feature file (``source.content``: ``.npz`` / ``.npy`` / ``.parquet``, the format
of `tfrec.data.content.load_item_features`, item ids of any type).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfrec.data.datasets import DataError, Interactions
from tfrec.recipes.base import TrainSettings, Vocab

CONTENT_DATASETS = ("movielens-100k", "movielens-1m")
SPLITS = ("cold_items",)
_DEFAULT_TEST_FRACTION = 0.1  # DataSource's default; our share is a config field


@dataclass
class ColdStartSettings(TrainSettings):
    """Split settings shared by the content recipes.

    Attributes:
        cold_fraction: Share of the items made cold (all their interactions are
            the cold test set).
        warm_test_fraction: Share of each user's warm interactions held out as
            the warm test set.
        warm_test: ``random`` or ``latest`` (by time) warm test pairs.
        min_rating: Keep only ratings >= this as positives (None: every row).
    """

    ks: tuple = (10, 20)
    cold_fraction: float = 0.2
    warm_test_fraction: float = 0.2
    warm_test: str = "random"
    min_rating: float | None = None

    def validate(self) -> None:
        super().validate()
        for name in ("cold_fraction", "warm_test_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ValueError(
                    f"`{name}` must be in (0, 1). Received: {name}={value!r}"
                )
        if isinstance(self.min_rating, str):  # from the command line
            try:
                self.min_rating = float(self.min_rating)
            except ValueError:
                raise ValueError(
                    "`min_rating` must be a number or None. Received: "
                    f"min_rating={self.min_rating!r}"
                ) from None
        if self.min_rating is not None and (
            isinstance(self.min_rating, bool)
            or not isinstance(self.min_rating, (int, float))
        ):
            raise ValueError(
                f"`min_rating` must be a number or None. Received: {self.min_rating!r}"
            )
        if self.warm_test not in ("random", "latest"):
            raise ValueError(
                "`warm_test` must be 'random' or 'latest'. Received: "
                f"warm_test={self.warm_test!r}"
            )


@dataclass
class ContentData:
    """A cold-start split, its validation part and per-item content.

    Attributes:
        split: The `ColdStartSplit` (``train`` = ``fit`` + ``valid``).
        fit: Training pairs the models fit (``user_id``, ``item_id``).
        valid: Validation pairs carved from ``train``, or None.
        content: ``[num_items, ...]`` float32 content of each item index.
        user_ids: Raw id of each user index (ints or strings).
        item_ids: Raw id of each item index (warm block, then cold block).
        content_source: Where the content came from (for ``describe``).
    """

    split: Any
    fit: dict
    valid: dict | None
    content: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    content_source: str = ""
    _fit_csr: tuple | None = field(default=None, repr=False)

    @property
    def num_users(self) -> int:
        return self.split.num_users

    @property
    def num_items(self) -> int:
        return self.split.num_items

    @property
    def num_warm_items(self) -> int:
        return self.split.num_warm_items

    def fit_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Each user's ``fit`` items as CSR (validation excludes them)."""
        if self._fit_csr is None:
            self._fit_csr = _csr(
                self.fit["user_id"], self.fit["item_id"], self.num_users, self.num_items
            )
        return self._fit_csr




def _csr(users, items, num_users, num_items):
    keys = np.unique(np.asarray(users, np.int64) * num_items + np.asarray(items, np.int64))
    indptr = np.zeros(num_users + 1, np.int64)
    np.cumsum(np.bincount(keys // num_items, minlength=num_users), out=indptr[1:])
    return indptr, (keys % num_items).astype(np.int64)


def carve_validation(train: dict, num_warm_items: int, fraction: float, seed: int):
    """``(fit, valid)``: a seeded ``fraction`` of each user's training pairs.

    Every user keeps at least one fit pair, and a pair whose item would be left
    without any fit pair goes back to fit (every warm item stays warm).
    """
    users = np.asarray(train["user_id"], np.int64)
    items = np.asarray(train["item_id"], np.int64)
    n = users.size
    if not fraction or n == 0:
        return {"user_id": users, "item_id": items}, None
    rng = np.random.default_rng([int(seed), 7919])
    order = np.lexsort((rng.random(n), users))
    su = users[order]
    counts = np.bincount(su)
    n_valid = np.minimum(
        np.round(fraction * counts).astype(np.int64), np.maximum(counts - 1, 0)
    )
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(n) - starts[su]
    is_valid = np.zeros(n, bool)
    is_valid[order] = pos < n_valid[su]
    seen = np.zeros(num_warm_items, bool)
    seen[items[~is_valid]] = True
    is_valid &= seen[items]
    if not is_valid.any():
        return {"user_id": users, "item_id": items}, None

    def part(mask):
        return {"user_id": users[mask], "item_id": items[mask]}

    return part(~is_valid), part(is_valid)


def _check_source(source, recipe_name: str) -> None:
    if source.split not in (None, *SPLITS):
        raise ValueError(
            f"The {recipe_name} recipe uses the cold-start item split "
            f"(split={SPLITS[0]!r}). Received: split={source.split!r}."
        )
    if source.test_fraction != _DEFAULT_TEST_FRACTION:
        raise ValueError(
            f"The {recipe_name} recipe sets its test parts with `cold_fraction` and "
            f"`warm_test_fraction`, not test_fraction. Received: test_fraction="
            f"{source.test_fraction!r}."
        )
    if not 0.0 <= source.valid_fraction < 1.0:
        raise ValueError(
            f"`valid_fraction` must be in [0, 1). Received: {source.valid_fraction!r}"
        )


def _interactions(source, config) -> tuple[Interactions, np.ndarray | None, np.ndarray | None]:
    """Interactions with int64 ids, plus raw-id vocabularies for a user file."""
    if source.file:
        from tfrec.data.sources import source_table
        from tfrec.data.userfiles import table_interactions

        table = source_table(source, required=("user", "item"))
        inter, users, items = table_interactions(table, Path(source.file).name)
        return inter, users, items
    from tfrec.data.datasets import load_interactions

    return load_interactions(source.dataset, source.data_dir), None, None


def read_item_content(path, item_ids, *, ndim: int, what: str) -> np.ndarray:
    """Content rows of ``item_ids`` (raw ids of any type) from a feature file.

    Args:
        path: ``.npz`` (``item_id`` + ``features``), ``.npy`` (row i is item i)
            or ``.parquet`` (``item_id`` + a list column ``features`` or numeric
            columns).
        item_ids: Raw ids whose rows to return, in this order.
        ndim: Dimensions of one item's content (1: a vector, 2: time x features).
        what: The model family, for error messages.

    Raises:
        DataError: a missing file, duplicated or missing ids, a wrong shape,
            NaN/inf values; each message names the file.
    """
    from tfrec.data.content import _read_feature_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"content file {path} does not exist (--content FILE).")
    ids, feats = _read_feature_file(path)
    ids = np.asarray(ids)
    feats = np.asarray(feats)
    if ids.ndim != 1 or len(ids) != len(feats):
        raise DataError(
            f"{path}: needs one content row per item id; found {len(ids)} ids and "
            f"features of shape {feats.shape}."
        )
    if feats.dtype.kind not in "fiub":
        raise DataError(f"{path}: content must be numeric, got dtype {feats.dtype}.")
    if feats.ndim - 1 != ndim:
        want = "[num_items, feature_dim]" if ndim == 1 else "[num_items, time, features]"
        raise DataError(
            f"{path}: {what} needs {ndim}-D content per item ({want} in all); the "
            f"file holds per-item shape {tuple(feats.shape[1:])}."
        )
    keys = [str(x) for x in ids.tolist()]
    index: dict[str, int] = {}
    for row, key in enumerate(keys):
        if key in index:
            raise DataError(f"{path}: item id {key!r} appears more than once.")
        index[key] = row
    wanted = [str(x) for x in np.asarray(item_ids).tolist()]
    missing = [k for k in wanted if k not in index]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} item(s) of the interactions have no content, "
            f"e.g. item ids {missing[:5]}; give every item a row."
        )
    out = feats[[index[k] for k in wanted]].astype(np.float32)
    finite = np.isfinite(out.reshape(len(out), -1)).all(axis=1)
    if not finite.all():
        bad = [wanted[r] for r in np.flatnonzero(~finite)[:5]]
        raise DataError(
            f"{path}: {int((~finite).sum())} item(s) have NaN or infinite content, "
            f"e.g. item ids {bad}."
        )
    return out


def load_content_data(source, config: ColdStartSettings, *, recipe_name: str,
                      ndim: int, catalogue_content) -> ContentData:
    """The :class:`ContentData` of ``source`` (catalogue set or own files).

    Args:
        source: The run's `DataSource`.
        config: The recipe's config (split fractions).
        recipe_name: For error messages.
        ndim: Dimensions of one item's content.
        catalogue_content: ``(ItemContent, raw item ids) -> [n, ...]`` content
            of a catalogue set without ``source.content``.
    """
    from tfrec.data.coldstart import cold_item_split

    _check_source(source, recipe_name)
    if source.file and not source.content:
        raise ValueError(
            f"The {recipe_name} recipe needs item content beside your interactions: "
            "pass --content FILE (.npz with item_id + features, .npy, or .parquet)."
        )
    inter, user_vocab, item_vocab = _interactions(source, config)
    split = cold_item_split(
        inter,
        cold_fraction=config.cold_fraction,
        test_fraction=config.warm_test_fraction,
        seed=source.split_seed,
        warm_test=config.warm_test,
        min_rating=config.min_rating,
    )
    user_ids = split.user_ids if user_vocab is None else user_vocab[split.user_ids]
    item_ids = split.item_ids if item_vocab is None else item_vocab[split.item_ids]
    if source.content:
        content = read_item_content(source.content, item_ids, ndim=ndim, what=recipe_name)
        origin = Path(source.content).name
    else:
        from tfrec.data.content import movielens_items

        items = movielens_items(source.dataset, source.data_dir)
        content = catalogue_content(items, item_ids)
        origin = f"{source.dataset} metadata"
    fit, valid = carve_validation(
        split.train, split.num_warm_items, source.valid_fraction, source.split_seed
    )
    if source.file:
        split.item_names = None
    return ContentData(split, fit, valid, content, user_ids, item_ids, origin)


def synthetic_content_data(seed: int, *, spectrograms: bool) -> ContentData:
    """Tiny cold-start data whose interactions follow hidden item content."""
    from tfrec.data.coldstart import cold_item_split, synthetic_content

    data = synthetic_content(60, 50, per_user=8, frames=10, bands=6, seed=seed)
    split = cold_item_split(data.interactions, cold_fraction=0.2, test_fraction=0.2,
                            seed=seed)
    content = (data.spectrograms if spectrograms else data.features)[split.item_ids - 1]
    fit, valid = carve_validation(split.train, split.num_warm_items, 0.1, seed)
    return ContentData(split, fit, valid, content, split.user_ids, split.item_ids,
                       "synthetic")


def describe_content(data: ContentData) -> str:
    s = data.split
    parts = [
        f"{s.name}: {s.num_users} users, {s.num_warm_items} warm + "
        f"{s.num_cold_items} cold items",
        f"{data.fit['user_id'].size} train",
    ]
    if data.valid is not None:
        parts.append(f"{data.valid['user_id'].size} validation")
    parts.append(
        f"{s.warm_test['user_id'].size} warm-test, {s.cold_test['user_id'].size} "
        f"cold-test pairs; content {tuple(data.content.shape[1:])} from "
        f"{data.content_source}"
    )
    return ", ".join(parts)


def content_vocab(data: ContentData) -> Vocab:
    # `Vocab.item_content` is saved in the run's vocab/.
    return Vocab(
        items=[str(i) for i in data.item_ids],
        users=[str(u) for u in data.user_ids],
        item_names=data.split.item_names,
        seen=data.split.train_csr(),
        item_content=data.content,
    )


def warm_validation(data: ContentData, score_fn_factory, *, ks):
    """``validate()``: full ranking of the validation pairs over warm items,
    fit items excluded; None without a validation part."""
    if data.valid is None:
        return None
    from tfrec.evaluation import FullRanking

    indptr, indices = data.fit_csr()
    protocol = FullRanking(
        data.num_warm_items,
        data.valid["user_id"],
        data.valid["item_id"],
        exclude_indptr=indptr,
        exclude_indices=indices,
        ks=ks,
    )

    def validate() -> dict:
        metrics = protocol.evaluate(score_fn_factory())
        return {k: v for k, v in metrics.items() if k.startswith(("ndcg@", "recall@"))}

    return validate


def evaluate_content(data: ContentData, score_fn, part: str, *, ks) -> dict:
    """``{"warm": ..., "cold": ...}`` on the test parts, or the validation
    ranking for ``part="valid"``."""
    import time

    from tfrec.data.coldstart import evaluate_cold, evaluate_warm

    if part == "valid":
        validate = warm_validation(data, lambda: score_fn, ks=ks)
        return {} if validate is None else {"warm": validate()}
    if part != "test":
        raise ValueError(f"`part` must be 'valid' or 'test'. Received: {part!r}")
    out = {}
    for name, fn in (("warm", evaluate_warm), ("cold", evaluate_cold)):
        started = time.time()
        out[name] = dict(fn(data.split, score_fn, ks=ks))
        out[name]["seconds"] = round(time.time() - started, 2)
    return out


def recommend_items(score_items, vocab: Vocab, user, *, k: int, exclude_seen: bool):
    """Top-``k`` of every item (warm and cold) for a raw user id;
    ``score_items(user_index) -> [num_items]`` scores."""
    from tfrec.recipes import interactions as ix

    if k < 1:
        raise ValueError(f"k must be a positive int. Received: {k}")
    u = ix.user_index(vocab, user)
    scores = np.asarray(score_items(u))
    exclude = ix.seen_items(vocab, u) if exclude_seen else ()
    return ix.top_k(scores, vocab, k, exclude)


def item_content_of(vocab: Vocab, what: str) -> np.ndarray:
    content = getattr(vocab, "item_content", None)
    if content is None:
        raise ValueError(
            f"{what} scores items from their content, and this vocabulary has none: "
            "the run's vocab/item_content.npz is missing (re-train the run, or pass "
            "recipe.vocab(data), whose item_content holds one row per item index)."
        )
    return np.asarray(content, np.float32)
