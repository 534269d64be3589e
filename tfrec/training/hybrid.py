"""Training wrappers for the CF + content hybrids of :mod:`tfrec.models.hybrid`.

Everything trains with pointwise log loss on the training positives of a
:class:`~tfrec.data.coldstart.ColdStartSplit` plus ``num_negatives`` fresh
uniform negatives per positive and epoch, drawn among the **warm** items only
(:func:`tfrec.data.pipelines.implicit_dataset` with
``num_items=split.num_warm_items``), so cold items never enter training. Each
example gets its item's content row (:func:`with_item_content`).

The hybrids differ in *how* they are trained:

* pure CF (:func:`train_cf`, :func:`tfrec.models.ncf.mf`) and pure CBF
  (:func:`train_cbf`, :func:`tfrec.models.hybrid.cbf_profile`): plain ``fit``;
* weighted / switching (:func:`build_weighted`, :func:`build_switching`): the
  two trained baselines copied in by layer name (:func:`copy_weights`); a
  learned weight is then fitted with both components frozen;
* initializing (:func:`train_initialized`): content path first, then
  :func:`initialize_item_factors`, then MF;
* regularizing (:func:`train_regularized`) and joint (:func:`train_joint`):
  one ``fit`` of :class:`HybridTrainer`, whose loss is the log loss plus an
  auxiliary content term (:func:`content_penalty` /
  the reconstruction part of :func:`joint_loss`);
* mapping (:func:`train_mapping`): MF (or a trained ``mf`` copied in), then the
  content map fitted by squared error to the item vectors.

The hybrid recipe (:mod:`tfrec.recipes.hybrid`, ``tfrec train hybrid_*``) runs
these as named, resumable stages from the pieces here (:func:`pointwise_dataset`,
:func:`regularized_trainer`, :func:`joint_trainer`, :func:`map_regression`,
:func:`content_path_model`, :func:`initialize_item_factors`, :func:`copy_weights`);
the ``train_*`` / ``build_*`` functions are the same steps in one call, for use
outside the runner. Optimisers are `tfrec.training.make_optimizer` names. The
losses (:func:`content_penalty`, :func:`joint_loss`) live here, not in the
models module, because only training uses them.

Note: :func:`with_item_content` builds a tf.data stage outside ``tfrec.data``
(the package that otherwise owns pipelines); it is a single ``map``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfrec.data.pipelines import SamplerEpochCallback, implicit_dataset
from tfrec.evaluation.scoring import keras_scorer
from tfrec.models.hybrid import (
    Blend,
    check_item_content,
    hybrid_initialized,
    hybrid_joint,
    hybrid_mapping,
    hybrid_regularized,
    hybrid_switching,
    hybrid_weighted,
    set_item_counts,
)
from tfrec.models.ncf import mf
from tfrec.training.optimizers import make_optimizer

__all__ = [
    "HybridTrainer",
    "RowEpochs",
    "joint_trainer",
    "load_mf_into_factor_model",
    "map_regression",
    "pointwise_dataset",
    "regularized_trainer",
    "build_switching",
    "build_weighted",
    "content_path_model",
    "content_penalty",
    "content_scorer",
    "copy_weights",
    "fit_content_map",
    "fit_pointwise",
    "initialize_item_factors",
    "item_counts",
    "joint_loss",
    "mf_item_vectors",
    "train_cbf",
    "train_cf",
    "train_initialized",
    "train_joint",
    "train_mapping",
    "train_regularized",
    "with_item_content",
]


# ------------------------------------------------------------------ data


def _content_dim(model) -> int | None:
    """Width of ``item_content``; None for a model without content (``mf``)."""
    if "item_content" not in model.input:
        return None
    return int(model.input["item_content"].shape[-1])


def with_item_content(ds: tf.data.Dataset, content, keys=None) -> tf.data.Dataset:
    """Adds ``item_content = content[item_id]`` to each batch's features.

    Args:
        ds: batches ``(features, labels)`` with an int64 ``item_id`` feature.
        content: ``[num_items, content_dim]`` float32 (validated here).
        keys: feature names to keep (a model's input names); default all.
    """
    table = tf.constant(check_item_content(content, np.shape(content)[-1]))
    keys = None if keys is None else tuple(keys)

    def add(features, labels):
        features = dict(features)
        features["item_content"] = tf.gather(table, features["item_id"])
        if keys is not None:
            features = {k: v for k, v in features.items() if k in keys}
        return features, labels

    return ds.map(add, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def item_counts(split) -> np.ndarray:
    """Training interactions per warm item (``[num_warm_items]`` float32)."""
    return np.bincount(split.train["item_id"], minlength=split.num_warm_items).astype(
        np.float32
    )[: split.num_warm_items]


def _check_content_rows(content, split, content_dim=None) -> np.ndarray:
    content = np.asarray(content)
    dim = (
        content_dim
        if content_dim is not None
        else (content.shape[-1] if content.ndim == 2 else -1)
    )
    content = check_item_content(content, dim, name="content")
    if content.shape[0] != split.num_items:
        raise ValueError(
            f"`content` must have one row per item index of the split "
            f"({split.num_items}: warm then cold). Received {content.shape[0]} rows."
        )
    return content


# ------------------------------------------------------------- scoring


def content_scorer(
    model: keras.Model, content, *, batch_size: int = 65_536
) -> Callable:
    """``score_fn(user_idx, item_idx)`` feeding ``content[item_idx]`` as well:
    :func:`tfrec.evaluation.scoring.keras_scorer` (eager) after checking
    ``content`` against the model's content width.

    ``content`` has one row per item index (warm and cold); only the model's
    own inputs are fed (``cbf_profile`` has no ``item_id``).
    """
    content = np.asarray(content, np.float32)
    content = check_item_content(
        content, _content_dim(model) or content.shape[-1], name="content"
    )
    # Eager on purpose: one small graph per batch, and no tf.function
    # retracing (or its warnings) when many scorers are made in one run.
    return keras_scorer(
        model, output="score", item_inputs={"item_content": content},
        batch_size=batch_size, compiled=False,
    )


# ---------------------------------------------------------------- weights


def copy_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies weights of equally named, equally shaped layers; returns the names.

    Raises:
        ValueError: no layer could be copied.
    """
    copied = []
    names = {layer.name for layer in target.layers}
    for layer in source.layers:
        if not layer.weights or layer.name not in names:
            continue
        dst = target.get_layer(layer.name)
        src_w, dst_w = layer.get_weights(), dst.get_weights()
        if [w.shape for w in src_w] != [w.shape for w in dst_w]:
            continue
        dst.set_weights(src_w)
        copied.append(layer.name)
    if not copied:
        raise ValueError(
            f"No layer of {source.name!r} matches a layer of {target.name!r} by name "
            "and shape; build both with the same sizes."
        )
    return copied


def mf_item_vectors(mf_model: keras.Model) -> np.ndarray:
    """``[Q | b_i]`` of a trained :func:`~tfrec.models.ncf.mf` (factors + bias)."""
    q = mf_model.get_layer("mf_item_embedding").get_weights()[0]
    b = mf_model.get_layer("mf_item_bias").get_weights()[0]
    return np.concatenate([q, b], axis=1)


def load_mf_into_factor_model(mf_model, model) -> None:
    """Copies an ``mf``'s factors and biases into a factor model (mapping)."""
    model.get_layer("item_factors").set_weights([mf_item_vectors(mf_model)])
    for src, dst in (
        ("mf_user_embedding", "user_factors"),
        ("mf_user_bias", "user_bias"),
        ("global_bias", "global_bias"),
    ):
        model.get_layer(dst).set_weights(mf_model.get_layer(src).get_weights())


# ------------------------------------------------------------------ losses


def content_penalty(item_vectors, mapped, content_weight: float):
    """``lambda * mean_batch ||q_i - f(x_i)||^2`` (regularizing hybrid).

    Args:
        item_vectors: ``(batch, d)`` CF item vectors ``q_i`` of the batch.
        mapped: ``(batch, d)`` content-derived vectors ``f(x_i)``.
        content_weight: lambda.
    """
    diff = item_vectors - mapped
    return content_weight * ops.mean(ops.sum(diff * diff, axis=-1))


def joint_loss(labels, scores, content, reconstruction, content_weight: float):
    """Joint objective: ``log loss(labels, scores) + lambda * MSE(content, rec)``.

    ``MSE`` is the mean over the batch and the content columns; the log loss is
    Keras' binary cross-entropy (mean over the batch, probabilities clipped to
    ``[1e-7, 1 - 1e-7]``).
    """
    cf = ops.mean(keras.losses.binary_crossentropy(labels[:, None], scores[:, None]))
    diff = reconstruction - content
    return cf + content_weight * ops.mean(diff * diff)


# ------------------------------------------------------------------ trainer


class HybridTrainer(keras.Model):
    """Wraps a serving model; its loss adds ``aux_loss(features)`` to the compiled
    loss (training-only logic stays out of the serving graph).

    Args:
        serving_model: the functional hybrid (``{...} -> {score}``).
        aux_loss: ``features -> scalar`` (already multiplied by lambda).
        aux_layers: layers used only by ``aux_loss`` (e.g. a decoder), so their
            weights are tracked and trained.
    """

    def __init__(self, serving_model, aux_loss, aux_layers=(), **kwargs):
        super().__init__(**kwargs)
        self.serving_model = serving_model
        self.aux_loss = aux_loss
        self.aux_layers = list(aux_layers)

    def call(self, inputs, training=False):
        return self.serving_model(inputs, training=training)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        return loss + self.aux_loss(x)


def _penalty_fn(model, content_weight):
    parts = keras.Model(
        model.input,
        [model.get_layer("item_factors").output, model.get_layer("content_map").output],
        name="penalty_parts",
    )

    def aux(features):
        q, mapped = parts(features)
        return content_penalty(q, mapped, content_weight)

    return aux


def _reconstruction_fn(model, decoder, content_weight):
    vector = keras.Model(
        model.input, model.get_layer("item_vector").output, name="item_vector_model"
    )

    def aux(features):
        reconstruction = decoder(vector(features))
        diff = reconstruction - features["item_content"]
        return content_weight * keras.ops.mean(diff * diff)

    return aux


def pointwise_dataset(
    model: keras.Model,
    split,
    content,
    *,
    batch_size: int = 1024,
    num_negatives: int = 4,
    seed: int = 0,
) -> tuple[tf.data.Dataset, object]:
    """``(dataset, sampler)``: ``split.train`` positives + fresh warm negatives,
    each example with its item's content row, only ``model``'s inputs kept.

    Pass ``SamplerEpochCallback(sampler)`` to ``fit`` (epoch e is a function of
    ``(seed, e)``, so a resumed run sees the same examples).
    """
    content = _check_content_rows(content, split, _content_dim(model))
    ds, sampler = implicit_dataset(
        split.train["user_id"],
        split.train["item_id"],
        split.num_warm_items,
        num_negatives=num_negatives,
        batch_size=batch_size,
        seed=seed,
    )
    return with_item_content(ds, content, keys=tuple(model.input)), sampler


def _built(trainer: HybridTrainer) -> HybridTrainer:
    """Calls ``trainer`` once on a dummy batch (``BackupAndRestore`` and weight
    loading need a built model)."""
    feed = {
        k: np.zeros((1, *v.shape[1:]), v.dtype) for k, v in trainer.serving_model.input.items()
    }
    trainer(feed)
    return trainer


def regularized_trainer(model: keras.Model, content_weight: float) -> HybridTrainer:
    """The regularizing hybrid's trainer: log loss + lambda ||q_i - f(x_i)||^2."""
    return _built(HybridTrainer(model, _penalty_fn(model, content_weight)))


def joint_trainer(model: keras.Model, content_weight: float) -> HybridTrainer:
    """The joint hybrid's trainer: log loss + lambda MSE(x_i, decoder(v_i)); the
    linear decoder lives only here."""
    content_dim = _content_dim(model)
    width = int(model.get_layer("item_vector").output.shape[-1])
    decoder = keras.layers.Dense(content_dim, name="content_decoder")
    decoder.build((None, width))
    aux = _reconstruction_fn(model, decoder, content_weight)
    return _built(HybridTrainer(model, aux, [decoder]))


def fit_pointwise(
    model: keras.Model,
    split,
    content,
    *,
    epochs: int = 20,
    batch_size: int = 1024,
    optimizer: str = "adam",
    learning_rate: float = 0.002,
    num_negatives: int = 4,
    seed: int = 0,
    aux_loss=None,
    aux_layers=(),
    verbose: int = 0,
) -> dict:
    """Trains ``model`` with log loss on ``split.train`` + warm negatives.

    Returns ``fit``'s history dict. With ``aux_loss`` the model is wrapped in a
    :class:`HybridTrainer`. ``optimizer`` is a `make_optimizer` name.
    """
    ds, sampler = pointwise_dataset(
        model,
        split,
        content,
        batch_size=batch_size,
        num_negatives=num_negatives,
        seed=seed,
    )
    trainer = model if aux_loss is None else HybridTrainer(model, aux_loss, aux_layers)
    trainer.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss={"score": keras.losses.BinaryCrossentropy()},
    )
    history = trainer.fit(
        ds,
        epochs=epochs,
        callbacks=[SamplerEpochCallback(sampler)],
        shuffle=False,  # the sampler shuffles each epoch
        verbose=verbose,
    )
    return history.history


