"""Every item's score for a block of users as one matmul (factor models).

A model whose score is a dot product of a user-side and an item-side vector plus
biases (MF, BPR-MF, GMF with its ``h`` folded into the user vector, VBPR with
``E f_i`` precomputed for every item) scores a block of users against the whole
catalogue as ``act(U[users] @ I^T + b_u + b_i + b)``; NCF's MLP part (NeuMF,
NCF-MLP) splits its first layer into the user's half and every item's half, so
only ``relu(a_u + c_i)`` and the layers above it run per pair. Which layers hold
the vectors is declared once, in `tfrec.registry.CATALOGUE_SCORING`
(`tfrec.registry.Factor`); the export's ``recommend`` graph
(`export.recommend`) and the evaluation scorer
(`tfrec.evaluation.scoring.keras_scorer`) both use :class:`FactorScores`.

The float32 sums run in another order than the pair model's, so scores agree
within float tolerance, not to the bit (tests/evaluation/test_factors.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["FactorScores", "factor_rule", "has_layers"]


def factor_rule(model, name: str | None = None):
    """The `tfrec.registry.Factor` of ``model`` (by registry ``name``, default the
    model's name) when every layer it names exists, else None."""
    from tfrec.registry import CATALOGUE_SCORING

    rule = CATALOGUE_SCORING.get(name or model.name)
    factor = getattr(rule, "factor", None)
    return factor if factor is not None and has_layers(model, factor) else None


def has_layers(model, factor) -> bool:
    """Whether ``model`` has every layer ``factor`` names."""
    names = [*factor.user, *factor.item, *factor.item_bias]
    names += [n for n in (factor.user_bias, factor.offset, factor.head) if n]
    if factor.tower:
        names += [factor.tower[0], factor.tower[1], f"{factor.tower[2]}_dense_1"]
    layers = {layer.name for layer in model.layers}
    return all(n.split("@")[0] in layers for n in names)


class FactorScores:
    """``scores(users) -> [batch, N]`` of a factor model (TF ops on its live
    variables, so a scorer built once follows training).

    Args:
        model: the Keras pair model.
        factor: its `tfrec.registry.Factor`.
        output: the scored output (``score``/``rating``).
        item_inputs: item-side constants ``{input: [N, ...]}`` the rule's
            ``layer@input`` parts take.
    """

    def __init__(self, model, factor, output: str,
                 item_inputs: Mapping[str, np.ndarray] | None = None):
        self.model, self.factor, self.output = model, factor, output
        self.item_inputs = {k: np.asarray(v, np.float32)
                            for k, v in (item_inputs or {}).items()}
        head = model.get_layer(factor.head) if factor.head else None
        self.head = head
        self.activation = (head.activation if head is not None
                           else getattr(model.get_layer(output), "activation", None))
        self.dense = []
        if factor.tower:
            k = 1
            while any(layer.name == f"{factor.tower[2]}_dense_{k}"
                      for layer in model.layers):
                self.dense.append(model.get_layer(f"{factor.tower[2]}_dense_{k}"))
                k += 1

    # ---- the two sides

    def _width(self, names) -> int:
        return sum(self._part_width(n) for n in names)

    def _part_width(self, name: str) -> int:
        layer = self.model.get_layer(name.split("@")[0])
        if "@" in name:
            return int(layer.kernel.shape[-1])
        return int(layer.embeddings.shape[-1])

    def _item_part(self, name: str, n: int):
        """``[n, width]`` rows of item indices ``0..n-1`` of one item-side part."""
        import tensorflow as tf

        layer_name, _, source = name.partition("@")
        layer = self.model.get_layer(layer_name)
        if source:
            rows = tf.constant(self.item_inputs[source][:n])
            return tf.matmul(rows, tf.cast(layer.kernel, tf.float32))
        table = tf.cast(layer.embeddings, tf.float32)
        have = int(table.shape[0])
        if n <= have:
            return table[:n]
        return tf.concat([table, tf.zeros([n - have, table.shape[1]])], 0)

    def _user_part(self, name: str, users, valid):
        import tensorflow as tf

        table = tf.cast(self.model.get_layer(name).embeddings, tf.float32)
        rows = int(table.shape[0])
        ok = tf.logical_and(valid, users < rows)
        got = tf.gather(table, tf.where(ok, users, tf.zeros_like(users)))
        return got * tf.cast(ok, tf.float32)[:, None]

    def item_side(self, n: int) -> dict:
        """Item-side tensors of ``n`` items: ``vectors [n, d]``, ``bias [n]``,
        ``tower [n, h1]`` (the items' half of the MLP's first layer)."""
        import tensorflow as tf

        f = self.factor
        out = {}
        if f.item:
            out["vectors"] = tf.concat([self._item_part(p, n) for p in f.item], 1)
        if f.item_bias:
            out["bias"] = tf.add_n(
                [tf.reshape(self._item_part(p, n), [n]) for p in f.item_bias]
            )
        if f.tower:
            m = int(self.model.get_layer(f.tower[1]).embeddings.shape[-1])
            kernel = tf.cast(self.dense[0].kernel, tf.float32)
            out["tower"] = tf.matmul(self._item_part(f.tower[1], n), kernel[-m:])
        return out

    def scores(self, users, side: Mapping):
        """``[batch, N]`` float32 scores of ``users`` (int64 ``[batch]``; ids
        outside a table's rows get that table's zero vector, as `IdEmbedding`)
        against the item-side tensors ``side`` (:meth:`item_side`)."""
        import tensorflow as tf

        f = self.factor
        users = tf.cast(users, tf.int64)
        valid = users >= 0
        logits = None

        def add(x):
            return x if logits is None else logits + x

        if f.user:
            u = tf.concat([self._user_part(p, users, valid) for p in f.user], 1)
            if self.head is not None:
                h = tf.cast(self.head.kernel, tf.float32)[: int(u.shape[1]), 0]
                u = u * h[None, :]
            logits = add(tf.matmul(u, side["vectors"], transpose_b=True))
        if f.user_bias:
            bu = self._user_part(f.user_bias, users, valid)
            logits = add(bu)
        if f.item_bias:
            logits = add(side["bias"][None, :])
        if f.tower:
            logits = add(self._tower(users, valid, side["tower"]))
        if f.offset:
            logits = logits + tf.cast(self.model.get_layer(f.offset).bias, tf.float32)
        if self.head is not None and self.head.use_bias:
            logits = logits + tf.cast(self.head.bias, tf.float32)[0]
        if self.activation is not None:
            logits = self.activation(logits)
        return tf.cast(logits, tf.float32)

    def _tower(self, users, valid, items_half):
        """``h_mlp . MLP(concat(p_u, q_i))`` for every pair, from the user's half
        of the first layer and every item's precomputed half."""
        import tensorflow as tf

        f = self.factor
        first = self.dense[0]
        kernel = tf.cast(first.kernel, tf.float32)
        p = self._user_part(f.tower[0], users, valid)
        a = tf.matmul(p, kernel[: int(p.shape[1])])
        if first.use_bias:
            a = a + tf.cast(first.bias, tf.float32)
        b = tf.shape(users)[0]
        n = tf.shape(items_half)[0]
        x = first.activation(a[:, None, :] + items_half[None, :, :])
        x = tf.reshape(x, [b * n, -1])
        for layer in self.dense[1:]:
            y = tf.matmul(x, tf.cast(layer.kernel, tf.float32))
            if layer.use_bias:
                y = y + tf.cast(layer.bias, tf.float32)
            x = layer.activation(y)
        h = tf.cast(self.head.kernel, tf.float32)[-int(x.shape[1]):]
        return tf.reshape(tf.matmul(x, h), [b, n])

    # ---- frozen: every weight-derived table as numpy (the export's constants)

    def frozen(self, n: int) -> dict:
        """The tables of a fixed model (an export), numpy, with everything that
        depends on one side only precomputed: ``user_vectors [U+1, d]`` (GMF's
        ``h`` folded in), ``user_bias [U+1]``, ``user_tower [U+1, h1]`` (the
        user's half of the MLP's first layer, its bias included), ``item_vectors
        [n, d]``, ``item_bias [n]`` (every scalar offset folded in),
        ``item_tower [n, h1]``, the MLP's later layers and its head. The last
        user row is the out-of-vocabulary user's (`IdEmbedding`'s zero vector);
        :func:`frozen_scores` scores with them."""
        import tensorflow as tf

        f = self.factor
        side = {k: np.asarray(v, np.float32) for k, v in self.item_side(n).items()}
        out: dict = {"activation": self.activation, "layers": []}
        oov = tf.constant([-1], tf.int64)

        def user_table(part_fn):
            rows = max(int(self.model.get_layer(p).embeddings.shape[0])
                       for p in self._user_layers())
            ids = tf.concat([tf.range(rows, dtype=tf.int64), oov], 0)
            return np.asarray(part_fn(ids, ids >= 0), np.float32)

        if f.user:
            def vectors(ids, valid):
                u = tf.concat([self._user_part(p, ids, valid) for p in f.user], 1)
                if self.head is not None:
                    h = tf.cast(self.head.kernel, tf.float32)[: int(u.shape[1]), 0]
                    u = u * h[None, :]
                return u

            out["user_vectors"] = user_table(vectors)
            out["item_vectors"] = side["vectors"]
        if f.user_bias:
            out["user_bias"] = user_table(
                lambda ids, valid: tf.reshape(self._user_part(f.user_bias, ids, valid),
                                              [-1]))
        bias = side.get("bias", np.zeros(n, np.float32))
        if f.offset:
            bias = bias + np.float32(self.model.get_layer(f.offset).bias.numpy())
        if self.head is not None and self.head.use_bias:
            bias = bias + np.asarray(self.head.bias.numpy(), np.float32)[0]
        out["item_bias"] = bias.astype(np.float32)
        if f.tower:
            first = self.dense[0]
            kernel = tf.cast(first.kernel, tf.float32)

            def half(ids, valid):
                p = self._user_part(f.tower[0], ids, valid)
                a = tf.matmul(p, kernel[: int(p.shape[1])])
                return a + tf.cast(first.bias, tf.float32) if first.use_bias else a

            out["user_tower"] = user_table(half)
            out["item_tower"] = side["tower"]
            out["first_activation"] = first.activation
            out["layers"] = [
                (np.asarray(layer.kernel.numpy(), np.float32),
                 np.asarray(layer.bias.numpy(), np.float32) if layer.use_bias else None,
                 layer.activation)
                for layer in self.dense[1:]
            ]
            width = out["layers"][-1][0].shape[1] if out["layers"] else kernel.shape[1]
            out["head_tower"] = np.asarray(self.head.kernel.numpy(),
                                           np.float32)[-int(width):]
        return out

    def _user_layers(self) -> list[str]:
        f = self.factor
        return [*f.user, *([f.user_bias] if f.user_bias else []),
                *([f.tower[0]] if f.tower else [])]


def frozen_scores(users, frozen: dict):
    """``[batch, N]`` scores from :meth:`FactorScores.frozen` tables (graph
    constants): gathers of the user rows, one matmul, the MLP part over the
    user's half plus every item's."""
    import tensorflow as tf

    users = tf.cast(users, tf.int64)

    def rows(name):
        table = tf.constant(frozen[name])
        last = int(frozen[name].shape[0]) - 1  # the OOV row
        ok = tf.logical_and(users >= 0, users < last)
        return tf.gather(table, tf.where(ok, users, tf.fill(tf.shape(users),
                                                            tf.constant(last, tf.int64))))

    logits = tf.constant(frozen["item_bias"])[None, :]
    if "user_vectors" in frozen:
        logits = tf.matmul(rows("user_vectors"), tf.constant(frozen["item_vectors"]),
                           transpose_b=True) + logits
    if "user_bias" in frozen:
        logits = logits + rows("user_bias")[:, None]
    if "user_tower" in frozen:
        # Items along the last axis ([batch, width, N]): each layer is one
        # batched matmul and the head's output is already [batch, 1, N] (ONNX
        # runs this layout faster than [batch * N, width] rows plus reshapes).
        a = rows("user_tower")
        def const3(array):  # [1, rows, cols], as a constant (no slicing at run time)
            return tf.constant(np.ascontiguousarray(array)[None])

        x = frozen["first_activation"](
            tf.expand_dims(a, 2) + const3(frozen["item_tower"].T))  # [b, h1, N]
        for kernel, bias, act in frozen["layers"]:
            y = tf.matmul(const3(kernel.T), x)
            x = act(y + const3(bias[:, None]) if bias is not None else y)
        logits = logits + tf.squeeze(tf.matmul(const3(frozen["head_tower"].T), x), 1)
    act = frozen["activation"]
    return tf.cast(act(logits) if act is not None else logits, tf.float32)
