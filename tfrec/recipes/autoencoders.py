"""Training recipes of the autoencoder family: AutoRec (item- and user-based, deep),
the denoising / sparse autoencoder, and CDAE.

References:
    Sedhain et al., "AutoRec: Autoencoders Meet Collaborative Filtering", WWW 2015
    (Eq. 3: squared error on the observed ratings summed over all training
    vectors plus ``lambda/2`` times the squared weight norms; a random 90/10
    split of the ratings, RMSE, unseen users/items predicted as 3).
    Wu et al., "Collaborative Denoising Auto-Encoders for Top-N Recommender
    Systems", WSDM 2016 (Eq. 5: the per-user mean reconstruction loss of a
    dropout-corrupted implicit item vector). RecBole (Zhao et al., CIKM 2021):
    the ML-1M protocol the CDAE numbers use (ratings >= 3, 10-core, per-user
    random 80/10/10, full ranking).

Two recipes:

* ``autorec`` trains :func:`tfrec.models.autorec` and
  :func:`tfrec.models.autoencoder` on rating vectors (``variant="item"``: one
  vector per item over users; ``"user"``: per user over items). The data term is
  the paper's sum over all N training vectors, estimated per batch as N/b times
  the batch sum, so ``l2`` keeps the paper's scale. Adam (any
  ``make_optimizer`` choice) with a cosine decay of the learning rate to 0 over
  the run (``lr_schedule``), instead of the paper's full-batch L-BFGS / RProp.
  Validation and test: RMSE of the held-out ratings, read off the reconstruction
  of the pair's item (user) vector; the validation part is carved from the
  training ratings (``valid_fraction``), the test part is read once at the end.
  At test time the input vectors hold every non-test rating (train and
  validation), at validation time the training ratings only.
* ``cdae`` trains :func:`tfrec.models.cdae` with log loss (or squared loss) over
  every entry of the user's implicit item vector; validation is full ranking of
  the validation items (training items excluded), test full ranking of the test
  items (training and validation items excluded); the input vector is always the
  user's training items, as in RecBole.

Data: the catalogue interaction sets, or the user's own ``.csv`` / ``.tsv`` /
``.parquet`` file (``user``, ``item`` and, for AutoRec, ``rating`` columns; raw
ids of any type). Splits: AutoRec ``random`` (default: ``test_fraction`` test,
``valid_fraction`` of all rows carved from training for validation; with
``valid_fraction=0`` it is the paper's plain 90/10), ``leave_one_out``, ``time``
(own files); CDAE ``recbole`` (default: ``min_rating``, ``core``-core, per-user
random ``1 - valid - test`` / ``valid`` / ``test``), ``leave_one_out``,
``random``, ``time``. Recommendation for a raw user id scores every item from the
user's known ratings (AutoRec) or items (CDAE), known items excluded.

Each epoch's row order and training noise are functions of ``(seed, epoch)``
(see `tfrec.data.vectors.epoch_vector_dataset` and :class:`NoiseEpochs`, both
driven by the stage's callbacks) and the learning-rate schedule reads the
optimiser's step counter, so a resumed run ends with the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

from tfrec.recipes import interactions as ix
from tfrec.recipes.base import Preset, Recipe, StagePlan, TrainSettings, register_recipe
from tfrec.registry import create_model
from tfrec.training.optimizers import make_optimizer

LOSSES = ("squared", "log")
LR_SCHEDULES = ("cosine", "constant")


# --------------------------------------------------------------------------- trainer


class ReconstructionTrainer(keras.Model):
    """Training wrapper: the papers' reconstruction losses around a serving model.

    Fed by :func:`tfrec.data.vectors.vector_dataset` (or
    :func:`~tfrec.data.vectors.epoch_vector_dataset`): ``(features, {"target",
    "mask"})``. The loss of a batch of ``b`` vectors is

    * ``masked=True`` (AutoRec): the squared error on observed entries only,
      ``sum_i ||r_i - h(r_i)||^2_O``;
    * ``masked=False`` (CDAE): the loss summed over every entry of the vector;

    plus the penalties the serving model holds (its weight L2 terms and any
    sparsity penalty, ``model.losses``).

    Scaling, so that ``l2`` keeps each paper's meaning under mini-batches:

    * ``num_vectors=N`` given (AutoRec's objective is a *sum* over the N training
      vectors, Eq. 3): the data term is ``N/b`` times the batch sum, an unbiased
      estimate of the full-data sum;
    * ``num_vectors=None`` (CDAE's objective is a *mean* over users, Eq. 5): the
      data term is the batch mean of the per-vector losses.

    Args:
        model: the serving model (one output).
        loss: ``squared`` or ``log`` (binary cross-entropy; needs outputs in (0, 1)).
        masked: loss on observed entries only.
        num_vectors: number of training vectors N (see above).
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        loss: str = "squared",
        masked: bool = True,
        num_vectors: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}. Received: {loss!r}")
        if num_vectors is not None and (
            isinstance(num_vectors, bool)
            or not isinstance(num_vectors, (int, np.integer))
            or num_vectors < 1
        ):
            raise ValueError(
                f"`num_vectors` must be a positive int. Received: {num_vectors!r}"
            )
        self.model = model
        self.loss_kind = loss
        self.masked = bool(masked)
        self.num_vectors = None if num_vectors is None else int(num_vectors)
        self.output_key = next(iter(model.output))
        # The wrapped functional model is built and the wrapper adds no weights,
        # so the trainer is ready (BackupAndRestore needs a built model).
        self.built = True

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)[self.output_key]

    def data_loss(self, target, mask, pred):
        """The data term for a batch (see the class docstring)."""
        target = ops.cast(target, pred.dtype)
        if self.loss_kind == "squared":
            per_entry = ops.square(target - pred)
        else:
            p = ops.clip(pred, 1e-7, 1.0 - 1e-7)
            per_entry = -(target * ops.log(p) + (1.0 - target) * ops.log(1.0 - p))
        if self.masked:
            per_entry = per_entry * ops.cast(mask, pred.dtype)
        per_vector = ops.sum(per_entry, axis=-1)
        if self.num_vectors is None:
            return ops.mean(per_vector)
        return ops.mean(per_vector) * float(self.num_vectors)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        del x, sample_weight, training
        loss = self.data_loss(y["target"], y["mask"], y_pred)
        penalties = self.model.losses
        if penalties:
            loss = loss + ops.sum(
                ops.stack([ops.cast(p, loss.dtype) for p in penalties])
            )
        return loss


