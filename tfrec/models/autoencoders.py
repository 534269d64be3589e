"""Autoencoders for collaborative filtering: AutoRec, CDAE, and a plain autoencoder
with denoising and sparsity options.

References:
    Suvash Sedhain, Aditya Krishna Menon, Scott Sanner, Lexing Xie. "AutoRec:
    Autoencoders Meet Collaborative Filtering". WWW 2015 (companion).
    Yao Wu, Christopher DuBois, Alice X. Zheng, Martin Ester. "Collaborative
    Denoising Auto-Encoders for Top-N Recommender Systems". WSDM 2016.
    Pascal Vincent et al. "Extracting and Composing Robust Features with Denoising
    Autoencoders". ICML 2008 (masking noise).
    Andrew Ng. "Sparse autoencoder", CS294A lecture notes, 2011 (KL sparsity).

Serving signatures (named dict inputs and outputs, batch axis dynamic):

* :func:`autorec` and :func:`autoencoder`: ``{"ratings": float32 [b, n]}`` ->
  ``{"reconstruction": float32 [b, n]}``. For the item-based variant
  (``variant="item"``, I-AutoRec) a row is one item's ratings by every user, so
  ``n = num_users``; for ``variant="user"`` (U-AutoRec) a row is one user's ratings
  of every item, ``n = num_items``. ``0`` marks an unobserved rating. The predicted
  rating of (u, i) is ``reconstruction[u]`` of item i's vector (I-AutoRec) or
  ``reconstruction[i]`` of user u's vector (U-AutoRec); see :func:`predict_ratings`.
* :func:`cdae`: ``{"user_id": int64 [b], "items": float32 [b, num_items]}`` (the
  user's known items, multi-hot) -> ``{"scores": float32 [b, num_items]}``, the
  preference of the user for every item (sigmoid output: a probability). A
  ``user_id`` outside ``[0, num_users)`` gets a zero user node (see
  :class:`tfrec.layers.IdEmbedding`), i.e. the plain denoising-autoencoder score of
  its item vector, identically in TF and ONNX.

A wrong vector length fails when the model is called (Keras checks the input's
last axis against ``n``); NaN inputs are rejected by :func:`check_rating_inputs`
in the host-side helpers (the serving graph itself does not test for NaN).

Training lives in the family's recipe (`tfrec.recipes.autoencoders`): its
``ReconstructionTrainer`` adds the papers' losses (squared error on observed
entries only for AutoRec, log loss or squared loss over every entry for CDAE) to
the L2 terms the builders attach to their weights. Input corruption (:class:`InputCorruption`) is a layer
that acts only with ``training=True``; every export traces ``training=False``, so
the serving graphs hold no random op.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from tfrec.layers import IdEmbedding
from tfrec.registry import Tolerance, register_model

VARIANTS = ("item", "user")
CORRUPTIONS = ("dropout", "mask", "gaussian")
SPARSITY_KINDS = ("kl", "l1")

# ---------------------------------------------------------------------------
# Layers


@keras.saving.register_keras_serializable(package="tfrec")
class InputCorruption(keras.layers.Layer):
    """Training-time input noise of denoising autoencoders; identity at inference.

    Kinds (``rate`` = q):

    * ``dropout``: each entry is zeroed with probability q and the survivors are
      scaled by ``1 / (1 - q)``, CDAE's unbiased corruption (Wu et al. 2016, Eq. 2);
    * ``mask``: each entry is zeroed with probability q, no rescaling (the masking
      noise of Vincent et al. 2008);
    * ``gaussian``: additive N(0, q^2) noise on the *observed* (non-zero) entries.

    Args:
        rate: the corruption level q (a probability for dropout/mask, a standard
            deviation for gaussian).
        kind: one of ``dropout``, ``mask``, ``gaussian``.
        seed: seed of the noise.
    """

    def __init__(self, rate: float, kind: str = "dropout", seed=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in CORRUPTIONS:
            raise ValueError(
                f"`corruption_type` must be one of {CORRUPTIONS}. Received: {kind!r}"
            )
        rate = float(rate)
        if not (0.0 <= rate < 1.0 if kind != "gaussian" else rate >= 0.0):
            raise ValueError(
                "`corruption` must be in [0, 1) for dropout/mask noise and >= 0 for "
                f"gaussian noise. Received: corruption={rate!r} ({kind})"
            )
        self.rate = rate
        self.kind = kind
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        if self.kind == "gaussian":
            noise = keras.random.normal(
                ops.shape(x), stddev=self.rate, seed=self.seed_generator, dtype=x.dtype
            )
            return x + noise * ops.cast(ops.not_equal(x, 0), x.dtype)
        keep = ops.cast(
            keras.random.uniform(ops.shape(x), seed=self.seed_generator, dtype=x.dtype)
            >= self.rate,
            x.dtype,
        )
        if self.kind == "dropout":
            keep = keep / (1.0 - self.rate)
        return x * keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, kind=self.kind, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="tfrec")
class SparsityPenalty(keras.layers.Layer):
    """Identity layer that adds a sparsity penalty on its input activations.

    * ``kl``: ``weight * sum_j KL(rho || rho_hat_j)`` with ``rho_hat_j`` the batch
      mean of unit j's activation (needs activations in (0, 1), i.e. sigmoid units;
      the sparse autoencoder of Ng's lecture notes);
    * ``l1``: ``weight * mean_batch(sum_j |a_j|)`` (an L1 activity regulariser).

    Args:
        weight: penalty weight (beta).
        target: the target mean activation rho (``kl`` only).
        kind: ``kl`` or ``l1``.
    """

    def __init__(self, weight: float, target: float = 0.05, kind: str = "kl", **kw):
        super().__init__(**kw)
        if kind not in SPARSITY_KINDS:
            raise ValueError(
                f"`sparsity_type` must be one of {SPARSITY_KINDS}. Received: {kind!r}"
            )
        if not float(weight) >= 0:
            raise ValueError(f"`sparsity` must be >= 0. Received: sparsity={weight!r}")
        if not 0.0 < float(target) < 1.0:
            raise ValueError(
                f"`sparsity_target` must be in (0, 1). Received: {target!r}"
            )
        self.weight = float(weight)
        self.target = float(target)
        self.kind = kind

    def penalty(self, a):
        """The penalty value for activations ``a`` ``[batch, units]``."""
        if self.kind == "l1":
            return self.weight * ops.mean(ops.sum(ops.abs(a), axis=-1))
        eps = 1e-7
        rho_hat = ops.clip(ops.mean(a, axis=0), eps, 1.0 - eps)
        rho = self.target
        kl = rho * ops.log(rho / rho_hat) + (1.0 - rho) * ops.log(
            (1.0 - rho) / (1.0 - rho_hat)
        )
        return self.weight * ops.sum(kl)

    def call(self, a, training=False):
        if self.weight and training:
            self.add_loss(self.penalty(a))
        return a

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight, target=self.target, kind=self.kind)
        return config


# ---------------------------------------------------------------------------
# Builders


def _check_size(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _check_units(hidden_units) -> tuple[int, ...]:
    units = tuple(hidden_units) if isinstance(hidden_units, Sequence) else None
    if not units or not all(
        isinstance(u, (int, np.integer)) and not isinstance(u, bool) and u > 0
        for u in units
    ):
        raise ValueError(
            "`hidden_units` must be a non-empty tuple of positive ints. Received: "
            f"hidden_units={hidden_units!r}"
        )
    return tuple(int(u) for u in units)


def _check_l2(l2):
    if not float(l2) >= 0:
        raise ValueError(f"`l2` must be >= 0. Received: l2={l2!r}")
    # The paper's penalty is lambda/2 * ||W||^2; Keras' L2(c) adds c * sum(W^2).
    return keras.regularizers.L2(float(l2) / 2.0) if l2 else None


def vector_length(num_users: int, num_items: int, variant: str) -> int:
    """Length of an AutoRec input vector: users per item, or items per user."""
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}. Received: {variant!r}")
    return int(num_users if variant == "item" else num_items)


def _autoencoder_graph(
    n: int,
    *,
    hidden_units,
    activation,
    output_activation,
    l2,
    dropout,
    corruption,
    corruption_type,
    sparsity,
    sparsity_target,
    sparsity_type,
    seed,
    name,
):
    units = _check_units(hidden_units)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    if sparsity and sparsity_type == "kl" and activation != "sigmoid":
        raise ValueError(
            "KL sparsity needs activations in (0, 1): use activation='sigmoid' or "
            f"sparsity_type='l1'. Received: activation={activation!r}"
        )
    reg = _check_l2(l2)
    inputs = {"ratings": keras.Input(shape=(n,), dtype="float32", name="ratings")}
    x = inputs["ratings"]
    if corruption:
        x = InputCorruption(corruption, corruption_type, seed=seed, name="corruption")(
            x
        )
    code_layer = len(units) // 2  # the middle (bottleneck) layer of a stack
    for k, width in enumerate(units, start=1):
        x = keras.layers.Dense(
            width,
            activation=activation,
            kernel_regularizer=reg,
            name=f"encoder_{k}" if k <= code_layer + 1 else f"decoder_{k}",
        )(x)
        if sparsity and k == code_layer + 1:
            x = SparsityPenalty(
                sparsity, sparsity_target, sparsity_type, name="sparsity"
            )(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed, name=f"dropout_{k}")(x)
    out = keras.layers.Dense(
        n, activation=output_activation, kernel_regularizer=reg, name="reconstruction"
    )(x)
    return keras.Model(inputs, {"reconstruction": out}, name=name)


def _autorec_inputs(kwargs: dict, batch_size: int, rng: np.random.Generator) -> dict:
    n = vector_length(
        kwargs["num_users"], kwargs["num_items"], kwargs.get("variant", "item")
    )
    ratings = rng.integers(1, 6, size=(batch_size, n)).astype(np.float32)
    ratings *= rng.random((batch_size, n)) < 0.3
    return {"ratings": ratings}


_PARITY = Tolerance(1e-5, 1e-5, "float32 dense matmuls over the rating vector")


@register_model(
    task="rating",
    example_inputs=_autorec_inputs,
    test_kwargs={"num_users": 13, "num_items": 17, "hidden_units": (6,)},
    parity=_PARITY,
    paper="Sedhain et al. 2015 (AutoRec)",
)
def autorec(
    num_users: int,
    num_items: int,
    *,
    variant: str = "item",
    hidden_units: Sequence[int] = (500,),
    activation: str = "sigmoid",
    output_activation: str = "linear",
    l2: float = 200.0,
    dropout: float = 0.0,
) -> keras.Model:
    """AutoRec: reconstructs a partially observed rating vector.

    ``h(r) = f(W g(V r + mu) + b)`` with sigmoid ``g`` and identity ``f``
    (Sedhain et al. 2015, Eq. 2); trained on observed entries only with
    ``lambda/2 (||W||^2 + ||V||^2)`` (Eq. 3), see
    ``tfrec.recipes.autoencoders.ReconstructionTrainer``.
    Several ``hidden_units`` give the deep variant of the paper's Table 2
    (``(500, 250, 500)``).

    Args:
        num_users: number of user indices.
        num_items: number of item indices.
        variant: ``item`` (I-AutoRec: input is an item's vector over users) or
            ``user`` (U-AutoRec: a user's vector over items).
        hidden_units: widths of the hidden layers (the paper: 500).
        activation: hidden activation ``g`` (the paper: sigmoid).
        output_activation: output activation ``f`` (the paper: identity).
        l2: lambda of the weight penalty ``lambda/2 * ||W||^2`` on every kernel
            (biases are not penalised, as in the paper), relative to the data
            loss summed over all training vectors (the recipe's
            ``ReconstructionTrainer(num_vectors=N)``). The default is the value
            reproducing I-AutoRec on ML-1M (the paper tuned lambda per data set;
            U-AutoRec on ML-1M used 400, ML-100K 100).
        dropout: dropout after each hidden layer (not in the paper; 0).

    Returns:
        A functional model ``{ratings: [b, n]} -> {reconstruction: [b, n]}``, where
        ``n`` is ``num_users`` (item variant) or ``num_items`` (user variant).

    Example:
        >>> model = autorec(num_users=6040, num_items=3706, variant="item")
    """
    _check_size("num_users", num_users)
    _check_size("num_items", num_items)
    n = vector_length(num_users, num_items, variant)
    return _autoencoder_graph(
        n,
        hidden_units=hidden_units,
        activation=activation,
        output_activation=output_activation,
        l2=l2,
        dropout=dropout,
        corruption=0.0,
        corruption_type="dropout",
        sparsity=0.0,
        sparsity_target=0.05,
        sparsity_type="kl",
        seed=None,
        name=f"autorec_{variant}",
    )


@register_model(
    task="rating",
    example_inputs=_autorec_inputs,
    test_kwargs={
        "num_users": 13,
        "num_items": 17,
        "hidden_units": (8, 4, 8),
        "corruption": 0.3,
        "sparsity": 0.1,
    },
    parity=_PARITY,
    paper="Vincent et al. 2008; Ng 2011 (denoising / sparse autoencoder)",
)
def autoencoder(
    num_users: int,
    num_items: int,
    *,
    variant: str = "item",
    hidden_units: Sequence[int] = (500,),
    activation: str = "sigmoid",
    output_activation: str = "linear",
    l2: float = 0.0,
    dropout: float = 0.0,
    corruption: float = 0.0,
    corruption_type: str = "mask",
    sparsity: float = 0.0,
    sparsity_target: float = 0.05,
    sparsity_type: str = "kl",
    seed: int | None = None,
) -> keras.Model:
    """A (deep) autoencoder over rating vectors, optionally denoising and sparse.

    The same graph as :func:`autorec` plus the lecture's two regularising options:
    ``corruption`` (a denoising autoencoder: the input is corrupted during training
    only, the target stays clean) and ``sparsity`` (a sparse autoencoder: a penalty
    on the code layer's activations, the middle layer of ``hidden_units``).

    Args:
        num_users: number of user indices.
        num_items: number of item indices.
        variant: ``item`` (vectors over users) or ``user`` (vectors over items).
        hidden_units: hidden layer widths, e.g. ``(500, 250, 500)``.
        activation: hidden activation.
        output_activation: output activation.
        l2: lambda of ``lambda/2 * ||W||^2`` on every kernel.
        dropout: dropout after each hidden layer.
        corruption: input noise level (0 disables it).
        corruption_type: ``mask`` (zero entries, Vincent et al.), ``dropout``
            (zero and rescale, CDAE) or ``gaussian`` (additive noise on observed
            entries).
        sparsity: weight of the sparsity penalty (0 disables it).
        sparsity_target: target mean activation rho of the KL penalty.
        sparsity_type: ``kl`` (needs sigmoid units) or ``l1``.
        seed: seed of the corruption and dropout noise.

    Returns:
        A functional model ``{ratings: [b, n]} -> {reconstruction: [b, n]}``.
    """
    _check_size("num_users", num_users)
    _check_size("num_items", num_items)
    n = vector_length(num_users, num_items, variant)
    if sparsity_type not in SPARSITY_KINDS:
        raise ValueError(
            f"`sparsity_type` must be one of {SPARSITY_KINDS}. Received: "
            f"{sparsity_type!r}"
        )
    return _autoencoder_graph(
        n,
        hidden_units=hidden_units,
        activation=activation,
        output_activation=output_activation,
        l2=l2,
        dropout=dropout,
        corruption=corruption,
        corruption_type=corruption_type,
        sparsity=sparsity,
        sparsity_target=sparsity_target,
        sparsity_type=sparsity_type,
        seed=seed,
        name="autoencoder",
    )


def _cdae_inputs(kwargs: dict, batch_size: int, rng: np.random.Generator) -> dict:
    items = (rng.random((batch_size, kwargs["num_items"])) < 0.3).astype(np.float32)
    return {
        "user_id": rng.integers(0, kwargs["num_users"], batch_size, dtype=np.int64),
        "items": items,
    }


@register_model(
    task="ranking",
    example_inputs=_cdae_inputs,
    test_kwargs={"num_users": 13, "num_items": 17, "embedding_dim": 6},
    parity=Tolerance(1e-5, 1e-5, "float32 embedding lookup and dense matmuls"),
    paper="Wu et al. 2016 (CDAE)",
)
def cdae(
    num_users: int,
    num_items: int,
    *,
    embedding_dim: int = 50,
    corruption: float = 0.5,
    activation: str = "sigmoid",
    output_activation: str = "sigmoid",
    l2: float = 0.01,
    seed: int | None = None,
) -> keras.Model:
    """Collaborative Denoising Auto-Encoder (Wu et al. 2016).

    ``z_u = h(W^T y~_u + V_u + b)``, ``y^_u = f(W'^T z_u + b')`` (Eqs. 3-4): a
    one-hidden-layer denoising autoencoder over the user's implicit item vector plus
    a per-user input node ``V_u`` (an embedding added to the hidden layer). The
    input is corrupted by dropout (zeroed with probability ``corruption``,
    survivors scaled by ``1/(1-q)``) during training only.

    Args:
        num_users: number of user indices (rows of ``V``).
        num_items: number of items (input and output width).
        embedding_dim: K, the hidden layer's width and the user node's width.
        corruption: dropout corruption level q (the paper: 0.2-0.5).
        activation: hidden activation ``h`` (``sigmoid``, ``identity``/``linear``,
            ``relu``, ``tanh``).
        output_activation: ``sigmoid`` (with log loss) or ``linear`` (with squared
            loss), the paper's ``f``.
        l2: lambda of ``lambda/2 * ||.||^2`` on W, W', V and both biases (Eq. 5).
        seed: seed of the corruption noise.

    Returns:
        A functional model ``{user_id: [b], items: [b, num_items]} ->
        {scores: [b, num_items]}``.

    Example:
        >>> model = cdae(num_users=6040, num_items=3706, embedding_dim=50)
    """
    _check_size("num_users", num_users)
    _check_size("num_items", num_items)
    _check_size("embedding_dim", embedding_dim)
    if activation == "identity":
        activation = "linear"
    if output_activation == "identity":
        output_activation = "linear"
    reg = _check_l2(l2)
    inputs = {
        "user_id": keras.Input(shape=(), dtype="int64", name="user_id"),
        "items": keras.Input(shape=(num_items,), dtype="float32", name="items"),
    }
    x = inputs["items"]
    if corruption:
        x = InputCorruption(corruption, "dropout", seed=seed, name="corruption")(x)
    x = keras.layers.Dense(
        embedding_dim,
        kernel_regularizer=reg,
        bias_regularizer=reg,
        name="item_encoder",
    )(x)
    user_node = IdEmbedding(
        num_users,
        embedding_dim,
        embeddings_initializer="glorot_uniform",
        embeddings_regularizer=reg,
        name="user_node",
    )(inputs["user_id"])
    z = keras.layers.Add(name="hidden_preactivation")([x, user_node])
    z = keras.layers.Activation(activation, name="hidden")(z)
    out = keras.layers.Dense(
        num_items,
        activation=output_activation,
        kernel_regularizer=reg,
        bias_regularizer=reg,
        name="scores",
    )(z)
    return keras.Model(inputs, {"scores": out}, name="cdae")


# ---------------------------------------------------------------------------
# Inference helpers (host side)


def check_rating_inputs(ratings, n: int, name: str = "ratings") -> np.ndarray:
    """Validates a batch of rating vectors: float ``[b, n]``, finite."""
    arr = np.asarray(ratings, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != n:
        raise ValueError(
            f"`{name}` must have shape [batch, {n}]. Received shape "
            f"{np.shape(ratings)}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"`{name}` holds {int((~np.isfinite(arr)).sum())} NaN or infinite "
            "value(s); mark unobserved entries with 0."
        )
    return arr


def predict_ratings(
    model: keras.Model,
    vectors,
    users,
    items,
    *,
    variant: str = "item",
    default_rating: float = 3.0,
    clip: tuple[float, float] | None = (1.0, 5.0),
    batch_size: int = 512,
) -> np.ndarray:
    """AutoRec rating predictions for (user, item) pairs.

    Each pair's prediction is read off the reconstruction of its item's training
    vector (``variant="item"``) or its user's training vector (``"user"``). As in
    the paper, a pair whose user or item has no training rating gets
    ``default_rating`` (3). Predictions are clipped to ``clip`` (the rating scale;
    None disables).

    Args:
        model: an :func:`autorec` / :func:`autoencoder` serving model.
        vectors: the *training* :class:`tfrec.data.vectors.RatingVectors` in the
            model's orientation.
        users: user index of each pair.
        items: item index of each pair.
        variant: ``item`` or ``user``, as the model was built.
        default_rating: prediction for unseen users/items.
        clip: (low, high) bounds, or None.
        batch_size: vectors per forward pass.

    Returns:
        float32 predictions, one per pair.
    """
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    rows, cols = (items, users) if variant == "item" else (users, items)
    n = model.input["ratings"].shape[-1]
    if n != vectors.num_cols:
        raise ValueError(
            f"The model reads vectors of length {n}, the vectors have length "
            f"{vectors.num_cols}; was it built with variant={variant!r}?"
        )
    if rows.size and (rows.max() >= vectors.num_rows or rows.min() < 0):
        raise ValueError(
            f"Pair index {int(rows.max())} is outside the {vectors.num_rows} training "
            "vectors."
        )
    if cols.size and (cols.max() >= n or cols.min() < 0):
        raise ValueError(
            f"Pair index {int(cols.max())} is outside the vector length {n}."
        )
    pred = np.full(rows.size, default_rating, dtype=np.float32)
    known = (vectors.row_counts()[rows] > 0) & (vectors.col_counts()[cols] > 0)
    need = np.unique(rows[known])

    def forward(x):
        return model({"ratings": x}, training=False)["reconstruction"]

    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    for s in range(0, need.size, batch_size):
        chunk = need[s : s + batch_size]
        recon = np.asarray(forward(vectors.dense(chunk)))
        lo = np.searchsorted(sorted_rows, chunk[0], side="left")
        hi = np.searchsorted(sorted_rows, chunk[-1], side="right")
        idx = order[lo:hi]
        idx = idx[known[idx]]
        pos = np.searchsorted(chunk, rows[idx])
        pred[idx] = recon[pos, cols[idx]]
    if clip is not None:
        pred = np.clip(pred, clip[0], clip[1])
    return pred


def cdae_scorer(model: keras.Model, vectors, *, batch_size: int = 1024):
    """A ``score_fn(users, items)`` for :mod:`tfrec.evaluation` protocols.

    Each distinct user's scores over all items are computed once from the user's
    (training) item vector, then the requested pairs are gathered.

    Args:
        model: a :func:`cdae` serving model.
        vectors: user-by-item :class:`tfrec.data.vectors.RatingVectors` holding
            each user's known items (values are used as given, normally 1).
    """

    def forward(u, x):
        return model({"user_id": u, "items": x}, training=False)["scores"]

    def score_fn(users, items):
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        uniq, inv = np.unique(users, return_inverse=True)
        out = np.empty(users.size, np.float32)
        for s in range(0, uniq.size, batch_size):
            chunk = uniq[s : s + batch_size]
            scores = np.asarray(forward(chunk, vectors.dense(chunk)))
            sel = (inv >= s) & (inv < s + chunk.size)
            out[sel] = scores[inv[sel] - s, items[sel]]
        return out

    return score_fn
