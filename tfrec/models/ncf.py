"""Neural Collaborative Filtering (GMF, MLP, NeuMF) and the dot-product MF baseline.

References:
    Xiangnan He, Lizi Liao, Hanwang Zhang, Liqiang Nie, Xia Hu, Tat-Seng Chua.
    "Neural Collaborative Filtering". WWW 2017.
    Steffen Rendle, Walid Krichene, Li Zhang, John Anderson. "Neural Collaborative
    Filtering vs. Matrix Factorization Revisited". RecSys 2020.

Every builder returns a functional ``keras.Model`` with inputs ``user_id`` and
``item_id`` (int64, shape ``(batch,)``, contiguous indices from the data layer) and
one output:

* ``task="implicit"`` (default): ``score``, the probability that the user interacts
  with the item (sigmoid), trained with log loss against sampled negatives;
* ``task="explicit"``: ``rating``, a real-valued rating, trained with squared loss.

Ids outside ``[0, num_users)`` / ``[0, num_items)`` look up zero vectors (see
:class:`tfrec.layers.IdEmbedding`), identically in TF and ONNX.

Faithfulness notes (differences from the paper's code are deliberate and listed):

* Embeddings are initialised from N(0, 0.01) and the prediction layer with
  LeCun-uniform, as in the authors' Keras code; hidden layers use Glorot-uniform.
* ``hidden_units`` lists the MLP's Dense layers *after* the embedding concatenation.
  The paper's "factors 8, layers 64-32-16-8" is ``embedding_dim=8`` (GMF),
  ``mlp_embedding_dim=32`` (so the concatenation is 64) and ``hidden_units=(32, 16,
  8)``; those are derived from ``embedding_dim`` when left ``None``.
* ``l2`` regularises the embedding rows each example looks up (per-example L2,
  averaged over the batch) and the hidden kernels; the paper's reported runs use 0.
* NeuMF pre-training (:func:`load_pretrained_neumf`) copies GMF and MLP weights and
  mixes the two prediction layers with ``alpha`` as in Eq. 12 of the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tfrec.layers import Bias, IdEmbedding, mlp_tower
from tfrec.layers.mlp import check_hidden_units
from tfrec.registry import Tolerance, register_model

TASK_OUTPUTS = {"implicit": "score", "explicit": "rating"}
_EMBEDDING_INIT = {"class_name": "RandomNormal", "config": {"stddev": 0.01}}


def _check_sizes(num_users, num_items):
    for arg, value in (("num_users", num_users), ("num_items", num_items)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"`{arg}` must be a positive int. Received: {arg}={value!r}"
            )


def _check_task(task):
    if task not in TASK_OUTPUTS:
        raise ValueError(
            f"`task` must be one of {tuple(TASK_OUTPUTS)}. Received: task={task!r}"
        )


def _check_dim(name, value):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _id_inputs():
    return {
        "user_id": keras.Input(shape=(), dtype="int64", name="user_id"),
        "item_id": keras.Input(shape=(), dtype="int64", name="item_id"),
    }


def _embedding(num, dim, l2, name):
    # ``l2`` penalises the rows a batch looks up (Keras averages activity
    # regularisation over the batch): per-example L2 as in SGD-trained MF (Rendle et
    # al. 2020), not a penalty on the whole table at every step.
    return IdEmbedding(
        num,
        dim,
        embeddings_initializer=_EMBEDDING_INIT,
        activity_regularizer=keras.regularizers.L2(l2) if l2 else None,
        name=name,
    )


def _prediction(x, task):
    """NCF's output layer ``h``: one unit, sigmoid for implicit feedback."""
    activation = "sigmoid" if task == "implicit" else "linear"
    out = keras.layers.Dense(
        1, activation=activation, kernel_initializer="lecun_uniform", name="prediction"
    )(x)
    return keras.layers.Reshape((), name=TASK_OUTPUTS[task])(out)