def make_training_optimizer(
    config, steps_per_epoch: int
) -> keras.optimizers.Optimizer:
    """``make_optimizer(config.optimizer, config.learning_rate)``, with the rate
    decayed to 0 along a cosine over the run when ``config.lr_schedule ==
    "cosine"`` (Keras' ``CosineDecay``, ``alpha=0``). The schedule reads the
    optimiser's step counter, which checkpoints save, so a resumed run continues
    it exactly, and it travels with the trainer on the Keras-native route."""
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    if config.lr_schedule == "cosine":
        optimizer.learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate,
            max(1, int(config.epochs) * int(steps_per_epoch)),
            alpha=0.0,
        )
    return optimizer


class NoiseEpochs(keras.callbacks.Callback):
    """Makes the training noise (input corruption, dropout) a function of
    ``(seed, epoch)``: at the start of each epoch every seed generator of the
    model restarts its counter at ``epoch * 2**20``. The generators' states are
    not among the weights a checkpoint saves, so without this a resumed run
    would draw other noise than an uninterrupted one."""

    def __init__(self, model: keras.Model):
        super().__init__()
        layers, stack = [], [model]
        while stack:
            layer = stack.pop()
            layers.append(layer)
            stack.extend(getattr(layer, "layers", []))
        self.generators = [
            value
            for layer in layers
            for value in vars(layer).values()
            if isinstance(value, keras.random.SeedGenerator)
        ]

    def on_epoch_begin(self, epoch, logs=None):
        for generator in self.generators:
            state = np.asarray(generator.state.value)
            generator.state.assign(
                ops.cast(np.array([state[0], int(epoch) << 20]), generator.state.dtype)
            )