# ---------------------------------------------------------------- baselines


def train_cf(split, content, *, embedding_dim=32, l2=0.0, **fit) -> keras.Model:
    """Pure CF: :func:`tfrec.models.ncf.mf` on the warm items."""
    model = mf(
        split.num_users, split.num_warm_items, embedding_dim=embedding_dim, l2=l2
    )
    fit_pointwise(model, split, _as_content(content, split), **fit)
    return model


def _as_content(content, split):
    return _check_content_rows(content, split)


def train_cbf(split, content, *, l2=0.0, **fit) -> keras.Model:
    """Pure CBF: :func:`tfrec.models.hybrid.cbf_profile`."""
    from tfrec.models.hybrid import cbf_profile

    content = _as_content(content, split)
    model = cbf_profile(split.num_users, content.shape[1], l2=l2)
    fit_pointwise(model, split, content, **fit)
    return model


# ------------------------------------------------------------ the hybrids


def build_weighted(
    cf_model,
    cbf_model,
    split,
    content,
    *,
    cf_weight=0.5,
    learn_weight=False,
    **fit,
) -> keras.Model:
    """Weighted hybrid of trained :func:`mf` and :func:`cbf_profile` models.

    With ``learn_weight`` only ``w`` is trained (both components frozen), on
    the training data with fresh negatives (``fit`` arguments).
    """
    content = _as_content(content, split)
    dim = cf_model.get_layer("mf_user_embedding").output_dim
    model = hybrid_weighted(
        split.num_users,
        split.num_warm_items,
        content.shape[1],
        embedding_dim=dim,
        cf_weight=cf_weight,
        learn_weight=learn_weight,
    )
    copy_weights(cf_model, model)
    copy_weights(cbf_model, model)
    if learn_weight:
        for layer in model.layers:
            layer.trainable = isinstance(layer, Blend)
        fit_pointwise(model, split, content, **fit)
        for layer in model.layers:
            layer.trainable = True
    return model


