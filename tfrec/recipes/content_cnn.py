"""Training recipe of the content CNN (van den Oord et al. 2013): WMF, then CNN.

Reference: van den Oord, Dieleman & Schrauwen, "Deep content-based music
recommendation", NIPS 2013; Hu, Koren & Volinsky, "Collaborative Filtering for
Implicit Feedback Datasets", ICDM 2008 (WMF).

Two named stages, each resumable:

1. ``wmf`` (non-Keras): weighted matrix factorisation by ALS (:func:`wmf_als`)
   on the training pairs gives user factors ``x_u`` and warm item factors
   ``y_i`` (``embedding_dim`` of them); the runner saves them as arrays.
2. ``cnn``: :class:`FactorRegressionTrainer` fits a ``content_cnn`` to the warm
   items' ``y_i`` from their content (squared error; the objective lives on the
   trainer, never exported). A seeded ``cnn_valid_fraction`` of the warm items
   is held out: their factor MSE is the validation ``mse`` (early stopping
   watches it), beside the warm validation ranking.

Serving graphs of every run: ``content_cnn`` (content -> item factors) and
``content_cnn_ranker`` (``x_u . cnn(content)``: the CNN as its ``item_tower``,
the WMF user factors in its ``user_factors`` table). Cold items are scored from
their content alone. Test: warm and cold full ranking, once, at the end.

Example:
    >>> result = tfrec.train("content_cnn", "movielens-100k",
    ...                      preset="content_cnn_ml100k")
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfrec.data.pipelines import SamplerEpochCallback
from tfrec.models.content_cnn import movielens_token_content, set_user_factors
from tfrec.recipes import cold_items as cs
from tfrec.recipes.base import (
    Preset,
    Recipe,
    ServingGraph,
    StagePlan,
    register_recipe,
)
from tfrec.registry import create_model
from tfrec.training.optimizers import make_optimizer

__all__ = [
    "ContentCNNConfig",
    "ContentCNNRecipe",
    "FactorRegressionTrainer",
    "ItemEpochs",
    "regression_dataset",
    "train_content_cnn",
    "wmf_als",
]


# --------------------------------------------------------------------------- WMF


def wmf_als(
    users: np.ndarray,
    items: np.ndarray,
    num_users: int,
    num_items: int,
    *,
    factors: int = 50,
    alpha: float = 10.0,
    reg: float = 1.0,
    iterations: int = 15,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted matrix factorisation (Hu et al. 2008) by alternating least squares.

    Minimises ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2)``
    over all user-item cells, with ``p_ui = 1`` for an interaction (else 0)
    and confidence ``c_ui = 1 + alpha`` for interactions (else 1). Each ALS
    half-step solves, per user, ``(Y^T Y + alpha Y_u^T Y_u + reg I) x_u =
    (1 + alpha) sum_{i in I_u} y_i`` (and symmetrically per item).

    Args:
        users: user index of each interaction.
        items: item index of each interaction.
        num_users: number of user indices.
        num_items: number of item indices.
        factors: latent factors ``K``.
        alpha: confidence of an observed interaction minus 1.
        reg: L2 weight.
        iterations: ALS sweeps (users then items).
        seed: seed of the N(0, 0.01) initialisation.

    Returns:
        ``(user_factors [num_users, K], item_factors [num_items, K])`` float32.
    """
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    if users.shape != items.shape or users.ndim != 1 or users.size == 0:
        raise ValueError(
            "`users` and `items` must be non-empty 1-D arrays of equal length. "
            f"Received shapes {users.shape} and {items.shape}."
        )
    if users.min() < 0 or users.max() >= num_users:
        raise ValueError(f"user indices must be in [0, {num_users}).")
    if items.min() < 0 or items.max() >= num_items:
        raise ValueError(f"item indices must be in [0, {num_items}).")
    keys = np.unique(users * num_items + items)
    u, i = keys // num_items, keys % num_items
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.01, (num_users, factors))
    y = rng.normal(0.0, 0.01, (num_items, factors))

    def csr(rows, cols, n):
        order = np.argsort(rows, kind="stable")
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return indptr, cols[order]

    by_user = csr(u, i, num_users)
    by_item = csr(i, u, num_items)
    eye = reg * np.eye(factors)

    def solve(fixed, structure, n):
        indptr, idx = structure
        gram = fixed.T @ fixed + eye
        out = np.zeros((n, factors))
        for r in range(n):
            rows = fixed[idx[indptr[r] : indptr[r + 1]]]
            if rows.size == 0:
                continue
            a = gram + alpha * rows.T @ rows
            out[r] = np.linalg.solve(a, (1.0 + alpha) * rows.sum(axis=0))
        return out

    for _ in range(iterations):
        x = solve(y, by_user, num_users)
        y = solve(x, by_item, num_items)
    return x.astype(np.float32), y.astype(np.float32)