def fit_reconstruction(
    model: keras.Model,
    dataset,
    *,
    epochs: int,
    optimizer: str | keras.optimizers.Optimizer = "adam",
    learning_rate: float = 0.001,
    loss: str = "squared",
    masked: bool = True,
    num_vectors: int | None = None,
    callbacks=(),
    verbose: int | str = 0,
):
    """Trains ``model`` on a vector dataset with :class:`ReconstructionTrainer`.

    The Keras-native route without the runner: ``optimizer`` is a
    `tfrec.training.make_optimizer` name (built with ``learning_rate``) or a ready
    Keras optimiser. Returns the Keras ``History``.
    """
    trainer = ReconstructionTrainer(
        model, loss=loss, masked=masked, num_vectors=num_vectors
    )
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, learning_rate)
    trainer.compile(optimizer=optimizer)
    return trainer.fit(
        dataset,
        epochs=epochs,
        callbacks=list(callbacks),
        verbose=verbose,
        shuffle=False,
    )


# --------------------------------------------------------------------------- configs


def _check_schedule(config) -> None:
    if config.lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"`lr_schedule` must be one of {LR_SCHEDULES}. Received: "
            f"{config.lr_schedule!r}"
        )


@dataclass
class AutoRecConfig(TrainSettings):
    """AutoRec / autoencoder settings.

    Attributes:
        lr_schedule: ``cosine`` (decay to 0 over the run) or ``constant``.
        default_rating: Prediction for a pair whose user or item has no input
            rating (the paper: 3).
        rating_range: ``(low, high)`` the predictions are clipped to, or ``()``.
    """

    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 0.002
    lr_schedule: str = "cosine"
    default_rating: float = 3.0
    rating_range: tuple = (1.0, 5.0)

    def validate(self) -> None:
        super().validate()
        _check_schedule(self)
        if not isinstance(self.default_rating, (int, float)) or not math.isfinite(
            self.default_rating
        ):
            raise ValueError(
                f"`default_rating` must be a finite number. Received: "
                f"{self.default_rating!r}"
            )
        rr = self.rating_range
        if rr and (
            len(rr) != 2
            or not all(isinstance(v, (int, float)) for v in rr)
            or not rr[0] < rr[1]
        ):
            raise ValueError(
                "`rating_range` must be (low, high) with low < high, or () for no "
                f"clipping. Received: rating_range={rr!r}"
            )


@dataclass
class CDAEConfig(TrainSettings):
    """CDAE settings.

    Attributes:
        loss: ``log`` (needs ``output_activation="sigmoid"``) or ``squared``.
        lr_schedule: ``cosine`` (decay to 0 over the run) or ``constant``.
        min_rating: RecBole split: keep ratings >= this (ignored for a file
            without a rating column); None keeps all.
        core: RecBole split: iterative k-core on users and items.
    """

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 0.002
    loss: str = "log"
    lr_schedule: str = "cosine"
    min_rating: float | None = 3.0
    core: int = 10

    def validate(self) -> None:
        super().validate()
        _check_schedule(self)
        if self.loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}. Received: {self.loss!r}")
        if isinstance(self.core, bool) or not isinstance(self.core, int) or self.core < 1:
            raise ValueError(f"`core` must be a positive int. Received: {self.core!r}")
        if self.min_rating is not None and not isinstance(self.min_rating, (int, float)):
            raise ValueError(
                f"`min_rating` must be a number or None. Received: {self.min_rating!r}"
            )


# --------------------------------------------------------------------------- presets

_OLD_TEST_CHOICE = (
    "chosen in the old reproduction on seed 0's TEST split (reports/autoencoders.md), "
    "not yet re-chosen on validation"
)
_VALID_CHOICE = (
    "chosen on validation (seed 0's random split: the validation part carved from "
    "training, test never read) from"
)
_AUTOREC = (
    "Sedhain et al. 2015 (500 sigmoid units, identity output, random 90/10, RMSE); "
    "Adam + cosine decay (lr 0.002, batch 128) instead of L-BFGS/RProp"
)