def build_switching(
    cf_model, cbf_model, split, content, *, threshold=10.0
) -> keras.Model:
    """Switching hybrid of trained ``mf`` and ``cbf_profile`` models; the count
    table is the split's training counts."""
    content = _as_content(content, split)
    dim = cf_model.get_layer("mf_user_embedding").output_dim
    model = hybrid_switching(
        split.num_users,
        split.num_warm_items,
        content.shape[1],
        embedding_dim=dim,
        threshold=threshold,
    )
    copy_weights(cf_model, model)
    copy_weights(cbf_model, model)
    set_item_counts(model, item_counts(split))
    return model


def content_path_model(
    model: keras.Model, map_layer: str = "content_projection"
) -> keras.Model:
    """``{user_id, item_content} -> {score}`` sharing ``model``'s layers, every
    item represented by its content map (the initializing hybrid's stage 1)."""
    inputs = {
        "user_id": keras.Input(shape=(), dtype="int64", name="user_id"),
        "item_content": keras.Input(
            shape=(_content_dim(model),), dtype="float32", name="item_content"
        ),
    }
    x = model.get_layer("content_guard")(inputs["item_content"])
    v = model.get_layer(map_layer)(x)
    u = inputs["user_id"]
    p = model.get_layer("user_factors")(u)
    bu = model.get_layer("user_bias_flat")(model.get_layer("user_bias")(u))
    logit = model.get_layer("factor_score")([p, v])
    logit = model.get_layer("logit")([logit, bu])
    logit = model.get_layer("global_bias")(logit)
    score = model.get_layer("score")(logit)
    return keras.Model(inputs, {"score": score}, name=f"{model.name}_content_path")


