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

Speed (the same arithmetic, up to float rounding): `GRU4RecTrainer` trains with
``_fast_step`` by default: each step reads the distinct item-table rows it needs
once (one `tf.unique` over samples, targets and clicked items), scores the
distinct samples only (a sample drawn ``c`` times enters the softmax once with
``+ log(c)``, cross-entropy), takes the gradients on those rows and updates
exactly them (`AdagradMomentum.apply_rows`: no second unique / segment sum, a
gather and scatter-update instead of the slow CPU scatter-add); the GRU runs on
its weights directly and the cross-entropy uses the fused sparse softmax
kernel; sampling is an inverse-CDF table lookup equal to ``searchsorted``.
``fast=False`` keeps the plain tape-over-Keras-layers step as the reference
(tests compare the two). Inputs of shape ``[steps, batch]`` (several
session-parallel steps per element) run their steps in a `tf.while_loop`.

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


def _sparse_read(variable, rows):
    """``variable[rows]`` as one ResourceGather (no copy of the whole table)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.sparse_read(rows)


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
            # rows + delta, written back (ResourceScatterAdd is several times
            # slower than a gather and a ResourceScatterUpdate on CPU).
            new_rows = _sparse_read(variable, rows) + delta
            self.assign(variable, tf.IndexedSlices(new_rows, rows))
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

    def apply_rows(self, variable, rows, gradient, touched=None, current=None):
        """Updates the ``rows`` of ``variable`` with their summed ``gradient``.

        The row-wise update of an ``IndexedSlices`` gradient whose indices are
        already unique (no `tf.unique` / segment sum here), for trainers that
        gather each step's rows once. Call it before `apply` of the same step
        (it reads that step's learning rate and does not count an iteration).

        Args:
            variable: A variable this optimizer was built with.
            rows: int ``[n]`` distinct row indices.
            gradient: ``[n, ...]`` the gradient of each row.
            touched: Optional bool ``[n]``: rows where it is False are left
                exactly as they are (their momentum included), as if absent.
            current: Optional ``[n, ...]``: the rows' present values (read
                by the caller this step), saving a second read.
        """
        k = self._get_variable_index(variable)
        acc = self._accumulators[k]
        dtype = variable.dtype
        lr = tf.cast(self._get_current_learning_rate(), dtype)
        mu = tf.cast(self.momentum, dtype)
        eps = tf.cast(self.epsilon, dtype)
        g = tf.convert_to_tensor(gradient, dtype)
        acc_rows = _sparse_read(acc, rows) + tf.square(g)
        self.assign(acc, tf.IndexedSlices(acc_rows, rows))
        step = lr * g / tf.sqrt(acc_rows + eps)
        if touched is not None:
            keep = tf.reshape(touched, [-1] + [1] * (len(g.shape) - 1))
        if self.momentum > 0:
            vel = self._velocities[k]
            v_old = _sparse_read(vel, rows)
            v_rows = mu * v_old - step
            if touched is not None:
                v_rows = tf.where(keep, v_rows, v_old)
            self.assign(vel, tf.IndexedSlices(v_rows, rows))
            delta = mu * v_rows - step if self.nesterov else v_rows
        else:
            delta = -step
        if current is None:
            current = _sparse_read(variable, rows)
        if touched is not None:
            delta = tf.where(keep, delta, tf.zeros_like(delta))
        self.assign(variable, tf.IndexedSlices(current + delta, rows))

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


@tf.custom_gradient
def _split_softmax_xent(t_scores, s_scores):
    """``-log softmax([t_scores, s_scores])[i, i]`` per row, without forming the
    concatenated score matrix (nor slicing its gradient apart): the softmax
    normaliser is summed over both blocks; the gradient is softmax minus
    one-hot on the diagonal of ``t_scores`` (``[b, b]``), softmax on
    ``s_scores``, the same as the fused sparse kernel's."""
    m = tf.stop_gradient(
        tf.maximum(
            tf.reduce_max(t_scores, axis=1, keepdims=True),
            tf.reduce_max(s_scores, axis=1, keepdims=True),
        )
    )
    e_t = tf.exp(t_scores - m)
    e_s = tf.exp(s_scores - m)
    total = tf.reduce_sum(e_t, axis=1, keepdims=True) + tf.reduce_sum(
        e_s, axis=1, keepdims=True
    )
    per_row = tf.math.log(total[:, 0]) + m[:, 0] - tf.linalg.diag_part(t_scores)

    def grad(upstream):
        w = upstream[:, None] / total
        return e_t * w - tf.linalg.diag(upstream), e_s * w

    return per_row, grad


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
    # -log softmax(x)[b, b] through the fused kernel (its gradient, softmax minus
    # one-hot, comes out of the forward pass).
    per_row = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.range(tf.shape(x)[0]), logits=x
    )
    return tf.reduce_sum(per_row * row_valid)


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
        fast: Use `_fast_step` (the default) rather than `_reference_step`,
            the same arithmetic through Keras layers and a tape over variables.
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
        fast: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.fast = bool(fast)
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
        self._init_sample_buckets(cdf.astype(np.float32))
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

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`; a `tf.data.Dataset` ``x`` (the session-parallel
        steps: slices of in-memory arrays, in order) is read with tf.data's
        autotuning off and one private thread. With autotuning on, a 1-thread
        run pinned to one core (``taskset -c 0``; YooChoose, RSC15 settings)
        spent about a third of its wall time idle: 3.18 ms per step against
        2.0 ms of CPU; with it off, wall equals CPU time. Unpinned, both
        settings run at the same speed."""
        if isinstance(x, tf.data.Dataset):
            options = tf.data.Options()
            options.autotune.enabled = False
            options.threading.private_threadpool_size = 1
            x = x.with_options(options)
        return super().fit(x, *args, **kwargs)

    def reset_state(self):
        """Zeroes every slot's hidden state (call before an epoch)."""
        self.hidden.assign(tf.zeros_like(self.hidden))

    _BUCKETS = 1 << 16

    def _init_sample_buckets(self, cdf: np.ndarray) -> None:
        """A lookup table that makes `_sample`'s inverse-CDF search a few
        gathers: for ``u`` in bucket ``k = floor(u * M)`` (``M`` a power of 2,
        so exact in float32) the answer lies in ``[start[k], start[k + 1]]``,
        ``start[k]`` = the number of CDF entries <= ``k / M``; stepping up
        while ``cdf[i] <= u`` at most ``max(start[k + 1] - start[k])`` times
        gives exactly ``searchsorted(cdf, u, side="right")``."""
        m = self._BUCKETS
        edges = (np.arange(m + 1, dtype=np.float64) / m).astype(np.float32)
        start = np.searchsorted(cdf, edges, side="right")
        self._bucket_start = tf.constant(start[:-1], tf.int32)
        self._bucket_steps = int(np.max(start[1:] - start[:-1]))
        # cdf[-1] is 1.0 > any u, so the search never passes the last entry.
        self._cdf_padded = tf.constant(
            np.concatenate([cdf, np.float32([2.0])]), tf.float32
        )

    def _sample(self):
        seed = tf.stack([tf.constant(self.seed, tf.int64), self.sample_step.value])
        u = tf.random.stateless_uniform([self.n_sample], seed=seed)
        self.sample_step.assign_add(1)
        return self._inverse_cdf(u) + 1  # item indices 1..n

    def _inverse_cdf(self, u):
        """``tf.searchsorted(self._cdf, u, side="right")`` through the buckets."""
        k = tf.cast(u * float(self._BUCKETS), tf.int32)
        idx = tf.gather(self._bucket_start, k)
        for _ in range(self._bucket_steps):
            idx += tf.cast(tf.gather(self._cdf_padded, idx) <= u, tf.int32)
        return idx

    def _embed(self, item):
        if isinstance(self.in_layer, ItemTable):
            valid = tf.cast(item > 0, tf.float32)[:, None]
            return tf.gather(self.in_layer.embeddings, item) * valid
        if isinstance(self.in_layer, OneHotItems):
            return self.in_layer(item)
        return self.in_layer(item)

    def train_step(self, data):
        """One session-parallel step (``[batch]`` inputs) or, for ``[steps,
        batch]`` inputs (`session_parallel_dataset` with ``steps_per_element``),
        its steps one after another in a `tf.while_loop`; the trailing steps
        without any valid slot (the padding of the last element) are skipped."""
        if not self.optimizer.built:  # `_fast_step` updates some rows itself
            self.optimizer.build(self.trainable_variables)
        # Mixed precision (a LossScaleOptimizer) takes the reference step: the fast
        # step updates rows itself and does not scale the loss.
        scaling = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        step = self._fast_step if self.fast and not scaling else self._reference_step
        if len(data["item_id"].shape) == 1:
            loss, weight = step(data)
            self.loss_tracker.update_state(loss, sample_weight=weight)
            return {"loss": self.loss_tracker.result()}
        active = tf.reduce_any(tf.cast(data["valid"], tf.float32) > 0, axis=1)
        count = tf.reduce_sum(tf.cast(active, tf.int32))

        def body(i, weighted, weights):
            loss, weight = step({k: v[i] for k, v in data.items()})
            return i + 1, weighted + loss * weight, weights + weight

        _, weighted, weights = tf.while_loop(
            lambda i, *_: i < count,
            body,
            (tf.constant(0), tf.constant(0.0), tf.constant(0.0)),
        )
        self.loss_tracker.update_state(
            weighted / tf.maximum(weights, 1.0), sample_weight=weights
        )
        return {"loss": self.loss_tracker.result()}

    def _columns(self, target, valid, samples):
        """``(scored ids, column validity, log popularity)`` of a step's score
        columns: the batch's targets, then the shared samples (if any)."""
        if samples is None:
            return target, valid, tf.gather(self._log_pop, target)
        columns = tf.concat([target, samples], axis=0)
        col_valid = tf.concat([valid, tf.ones([self.n_sample], tf.float32)], 0)
        log_pop = tf.concat(
            [tf.gather(self._log_pop, target), tf.gather(self._log_pop_sample, samples)],
            axis=0,
        )
        return columns, col_valid, log_pop

    def _loss(self, scores, valid, col_valid, log_pop):
        """The configured loss of a step's ``[batch, columns]`` scores, per slot."""
        if self.loss_name == "cross-entropy":
            total = cross_entropy_loss(scores, valid, col_valid, log_pop, self.logq)
        elif self.loss_name == "bpr-max":
            total = bpr_max_loss(scores, valid, col_valid, self.bpreg, self.elu_param)
        else:
            total = top1_max_loss(scores, valid, col_valid)
        return total / float(self.batch_size)

    def _gru_forward(self, x, state):
        """`StackedGRUStep` (training, no padding rule) on the cells' weights,
        each weight read once: one input matmul for the three gates and one
        state matmul for the update and reset gates (Keras ``GRUCell``,
        ``reset_after=False``, ``implementation=2``)."""
        new_states, start = [], 0
        for cell, drop, units in zip(
            self.gru.cells, self.gru.drops, self.gru.units, strict=True
        ):
            h = state if len(self.gru.units) == 1 else state[:, start : start + units]
            start += units
            mx = tf.matmul(x, cell.kernel.value)
            if cell.use_bias:
                mx = mx + cell.bias.value
            x_z, x_r, x_h = tf.split(mx, 3, axis=1)
            u_zr, u_h = tf.split(cell.recurrent_kernel.value, [2 * units, units], 1)
            h_z, h_r = tf.split(tf.matmul(h, u_zr), 2, axis=1)
            z = tf.sigmoid(x_z + h_z)
            r = tf.sigmoid(x_r + h_r)
            hh = tf.tanh(x_h + tf.matmul(r * h, u_h))
            out = drop(z * h + (1.0 - z) * hh, training=True)
            new_states.append(out)
            x = out
        new_state = new_states[0] if len(new_states) == 1 else tf.concat(new_states, 1)
        return x, new_state

    def _fast_step(self, data):
        """One step, the same arithmetic as `_reference_step`, faster: the rows
        of the item table a step needs (targets, samples and, when the table is
        also the input embedding, the clicked items) are read once, deduplicated
        (`tf.unique`), so the scoring matmul and its gradients cover distinct
        rows only, and `AdagradMomentum.apply_rows` updates exactly those rows
        (the bias only where it was scored) with no further unique / segment
        sum; the GRU runs on its weights directly (`_gru_forward`); the
        cross-entropy uses the fused sparse softmax kernel."""
        item = tf.cast(data["item_id"], tf.int64)
        target = tf.cast(data["target"], tf.int64)
        reset = tf.cast(data["reset"], tf.float32)
        valid = tf.cast(data["valid"], tf.float32)
        state = tf.stop_gradient(self.hidden * (1.0 - reset[:, None]))
        table = self.out_table
        shared = self.in_layer is table
        dedup = self.loss_name == "cross-entropy" and self.n_sample > 0
        samples = tf.cast(self._sample(), tf.int64) if self.n_sample else None
        if dedup:
            # Softmax over repeated samples: a sample drawn c times enters the
            # normaliser c times with one score, i.e. once with + log(c).
            scored_ids = tf.concat([samples, target], axis=0)
        else:
            scored_ids, col_valid, log_pop = self._columns(target, valid, samples)
        ids = tf.concat([scored_ids, item], axis=0) if shared else scored_ids
        # `tf.unique` keeps first occurrences in order: with the samples first,
        # rows[:n_s] are the distinct samples.
        rows, pos = tf.unique(ids)
        n_rows = tf.shape(rows)[0]
        n_scored = tf.shape(scored_ids)[0]
        w_rows = _sparse_read(table.embeddings, rows)
        b_rows = _sparse_read(table.bias, rows)
        others = [
            v
            for v in self.trainable_variables
            if v is not table.embeddings and v is not table.bias
        ]
        item_mask = tf.cast(item > 0, tf.float32)[:, None]
        if dedup:
            g_w, g_b, pairs, loss = self._dedup_xe(
                item, target, valid, state, rows, pos, w_rows, b_rows, item_mask, others, shared,
            )
        else:
            with tf.GradientTape() as tape:
                tape.watch([w_rows, b_rows])
                if shared:
                    x = tf.gather(w_rows, pos[n_scored:]) * item_mask
                else:
                    x = self._embed(item)
                x = self.embed_dropout(x, training=True)
                top, new_state = self._gru_forward(x, state)
                row_scores = tf.matmul(top, w_rows, transpose_b=True)
                scores = tf.gather(
                    row_scores + b_rows[None, :], pos[:n_scored], axis=1
                )
                loss = self._loss(scores, valid, col_valid, log_pop)
            grads = tape.gradient(loss, [w_rows, b_rows, *others])
            g_w, g_b = grads[0], grads[1]
            pairs = [
                (g, v) for g, v in zip(grads[2:], others, strict=True) if g is not None
            ]
            self.hidden.assign(tf.stop_gradient(new_state))
        # The bias is read at the scored columns only; with a shared table the
        # clicked items' rows are read too, and their bias must stay untouched.
        scored = None
        if shared:
            scored = (
                tf.math.unsorted_segment_max(
                    tf.ones([n_scored], tf.int32), pos[:n_scored], n_rows
                )
                > 0
            )
        if isinstance(self.optimizer, AdagradMomentum):
            self.optimizer.apply_rows(table.embeddings, rows, g_w, current=w_rows)
            self.optimizer.apply_rows(
                table.bias, rows, g_b, touched=scored, current=b_rows
            )
        else:
            b_idx = rows
            if scored is not None:
                g_b, b_idx = tf.boolean_mask(g_b, scored), tf.boolean_mask(rows, scored)
            pairs += [
                (
                    tf.IndexedSlices(g_w, rows, tf.shape(table.embeddings.value)),
                    table.embeddings,
                ),
                (
                    tf.IndexedSlices(g_b, b_idx, tf.shape(table.bias.value)),
                    table.bias,
                ),
            ]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        return loss, tf.reduce_sum(valid)

    def _dedup_xe(
        self, item, target, valid, state, rows, pos, w_rows, b_rows, item_mask, others, shared,
    ):
        """Forward and gradients of the cross-entropy step over distinct
        samples (each with + log(count)); the gradients of the sampled rows,
        the target rows and the input rows are taken on separate leaves and
        summed into the distinct rows with one small scatter."""
        b = self.batch_size
        k = self.n_sample
        n_s = tf.reduce_max(pos[:k]) + 1
        s_rows = rows[:n_s]
        s_count = tf.math.unsorted_segment_sum(tf.ones([k], tf.float32), pos[:k], n_s)
        n_rows = tf.shape(rows)[0]
        t_pos = pos[k : k + b]
        w_s, b_s = w_rows[:n_s], b_rows[:n_s]
        w_t, b_t = tf.gather(w_rows, t_pos), tf.gather(b_rows, t_pos)
        leaves = [w_s, b_s, w_t, b_t]
        if shared:
            x_rows = tf.gather(w_rows, pos[k + b :])
            leaves.append(x_rows)
        s_adj = tf.math.log(s_count)
        t_adj = tf.zeros([b], tf.float32)
        if self.logq:
            s_adj -= self.logq * tf.gather(self._log_pop_sample, s_rows)
            t_adj -= self.logq * tf.gather(self._log_pop, target)
        with tf.GradientTape() as tape:
            tape.watch(leaves)
            x = x_rows * item_mask if shared else self._embed(item)
            x = self.embed_dropout(x, training=True)
            top, new_state = self._gru_forward(x, state)
            s_scores = tf.matmul(top, w_s, transpose_b=True) + (b_s + s_adj)[None]
            t_scores = tf.matmul(top, w_t, transpose_b=True) + (b_t + t_adj)[None]
            t_scores = tf.where(valid[None, :] > 0, t_scores, _NEG)
            per_row = _split_softmax_xent(t_scores, s_scores)
            loss = tf.reduce_sum(per_row * valid) / float(b)
        grads = tape.gradient(loss, [*leaves, *others])
        n_leaves = len(leaves)
        g_s, gb_s, g_t, gb_t = grads[:4]
        extra = n_rows - n_s
        g_w = tf.concat([g_s, tf.zeros([extra, tf.shape(g_s)[1]], g_s.dtype)], 0)
        g_b = tf.concat([gb_s, tf.zeros([extra], gb_s.dtype)], 0)
        if shared:
            g_w = tf.tensor_scatter_nd_add(
                g_w, pos[k:][:, None], tf.concat([g_t, grads[4]], 0)
            )
        else:
            g_w = tf.tensor_scatter_nd_add(g_w, t_pos[:, None], g_t)
        g_b = tf.tensor_scatter_nd_add(g_b, t_pos[:, None], gb_t)
        pairs = [
            (g, v)
            for g, v in zip(grads[n_leaves:], others, strict=True)
            if g is not None
        ]
        self.hidden.assign(tf.stop_gradient(new_state))
        return g_w, g_b, pairs, loss

    def _reference_step(self, data):
        """One step through Keras layers and `tf.GradientTape` over the
        variables (``fast=False``): the reference the fast path is tested on."""
        item = tf.cast(data["item_id"], tf.int64)
        target = tf.cast(data["target"], tf.int64)
        reset = tf.cast(data["reset"], tf.float32)
        valid = tf.cast(data["valid"], tf.float32)
        state = tf.stop_gradient(self.hidden * (1.0 - reset[:, None]))
        samples = tf.cast(self._sample(), tf.int64) if self.n_sample else None
        columns, col_valid, log_pop = self._columns(target, valid, samples)
        with tf.GradientTape() as tape:
            x = self._embed(item)
            x = self.embed_dropout(x, training=True)
            top, new_state = self.gru(x, state, training=True)
            top = tf.cast(top, tf.float32)  # float32 scores under mixed precision
            w = tf.gather(self.out_table.embeddings, columns)
            b = tf.gather(self.out_table.bias, columns)
            scores = tf.matmul(top, w, transpose_b=True) + b[None, :]
            loss = self._loss(scores, valid, col_valid, log_pop)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling (mixed precision)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        self.hidden.assign(tf.stop_gradient(tf.cast(new_state, self.hidden.dtype)))
        return loss, tf.reduce_sum(valid)


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