# --------------------------------------------------------------------------- CNN fit


class FactorRegressionTrainer(keras.Model):
    """Training wrapper of a ``content_cnn``: squared error to CF item factors.

    Inputs ``{"content": [batch, T, D]}``, targets ``[batch, K]``; the loss is
    ``mean((cnn(content) - y)^2)`` over items and factors (the paper's MSE
    objective). Only the wrapped serving model is exported.
    """

    def __init__(self, model: keras.Model, **kwargs):
        super().__init__(**kwargs)
        if "item_factors" not in getattr(model, "output", {}):
            raise ValueError(
                "FactorRegressionTrainer needs a model with output 'item_factors' "
                f"(a content_cnn). Received: {model.name!r}."
            )
        self.model = model

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)["item_factors"]

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        loss = ops.mean(ops.square(y_pred - ops.cast(y, y_pred.dtype)))
        for extra in self.losses:
            loss = loss + extra
        return loss


class ItemEpochs:
    """Row order of each epoch, a function of ``(seed, epoch)`` (resume-exact);
    `SamplerEpochCallback` tells it which epoch ``fit`` starts."""

    def __init__(self, rows: np.ndarray, *, seed: int = 0, shuffle: bool = True):
        self.rows = np.asarray(rows, np.int64)
        self.seed, self.shuffle, self.epoch = int(seed), shuffle, 0

    def __len__(self) -> int:
        return len(self.rows)

    def epoch_rows(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.rows
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.rows)


