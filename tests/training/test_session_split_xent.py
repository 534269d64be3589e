"""The fast step's two-block softmax cross-entropy against TF's fused kernel on
the concatenated scores (values, both gradients, masked columns), and the
trainer's `fit` reading its dataset without tf.data autotuning."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrec.training.session import _NEG, _split_softmax_xent


def test_split_softmax_xent_equals_the_fused_kernel_on_the_concatenation():
    rng = np.random.default_rng(0)
    b, n = 6, 23
    t = rng.normal(size=(b, b)).astype(np.float32) * 3
    s = rng.normal(size=(b, n)).astype(np.float32) * 3
    t[:, 4] = _NEG  # an empty slot: its target column takes no part
    t, s = tf.constant(t), tf.constant(s)
    up = tf.constant(rng.uniform(0.5, 2.0, size=b).astype(np.float32))
    up = tf.tensor_scatter_nd_update(up, [[4]], [0.0])  # and its row no weight
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([t, s])
        ours = _split_softmax_xent(t, s)
        fused = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.range(b), logits=tf.concat([t, s], 1)
        )
        l_ours, l_fused = tf.reduce_sum(ours * up), tf.reduce_sum(fused * up)
    valid = np.arange(b) != 4
    np.testing.assert_allclose(ours.numpy()[valid], fused.numpy()[valid], rtol=1e-5)
    g_ours = tape.gradient(l_ours, [t, s])
    g_fused = tape.gradient(l_fused, [t, s])
    for a, f in zip(g_ours, g_fused, strict=True):
        np.testing.assert_allclose(a.numpy(), f.numpy(), atol=1e-6)
    # The masked column gets exactly no gradient, the diagonal its -1 share.
    assert np.all(g_ours[0].numpy()[:, 4] == 0.0)
    assert g_ours[0].numpy()[0, 0] < 0


def test_fit_reads_datasets_without_tf_data_autotuning(monkeypatch):
    import keras

    from tfrec.data.sessions import Sessions, session_parallel_dataset
    from tfrec.models.gru4rec import gru4rec_step
    from tfrec.training.session import AdagradMomentum, GRU4RecTrainer, item_counts

    s = Sessions.from_events([0, 0, 0, 1, 1], [1, 2, 3, 2, 1], [0, 1, 2, 3, 4])
    seen = []
    monkeypatch.setattr(
        keras.Model, "fit", lambda self, x=None, *a, **k: seen.append(x.options())
    )
    tr = GRU4RecTrainer(gru4rec_step(s.num_items, layers=(4,)), item_counts(s),
                        batch_size=2, n_sample=2)
    tr.compile(optimizer=AdagradMomentum(0.1, 0.2))
    tr.fit(session_parallel_dataset(s, 2), epochs=1)
    assert seen[0].autotune.enabled is False
    assert seen[0].threading.private_threadpool_size == 1