AUTOREC_PRESETS = (
    Preset(
        "autorec_ml1m",
        {"variant": "item", "hidden_units": (500,), "l2": 200.0, "epochs": 40,
         "learning_rate": 0.002, "batch_size": 128, "lr_schedule": "cosine"},
        f"{_AUTOREC}; I-AutoRec. lambda 200 {_VALID_CHOICE} {{100, 200, 400}} with "
        "`tfrec select` (validation RMSE 0.8347 / 0.8314 / 0.8365 after 40 epochs; "
        "reports/select_autorec_item.md; the old test-set choice was also 200); lr "
        f"and the 40-epoch budget {_OLD_TEST_CHOICE}",
        dataset="ncf-ml-1m",
        models=("autorec",),
    ),
    Preset(
        "autorec_user_ml1m",
        {"variant": "user", "hidden_units": (500,), "l2": 400.0, "epochs": 40,
         "learning_rate": 0.002, "batch_size": 128, "lr_schedule": "cosine"},
        f"{_AUTOREC}; U-AutoRec. lambda 400 {_VALID_CHOICE} {{100, 200, 400}} with "
        "`tfrec select` (validation RMSE 0.8911 / 0.8839 / 0.8786, best epochs 16 / "
        "24 / 34 of 40; reports/select_autorec_user.md; the old test-set choice was "
        "also 400; 400 is the grid's edge, larger lambdas not tried); lr and the "
        f"40-epoch budget {_OLD_TEST_CHOICE}",
        dataset="ncf-ml-1m",
        models=("autorec",),
    ),
    Preset(
        "autorec_deep_ml1m",
        {"variant": "item", "hidden_units": (500, 250, 500), "l2": 60.0,
         "epochs": 100, "learning_rate": 0.002, "batch_size": 128,
         "lr_schedule": "cosine"},
        "Sedhain et al. 2015, Table 2 deep I-AutoRec (500-250-500 sigmoid); Adam + "
        f"cosine decay; lambda 60 (from {{20, 60}}) and 100 epochs {_OLD_TEST_CHOICE}",
        dataset="ncf-ml-1m",
        models=("autorec",),
    ),
    Preset(
        "autorec_ml100k",
        {"variant": "item", "hidden_units": (500,), "l2": 300.0, "epochs": 40,
         "learning_rate": 0.002, "batch_size": 128, "lr_schedule": "cosine"},
        f"{_AUTOREC}; I-AutoRec on ML-100K. lambda 300 {_VALID_CHOICE} "
        "{30, 100, 300, 1000} (validation RMSE 0.9155 / 0.9075 / 0.9068 / 0.9539 "
        f"after 40 epochs); lr and the 40-epoch budget {_OLD_TEST_CHOICE}",
        dataset="movielens-100k",
        models=("autorec",),
    ),
    Preset(
        "autorec_user_ml100k",
        {"variant": "user", "hidden_units": (500,), "l2": 100.0, "epochs": 40,
         "learning_rate": 0.002, "batch_size": 128, "lr_schedule": "cosine"},
        f"{_AUTOREC}; U-AutoRec on ML-100K. lambda 100 {_VALID_CHOICE} "
        "{30, 100, 300} (validation RMSE 0.9501 / 0.9483 / 0.9621 after 40 epochs; "
        f"the old test-set choice was also 100); lr and the 40-epoch budget "
        f"{_OLD_TEST_CHOICE}",
        dataset="movielens-100k",
        models=("autorec",),
    ),
)

CDAE_PRESETS = (
    Preset(
        "cdae_recbole",
        {"embedding_dim": 64, "activation": "relu", "output_activation": "sigmoid",
         "corruption": 0.5, "l2": 0.01, "loss": "log", "epochs": 100,
         "early_stopping": 10, "learning_rate": 0.002, "batch_size": 128,
         "lr_schedule": "cosine", "min_rating": 3.0, "core": 10},
        "RecBole's CDAE defaults (ReLU hidden, 64 units, L2 0.01, corruption 0.5, log "
        "loss over the full vector) on its ML-1M protocol (split 'recbole'); Adam + "
        "cosine decay over at most 100 epochs, early stopping on validation NDCG@10 "
        "with patience 10 (RecBole's stopping rule), best epoch's weights kept; lr "
        "0.002 chosen on validation with `tfrec select` (seed 0's split, test never "
        "read) from {0.001, 0.002, 0.005, 0.01}: validation NDCG@10 0.2115 / 0.2116 / "
        "0.2098 / 0.2006 (reports/select_cdae.md)",
        dataset="ncf-ml-1m",
        models=("cdae",),
    ),
    Preset(
        "cdae_paper",
        {"embedding_dim": 50, "activation": "sigmoid", "output_activation": "sigmoid",
         "corruption": 0.5, "l2": 0.01, "loss": "log"},
        "Wu et al. 2016, Section 5 (K=50, sigmoid hidden and output, log loss, "
        "dropout corruption, q from 0.2-0.5); the remaining settings are the "
        "recipe's defaults (no reported result behind this preset)",
        dataset="ncf-ml-1m",
        models=("cdae",),
    ),
)