def _example_inputs(kwargs: dict, batch_size: int, rng: np.random.Generator) -> dict:
    return {
        "user_id": rng.integers(0, kwargs["num_users"], batch_size, dtype=np.int64),
        "item_id": rng.integers(0, kwargs["num_items"], batch_size, dtype=np.int64),
    }


_TINY = {"num_users": 13, "num_items": 17}
_PARITY = Tolerance(1e-5, 1e-5, "float32 embedding lookups and small MLP matmuls")


def _mlp_sizes(embedding_dim, mlp_embedding_dim, hidden_units):
    if mlp_embedding_dim is None:
        mlp_embedding_dim = 4 * embedding_dim
    if hidden_units is None:
        hidden_units = (4 * embedding_dim, 2 * embedding_dim, embedding_dim)
    _check_dim("mlp_embedding_dim", mlp_embedding_dim)
    return mlp_embedding_dim, check_hidden_units(hidden_units)


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs=_TINY,
    parity=_PARITY,
    paper="He et al. 2017 (GMF)",
)
def gmf(
    num_users: int,
    num_items: int,
    *,
    embedding_dim: int = 8,
    l2: float = 0.0,
    task: str = "implicit",
) -> keras.Model:
    """Generalized Matrix Factorization: ``h^T (p_u * q_i)`` through a sigmoid.

    Reference: He et al., "Neural Collaborative Filtering", WWW 2017, Sec. 3.2.

    Args:
        num_users: number of user indices.
        num_items: number of item indices.
        embedding_dim: latent factors (the paper's "predictive factors").
        l2: L2 penalty on the embedding tables.
        task: ``implicit`` (output ``score``) or ``explicit`` (output ``rating``).

    Returns:
        A functional model ``{user_id, item_id} -> {score}`` (or ``{rating}``).

    Example:
        >>> model = gmf(num_users=943, num_items=1682)
    """
    _check_sizes(num_users, num_items)
    _check_task(task)
    _check_dim("embedding_dim", embedding_dim)
    inputs = _id_inputs()
    p = _embedding(num_users, embedding_dim, l2, "gmf_user_embedding")(
        inputs["user_id"]
    )
    q = _embedding(num_items, embedding_dim, l2, "gmf_item_embedding")(
        inputs["item_id"]
    )
    x = keras.layers.Multiply(name="gmf_product")([p, q])
    out = _prediction(x, task)
    return keras.Model(inputs, {TASK_OUTPUTS[task]: out}, name="gmf")


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs=_TINY,
    parity=_PARITY,
    paper="He et al. 2017 (MLP)",
)
def ncf_mlp(
    num_users: int,
    num_items: int,
    *,
    embedding_dim: int = 8,
    mlp_embedding_dim: int | None = None,
    hidden_units: Sequence[int] | None = None,
    activation: str = "relu",
    dropout: float = 0.0,
    l2: float = 0.0,
    task: str = "implicit",
) -> keras.Model:
    """NCF's multi-layer perceptron over concatenated user and item embeddings.

    Reference: He et al., "Neural Collaborative Filtering", WWW 2017, Sec. 3.3.

    Args:
        num_users: number of user indices.
        num_items: number of item indices.
        embedding_dim: predictive factors; sets the defaults of the two below.
        mlp_embedding_dim: width of each of the user and item embeddings
            (default ``4 * embedding_dim``, so factors 8 gives a 64-wide input).
        hidden_units: Dense layer widths (default ``(4f, 2f, f)``, the paper's
            three-layer tower, 32-16-8 for factors 8).
        activation: hidden activation (``relu``, ``leaky_relu``, ``sigmoid``, ...).
        dropout: dropout after each hidden layer (the paper uses none).
        l2: L2 penalty on embeddings and hidden kernels.
        task: ``implicit`` (output ``score``) or ``explicit`` (output ``rating``).

    Returns:
        A functional model ``{user_id, item_id} -> {score}`` (or ``{rating}``).
    """
    _check_sizes(num_users, num_items)
    _check_task(task)
    _check_dim("embedding_dim", embedding_dim)
    mlp_dim, units = _mlp_sizes(embedding_dim, mlp_embedding_dim, hidden_units)
    inputs = _id_inputs()
    p = _embedding(num_users, mlp_dim, l2, "mlp_user_embedding")(inputs["user_id"])
    q = _embedding(num_items, mlp_dim, l2, "mlp_item_embedding")(inputs["item_id"])
    x = keras.layers.Concatenate(name="mlp_concat")([p, q])
    x = mlp_tower(x, units, activation=activation, dropout=dropout, l2=l2, name="mlp")
    out = _prediction(x, task)
    return keras.Model(inputs, {TASK_OUTPUTS[task]: out}, name="ncf_mlp")


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs=_TINY,
    parity=_PARITY,
    paper="He et al. 2017 (NeuMF)",
)
def neumf(
    num_users: int,
    num_items: int,
    *,
    embedding_dim: int = 8,
    mlp_embedding_dim: int | None = None,
    hidden_units: Sequence[int] | None = None,
    activation: str = "relu",
    dropout: float = 0.0,
    l2: float = 0.0,
    task: str = "implicit",
) -> keras.Model:
    """Neural Matrix Factorization: GMF and MLP with separate embeddings, fused.

    Reference: He et al., "Neural Collaborative Filtering", WWW 2017, Sec. 3.4.
    Pre-training (Sec. 3.4.1): train :func:`gmf` and :func:`ncf_mlp` with the same
    sizes, then :func:`load_pretrained_neumf` and train on with plain SGD.

    Args:
        num_users: number of user indices.
        num_items: number of item indices.
        embedding_dim: GMF factors (the paper's "predictive factors").
        mlp_embedding_dim: MLP embedding width (default ``4 * embedding_dim``).
        hidden_units: MLP Dense widths (default ``(4f, 2f, f)``).
        activation: hidden activation of the MLP part.
        dropout: dropout after each MLP layer (the paper uses none).
        l2: L2 penalty on embeddings and hidden kernels.
        task: ``implicit`` (output ``score``) or ``explicit`` (output ``rating``).

    Returns:
        A functional model ``{user_id, item_id} -> {score}`` (or ``{rating}``).

    Example:
        >>> model = neumf(num_users=6040, num_items=3706, embedding_dim=8)
    """
    _check_sizes(num_users, num_items)
    _check_task(task)
    _check_dim("embedding_dim", embedding_dim)
    mlp_dim, units = _mlp_sizes(embedding_dim, mlp_embedding_dim, hidden_units)
    inputs = _id_inputs()
    u, i = inputs["user_id"], inputs["item_id"]
    gp = _embedding(num_users, embedding_dim, l2, "gmf_user_embedding")(u)
    gq = _embedding(num_items, embedding_dim, l2, "gmf_item_embedding")(i)
    gmf_vector = keras.layers.Multiply(name="gmf_product")([gp, gq])
    mp = _embedding(num_users, mlp_dim, l2, "mlp_user_embedding")(u)
    mq = _embedding(num_items, mlp_dim, l2, "mlp_item_embedding")(i)
    x = keras.layers.Concatenate(name="mlp_concat")([mp, mq])
    mlp_vector = mlp_tower(
        x, units, activation=activation, dropout=dropout, l2=l2, name="mlp"
    )
    fused = keras.layers.Concatenate(name="neumf_concat")([gmf_vector, mlp_vector])
    out = _prediction(fused, task)
    return keras.Model(inputs, {TASK_OUTPUTS[task]: out}, name="neumf")


