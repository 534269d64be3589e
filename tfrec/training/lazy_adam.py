"""Lazy Adam: Adam whose sparse gradients update only the rows they touch.

Keras 3's :class:`keras.optimizers.Adam` turns an embedding table's sparse
gradient (``tf.IndexedSlices``) into dense arithmetic: every step reads and writes
the whole table and both of its moments, so the step costs grow with the table,
not the batch. :class:`LazyAdam` updates, for a sparse gradient, only the rows in
the batch (duplicates summed first): their first and second moments decay and take
the gradient, and those rows move by Adam's bias-corrected step. Rows not in the
batch keep their moments and weights unchanged.

That is a **different optimiser** from dense Adam, not a faster implementation of
it: dense Adam decays every row's moments every step and keeps moving rows whose
gradient is zero (by their decaying first moment). The two agree exactly when
every row is in every batch. Dense gradients (the other layers) get Keras's Adam
unchanged. Opt-in only (``lazy_adam=True`` in the NCF settings).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfrec")
class LazyAdam(keras.optimizers.Adam):
    """Adam with row-wise (lazy) updates for sparse gradients.

    Takes :class:`keras.optimizers.Adam`'s arguments; ``amsgrad`` is not supported.
    """

    def __init__(self, learning_rate=0.001, *args, amsgrad: bool = False, **kwargs):
        if amsgrad:
            raise ValueError("LazyAdam does not support `amsgrad=True`.")
        super().__init__(learning_rate, *args, amsgrad=False, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        rows, at = tf.unique(gradient.indices)
        grad = tf.math.unsorted_segment_sum(
            tf.cast(gradient.values, dtype), at, tf.shape(rows)[0]
        )
        lr = tf.cast(learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = beta_1 * tf.gather(m.value, rows) + (1 - beta_1) * grad
        v_rows = beta_2 * tf.gather(v.value, rows) + (1 - beta_2) * tf.square(grad)
        self.assign(m, tf.IndexedSlices(m_rows, rows))
        self.assign(v, tf.IndexedSlices(v_rows, rows))
        delta = alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        self.assign_sub(variable, tf.IndexedSlices(delta, rows))
