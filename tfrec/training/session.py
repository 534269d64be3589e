"""GRU4Rec training: session-parallel mini-batches, sampled losses, Adagrad-momentum.

What the official GRU4Rec code does, and this module reproduces:

* **Session-parallel mini-batches** (`tfrec.data.sessions.session_parallel_dataset`):
  each batch slot follows one session in time order; the hidden state of a slot
  is zeroed when a new session enters it; training sessions are ordered by
  start time and never shuffled. The state lives in a non-trainable variable of
  `GRU4RecTrainer` and is carried from one step to the next without
  back-propagation through time (the official code detaches it).
* **Sampled output**: the scores of a step are computed only for the targets of
  the mini-batch (in-batch negatives) plus ``n_sample`` extra items drawn once
  per step from the training popularity raised to ``sample_alpha``, shared by
  all rows.
* **Losses** on the ``[batch, batch + n_sample]`` score matrix (the diagonal
  holds each row's target): cross-entropy over a softmax, optionally with logQ
  correction (``logq``: scores minus ``logq * log(popularity)``, the samples'
  popularity raised to ``sample_alpha``); BPR-max with score regularisation
  ``bpreg`` over an optional ELU (``elu_param``); TOP1-max. All are summed over
  the rows and divided by the batch size.
* **Optimiser**: `AdagradMomentum`, the official ``IndexedAdagradM``: Adagrad
  with (heavy-ball) momentum, updating only the embedding rows a step touched
  (``optimizer="adagrad_momentum"`` in the recipe, `tfrec.recipes.gru4rec`,
  beside every `tfrec.training.make_optimizer` choice).
* Embedding dropout on the input vectors and hidden dropout on each GRU layer's
  output (the dropped-out output is the layer's new state, as in the official
  code).

Deviation: at the end of an epoch the official iterator shrinks the batch as
sessions run out; here the batch keeps its size and empty slots are masked out
of the loss and of the in-batch negatives (the same arithmetic).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfrec.data.sessions import Sessions
from tfrec.models.gru4rec import ItemTable, OneHotItems

__all__ = [
    "LOSSES",
    "AdagradMomentum",
    "GRU4RecTrainer",
    "ResetStateCallback",
    "bpr_max_loss",
    "cross_entropy_loss",
    "item_counts",
    "top1_max_loss",
]

LOSSES = ("cross-entropy", "bpr-max", "top1-max")
_NEG = -1e9


@keras.saving.register_keras_serializable(package="tfrec")
class AdagradMomentum(keras.optimizers.Optimizer):
    """Adagrad with momentum, updating sparse (embedding) gradients row-wise.

    For a parameter ``p`` with gradient ``g``::

        acc <- acc + g**2
        v   <- momentum * v - learning_rate * g / sqrt(acc + epsilon)
        p   <- p + v                       (nesterov=False, the official code)
        p   <- p + momentum * v - learning_rate * g / sqrt(acc + epsilon)
                                           (nesterov=True)

    For a ``tf.IndexedSlices`` gradient (an embedding lookup) only the looked-up
    rows of ``acc``, ``v`` and ``p`` change, duplicate rows summed first, as in
    the official ``IndexedAdagradM``; rows not in the batch keep their momentum.
    The official README calls its momentum Nesterov's, but its update is the
    heavy-ball one above, so ``nesterov=False`` is the default.

    Args:
        learning_rate: Step size.
        momentum: Momentum in ``[0, 1)``; 0 is plain Adagrad.
        epsilon: Added to the accumulator inside the square root.
        nesterov: Use the Nesterov form.
    """

    def __init__(
        self,
        learning_rate=0.05,
        momentum: float = 0.0,
        epsilon: float = 1e-6,
        nesterov: bool = False,
        name: str = "adagrad_momentum",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                f"`momentum` must be in [0, 1). Received: momentum={momentum!r}"
            )
        if float(epsilon) <= 0:
            raise ValueError(f"`epsilon` must be > 0. Received: epsilon={epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.nesterov = bool(nesterov)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._accumulators = [
            self.add_variable_from_reference(v, "accumulator") for v in var_list
        ]
        self._velocities = (
            [self.add_variable_from_reference(v, "velocity") for v in var_list]
            if self.momentum > 0
            else []
        )

    def update_step(self, gradient, variable, learning_rate):
        k = self._get_variable_index(variable)
        acc = self._accumulators[k]
        lr = tf.cast(learning_rate, variable.dtype)
        mu = tf.cast(self.momentum, variable.dtype)
        eps = tf.cast(self.epsilon, variable.dtype)
        if isinstance(gradient, tf.IndexedSlices):
            rows, pos = tf.unique(gradient.indices)
            g = tf.math.unsorted_segment_sum(gradient.values, pos, tf.shape(rows)[0])
            acc_rows = tf.gather(acc.value, rows) + tf.square(g)
            self.assign(acc, tf.IndexedSlices(acc_rows, rows))
            step = lr * g / tf.sqrt(acc_rows + eps)
            if self.momentum > 0:
                vel = self._velocities[k]
                v_rows = mu * tf.gather(vel.value, rows) - step
                self.assign(vel, tf.IndexedSlices(v_rows, rows))
                delta = mu * v_rows - step if self.nesterov else v_rows
            else:
                delta = -step
            self.assign_add(variable, tf.IndexedSlices(delta, rows))
            return
        gradient = tf.convert_to_tensor(gradient)
        acc_new = acc.value + tf.square(gradient)
        self.assign(acc, acc_new)
        step = lr * gradient / tf.sqrt(acc_new + eps)
        if self.momentum > 0:
            vel = self._velocities[k]
            v_new = mu * vel.value - step
            self.assign(vel, v_new)
            delta = mu * v_new - step if self.nesterov else v_new
        else:
            delta = -step
        self.assign_add(variable, delta)

    def get_config(self):
        config = super().get_config()
        config.update(
            momentum=self.momentum, epsilon=self.epsilon, nesterov=self.nesterov
        )
        return config


# ------------------------------------------------------------------------ losses
def _masked_softmax_neg(scores, col_valid):
    """Softmax over each row's negatives: valid columns except the diagonal."""
    b = tf.shape(scores)[0]
    c = tf.shape(scores)[1]
    not_diag = 1.0 - tf.eye(b, c, dtype=scores.dtype)
    mask = not_diag * col_valid[None, :]
    x = tf.where(mask > 0, scores, tf.cast(_NEG, scores.dtype))
    e = tf.exp(x - tf.reduce_max(x, axis=1, keepdims=True)) * mask
    return e / tf.reduce_sum(e, axis=1, keepdims=True)