def regression_dataset(
    content: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    *,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
) -> tuple[tf.data.Dataset, ItemEpochs]:
    """``({"content"}, factors)`` batches of ``rows``, in a fresh order per epoch.

    Returns the dataset and its epoch source (pass ``SamplerEpochCallback``)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    source = ItemEpochs(rows, seed=seed, shuffle=shuffle)
    content_t = tf.constant(np.asarray(content, np.float32))
    targets_t = tf.constant(np.asarray(targets, np.float32))

    def next_epoch():
        epoch = source.epoch
        source.epoch += 1
        return source.epoch_rows(epoch)

    def to_batches(idx):
        idx = tf.ensure_shape(idx, (None,))
        return tf.data.Dataset.from_tensor_slices(idx).batch(batch_size)

    ds = (
        tf.data.Dataset.from_tensors(0)
        .map(lambda _: tf.numpy_function(next_epoch, [], tf.int64))
        .flat_map(to_batches)
        .map(lambda b: ({"content": tf.gather(content_t, b)}, tf.gather(targets_t, b)))
    )
    steps = -(-len(source) // batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(tf.data.AUTOTUNE), source


def _check_regression_inputs(model, content, item_factors):
    want = tuple(model.input["content"].shape[1:])
    if content.ndim != 3 or content.shape[1:] != want:
        raise ValueError(
            f"`content` must have shape [n, {want[0]}, {want[1]}]. Received shape "
            f"{content.shape}."
        )
    k = model.output["item_factors"].shape[-1]
    if item_factors.shape != (content.shape[0], k):
        raise ValueError(
            f"`item_factors` must have shape [{content.shape[0]}, {k}]. Received "
            f"shape {item_factors.shape}."
        )
    if not (np.isfinite(content).all() and np.isfinite(item_factors).all()):
        raise ValueError("`content` or `item_factors` contain NaN or infinite values.")


def train_content_cnn(
    model: keras.Model,
    content: np.ndarray,
    item_factors: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    optimizer: str = "adam",
    learning_rate: float = 0.001,
    validation_fraction: float = 0.0,
    patience: int | None = None,
    seed: int = 0,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Fits a ``content_cnn`` to CF item factors with the squared error.

    The Keras-native form of the recipe's ``cnn`` stage.

    Args:
        model: a ``content -> item_factors`` model (trained in place).
        content: ``[n, T, D]`` content of the warm items.
        item_factors: ``[n, K]`` their CF factors (targets).
        epochs: passes over the items.
        batch_size: items per step.
        optimizer: a `tfrec.training.make_optimizer` name.
        learning_rate: step size.
        validation_fraction: share of items held out for ``val_loss``.
        patience: with a validation share, stop after this many epochs without
            a lower ``val_loss`` and restore the best weights (None: no early
            stopping).
        seed: seed of the order of each epoch and of the hold-out.
        verbose: Keras ``fit`` verbosity.

    Returns:
        The Keras ``History`` (``loss``: mean squared error per factor).
    """
    content = np.asarray(content, np.float32)
    item_factors = np.asarray(item_factors, np.float32)
    _check_regression_inputs(model, content, item_factors)
    rng = np.random.default_rng(seed)
    order = rng.permutation(content.shape[0])
    n_val = int(round(validation_fraction * content.shape[0]))
    val, tr = order[:n_val], order[n_val:]
    if patience is not None and not n_val:
        raise ValueError(
            "`patience` needs a validation share; set validation_fraction > 0."
        )
    ds, source = regression_dataset(
        content, item_factors, tr, batch_size=batch_size, seed=seed
    )
    trainer = FactorRegressionTrainer(model)
    trainer.compile(optimizer=make_optimizer(optimizer, learning_rate))
    callbacks = [SamplerEpochCallback(source)]
    if patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                "val_loss", patience=patience, restore_best_weights=True
            )
        )
    validation = None
    if n_val:
        validation, _ = regression_dataset(
            content, item_factors, val, batch_size=batch_size, shuffle=False
        )
    return trainer.fit(
        ds,
        validation_data=validation,
        epochs=epochs,
        verbose=verbose,
        shuffle=False,
        callbacks=callbacks,
    )


# --------------------------------------------------------------------------- recipe