def initialize_item_factors(model: keras.Model, warm_content) -> np.ndarray:
    """Sets ``item_factors`` to the content projection ``P x_i`` of every warm
    item (row i of ``warm_content`` is item i); returns the new table."""
    table = model.get_layer("item_factors")
    content = check_item_content(warm_content, _content_dim(model), name="warm_content")
    if content.shape[0] != table.num_ids:
        raise ValueError(
            f"`warm_content` must have one row per item of the model "
            f"({table.num_ids}). Received {content.shape[0]} rows."
        )
    kernel, bias = model.get_layer("content_projection").get_weights()
    init = (content @ kernel + bias).astype(np.float32)
    table.set_weights([init])
    return init


def train_initialized(
    split, content, *, embedding_dim=32, l2=0.0, pre_epochs=5, **fit
) -> keras.Model:
    """Initializing hybrid: content path (``pre_epochs``), initialise, then MF."""
    content = _as_content(content, split)
    model = hybrid_initialized(
        split.num_users,
        split.num_warm_items,
        content.shape[1],
        embedding_dim=embedding_dim,
        l2=l2,
    )
    projection = model.get_layer("content_projection")
    projection.trainable = True
    stage1 = content_path_model(model)
    fit_pointwise(stage1, split, content, **{**fit, "epochs": pre_epochs})
    projection.trainable = False
    initialize_item_factors(model, content[: split.num_warm_items])
    fit_pointwise(model, split, content, **fit)
    return model