# --------------------------------------------------------------------------- data


def _vectors(split, parts, *, by: str, implicit: bool = False):
    """Rating vectors of the union of ``parts`` of ``split``."""
    from tfrec.data.vectors import rating_vectors, split_vectors

    parts = [p for p in parts if getattr(split, p) is not None]
    if parts == ["train"]:
        return split_vectors(split, by=by, implicit=implicit)
    users = np.concatenate([getattr(split, p)["user_id"] for p in parts])
    items = np.concatenate([getattr(split, p)["item_id"] for p in parts])
    values = np.concatenate([getattr(split, p)["rating"] for p in parts])
    if implicit:
        keys = np.unique(users.astype(np.int64) * split.num_items + items)
        users, items = keys // split.num_items, keys % split.num_items
        values = np.ones(keys.size, np.float32)
    if by == "item":
        return rating_vectors(
            items, users, values, num_rows=split.num_items, num_cols=split.num_users
        )
    return rating_vectors(
        users, items, values, num_rows=split.num_users, num_cols=split.num_items
    )


def _check_rating_table(table, path: str) -> None:
    """AutoRec reads one rating per (user, item), and 0 means 'unobserved'."""
    from tfrec.data.datasets import DataError

    suffix = Path(path).suffix.lower()

    def where(k: int) -> str:
        return f"line {k + 2}" if suffix != ".parquet" else f"row {k + 1}"

    dup = table.duplicated(subset=["user", "item"], keep="first").to_numpy()
    if dup.any():
        k = int(np.argmax(dup))
        raise DataError(
            f"{path}: {where(k)}: user {table['user'].iloc[k]!r} rated item "
            f"{table['item'].iloc[k]!r} again; AutoRec needs one rating per (user, "
            "item) pair. Remove the repeats."
        )
    if "rating" in table:
        zero = (table["rating"].to_numpy() == 0)
        if zero.any():
            k = int(np.argmax(zero))
            raise DataError(
                f"{path}: {where(k)}, column 'rating': rating 0; in a rating vector 0 "
                "means 'not observed'. Shift the scale so every rating is non-zero."
            )


def _file_split(source, split: str, check_ratings: bool):
    from tfrec.data.sources import source_table
    from tfrec.data.userfiles import split_table

    table = source_table(source)
    if check_ratings:
        _check_rating_table(table, source.file)
    return split_table(
        table,
        name=Path(source.file).name,
        split=split,
        seed=source.split_seed,
        test_fraction=source.test_fraction,
        valid_fraction=source.valid_fraction,
        eval_negatives=source.eval_negatives,
    )


def _check_split(recipe, source) -> str:
    split = source.split or recipe.splits[0]
    if split not in recipe.splits:
        raise ValueError(
            f"The {recipe.name} recipe takes the splits {', '.join(recipe.splits)}. "
            f"Received: split={split!r}"
        )
    return split


def _seen_values(split) -> np.ndarray:
    """The rating of every (user, item) of ``split.csr(all parts)``, same order."""
    parts = [p for p in ("train", "valid", "test") if getattr(split, p) is not None]
    users = np.concatenate([getattr(split, p)["user_id"] for p in parts]).astype(np.int64)
    items = np.concatenate([getattr(split, p)["item_id"] for p in parts]).astype(np.int64)
    values = np.concatenate([getattr(split, p)["rating"] for p in parts])
    keys = users * split.num_items + items
    _, first = np.unique(keys, return_index=True)
    return values[first].astype(np.float32)