def load_pretrained_neumf(
    neumf_model: keras.Model,
    gmf_model: keras.Model,
    mlp_model: keras.Model,
    *,
    alpha: float = 0.5,
) -> keras.Model:
    """Initialises NeuMF from trained GMF and MLP models (He et al. 2017, Eq. 12).

    Embeddings and hidden layers are copied by layer name; the prediction layer
    becomes ``[alpha * h_GMF ; (1 - alpha) * h_MLP]`` with bias
    ``alpha * b_GMF + (1 - alpha) * b_MLP``. The three models must have been built
    with the same sizes. Returns ``neumf_model`` (modified in place).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}")
    for source in (gmf_model, mlp_model):
        for layer in source.layers:
            if layer.name == "prediction" or not layer.weights:
                continue
            try:
                target = neumf_model.get_layer(layer.name)
            except ValueError as err:
                raise ValueError(
                    f"Pre-trained layer {layer.name!r} of {source.name!r} has no "
                    "counterpart in the NeuMF model; build all three with the same "
                    "sizes."
                ) from err
            src_shapes = [tuple(w.shape) for w in layer.get_weights()]
            dst_shapes = [tuple(w.shape) for w in target.get_weights()]
            if src_shapes != dst_shapes:
                raise ValueError(
                    f"Layer {layer.name!r}: pre-trained weights have shapes "
                    f"{src_shapes}, NeuMF expects {dst_shapes}. Build all three "
                    "models with the same num_users, num_items and sizes."
                )
            target.set_weights(layer.get_weights())
    g_kernel, g_bias = gmf_model.get_layer("prediction").get_weights()
    m_kernel, m_bias = mlp_model.get_layer("prediction").get_weights()
    neumf_model.get_layer("prediction").set_weights(
        [
            np.concatenate([alpha * g_kernel, (1 - alpha) * m_kernel], axis=0),
            alpha * g_bias + (1 - alpha) * m_bias,
        ]
    )
    return neumf_model


@register_model(
    task="ranking",
    example_inputs=_example_inputs,
    test_kwargs=_TINY,
    parity=_PARITY,
    paper="Rendle et al. 2020 (dot-product MF)",
)
def mf(
    num_users: int,
    num_items: int,
    *,
    embedding_dim: int = 16,
    l2: float = 0.0,
    task: str = "implicit",
) -> keras.Model:
    """Dot-product matrix factorisation with user, item and global biases.

    ``y(u, i) = b + b_u + b_i + <p_u, q_i>``, through a sigmoid for implicit feedback.
    Reference: Rendle et al., "Neural Collaborative Filtering vs. Matrix
    Factorization Revisited", RecSys 2020, the baseline that matches or beats NeuMF
    on the NCF split. Rendle et al. train with plain SGD and L2 regularisation
    (``l2`` here); pick ``optimizer="sgd"`` in training to follow them.

    Args:
        num_users: number of user indices.
        num_items: number of item indices.
        embedding_dim: latent factors.
        l2: L2 penalty on embeddings and biases.
        task: ``implicit`` (output ``score``) or ``explicit`` (output ``rating``).

    Returns:
        A functional model ``{user_id, item_id} -> {score}`` (or ``{rating}``).
    """
    _check_sizes(num_users, num_items)
    _check_task(task)
    _check_dim("embedding_dim", embedding_dim)
    inputs = _id_inputs()
    u, i = inputs["user_id"], inputs["item_id"]
    p = _embedding(num_users, embedding_dim, l2, "mf_user_embedding")(u)
    q = _embedding(num_items, embedding_dim, l2, "mf_item_embedding")(i)
    bu = _embedding(num_users, 1, l2, "mf_user_bias")(u)
    bi = _embedding(num_items, 1, l2, "mf_item_bias")(i)
    dot = keras.layers.Dot(axes=1, name="mf_dot")([p, q])
    logit = keras.layers.Add(name="mf_logit")([dot, bu, bi])
    logit = keras.layers.Reshape((), name="mf_logit_flat")(logit)
    logit = Bias(name="global_bias")(logit)
    activation = "sigmoid" if task == "implicit" else "linear"
    out = keras.layers.Activation(activation, name=TASK_OUTPUTS[task])(logit)
    return keras.Model(inputs, {TASK_OUTPUTS[task]: out}, name="mf")