def cross_entropy_loss(scores, row_valid, col_valid, log_pop=None, logq=0.0):
    """Summed softmax cross-entropy of each row's diagonal target.

    Args:
        scores: ``[batch, batch + n_sample]``; column ``b`` is row ``b``'s target.
        row_valid: ``[batch]`` 1 for real rows.
        col_valid: ``[batch + n_sample]`` 1 for columns that take part.
        log_pop: ``[batch + n_sample]`` log-popularity of each column for logQ.
        logq: Strength of the logQ correction (0: none).

    Returns:
        The sum over valid rows of ``-log softmax(scores)[b, b]``.
    """
    if log_pop is not None and logq:
        scores = scores - logq * log_pop[None, :]
    x = tf.where(col_valid[None, :] > 0, scores, tf.cast(_NEG, scores.dtype))
    logp = tf.nn.log_softmax(x, axis=1)
    return -tf.reduce_sum(tf.linalg.diag_part(logp) * row_valid)


def bpr_max_loss(scores, row_valid, col_valid, bpreg=1.0, elu_param=0.0):
    """Summed BPR-max loss with score regularisation (Hidasi & Karatzoglou 2018).

    Per row, with ``s_j`` the softmax over the negatives' scores ``o_j`` and
    ``t`` the target's: ``-log(sum_j s_j sigmoid(t - o_j) + 1e-24) +
    bpreg * sum_j s_j o_j**2``; scores first pass through ``elu(., elu_param)``
    when ``elu_param > 0``.
    """
    if elu_param > 0:
        scores = tf.where(scores >= 0, scores, elu_param * (tf.exp(scores) - 1.0))
    soft = _masked_softmax_neg(scores, col_valid)
    target = tf.linalg.diag_part(scores)[:, None]
    ranking = -tf.math.log(
        tf.reduce_sum(tf.sigmoid(target - scores) * soft, axis=1) + 1e-24
    )
    reg = bpreg * tf.reduce_sum(tf.square(scores) * soft, axis=1)
    return tf.reduce_sum((ranking + reg) * row_valid)