@dataclass
class ContentCNNConfig(cs.ColdStartSettings):
    """Content CNN settings (stage ``wmf`` then stage ``cnn``).

    ``epochs``, ``batch_size``, ``optimizer`` and ``learning_rate`` are the CNN
    stage's. The WMF factor size is the builder's ``embedding_dim``.

    Attributes:
        wmf_alpha: WMF confidence of an observed pair minus 1.
        wmf_reg: WMF L2 weight.
        wmf_iterations: ALS sweeps.
        cnn_valid_fraction: Share of warm items whose factors the CNN does not
            fit; their MSE is the validation ``mse`` (early stopping).
        max_tokens: Catalogue content: time steps of each movie's token matrix.
        min_df: Catalogue content: a title word must be in this many titles.
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.001
    wmf_alpha: float = 10.0
    wmf_reg: float = 1.0
    wmf_iterations: int = 15
    cnn_valid_fraction: float = 0.1
    max_tokens: int = 16
    min_df: int = 3

    def validate(self) -> None:
        super().validate()
        for name in ("wmf_alpha", "wmf_reg"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={value!r}")
        for name in ("wmf_iterations", "max_tokens", "min_df"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive int. Received: {name}={value!r}"
                )
        value = self.cnn_valid_fraction
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(
                f"`cnn_valid_fraction` must be in [0, 1). Received: {value!r}"
            )


_REPORT = (
    "reports/content.md (scripts/reproduce_content.py SETTINGS: WMF K=32, alpha 10, "
    "reg 1, 10 sweeps; CNN conv 64-64 width 3, max-pool 2, mean/max/L2 pooling, "
    "Dense 128, dropout 0.5, Adam 1e-3, batch 64, <= 60 epochs, early stopping "
    "patience 5 on 10% held-out warm items); those values were set without a "
    "validation split of users' pairs, not re-chosen"
)
_ARCH_KEYS = (
    "embedding_dim", "filters", "kernel_size", "pool_sizes", "pooling",
    "hidden_units", "activation", "dropout",
)


@register_recipe
class ContentCNNRecipe(Recipe):
    name = "content_cnn"
    models = ("content_cnn", "content_cnn_ranker")
    data_kind = "interactions"
    needs_content = True
    default_dataset = "movielens-100k"
    datasets = cs.CONTENT_DATASETS
    splits = cs.SPLITS
    query = "user"
    Config = ContentCNNConfig
    presets = (
        Preset(
            "content_cnn_ml100k",
            {"embedding_dim": 32, "wmf_alpha": 10.0, "wmf_reg": 1.0,
             "wmf_iterations": 10, "max_tokens": 16, "min_df": 3,
             "filters": (64, 64), "kernel_size": 3, "pool_sizes": (2,),
             "pooling": ("mean", "max", "l2"), "hidden_units": (128,),
             "dropout": 0.5, "epochs": 60, "batch_size": 64, "optimizer": "adam",
             "learning_rate": 0.001, "cnn_valid_fraction": 0.1,
             "early_stopping": 5},
            _REPORT,
            dataset="movielens-100k",
        ),
        Preset(
            "content_cnn_paper",
            {"embedding_dim": 50, "filters": (256, 256, 512), "kernel_size": 4,
             "pool_sizes": (4, 2), "pooling": ("mean", "max", "l2"),
             "hidden_units": (2048,)},
            "van den Oord et al. 2013, Sec. 5 (architecture for 599 x 128 "
            "mel-spectrograms; needs such content: --data FILE --content FILE); "
            "Adam instead of the paper's SGD with momentum",
        ),
    )
    test_config = {
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 0.01,
        "embedding_dim": 4,
        "filters": (8,),
        "kernel_size": 3,
        "pool_sizes": (),
        "hidden_units": (16,),
        "wmf_iterations": 3,
    }

    def size_kwargs(self):
        return ("num_users", "input_length", "input_dim", "name")

    # ---- data ----------------------------------------------------------------
    def load_data(self, source, config):
        def catalogue(items, item_ids):
            content, _ = movielens_token_content(
                items, item_ids, max_tokens=config.max_tokens, min_df=config.min_df
            )
            return content

        return cs.load_content_data(
            source, config, recipe_name="content CNN", ndim=2,
            catalogue_content=catalogue,
        )

    def synthetic_data(self, seed=0):
        return cs.synthetic_content_data(seed, spectrograms=True)

    def describe(self, data):
        return cs.describe_content(data)

    def vocab(self, data):
        return cs.content_vocab(data)

    # ---- training ------------------------------------------------------------
    def stage_names(self, model, config):
        return ("wmf", "cnn")

    def _arch(self, model, model_kwargs) -> dict:
        arch = {k: v for k, v in model_kwargs.items() if k in _ARCH_KEYS}
        if "embedding_dim" not in arch:
            arch["embedding_dim"] = self.builder_kwargs("content_cnn")[
                "embedding_dim"
            ].default
        return arch

    def build_stage(self, stage, model, data, config, model_kwargs, previous):
        arch = self._arch(model, model_kwargs)
        if stage == "wmf":
            def compute():
                x, y = wmf_als(
                    data.fit["user_id"],
                    data.fit["item_id"],
                    data.num_users,
                    data.num_warm_items,
                    factors=arch["embedding_dim"],
                    alpha=config.wmf_alpha,
                    reg=config.wmf_reg,
                    iterations=config.wmf_iterations,
                    seed=config.seed,
                )
                return {"user_factors": x, "item_factors": y}

            return StagePlan(compute=compute)
        if stage != "cnn":
            raise ValueError(f"Unknown stage {stage!r}; stages: wmf, cnn.")
        factors = previous["wmf"].arrays
        x, y = factors["user_factors"], factors["item_factors"]
        n_warm = data.num_warm_items
        content = data.content
        shape = {"input_length": int(content.shape[1]), "input_dim": int(content.shape[2])}
        cnn_kwargs = {**shape, **arch}
        cnn = create_model("content_cnn", **cnn_kwargs)
        rng = np.random.default_rng([int(config.seed), 104729])
        order = rng.permutation(n_warm)
        n_val = int(round(config.cnn_valid_fraction * n_warm))
        held, rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        ds, source = regression_dataset(
            content[:n_warm], y, rows, batch_size=config.batch_size, seed=config.seed
        )
        trainer = FactorRegressionTrainer(cnn)
        trainer.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate))
        trainer({"content": content[:1]})  # build (BackupAndRestore needs it)

        def predicted() -> np.ndarray:
            return _predict_factors(cnn, content[:n_warm])

        def scorer():
            y_hat = predicted()
            return lambda u, i: (x[u] * y_hat[i]).sum(1)

        warm = cs.warm_validation(data, scorer, ks=config.ks)
        validate = warm
        if n_val:
            def validate() -> dict:
                y_hat = predicted()
                out = {"mse": float(np.mean((y_hat[held] - y[held]) ** 2))}
                if warm is not None:
                    out.update(warm())
                return out

        ranker_kwargs = {"num_users": data.num_users, **cnn_kwargs}

        def serving() -> dict:
            ranker = create_model("content_cnn_ranker", **ranker_kwargs)
            ranker.get_layer("item_tower").set_weights(cnn.get_weights())
            set_user_factors(ranker, x)
            return {
                "content_cnn": ServingGraph("content_cnn", cnn_kwargs, cnn),
                "content_cnn_ranker": ServingGraph(
                    "content_cnn_ranker", ranker_kwargs, ranker
                ),
            }

        return StagePlan(
            trainer=trainer,
            dataset=ds,
            epochs=config.epochs,
            models={"content_cnn": cnn},
            callbacks=[SamplerEpochCallback(source)],
            validate=validate,
            monitor="mse" if n_val else f"ndcg@{config.ks[0]}",
            monitor_mode="min" if n_val else "max",
            serving=serving,
        )

    # ---- evaluation and use --------------------------------------------------
    def _ranker_parts(self, serving, content):
        """``(user factors, predicted item factors)`` of the serving ranker."""
        if "content_cnn_ranker" not in serving:
            raise ValueError(
                "Scoring needs the run's content_cnn_ranker serving graph; found "
                f"{sorted(serving)}."
            )
        ranker = serving["content_cnn_ranker"].model
        x = np.asarray(ranker.get_layer("user_factors").embeddings)
        y_hat = _predict_factors(ranker.get_layer("item_tower"), content)
        return x, y_hat

    def evaluate(self, model, serving, data, config, part="test"):
        x, y_hat = self._ranker_parts(serving, data.content)
        return cs.evaluate_content(
            data, lambda u, i: (x[u] * y_hat[i]).sum(1), part, ks=config.ks
        )

    def recommend(self, model, serving, vocab, query, *, k=10, exclude_seen=True):
        content = cs.item_content_of(vocab, "The content CNN")
        x, y_hat = self._ranker_parts(serving, content)
        return cs.recommend_items(
            lambda u: y_hat @ x[u], vocab, query, k=k, exclude_seen=exclude_seen
        )


def _predict_factors(cnn, content: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """``cnn(content)["item_factors"]`` in inference mode, batched."""
    parts = [
        np.asarray(cnn({"content": content[s : s + batch_size]}, training=False)[
            "item_factors"
        ])
        for s in range(0, len(content), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)