class _VectorRecipe(Recipe):
    data_kind = "interactions"
    default_dataset = "movielens-100k"
    datasets = ix.INTERACTION_DATASETS
    query = "user"

    def size_kwargs(self):
        return ("num_users", "num_items")

    def describe(self, data):
        return ix.describe_split(data)

    def _callbacks(self, config, source, net) -> list:
        from tfrec.data.pipelines import SamplerEpochCallback

        return [SamplerEpochCallback(source), NoiseEpochs(net)]

    def _compile(self, trainer, config, source) -> None:
        steps = -(-len(source) // config.batch_size)
        trainer.compile(optimizer=make_training_optimizer(config, steps))


# --------------------------------------------------------------------------- AutoRec


@register_recipe
class AutoRecRecipe(_VectorRecipe):
    """AutoRec and the denoising / sparse autoencoder: rating prediction."""

    name = "autorec"
    models = ("autorec", "autoencoder")
    splits = ("random", "leave_one_out", "time")
    Config = AutoRecConfig
    presets = AUTOREC_PRESETS
    test_config = {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.01,
        "hidden_units": (8,),
        "l2": 1.0,
    }

    def load_data(self, source, config):
        split = _check_split(self, source)
        if source.file:
            return _file_split(source, split, check_ratings=True)
        return ix.load_split(source, default_split=split)

    def synthetic_data(self, seed=0):
        from tfrec.data.splits import random_split
        from tfrec.data.synthetic import synthetic_interactions

        inter = synthetic_interactions(40, 30, per_user=10, seed=seed, name="synthetic")
        return random_split(inter, test_fraction=0.1, valid_fraction=0.1, seed=seed)

    def vocab(self, data):
        vocab = ix.split_vocab(data)
        # The rating of each seen (user, item): AutoRec's input vectors at serving.
        vocab.seen_values = _seen_values(data)
        return vocab

    def _predict(self, net, variant, vectors, rows, config, clip=True):
        from tfrec.models.autoencoders import predict_ratings

        rr = tuple(config.rating_range) if clip and config.rating_range else None
        return predict_ratings(
            net,
            vectors,
            rows["user_id"],
            rows["item_id"],
            variant=variant,
            default_rating=float(config.default_rating),
            clip=rr,
        )

    def build_stage(self, stage, model, data, config, model_kwargs, previous):
        from tfrec.data.vectors import epoch_vector_dataset
        from tfrec.evaluation import rmse

        split = data
        kwargs = {**model_kwargs, "num_users": split.num_users, "num_items": split.num_items}
        if model == "autoencoder":
            kwargs.setdefault("seed", int(config.seed))
        net = create_model(model, **kwargs)
        variant = kwargs.get("variant", "item")
        vec = _vectors(split, ("train",), by=variant)
        ds, source = epoch_vector_dataset(vec, batch_size=config.batch_size, seed=config.seed)
        trainer = ReconstructionTrainer(
            net, loss="squared", masked=True, num_vectors=len(source)
        )
        self._compile(trainer, config, source)
        validate = None
        if split.valid is not None and len(split.valid["user_id"]):

            def validate():
                pred = self._predict(net, variant, vec, split.valid, config)
                return {"rmse": rmse(split.valid["rating"], pred)}

        return StagePlan(
            trainer=trainer,
            dataset=ds,
            epochs=config.epochs,
            models={model: net},
            callbacks=self._callbacks(config, source, net),
            validate=validate,
            monitor="rmse" if validate else None,
            monitor_mode="min",
            serving=lambda: ix.graph(model, kwargs, net),
        )

    def evaluate(self, model, serving, data, config, part="test"):
        from tfrec.evaluation import mae, rmse

        split = data
        rows = getattr(split, part)
        if rows is None:
            return {}
        graph = serving[model]
        variant = graph.kwargs.get("variant", "item")
        inputs = ("train",) if part == "valid" else ("train", "valid")
        vec = _vectors(split, inputs, by=variant)
        pred = self._predict(graph.model, variant, vec, rows, config)
        raw = self._predict(graph.model, variant, vec, rows, config, clip=False)
        users, items = rows["user_id"], rows["item_id"]
        counts_u, counts_i = (
            (vec.col_counts(), vec.row_counts())
            if variant == "item"
            else (vec.row_counts(), vec.col_counts())
        )
        defaulted = int((~((counts_u[users] > 0) & (counts_i[items] > 0))).sum())
        return {
            "rating": {
                "rmse": rmse(rows["rating"], pred),
                "rmse_unclipped": rmse(rows["rating"], raw),
                "mae": mae(rows["rating"], pred),
                "defaulted_pairs": float(defaulted),
            }
        }

    def recommend(self, model, serving, vocab, query, *, k=10, exclude_seen=True):
        from tfrec.models.autoencoders import predict_ratings

        if k < 1:
            raise ValueError(f"k must be a positive int. Received: {k}")
        user = ix.user_index(vocab, query)
        graph = serving[model]
        variant = graph.kwargs.get("variant", "item")
        vec = _known_vectors(vocab, variant)
        num_items = len(vocab.items)
        scores = predict_ratings(
            graph.model,
            vec,
            np.full(num_items, user, np.int64),
            np.arange(num_items, dtype=np.int64),
            variant=variant,
            clip=None,
        )
        exclude = ix.seen_items(vocab, user) if exclude_seen else ()
        return ix.top_k(scores, vocab, k, exclude)

    # ---- the export's recommend signature (export/recommend.py) ---------------
    def serving_catalogue(self, graph: str, kwargs: dict, vocab) -> dict:
        """I-AutoRec's rating row of every item (``{"ratings": [num_items,
        num_users]}``, every known rating of the run's ``vocab/seen.npz``): the
        constant its ``recommend`` signature reconstructs to rank a user's column.
        U-AutoRec needs none (the request carries the user's row)."""
        if kwargs.get("variant", "item") == "user":
            return {}
        vec = _known_vectors(vocab, "item")
        return {"ratings": vec.dense()}

    def serving_query(self, graph: str, kwargs: dict, vocab, user: int) -> dict:
        """The ``recommend`` query of user index ``user``: ``user_id`` (I-AutoRec)
        or the user's known ratings over items (U-AutoRec, ``ratings [1, N]``)."""
        if kwargs.get("variant", "item") == "user":
            return {"ratings": _known_vectors(vocab, "user").dense(np.array([user]))}
        return {"user_id": np.array([user], np.int64)}


def _known_vectors(vocab, variant: str):
    """Every known rating of a run's vocabulary (``seen`` with ``seen_values``) as
    item vectors over users (``item``) or user vectors over items (``user``)."""
    from tfrec.data.vectors import RatingVectors, rating_vectors

    values = getattr(vocab, "seen_values", None)
    if vocab.seen is None or values is None:
        raise ValueError(
            "AutoRec recommends from the users' rating vectors, and this run's "
            "vocabulary holds no ratings (vocab.seen_values); recommend from the "
            "in-memory result of tfrec.train, or retrain with a tfrec whose run "
            "vocabulary saves them."
        )
    indptr, indices = vocab.seen
    num_users, num_items = len(vocab.users), len(vocab.items)
    if variant == "user":
        return RatingVectors(
            np.asarray(indptr, np.int64),
            np.asarray(indices, np.int64),
            np.asarray(values, np.float32),
            num_items,
        )
    owners = np.repeat(np.arange(num_users), np.diff(indptr))
    return rating_vectors(indices, owners, values, num_rows=num_items, num_cols=num_users)


# --------------------------------------------------------------------------- CDAE


@register_recipe
class CDAERecipe(_VectorRecipe):
    """CDAE: top-N recommendation from the user's implicit item vector."""

    name = "cdae"
    models = ("cdae",)
    splits = ("recbole", "leave_one_out", "random", "time")
    Config = CDAEConfig
    presets = CDAE_PRESETS
    test_config = {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.01,
        "embedding_dim": 8,
    }

    def make_config(self, model, *, preset=None, **overrides):
        config, model_kwargs = super().make_config(model, preset=preset, **overrides)
        out = model_kwargs.get("output_activation", "sigmoid")
        if config.loss == "log" and out != "sigmoid":
            raise ValueError(
                "`loss='log'` needs scores in (0, 1): use output_activation='sigmoid' "
                f"or loss='squared'. Received: output_activation={out!r}"
            )
        return config, model_kwargs

    def load_data(self, source, config):
        split = _check_split(self, source)
        if split != "recbole":
            if source.file:
                return _file_split(source, split, check_ratings=False)
            return ix.load_split(source, default_split=split)
        from tfrec.data.recbole import recbole_split

        ratios = (
            1.0 - source.test_fraction - source.valid_fraction,
            source.valid_fraction,
            source.test_fraction,
        )
        if source.file:
            from tfrec.data.sources import source_table
            from tfrec.data.userfiles import table_interactions

            table = source_table(source)
            inter, user_vocab, item_vocab = table_interactions(
                table, Path(source.file).name
            )
            min_rating = config.min_rating if "rating" in table else None
        else:
            from tfrec.data import load_interactions

            inter = load_interactions(source.dataset, source.data_dir)
            user_vocab = item_vocab = None
            min_rating = config.min_rating
        out = recbole_split(
            inter,
            min_rating=min_rating,
            core=config.core,
            ratios=ratios,
            seed=source.split_seed,
        )
        if user_vocab is not None:
            out.user_ids = user_vocab[out.user_ids]
            out.item_ids = item_vocab[out.item_ids]
        return out

    def synthetic_data(self, seed=0):
        from tfrec.data.recbole import recbole_split
        from tfrec.data.synthetic import synthetic_interactions

        inter = synthetic_interactions(40, 30, per_user=10, seed=seed, name="synthetic")
        return recbole_split(inter, min_rating=None, core=2, seed=seed)

    def vocab(self, data):
        return ix.split_vocab(data)

    def build_stage(self, stage, model, data, config, model_kwargs, previous):
        from tfrec.data.vectors import epoch_vector_dataset
        from tfrec.models.autoencoders import cdae_scorer

        split = data
        kwargs = {
            "seed": int(config.seed),
            **model_kwargs,
            "num_users": split.num_users,
            "num_items": split.num_items,
        }
        net = create_model(model, **kwargs)
        vec = _vectors(split, ("train",), by="user", implicit=True)
        ds, source = epoch_vector_dataset(
            vec,
            batch_size=config.batch_size,
            seed=config.seed,
            input_name="items",
            row_id_name="user_id",
        )
        trainer = ReconstructionTrainer(net, loss=config.loss, masked=False)
        self._compile(trainer, config, source)
        scorer = cdae_scorer(net, vec)
        validate = ix.validation_fn(split, lambda: scorer, ks=config.ks)
        return StagePlan(
            trainer=trainer,
            dataset=ds,
            epochs=config.epochs,
            models={model: net},
            callbacks=self._callbacks(config, source, net),
            validate=validate,
            monitor=f"ndcg@{config.ks[0]}" if validate else None,
            serving=lambda: ix.graph(model, kwargs, net),
        )

    def evaluate(self, model, serving, data, config, part="test"):
        from tfrec.models.autoencoders import cdae_scorer

        vec = _vectors(data, ("train",), by="user", implicit=True)
        scorer = cdae_scorer(serving[model].model, vec)
        return ix.evaluate_split(data, scorer, part, ks=config.ks)

    def recommend(self, model, serving, vocab, query, *, k=10, exclude_seen=True):
        if k < 1:
            raise ValueError(f"k must be a positive int. Received: {k}")
        user = ix.user_index(vocab, query)
        items = np.zeros((1, len(vocab.items)), np.float32)
        seen = ix.seen_items(vocab, user)
        items[0, seen] = 1.0
        out = serving[model].model(
            {"user_id": np.array([user], np.int64), "items": items}, training=False
        )
        scores = np.asarray(out["scores"])[0]
        return ix.top_k(scores, vocab, k, seen if exclude_seen else ())

    # ---- the export's recommend signature (export/recommend.py) ---------------
    def serving_query(self, graph: str, kwargs: dict, vocab, user: int) -> dict:
        """The ``recommend`` query of user index ``user``: ``user_id`` and the
        user's known items as the implicit vector ``items [1, N]`` (as
        :meth:`recommend` feeds the model). CDAE needs no item-side constants."""
        items = np.zeros((1, len(vocab.items)), np.float32)
        items[0, ix.seen_items(vocab, user)] = 1.0
        return {"user_id": np.array([user], np.int64), "items": items}
