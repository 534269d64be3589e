"""Wide & Deep learning for recommender systems, on MovieLens features.

Reference:
    Heng-Tze Cheng, Levent Koc, Jeremiah Harmsen, Tal Shaked, Tushar Chandra,
    Hrishi Aradhye, Glen Anderson, Greg Corrado, Wei Chai, Mustafa Ispir, Rohan
    Anil, Zakaria Haque, Lichan Hong, Vihan Jain, Xiaobing Liu, Hemal Shah.
    "Wide & Deep Learning for Recommender Systems". DLRS 2016.

The model (paper Eq. 3) is ``P(y=1|x) = sigmoid(w_wide^T [x, phi(x)] + w_deep^T
a^(l_f) + b)``:

* **wide part**: a linear model over one-hot categorical features (user id, item
  id, gender, age bucket, occupation, zip prefix, release-year bucket), the genre
  multi-hot vector, and cross-product transformations ``phi(x)`` of pairs of
  categorical features (e.g. gender x genre, occupation x genre). A cross is a
  vocabulary over the joint values seen in training; each cross value has one
  weight (an embedding of dim 1). A cross with the multi-valued genre feature fires
  once per genre of the movie, and its contribution is the sum of the active cross
  weights.
* **deep part**: an embedding per categorical feature (``embedding_dim``, 32 in the
  paper), the sum of the movie's genre embeddings, and the release year scaled to
  [0, 1], concatenated and fed to a ReLU tower (``hidden_units``).
* **joint training** (paper Sec. 3.2): FTRL with L1 on the wide variables and
  AdaGrad (or another of ``tfrec.training.OPTIMIZERS``) on the deep ones, in one
  model. Training lives in the recipe (:mod:`tfrec.recipes.wide_deep`:
  ``wide_deep_trainer`` wraps the serving model in a
  :class:`tfrec.training.multi_optimizer.MultiOptimizerTrainer` trained by
  ordinary ``fit``); :func:`is_wide_variable` tells it which variables are wide.
  The serving model itself is a plain functional model.

Serving contract (what a client sends; all shapes ``(batch,)`` unless noted):

=============  =========  ====================================================
input          dtype      value
=============  =========  ====================================================
``user_id``    int64      raw MovieLens UserID
``item_id``    int64      raw MovieLens MovieID
``gender``     string     ``"M"`` / ``"F"``
``age``        string     ML-1M age bucket (``"25-34"``, see ``AGE_BUCKETS``)
``occupation`` string     occupation name (``"technician"``)
``zip_prefix`` string     the first ``zip_digits`` characters of the zip code
``genres``     float32    ``(batch, num_genres)`` multi-hot, columns in
                          ``genre_names`` order (stored in the model config;
                          :func:`tfrec.data.tabular.encode_genres` turns
                          ``"Comedy|Drama"`` strings into this vector)
``year``       int64      release year, 0 when unknown
=============  =========  ====================================================

Every categorical value (string or id) goes through a vocabulary inside the model
with one out-of-vocabulary (OOV) bucket, index 0: ``StringLookup`` for strings
(an ONNX-ML ``CategoryMapper`` after export) and :class:`IdLookup` (a dense
id -> index table, plain ``Gather``) for integer ids, because tf2onnx converts
only string<->int64 tables and ``Hashing`` not at all. Unknown values therefore
score identically in TF and ONNX. With vocabularies taken from the training rows
(``min_count=1``) an OOV bucket is never active in training, so its wide weight
stays 0 and its deep embedding at its initial value. A genre string cannot be
split inside an ONNX opset-17 graph, hence the multi-hot ``genres`` input.

Outputs: ``task="ctr"``: ``score`` = P(click); ``task="rating"``: ``rating``
(the same architecture with an identity output, trained with squared loss, for the
rating-regression comparison).

Deviations from the paper (it served Google Play with hundreds of features):

* Features are MovieLens demographics and movie metadata; the reproduction
  crosses gender x genre, age x genre and occupation x genre
  (``default_crosses``).
* The release year enters the deep part as one scaled dense feature and the wide
  part as a bucket (``year_boundaries``); the paper's continuous features were
  normalised by their CDF into quantiles.
* ``mode="wide"`` / ``"deep"`` build the paper's Table 1 baselines (wide-only
  logistic regression with crosses; deep-only network) with the same inputs.
* In ``mode="joint"`` the single bias ``b`` lives in the wide part
  (``wide_bias``); the deep logit layer has no bias. A fixed ``logit_offset``
  (the base rate, ``tfrec.recipes.wide_deep.base_logit``) can be added to the
  logit: FTRL-Proximal re-centres its variables at 0 on its first step, so the
  base rate cannot be put into ``b`` by initialisation, and for rating regression
  (mean 3.5) learning it from 0 destabilised the joint model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
from keras import ops

from tfrec.layers import Bias, mlp_tower
from tfrec.layers.mlp import check_hidden_units
from tfrec.registry import Tolerance, register_model

ID_FEATURES = ("user_id", "item_id")
STRING_FEATURES = ("gender", "age", "occupation", "zip_prefix")
CATEGORICAL_FEATURES = ID_FEATURES + STRING_FEATURES
MULTI_HOT_FEATURE = "genres"
# The serving contract (the same names and dtypes as tfrec.data.tabular's rows).
INPUT_DTYPES: dict[str, str] = {
    "user_id": "int64",
    "item_id": "int64",
    "gender": "string",
    "age": "string",
    "occupation": "string",
    "zip_prefix": "string",
    "genres": "float32",
    "year": "int64",
}
MODES = ("joint", "wide", "deep")
TASK_OUTPUTS = {"ctr": "score", "rating": "rating"}
DEFAULT_YEAR_BOUNDARIES = (1, 1930, 1950, 1960, 1970, 1980, 1985, 1990, 1995)
CROSS_SEPARATOR = "_x_"


def default_crosses() -> tuple[str, ...]:
    """The cross-product transformations used unless told otherwise."""
    return ("gender_x_genres", "age_x_genres", "occupation_x_genres")


# ----------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="tfrec")
class IdLookup(keras.layers.Layer):
    """Integer vocabulary: raw id -> index in ``[1, len(vocabulary)]``, 0 for OOV.

    A dense table over ``[0, max(vocabulary)]`` looked up with ``take``; ids
    outside that range or not in the vocabulary map to 0. Unlike
    ``IntegerLookup`` (an int64->int64 hash table) this converts to ONNX
    (``Gather``/``Where``) with identical results. Meant for id spaces up to a few
    million (the table has ``max(vocabulary) + 1`` entries).

    Args:
        vocabulary: the known non-negative ids, in index order.
    """

    MAX_TABLE = 50_000_000

    def __init__(self, vocabulary: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        vocab = np.asarray(list(vocabulary), dtype=np.int64)
        if vocab.ndim != 1 or vocab.size == 0:
            raise ValueError(
                "`vocabulary` must be a non-empty list of ids. "
                f"Received {vocab.size} values."
            )
        if vocab.min() < 0:
            raise ValueError(
                f"`vocabulary` ids must be >= 0. Received min {int(vocab.min())}."
            )
        if np.unique(vocab).size != vocab.size:
            raise ValueError("`vocabulary` has duplicate ids.")
        if vocab.max() >= self.MAX_TABLE:
            raise ValueError(
                f"IdLookup keeps a dense table up to the largest id; got id "
                f"{int(vocab.max())} (limit {self.MAX_TABLE}). Re-index the ids."
            )
        self.vocabulary = [int(v) for v in vocab]
        table = np.zeros(int(vocab.max()) + 1, np.int64)
        table[vocab] = np.arange(1, vocab.size + 1)
        self._table = table

    def vocabulary_size(self) -> int:
        """Number of indices, the OOV bucket included."""
        return len(self.vocabulary) + 1

    def call(self, ids):
        ids = ops.cast(ids, "int64")
        table = ops.convert_to_tensor(self._table)
        size = self._table.shape[0]
        valid = ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, size))
        safe = ops.where(valid, ids, ops.zeros_like(ids))
        return ops.where(valid, ops.take(table, safe, axis=0), ops.zeros_like(ids))

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, ids):
        return keras.KerasTensor(ids.shape, dtype="int64")

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary=self.vocabulary)
        return config


@keras.saving.register_keras_serializable(package="tfrec")
class CrossLookup(keras.layers.Layer):
    """Cross-product transformation of two categorical features (paper Eq. 1).

    A vocabulary over joint values: the ``k``-th pair of ``pairs`` (indices into
    the two features' vocabularies) gets cross id ``k + 1``; every other pair gets
    0 (OOV, "never seen together in training").

    Call with ``(a, b)``: ``a`` int indices ``(batch,)``; ``b`` either int indices
    ``(batch,)`` (returns cross ids ``(batch,)``) or a multi-hot float matrix
    ``(batch, num_b)`` of a multi-valued feature (returns ``(batch, num_b)``:
    column ``j`` is the cross id of ``(a, value j)``; weight it by ``b`` so only
    the active values count).

    Args:
        num_a: size of ``a``'s index space.
        num_b: size of ``b``'s index space (columns, for multi-hot ``b``).
        pairs: ``[[index_a, index_b], ...]``, distinct.
    """

    def __init__(self, num_a: int, num_b: int, pairs: Sequence[Sequence[int]], **kw):
        super().__init__(**kw)
        self.num_a, self.num_b = int(num_a), int(num_b)
        if self.num_a < 1 or self.num_b < 1:
            raise ValueError(
                f"`num_a` and `num_b` must be positive. Received {num_a}, {num_b}."
            )
        arr = np.asarray([list(p) for p in pairs], dtype=np.int64).reshape(-1, 2)
        if arr.size and (
            arr.min() < 0 or arr[:, 0].max() >= self.num_a or arr[:, 1].max() >= self.num_b
        ):
            raise ValueError(
                f"Cross pairs must index [0, {self.num_a}) x [0, {self.num_b})."
            )
        flat = arr[:, 0] * self.num_b + arr[:, 1]
        if np.unique(flat).size != flat.size:
            raise ValueError("Cross `pairs` has duplicates.")
        self.pairs = arr.tolist()
        table = np.zeros(self.num_a * self.num_b, np.int64)
        table[flat] = np.arange(1, len(flat) + 1)
        self._table = table.reshape(self.num_a, self.num_b)

    def vocabulary_size(self) -> int:
        """Number of cross ids, the OOV id 0 included."""
        return len(self.pairs) + 1

    def call(self, a, b):
        a = ops.clip(ops.cast(a, "int64"), 0, self.num_a - 1)
        rows = ops.take(ops.convert_to_tensor(self._table), a, axis=0)
        if len(b.shape) == 2:  # multi-hot: every column's cross id
            return rows
        b = ops.clip(ops.cast(b, "int64"), 0, self.num_b - 1)
        return ops.squeeze(
            ops.take_along_axis(rows, ops.expand_dims(b, -1), axis=1), axis=-1
        )

    def compute_output_spec(self, a, b):
        shape = (a.shape[0], self.num_b) if len(b.shape) == 2 else a.shape
        return keras.KerasTensor(shape, dtype="int64")

    def get_config(self):
        config = super().get_config()
        config.update(num_a=self.num_a, num_b=self.num_b, pairs=self.pairs)
        return config


@keras.saving.register_keras_serializable(package="tfrec")
class LinearTerm(keras.layers.Layer):
    """One feature's part of the wide linear model: ``sum_j x_j w[id_j]``.

    Call with int ids ``(batch,)`` (one-hot: returns ``w[id]``), with
    ``[ids, values]`` of shape ``(batch, k)`` (returns ``sum_j values_j
    w[ids_j]``: multi-valued crosses), or with a float matrix ``(batch,
    num_ids)`` (multi-hot: returns ``x @ w``). Output shape ``(batch,)``. The
    weights start at zero, as in a linear model trained by FTRL.

    Args:
        num_ids: number of weights (the feature's vocabulary, OOV included).
    """

    def __init__(self, num_ids: int, **kwargs):
        super().__init__(**kwargs)
        if int(num_ids) < 1:
            raise ValueError(f"`num_ids` must be positive. Received: {num_ids!r}")
        self.num_ids = int(num_ids)

    def build(self, *args, **kwargs):
        self.w = self.add_weight(name="weights", shape=(self.num_ids,), initializer="zeros")

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            ids, values = inputs
            w = ops.take(self.w, ops.cast(ids, "int64"), axis=0)
            return ops.sum(w * ops.cast(values, w.dtype), axis=-1)
        if "float" in keras.backend.standardize_dtype(inputs.dtype):
            return ops.squeeze(ops.matmul(inputs, ops.expand_dims(self.w, -1)), -1)
        return ops.take(self.w, ops.cast(inputs, "int64"), axis=0)

    def compute_output_spec(self, inputs):
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return keras.KerasTensor((first.shape[0],), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(num_ids=self.num_ids)
        return config


@keras.saving.register_keras_serializable(package="tfrec")
class Bucketize(keras.layers.Layer):
    """Index of the bucket a number falls in: ``sum_k [x >= boundaries_k]``.

    ``keras.layers.Discretization`` emits TF ``Bucketize``, which tf2onnx does not
    convert; this layer is the same function from comparisons.
    """

    def __init__(self, boundaries: Sequence[float], **kwargs):
        super().__init__(**kwargs)
        b = [float(x) for x in boundaries]
        if not b or any(y <= x for x, y in zip(b, b[1:], strict=False)):
            raise ValueError(
                f"`boundaries` must be non-empty and increasing. Received: {boundaries!r}"
            )
        self.boundaries = b

    def num_buckets(self) -> int:
        return len(self.boundaries) + 1

    def call(self, x):
        x = ops.expand_dims(ops.cast(x, "float32"), -1)
        bounds = ops.convert_to_tensor(np.asarray(self.boundaries, np.float32))
        return ops.sum(ops.cast(ops.greater_equal(x, bounds), "int64"), axis=-1)

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, dtype="int64")

    def get_config(self):
        config = super().get_config()
        config.update(boundaries=self.boundaries)
        return config


@keras.saving.register_keras_serializable(package="tfrec")
class RangeScale(keras.layers.Layer):
    """``(clip(x, low, high) - low) / (high - low)`` as a ``(batch, 1)`` float."""

    def __init__(self, low: float, high: float, **kwargs):
        super().__init__(**kwargs)
        if not float(high) > float(low):
            raise ValueError(f"`high` must exceed `low`. Received: {low}, {high}")
        self.low, self.high = float(low), float(high)

    def call(self, x):
        x = ops.clip(ops.cast(x, "float32"), self.low, self.high)
        return ops.expand_dims((x - self.low) / (self.high - self.low), -1)

    def compute_output_spec(self, x):
        return keras.KerasTensor((x.shape[0], 1), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(low=self.low, high=self.high)
        return config


@keras.saving.register_keras_serializable(package="tfrec")
class AddConstant(keras.layers.Layer):
    """Adds a fixed (non-trained) number, e.g. the mean training rating."""

    def __init__(self, value: float, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, x):
        return x + ops.cast(self.value, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(value=self.value)
        return config


# ---------------------------------------------------------------------- builder


def parse_cross(name: str) -> tuple[str, str]:
    """``"gender_x_genres"`` -> ``("gender", "genres")``, validated."""
    parts = name.split(CROSS_SEPARATOR)
    known_a = STRING_FEATURES + ID_FEATURES
    if (
        len(parts) != 2
        or parts[0] not in known_a
        or parts[1] not in known_a + (MULTI_HOT_FEATURE,)
        or parts[0] == parts[1]
    ):
        raise ValueError(
            f"Cross {name!r} must be '<a>{CROSS_SEPARATOR}<b>' with a in {known_a} "
            f"and b in {known_a + (MULTI_HOT_FEATURE,)}, a != b."
        )
    return parts[0], parts[1]


def _check_vocabularies(vocabularies):
    if not isinstance(vocabularies, Mapping):
        raise ValueError(
            "`vocabularies` must map each categorical feature to its values. "
            f"Received: {type(vocabularies).__name__}"
        )
    missing = [f for f in CATEGORICAL_FEATURES if f not in vocabularies]
    if missing:
        raise ValueError(
            f"`vocabularies` lacks {missing}; it needs every one of "
            f"{CATEGORICAL_FEATURES} (see tfrec.data.tabular.fit_vocabularies)."
        )
    out = {}
    for f in CATEGORICAL_FEATURES:
        values = list(vocabularies[f])
        if not values:
            raise ValueError(f"`vocabularies[{f!r}]` is empty.")
        if f in ID_FEATURES:
            out[f] = [int(v) for v in values]
        else:
            if not all(isinstance(v, str) for v in values):
                raise ValueError(f"`vocabularies[{f!r}]` must hold strings.")
            out[f] = values
    return out


def _cross_index_pairs(name, pairs, vocab, genre_names):
    a, b = parse_cross(name)
    index = {
        f: {v: i + 1 for i, v in enumerate(vals)} for f, vals in vocab.items()
    }  # lookup index of each value (0 is OOV)
    index[MULTI_HOT_FEATURE] = {g: j for j, g in enumerate(genre_names)}
    out = []
    for pair in pairs:
        va, vb = pair
        if va not in index[a] or vb not in index[b]:
            raise ValueError(
                f"Cross {name!r}: pair {pair!r} uses a value outside the "
                f"vocabularies of {a!r} / {b!r}."
            )
        out.append((index[a][va], index[b][vb]))
    num_b = len(genre_names) if b == MULTI_HOT_FEATURE else len(vocab[b]) + 1
    return a, b, len(vocab[a]) + 1, num_b, out


def _inputs(num_genres):
    inputs = {}
    for name, dtype in INPUT_DTYPES.items():
        shape = (num_genres,) if name == MULTI_HOT_FEATURE else ()
        inputs[name] = keras.Input(shape=shape, dtype=dtype, name=name)
    return inputs


# ---------------------------------------------- registry: tiny test configuration

_TINY_GENRES = ("Action", "Comedy", "Drama", "Horror")
_TINY_VOCAB = {
    "user_id": [1, 2, 3, 5, 8],
    "item_id": [10, 11, 13, 17],
    "gender": ["F", "M"],
    "age": ["18-24", "25-34", "35-44"],
    "occupation": ["artist", "engineer", "student", "technician"],
    "zip_prefix": ["0", "1", "5", "9"],
}
_TINY_CROSSES = {
    "gender_x_genres": [[g, h] for g in ("F", "M") for h in _TINY_GENRES],
    "occupation_x_genres": [
        ["engineer", "Action"], ["student", "Comedy"], ["technician", "Drama"],
        ["artist", "Drama"], ["student", "Horror"],
    ],
    "age_x_gender": [["18-24", "F"], ["25-34", "M"], ["35-44", "F"]],
}


def example_inputs(kwargs: dict, batch_size: int, rng: np.random.Generator) -> dict:
    """A batch of raw feature values for a model built with ``kwargs``: known
    values, plus a few unknown ones (OOV) in every categorical feature."""
    vocab = kwargs["vocabularies"]
    num_genres = len(kwargs["genre_names"])

    def pick(values, unknown):
        values = list(values) + [unknown]
        idx = rng.integers(0, len(values), batch_size)
        return [values[i] for i in idx]

    out = {
        "user_id": np.array(pick(vocab["user_id"], 999_999), np.int64),
        "item_id": np.array(pick(vocab["item_id"], 999_998), np.int64),
        "genres": (rng.random((batch_size, num_genres)) < 0.4).astype(np.float32),
        "year": rng.choice(np.array([0, 1925, 1955, 1977, 1994, 1998, 2003]), batch_size),
    }
    for f in STRING_FEATURES:
        out[f] = np.array(pick(vocab[f], "unknown-" + f), dtype=object)
    return out


_TEST_KWARGS = {
    "vocabularies": _TINY_VOCAB,
    "genre_names": _TINY_GENRES,
    "crosses": _TINY_CROSSES,
    "embedding_dim": 3,
    "hidden_units": (8, 4),
    "logit_offset": 0.25,
}



@register_model(
    task="ranking",
    example_inputs=example_inputs,
    test_kwargs=_TEST_KWARGS,
    parity=Tolerance(1e-5, 1e-5, "float32 embedding lookups, sums and MLP matmuls"),
    paper="Cheng et al. 2016 (Wide & Deep)",
)
def wide_deep(
    vocabularies: Mapping[str, Sequence],
    genre_names: Sequence[str],
    *,
    crosses: Mapping[str, Sequence[Sequence]] | None = None,
    mode: str = "joint",
    task: str = "ctr",
    embedding_dim: int = 32,
    hidden_units: Sequence[int] = (1024, 512, 256),
    activation: str = "relu",
    dropout: float = 0.0,
    l2: float = 0.0,
    year_boundaries: Sequence[float] = DEFAULT_YEAR_BOUNDARIES,
    year_range: tuple[float, float] = (1919.0, 2000.0),
    logit_offset: float = 0.0,
) -> keras.Model:
    """Wide & Deep over MovieLens user, movie and cross features.

    Reference: Cheng et al., "Wide & Deep Learning for Recommender Systems",
    DLRS 2016, Eq. 3 and Fig. 1.

    Args:
        vocabularies: known values of each of ``CATEGORICAL_FEATURES`` (ids for
            ``user_id``/``item_id``, strings for the rest), usually from the
            training rows (:func:`tfrec.data.tabular.fit_vocabularies`); anything
            else goes to the OOV bucket.
        genre_names: the columns of the ``genres`` multi-hot input, in order.
        crosses: ``{"<a>_x_<b>": [(value_a, value_b), ...]}``, the joint values
            each cross-product transformation knows (from training,
            :func:`tfrec.data.tabular.fit_crosses`); ``b`` may be ``genres``.
            Only the wide part uses crosses.
        mode: ``joint`` (wide + deep), ``wide`` (linear model with crosses) or
            ``deep`` (embeddings + tower only).
        task: ``ctr`` (output ``score``, a probability) or ``rating`` (output
            ``rating``, real-valued).
        embedding_dim: width of each categorical embedding of the deep part.
        hidden_units: ReLU tower widths (the paper's Fig. 1: 1024-512-256).
        activation: hidden activation (see ``tfrec.layers.ACTIVATIONS``).
        dropout: dropout after each hidden layer.
        l2: L2 penalty on the deep part's hidden kernels.
        year_boundaries: bucket boundaries of the release year for the wide part
            (the first, 1, separates "unknown year" (0) from real years).
        year_range: years mapped to 0 and 1 for the deep part (clipped).
        logit_offset: a constant added to the logit (the training mean rating for
            ``task="rating"``, the log-odds of the click rate for ``ctr``; see
            ``tfrec.recipes.wide_deep.base_logit``), so the trained parts learn
            the residual. A bias initialisation would not do: FTRL-Proximal
            re-centres its variables at 0 on its first step.

    Returns:
        A functional model with the inputs of the module docstring and output
        ``score`` (``task="ctr"``) or ``rating``.

    Example:
        >>> model = wide_deep(
        ...     fit_vocabularies(train.features), genre_names,
        ...     crosses=fit_crosses(train.features, default_crosses(), genre_names),
        ... )
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    if task not in TASK_OUTPUTS:
        raise ValueError(
            f"`task` must be one of {tuple(TASK_OUTPUTS)}. Received: task={task!r}"
        )
    if not isinstance(embedding_dim, (int, np.integer)) or embedding_dim < 1:
        raise ValueError(
            f"`embedding_dim` must be a positive int. Received: {embedding_dim!r}"
        )
    genre_names = [str(g) for g in genre_names]
    if not genre_names or len(set(genre_names)) != len(genre_names):
        raise ValueError(
            f"`genre_names` must be distinct and non-empty. Received: {genre_names!r}"
        )
    vocab = _check_vocabularies(vocabularies)
    units = check_hidden_units(hidden_units) if mode != "wide" else ()
    cross_specs = [
        (name, *_cross_index_pairs(name, pairs, vocab, genre_names))
        for name, pairs in sorted((crosses or {}).items())
    ]

    inputs = _inputs(len(genre_names))
    index = {}
    for f in ID_FEATURES:
        index[f] = IdLookup(vocab[f], name=f"{f}_lookup")(inputs[f])
    for f in STRING_FEATURES:
        index[f] = keras.layers.StringLookup(
            vocabulary=vocab[f], num_oov_indices=1, mask_token=None, name=f"{f}_lookup"
        )(inputs[f])
    sizes = {f: len(vocab[f]) + 1 for f in CATEGORICAL_FEATURES}
    year_bucketizer = Bucketize(year_boundaries, name="year_bucket")
    genres = inputs[MULTI_HOT_FEATURE]

    logits = []
    if mode in ("joint", "wide"):
        terms = [
            LinearTerm(sizes[f], name=f"wide_{f}")(index[f]) for f in CATEGORICAL_FEATURES
        ]
        terms.append(LinearTerm(len(genre_names), name="wide_genres")(genres))
        terms.append(
            LinearTerm(year_bucketizer.num_buckets(), name="wide_year_bucket")(
                year_bucketizer(inputs["year"])
            )
        )
        for name, a, b, num_a, num_b, pairs in cross_specs:
            cross = CrossLookup(num_a, num_b, pairs, name=f"cross_{name}")
            b_value = genres if b == MULTI_HOT_FEATURE else index[b]
            ids = cross(index[a], b_value)
            term = LinearTerm(cross.vocabulary_size(), name=f"wide_cross_{name}")
            terms.append(term([ids, genres]) if b == MULTI_HOT_FEATURE else term(ids))
        wide = keras.layers.Add(name="wide_sum")(terms) if len(terms) > 1 else terms[0]
        logits.append(Bias(name="wide_bias")(wide))
    if mode in ("joint", "deep"):
        parts = [
            keras.layers.Embedding(sizes[f], embedding_dim, name=f"deep_{f}_embedding")(
                index[f]
            )
            for f in CATEGORICAL_FEATURES
        ]
        parts.append(
            keras.layers.Dense(
                embedding_dim,
                use_bias=False,
                kernel_initializer="uniform",
                name="deep_genres_embedding",
            )(genres)
        )
        parts.append(RangeScale(*year_range, name="deep_year_scaled")(inputs["year"]))
        x = keras.layers.Concatenate(name="deep_concat")(parts)
        x = mlp_tower(
            x, units, activation=activation, dropout=dropout, l2=l2, name="deep"
        )
        deep = keras.layers.Dense(1, use_bias=mode == "deep", name="deep_logit")(x)
        logits.append(keras.layers.Reshape((), name="deep_logit_flat")(deep))
    logit = keras.layers.Add(name="logit")(logits) if len(logits) > 1 else logits[0]
    if logit_offset:
        logit = AddConstant(logit_offset, name="logit_offset")(logit)
    out_name = TASK_OUTPUTS[task]
    activation_out = "sigmoid" if task == "ctr" else "linear"
    out = keras.layers.Activation(activation_out, name=out_name)(logit)
    return keras.Model(inputs, {out_name: out}, name=f"wide_deep_{mode}")


# ------------------------------------------------------------ variable groups


def is_wide_variable(variable) -> bool:
    """Whether a variable belongs to the wide part (layers named ``wide_*``)."""
    return variable.path.split("/")[0].startswith("wide_")