def train_regularized(
    split,
    content,
    *,
    embedding_dim=32,
    hidden_units=None,
    l2=0.0,
    content_weight=1.0,
    **fit,
) -> keras.Model:
    """Regularizing hybrid: log loss + ``content_weight * ||q_i - f(x_i)||^2``."""
    content = _as_content(content, split)
    model = hybrid_regularized(
        split.num_users,
        split.num_warm_items,
        content.shape[1],
        embedding_dim=embedding_dim,
        hidden_units=hidden_units,
        l2=l2,
    )
    fit_pointwise(
        model, split, content, aux_loss=_penalty_fn(model, content_weight), **fit
    )
    return model


def train_joint(
    split,
    content,
    *,
    embedding_dim=32,
    hidden_units=None,
    l2=0.0,
    content_weight=1.0,
    **fit,
) -> keras.Model:
    """Joint hybrid: log loss + ``content_weight * MSE(x_i, decoder(v_i))``."""
    content = _as_content(content, split)
    model = hybrid_joint(
        split.num_users,
        split.num_warm_items,
        content.shape[1],
        embedding_dim=embedding_dim,
        hidden_units=hidden_units,
        l2=l2,
    )
    decoder = keras.layers.Dense(content.shape[1], name="content_decoder")
    decoder.build((None, embedding_dim + 1))
    aux = _reconstruction_fn(model, decoder, content_weight)
    fit_pointwise(model, split, content, aux_loss=aux, aux_layers=[decoder], **fit)
    return model