def top1_max_loss(scores, row_valid, col_valid):
    """Summed TOP1-max loss: ``sum_j s_j (sigmoid(o_j - t) + sigmoid(o_j**2))``."""
    soft = _masked_softmax_neg(scores, col_valid)
    target = tf.linalg.diag_part(scores)[:, None]
    per = tf.reduce_sum(
        soft * (tf.sigmoid(scores - target) + tf.sigmoid(tf.square(scores))), axis=1
    )
    return tf.reduce_sum(per * row_valid)


# ----------------------------------------------------------------------- trainer
class GRU4RecTrainer(keras.Model):
    """Trains the layers of a ``gru4rec_step`` model the way the official code does.

    Feed it `tfrec.data.sessions.session_parallel_dataset` (in order, with
    the same ``batch_size``) through `fit`; the hidden state of every slot is a
    non-trainable variable, zeroed where the batch's ``reset`` is 1.

    Args:
        step_model: A ``gru4rec_step`` model whose layers are trained.
        item_counts: ``[num_items + 1]`` training clicks per item index (entry
            0 unused): the sampling and logQ popularity.
        batch_size: Session-parallel slots.
        loss: One of `LOSSES`.
        n_sample: Extra popularity-sampled negatives per step (0: in-batch only).
        sample_alpha: Popularity exponent of the sampling.
        logq: logQ correction strength (cross-entropy only).
        bpreg: BPR-max score regularisation.
        elu_param: ELU parameter applied before BPR-max (0: linear).
        seed: Seed of the negative sampling.
    """

    def __init__(
        self,
        step_model: keras.Model,
        item_counts,
        *,
        batch_size: int,
        loss: str = "cross-entropy",
        n_sample: int = 2048,
        sample_alpha: float = 0.5,
        logq: float = 0.0,
        bpreg: float = 1.0,
        elu_param: float = 0.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}. Received: loss={loss!r}")
        if int(batch_size) < 1 or int(n_sample) < 0:
            raise ValueError(
                "`batch_size` must be >= 1 and `n_sample` >= 0. Received: "
                f"batch_size={batch_size!r}, n_sample={n_sample!r}"
            )
        self.step_model = step_model
        self.out_table: ItemTable = step_model.get_layer("item_table")
        names = {layer.name for layer in step_model.layers}
        if "item_embedding" in names:
            self.in_layer = step_model.get_layer("item_embedding")
        elif "item_onehot" in names:
            self.in_layer = step_model.get_layer("item_onehot")
        else:
            self.in_layer = self.out_table
        self.embed_dropout = step_model.get_layer("embedding_dropout")
        self.gru = step_model.get_layer("gru_step")
        n = self.out_table.num_items
        counts = np.asarray(item_counts, dtype=np.float64)
        if counts.shape != (n + 1,):
            raise ValueError(
                f"`item_counts` must have num_items + 1 = {n + 1} entries. "
                f"Received shape {counts.shape}"
            )
        pop = np.maximum(counts[1:], 0.0)
        if pop.sum() <= 0:
            raise ValueError("`item_counts` must have a positive count.")
        self.batch_size = int(batch_size)
        self.loss_name = loss
        self.n_sample = int(n_sample)
        self.sample_alpha = float(sample_alpha)
        self.logq = float(logq)
        self.bpreg = float(bpreg)
        self.elu_param = float(elu_param)
        self.seed = int(seed)
        weights = pop**self.sample_alpha
        cdf = np.cumsum(weights) / weights.sum()
        cdf[-1] = 1.0
        self._cdf = tf.constant(cdf, dtype=tf.float32)
        safe = np.maximum(counts, 1.0)
        self._log_pop = tf.constant(np.log(safe), dtype=tf.float32)
        self._log_pop_sample = tf.constant(
            self.sample_alpha * np.log(safe), dtype=tf.float32
        )
        self.hidden = self.add_weight(
            name="hidden_state",
            shape=(self.batch_size, self.gru.state_size),
            initializer="zeros",
            trainable=False,
        )
        self.sample_step = self.add_weight(
            name="sample_step",
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # Every weight exists now (the step model is functional), so the trainer
        # is built: `fit` callbacks such as BackupAndRestore require that.
        self.build()

    def build(self, input_shape=None):
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        return self.step_model(inputs, training=training)

    def reset_state(self):
        """Zeroes every slot's hidden state (call before an epoch)."""
        self.hidden.assign(tf.zeros_like(self.hidden))

    def _sample(self):
        seed = tf.stack([tf.constant(self.seed, tf.int64), self.sample_step.value])
        u = tf.random.stateless_uniform([self.n_sample], seed=seed)
        self.sample_step.assign_add(1)
        return tf.searchsorted(self._cdf, u, side="right") + 1  # item indices 1..n

    def _embed(self, item):
        if isinstance(self.in_layer, ItemTable):
            valid = tf.cast(item > 0, tf.float32)[:, None]
            return tf.gather(self.in_layer.embeddings, item) * valid
        if isinstance(self.in_layer, OneHotItems):
            return self.in_layer(item)
        return self.in_layer(item)

    def train_step(self, data):
        item = tf.cast(data["item_id"], tf.int64)
        target = tf.cast(data["target"], tf.int64)
        reset = tf.cast(data["reset"], tf.float32)
        valid = tf.cast(data["valid"], tf.float32)
        state = tf.stop_gradient(self.hidden * (1.0 - reset[:, None]))
        if self.n_sample:
            samples = tf.cast(self._sample(), tf.int64)
            columns = tf.concat([target, samples], axis=0)
            col_valid = tf.concat([valid, tf.ones([self.n_sample], tf.float32)], 0)
            log_pop = tf.concat(
                [
                    tf.gather(self._log_pop, target),
                    tf.gather(self._log_pop_sample, samples),
                ],
                axis=0,
            )
        else:
            columns, col_valid = target, valid
            log_pop = tf.gather(self._log_pop, target)
        with tf.GradientTape() as tape:
            x = self._embed(item)
            x = self.embed_dropout(x, training=True)
            top, new_state = self.gru(x, state, training=True)
            top = tf.cast(top, tf.float32)  # float32 scores under mixed precision
            w = tf.gather(self.out_table.embeddings, columns)
            b = tf.gather(self.out_table.bias, columns)
            scores = tf.matmul(top, w, transpose_b=True) + b[None, :]
            if self.loss_name == "cross-entropy":
                total = cross_entropy_loss(scores, valid, col_valid, log_pop, self.logq)
            elif self.loss_name == "bpr-max":
                total = bpr_max_loss(
                    scores, valid, col_valid, self.bpreg, self.elu_param
                )
            else:
                total = top1_max_loss(scores, valid, col_valid)
            loss = total / float(self.batch_size)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling (mixed precision)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        self.hidden.assign(tf.stop_gradient(tf.cast(new_state, self.hidden.dtype)))
        self.loss_tracker.update_state(loss, sample_weight=tf.reduce_sum(valid))
        return {"loss": self.loss_tracker.result()}


class ResetStateCallback(keras.callbacks.Callback):
    """Zeroes a `GRU4RecTrainer`'s slot states at the start of every epoch.

    (The first step of an epoch already resets every slot that holds a session,
    so this only clears the unused slots; it keeps epochs independent.)
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reset_state()


def item_counts(sessions: Sessions) -> np.ndarray:
    """Clicks per item index (``[num_items + 1]``, entry 0 is 0)."""
    return np.bincount(sessions.items, minlength=sessions.num_items + 1).astype(
        np.float64
    )