class RowEpochs:
    """``(x, y)`` rows in a fresh order each epoch, a function of ``(seed,
    epoch)`` (resume-safe; :class:`SamplerEpochCallback` sets ``epoch``)."""

    def __init__(self, x, y, *, seed: int = 0, passes: int = 1):
        self.x, self.y = x, y
        self.seed, self.epoch, self.passes = int(seed), 0, int(passes)

    def __len__(self) -> int:
        return len(self.x) * self.passes

    def dataset(self, batch_size: int) -> tf.data.Dataset:
        """Each epoch: ``passes`` fresh permutations of the rows, batched, prefetched."""

        def next_epoch():
            epoch = self.epoch
            self.epoch += 1
            rng = np.random.default_rng([self.seed, epoch])
            order = np.concatenate(
                [rng.permutation(len(self.x)) for _ in range(self.passes)]
            )
            return self.x[order], self.y[order]

        width_x, width_y = self.x.shape[1], self.y.shape[1]

        @tf.autograph.experimental.do_not_convert
        def to_batches(x, y):
            x = tf.ensure_shape(x, (None, width_x))
            y = tf.ensure_shape(y, (None, width_y))
            return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

        ds = (
            tf.data.Dataset.from_tensors(0)
            .map(lambda _: tf.numpy_function(next_epoch, [], (tf.float32, tf.float32)))
            .flat_map(to_batches)
        )
        steps = -(-len(self) // batch_size)
        return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(
            tf.data.AUTOTUNE
        )


def map_regression(
    model: keras.Model,
    warm_content,
    targets,
    *,
    batch_size: int = 256,
    seed: int = 0,
    passes: int = 1,
) -> tuple[keras.Model, tf.data.Dataset, RowEpochs]:
    """``(regressor, dataset, rows)`` for fitting ``content_map`` (and its MLP)
    by squared error to ``targets`` (``[num_warm, embedding_dim + 1]`` item
    vectors). The regressor shares ``model``'s layers; compile it, then ``fit``
    with ``SamplerEpochCallback(rows)``. One epoch is ``passes`` passes over the
    items."""
    x_in = model.input["item_content"]
    regressor = keras.Model(
        x_in, model.get_layer("content_map").output, name="content_map_regressor"
    )
    x = check_item_content(warm_content, _content_dim(model), name="warm_content")
    y = np.asarray(targets, np.float32)
    if y.shape != (len(x), regressor.output.shape[-1]):
        raise ValueError(
            f"`targets` must have shape ({len(x)}, {regressor.output.shape[-1]}). "
            f"Received {y.shape}."
        )
    rows = RowEpochs(x, y, seed=seed, passes=passes)
    return regressor, rows.dataset(batch_size), rows


def fit_content_map(
    model: keras.Model,
    warm_content,
    targets,
    *,
    epochs: int = 200,
    batch_size: int = 256,
    optimizer: str = "adam",
    learning_rate: float = 0.005,
    seed: int = 0,
) -> float:
    """Fits ``content_map`` (and its MLP) by squared error to ``targets``
    (``[num_warm, embedding_dim + 1]`` item vectors); returns the final MSE."""
    regressor, ds, rows = map_regression(
        model, warm_content, targets, batch_size=batch_size, seed=seed
    )
    regressor.compile(optimizer=make_optimizer(optimizer, learning_rate), loss="mse")
    history = regressor.fit(
        ds, epochs=epochs, callbacks=[SamplerEpochCallback(rows)], shuffle=False,
        verbose=0,
    )
    return float(history.history["loss"][-1])


def train_mapping(
    split,
    content,
    *,
    cf_model=None,
    embedding_dim=32,
    hidden_units=None,
    l2=0.0,
    map_epochs=200,
    **fit,
) -> keras.Model:
    """Mapping hybrid: MF (or ``cf_model``, a trained ``mf``), then ``f`` fitted
    to the warm items' ``[q_i | b_i]``."""
    content = _as_content(content, split)
    if cf_model is not None:
        embedding_dim = cf_model.get_layer("mf_user_embedding").output_dim
    model = hybrid_mapping(
        split.num_users,
        split.num_warm_items,
        content.shape[1],
        embedding_dim=embedding_dim,
        hidden_units=hidden_units,
        l2=l2,
    )
    if cf_model is None:
        cf_model = train_cf(split, content, embedding_dim=embedding_dim, l2=l2, **fit)
    load_mf_into_factor_model(cf_model, model)
    fit_content_map(
        model,
        content[: split.num_warm_items],
        mf_item_vectors(cf_model),
        epochs=map_epochs,
        seed=fit.get("seed", 0),
    )
    return model
