"""The ``recommend`` signature: top-K items with ``k`` and exclusions per request.

Every model that ranks a catalogue gets, beside ``serving_default`` (its main
output, unchanged), a SavedModel signature ``recommend`` and an ONNX file
``recommend.onnx`` converted from it by tf2onnx; a factor model's (one
``user_id`` input, sigmoid or linear output) is instead written node by node
from the same precomputed tables (`export.recommend_onnx`: about a third of the
nodes, for onnxruntime's per-node cost; the manifest's ``onnx_writer`` says
which):

* inputs: the query (the model's user/session/item inputs, batch axis first),
  ``k`` (int64 scalar: how many items per row) and ``exclude`` (int64
  ``[batch, n]``: item indices never returned for that row, padded with -1);
* outputs: ``item_ids`` (int64 ``[batch, k]``) and ``scores`` (float32
  ``[batch, k]``), best first, plus any ``passthrough`` output of the model
  (``gru4rec_step``'s ``new_hidden_state``).

All-item scoring, exclusion (score -inf) and top-K (``tf.math.top_k`` with the
runtime ``k``; ONNX ``TopK`` with a runtime k) happen inside the graph. How a
model scores its catalogue is declared once, in
`tfrec.registry.CATALOGUE_SCORING` (``pairwise``, ``vector``, ``columns``,
``embedding``; see `tfrec.registry.Catalogue`); :func:`build_recommend` is the one
builder. Item-side inputs a model needs (VBPR's ``item_features``, a hybrid's
``item_content``, MV-DNN's item views, I-AutoRec's rating row of every item) are
constants of the export: ``export_model(..., catalogue={"item_content": array
[N, d]})``. ``tfrec export RUN`` takes them from the run's ``vocab/``: the graph's
recipe's ``serving_catalogue(graph, kwargs, vocab)`` (MV-DNN: ``tables.npz``;
AutoRec: ``seen.npz`` with the ratings), else ``vocab/item_content.npz`` for one
missing input. Without them the export has no ``recommend`` signature and the
manifest says why. ``tfrec recommend --artifact DIR --user ID`` runs the
signature for models whose recipe builds a user's query (``serving_query``:
MV-DNN's user view, CDAE's item vector, AutoRec's user id or rating row), with
the user's known items as the request's exclusions (:func:`recommend_for_user`).

Bad requests, inside the graph (TF and ONNX agree; tests/export): ``k`` is
clamped into ``[1, N]``; exclusion ids outside ``[0, N)`` (the -1 padding) match
nothing; rows with fewer than ``k`` items left are filled with id -1 and score
-inf. The Python client (`export.serving.ExportedModel.recommend`) rejects
``k < 1``, ``k > N`` and exclusion ids outside ``[-1, N)`` with a clear error.

Left out (no catalogue to rank, or ranking needs per-request features of every
candidate): ``wide_deep`` (a CTR scorer over raw per-request user and item
features, strings through lookup tables), ``youtube_ranking`` (ranks the
candidates of the retrieval stage with per-candidate features such as
``candidate_score``), ``content_cnn``, ``mv_dnn_user_tower`` and
``mv_dnn_item_tower`` (they only embed).

GRU4Rec session state (``gru4rec_step``, TF Serving keeps no state): a client
holds the hidden state between clicks. A new session starts from zeros
``[1, sum(layers)]``; for each click it sends ``{"item_id": [item], "hidden_state":
state, "k": 10, "exclude": [[...]]}`` to ``recommend`` and keeps the returned
``new_hidden_state`` for the next click; ``item_ids`` are the next-item
recommendations after that click. Stepping a session this way equals the
whole-sequence ``gru4rec`` graph on the session's items (tests/export).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

SIGNATURE = "recommend"
ONNX_FILE = "recommend.onnx"
# A run's content of every item index (key "content", [N, ...]; tfrec.training.runner)
RUN_CONTENT = "vocab/item_content.npz"
K_MEANING = (
    "int64 scalar: items returned per row; the graph clamps it into [1, catalogue_size]"
)
EXCLUDE_MEANING = (
    "int64 [batch, n]: item indices never returned for that row, padded with -1; "
    "ids outside [0, catalogue_size) match nothing"
)


class RecommendError(ValueError):
    """The recommend signature cannot be built for this model and catalogue."""


# ------------------------------------------------------------------ the plan


class RecommendPlan:
    """A Keras model, its catalogue rule and the constants of its catalogue."""

    def __init__(self, model, rule, constants: Mapping[str, np.ndarray], size: int):
        self.model, self.rule, self.size = model, rule, int(size)
        self.constants = {k: np.asarray(v) for k, v in constants.items()}
        inputs = model.input
        side = set(rule.item_features) | {rule.item_input}
        if rule.rule == "columns":
            self.query_specs = {"user_id": ((None,), "int64")}
        else:
            self.query_specs = {
                n: (tuple(t.shape), _dtype(t)) for n, t in sorted(inputs.items())
                if n not in side
            }  # fmt: skip
        self.never = tuple(int(i) for i in rule.never)
        self.manifest: dict = {}
        self.factor = None
        if rule.rule == "pairwise" and rule.factor is not None:
            from tfrec.evaluation.factors import FactorScores, has_layers

            if has_layers(model, rule.factor):
                self.factor = FactorScores(model, rule.factor, rule.scores,
                                           self.constants)
                # every one-sided table, once: constants of the graph
                self.frozen = self.factor.frozen(self.size)

    # ---- the graph

    def full_scores(self, query: Mapping[str, Any]):
        """``[batch, N]`` float32 scores of every item (and passthrough outputs)."""
        import tensorflow as tf

        rule, n, model = self.rule, self.size, self.model
        if rule.rule == "vector":
            out = model(dict(query), training=False)
            extra = {k: out[k] for k in rule.passthrough}
            return tf.cast(out[rule.scores], tf.float32), extra
        if self.factor is not None:  # one matmul against the item table
            from tfrec.evaluation.factors import frozen_scores

            return frozen_scores(query["user_id"], self.frozen), {}
        if rule.rule == "pairwise":
            first = next(iter(query.values()))
            b = tf.shape(first)[0]
            rows = tf.reshape(tf.tile(tf.range(b)[:, None], [1, n]), [-1])
            cols = tf.tile(tf.range(n), [b])
            feed = {k: tf.gather(v, rows) for k, v in query.items()}
            if rule.item_input:
                feed[rule.item_input] = tf.cast(cols, tf.int64)
            for k in rule.item_features:
                feed[k] = tf.gather(tf.constant(self.constants[k]), cols)
            out = model(feed, training=False)[rule.scores]
            return tf.reshape(tf.cast(out, tf.float32), [b, n]), {}
        if rule.rule == "columns":
            (name,) = rule.item_features
            recon = model({name: tf.constant(self.constants[name])}, training=False)
            table = tf.transpose(tf.cast(recon[rule.scores], tf.float32))  # [U, N]
            return _gather_rows(table, query["user_id"])
        if rule.rule == "embedding":
            table = tf.cast(self._table(), tf.float32)
            norms = tf.sqrt(tf.reduce_sum(tf.square(table), axis=1, keepdims=True))
            unit = table / tf.maximum(norms, 1e-12)
            ids = tf.cast(query[next(iter(query))], tf.int64)
            valid = tf.logical_and(ids >= 0, ids < n)
            rows = tf.gather(unit, tf.where(valid, ids, tf.zeros_like(ids)))
            scores = tf.matmul(rows, unit, transpose_b=True)  # [batch, N]
            scores = tf.where(valid[:, None], scores, -np.inf)
            self_hit = tf.equal(ids[:, None], tf.range(n, dtype=tf.int64)[None, :])
            return tf.where(self_hit, -np.inf, scores), {}
        raise RecommendError(f"Unknown catalogue rule {rule.rule!r}.")

    def _table(self):
        layer = self.model.get_layer(self.rule.table)
        return layer.embeddings

    def recommend(self, query, k, exclude):
        """The graph body: ``{item_ids, scores, *passthrough}``."""
        import tensorflow as tf

        n = self.size
        scores, extra = self.full_scores(query)
        masked = exclude_scatter(scores, exclude, n)
        if self.never:
            never = np.zeros(n, bool)
            never[list(self.never)] = True
            masked = tf.where(tf.constant(never)[None, :], -np.inf, masked)
        k = tf.clip_by_value(tf.cast(tf.reshape(k, []), tf.int32), 1, n)
        top, index = tf.math.top_k(masked, k=k, sorted=True)
        index = tf.where(
            tf.equal(top, -np.inf), tf.constant(-1, tf.int64), tf.cast(index, tf.int64)
        )
        return {"item_ids": index, "scores": top, **extra}

    def input_signature(self) -> dict:
        import tensorflow as tf

        specs = {
            name: tf.TensorSpec((None, *shape[1:]), dtype, name=name)
            for name, (shape, dtype) in self.query_specs.items()
        }
        specs["k"] = tf.TensorSpec((), tf.int64, name="k")
        specs["exclude"] = tf.TensorSpec((None, None), tf.int64, name="exclude")
        return specs

    # ---- reference, save, convert, check

    def reference(self, query, k, exclude) -> dict[str, np.ndarray]:
        """The same computation run eagerly on the Keras model (numpy out)."""
        import tensorflow as tf

        feed = {
            name: tf.constant(np.asarray(query[name]), dtype)
            for name, (_, dtype) in self.query_specs.items()
        }
        out = self.recommend(
            feed, tf.constant(k, tf.int64), tf.constant(exclude, tf.int64)
        )
        return {key: np.asarray(v) for key, v in out.items()}

    def save(self, path: str | Path) -> None:
        """SavedModel with ``serving_default`` (the model, as ``model.export``
        writes it) and ``recommend``."""
        import keras
        import tensorflow as tf
        from keras.src.export.export_utils import get_input_signature

        specs = self.input_signature()
        names = list(specs)

        @tf.function(input_signature=[specs[n] for n in names])
        def recommend(*args):
            feed = dict(zip(names, args, strict=True))
            k, exclude = feed.pop("k"), feed.pop("exclude")
            return self.recommend(feed, k, exclude)

        archive = keras.export.ExportArchive()
        archive.track_and_add_endpoint(
            "serve", self.model, get_input_signature(self.model)
        )
        archive.add_endpoint(SIGNATURE, recommend)
        archive.write_out(str(path), verbose=False)

    def output_names(self) -> list[str]:
        return ["item_ids", "scores", *self.rule.passthrough]

    def convert(self, saved_model_dir: Path, opset: int) -> Path:
        """``recommend.onnx`` from the SavedModel's ``recommend`` signature."""
        import tensorflow as tf
        import tf2onnx

        loaded = tf.saved_model.load(str(saved_model_dir))
        signature = loaded.signatures[SIGNATURE]
        specs = self.input_signature()
        names = list(specs)

        @tf.function(input_signature=[specs[n] for n in names])
        def serve(*args):
            return signature(**dict(zip(names, args, strict=True)))

        path = Path(saved_model_dir) / ONNX_FILE
        proto = self.factor_onnx(opset)
        self.onnx_writer = "export.recommend_onnx" if proto is not None else "tf2onnx"
        if proto is not None:  # the factor graph, written node by node
            path.write_bytes(proto.SerializeToString())
        else:
            proto, _ = tf2onnx.convert.from_function(
                serve, input_signature=[specs[n] for n in names], opset=opset,
                output_path=str(path),
            )  # fmt: skip
        from export.artifact import check_onnx_ops

        check_onnx_ops(proto, self.model, opset=opset)
        got = sorted(o.name for o in proto.graph.output)
        if got != sorted(self.output_names()):
            raise RecommendError(
                f"recommend.onnx outputs {got}, expected {sorted(self.output_names())}."
            )
        return path

    def factor_onnx(self, opset: int):
        """A factor model's ``recommend.onnx`` written node by node
        (`export.recommend_onnx`: about a third of tf2onnx's nodes, biases folded
        into the matmuls, top-k before the output activation), or None where the
        plan is not a factor model or its activations are not the ones that
        module writes (then tf2onnx converts the signature)."""
        specs = {n: d for n, (_, d) in self.query_specs.items()}
        if self.factor is None or specs != {"user_id": "int64"}:
            return None
        from export.recommend_onnx import factor_onnx

        try:
            return factor_onnx(self.frozen, self.size, opset)
        except RecommendError:
            return None

    def requests(self, batches: list[dict], rng: np.random.Generator) -> list[tuple]:
        """(query, k, exclude) requests for the parity check: each batch at two
        ``k`` and with and without -1-padded exclusions."""
        out = []
        for batch in batches:
            query = {n: np.asarray(batch[n]) for n in self.query_specs if n in batch}
            if self.rule.rule == "columns":
                b = len(next(iter(batch.values())))
                query = {"user_id": rng.integers(0, self._users(), b).astype(np.int64)}
            b = len(next(iter(query.values())))
            excl = rng.integers(-1, self.size, (b, 3)).astype(np.int64)
            for k, exclude in (
                (min(3, self.size), np.zeros((b, 0), np.int64)),
                (self.size, excl),
            ):
                out.append((query, k, exclude))
        return out

    def _users(self) -> int:
        (name,) = self.rule.item_features
        return int(self.constants[name].shape[1])

    def check(self, saved_model_dir: Path, onnx_path: Path, requests, atol, rtol):
        """Parity of the SavedModel (TF1 loader) and ONNX ``recommend`` against
        :meth:`reference`: scores allclose at the tolerance (``-inf`` equal), ids
        equal wherever the score is separated from both neighbours by more than
        the tolerance (near-ties may swap)."""
        import onnxruntime as ort

        from export.parity import Tf1SignatureRunner

        runner = Tf1SignatureRunner(saved_model_dir, signature=SIGNATURE)
        session = ort.InferenceSession(
            str(onnx_path), providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        report = {"saved_model": [], "onnx": []}
        try:
            for query, k, exclude in requests:
                feed = {**query, "k": np.asarray(k, np.int64), "exclude": exclude}
                want = self.reference(query, k, exclude)
                got_tf = runner(feed)
                got_onnx = dict(zip(names, session.run(None, feed), strict=True))
                for key, got in (("saved_model", got_tf), ("onnx", got_onnx)):
                    report[key].append(compare_topk(got, want, atol, rtol))
        finally:
            runner.close()
        return {
            key: {
                "passed": all(r["passed"] for r in rows),
                "max_abs_diff": max(r["max_abs_diff"] for r in rows),
                "ids_compared": sum(r["ids_compared"] for r in rows),
                "requests": len(rows),
            }
            for key, rows in report.items()
        }


def exclude_scatter(scores, exclude, n: int):
    """``scores [batch, N]`` with ``-inf`` at each row's ``exclude`` ids: the
    valid ids (``[0, N)``; the -1 padding and others match nothing) scattered
    into the scores (ONNX ``ScatterND``), not compared with every item."""
    import tensorflow as tf

    ex = tf.cast(exclude, tf.int64)
    ok = tf.logical_and(ex >= 0, ex < n)
    rows = tf.broadcast_to(
        tf.range(tf.shape(ex, out_type=tf.int64)[0])[:, None],
        tf.shape(ex, out_type=tf.int64),
    )
    index = tf.boolean_mask(tf.stack([rows, ex], -1), ok)
    fill = tf.fill(tf.shape(index)[:1], tf.constant(-np.inf, tf.float32))
    return tf.tensor_scatter_nd_update(tf.cast(scores, tf.float32), index, fill)


def _dtype(tensor) -> str:
    d = tensor.dtype
    return d if isinstance(d, str) else d.name


def _gather_rows(table, ids):
    """Rows ``ids`` of ``table``; ids outside ``[0, rows)`` get all ``-inf``."""
    import tensorflow as tf

    ids = tf.cast(ids, tf.int64)
    rows = tf.shape(table, out_type=tf.int64)[0]
    valid = tf.logical_and(ids >= 0, ids < rows)
    got = tf.gather(table, tf.where(valid, ids, tf.zeros_like(ids)))
    return tf.where(valid[:, None], got, tf.constant(-np.inf, tf.float32)), {}


def compare_topk(got: Mapping, want: Mapping, atol: float, rtol: float) -> dict:
    """Scores within ``atol + rtol * |want|`` (``-inf`` must match ``-inf``);
    ``item_ids`` equal at positions whose score gap to each neighbour in the row
    exceeds that tolerance; passthrough outputs allclose."""
    ws, gs = np.asarray(want["scores"]), np.asarray(got["scores"])
    ok = ws.shape == gs.shape
    max_diff, compared = 0.0, 0
    if ok:
        fin = np.isfinite(ws)
        ok = bool(np.array_equal(fin, np.isfinite(gs)))
        if ok and fin.any():
            diff = np.abs(gs[fin] - ws[fin])
            max_diff = float(diff.max())
            ok = bool(np.all(diff <= atol + rtol * np.abs(ws[fin])))
        tol = atol + rtol * np.abs(np.where(fin, ws, 0.0))
        padded = np.pad(np.where(fin, ws, -1e30), ((0, 0), (1, 1)),
                        constant_values=np.nan)  # fmt: skip
        gap_prev = np.abs(padded[:, 1:-1] - padded[:, :-2])
        gap_next = np.abs(padded[:, 1:-1] - padded[:, 2:])
        clear = ~(gap_prev <= 2 * tol) & ~(gap_next <= 2 * tol)  # nan = edge: clear
        clear |= ~fin  # -inf positions carry id -1 in both
        compared = int(clear.sum())
        ok = ok and bool(
            np.array_equal(np.asarray(got["item_ids"])[clear], want["item_ids"][clear])
        )
    for key in want:
        if key not in ("scores", "item_ids"):
            ok = ok and bool(np.allclose(got[key], want[key], atol=atol, rtol=rtol))
    return {"passed": ok, "max_abs_diff": max_diff, "ids_compared": compared}


# ------------------------------------------------------------------ planning


def catalogue_size(model, rule, constants: Mapping, num_items: int | None) -> int:
    """N: the rows of the item constants, the width of a ``vector`` output, the
    rows of an ``embedding`` table, or ``num_items``."""
    if rule.rule == "vector":
        return int(model.output[rule.scores].shape[-1])
    if rule.rule == "embedding":
        return int(model.get_layer(rule.table).embeddings.shape[0])
    if rule.item_features:
        return int(len(constants[rule.item_features[0]]))
    if num_items is None:
        raise RecommendError("The catalogue size is unknown: pass num_items.")
    return int(num_items)


def plan_recommend(
    model,
    name: str,
    model_config: Mapping | None = None,
    catalogue: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Any] | None = None,
) -> tuple[RecommendPlan | None, str]:
    """The recommend plan of an export, or ``(None, why not)``.

    The registry name is ``model_config["registry_name"]``, else ``name``;
    ``catalogue`` holds the item-side constants (``{input: [N, ...]}``) and/or
    ``num_items``; without it, ``model_config["kwargs"]["num_items"]`` is used,
    and a pairwise model's one item-side input comes from the run's
    ``vocab/item_content.npz`` (``extra_files``, as ``tfrec export`` copies it)
    when its shape fits.
    """
    from tfrec.registry import _REGISTRY, _ensure_loaded

    _ensure_loaded()
    config = dict(model_config or {})
    registry_name = config.get("registry_name") or name
    if registry_name not in _REGISTRY:
        return None, f"{registry_name!r} is not a registered model name"
    kwargs = dict(config.get("kwargs") or {})
    rule = _REGISTRY[registry_name].catalogue(kwargs)
    if rule is None:
        return None, f"{registry_name} does not rank a catalogue (export/recommend.py)"
    catalogue = dict(catalogue or {})
    num_items = catalogue.pop("num_items", kwargs.get("num_items"))
    missing = [k for k in rule.item_features if k not in catalogue]
    if missing:
        try:
            catalogue.update(run_catalogue(registry_name, kwargs, extra_files))
        except (ValueError, OSError, KeyError) as err:
            return None, f"the run's vocabulary cannot give the item-side inputs: {err}"
        missing = [k for k in rule.item_features if k not in catalogue]
    content = (extra_files or {}).get(RUN_CONTENT)
    if len(missing) == 1 and content is not None and rule.rule == "pairwise":
        with np.load(content) as arrays:  # a run's content of every item index
            values = arrays["content"]
        if tuple(values.shape[1:]) == tuple(model.input[missing[0]].shape[1:]):
            catalogue[missing[0]] = values.astype(_dtype(model.input[missing[0]]))
            missing = []
    if missing:
        return None, (
            f"the item-side inputs {missing} of every item were not given "
            "(export_model(..., catalogue={input: array [num_items, ...]}))"
        )
    constants = {k: catalogue[k] for k in rule.item_features}
    for k, values in constants.items():
        want = tuple(model.input[k].shape[1:])
        if tuple(np.shape(values)[1:]) != want:
            return None, (
                f"the item-side input {k!r} holds rows of shape "
                f"{list(np.shape(values)[1:])}; the model takes {list(want)}"
            )
        constants[k] = np.asarray(values).astype(_dtype(model.input[k]))
    try:
        size = catalogue_size(model, rule, constants, num_items)
    except RecommendError as err:
        return None, str(err)
    if size < 1:
        return None, f"the catalogue is empty (N={size})"
    return RecommendPlan(model, rule, constants, size), ""


def run_vocab(extra_files: Mapping[str, Any] | None):
    """The run's `tfrec.recipes.base.Vocab` behind ``extra_files`` (``tfrec export``
    passes the files of ``RUN/vocab/``), or None without them."""
    from tfrec.training.runner import read_vocab

    src = (extra_files or {}).get("vocab/items.tsv")
    if src is None:
        return None
    return read_vocab(Path(src).parent.parent)


def run_catalogue(registry_name: str, kwargs: Mapping, extra_files) -> dict:
    """The item-side constants a run's vocabulary gives the graph
    ``registry_name``: its recipe's ``serving_catalogue(graph, kwargs, vocab)``
    (MV-DNN's item views from ``vocab/tables.npz``, I-AutoRec's rating rows from
    ``vocab/seen.npz``); ``{}`` without a run vocabulary or a hook."""
    from tfrec.registry import model_info

    vocab = run_vocab(extra_files)
    if vocab is None:
        return {}
    hook = getattr(model_info(registry_name).recipe, "serving_catalogue", None)
    if hook is None:
        return {}
    return dict(hook(registry_name, dict(kwargs), vocab))


def example_catalogue(name: str, kwargs: Mapping, seed: int = 0) -> dict:
    """Item-side constants for a model at test sizes: ``num_items`` rows (11
    where the model has no ``num_items``) of its example inputs."""
    from tfrec.registry import model_info

    info = model_info(name)
    rule = info.catalogue(dict(kwargs))
    n = int(kwargs.get("num_items", 11))
    out: dict[str, Any] = {"num_items": n}
    if rule is None or not rule.item_features:
        return out
    if rule.rule == "columns":
        n = int(kwargs["num_items"])
    batch = info.example_inputs(dict(kwargs), n, np.random.default_rng(seed))
    out.update({k: np.asarray(batch[k]) for k in rule.item_features})
    return out


def saver(
    model, name, model_config, catalogue, *, atol, rtol, opset, batches_fn,
    extra_files=None,
):  # fmt: skip
    """``(save, manifest_section)`` for `export.artifact.export_model`: ``save``
    writes the SavedModel (with ``recommend`` where the model has a plan),
    converts ``recommend.onnx`` and checks its parity (raising on failure);
    ``manifest_section()`` is the manifest's ``recommend`` entry."""
    plan, why = plan_recommend(model, name, model_config, catalogue, extra_files)
    section: dict = {"available": False, "reason": why}

    def save(path: Path) -> None:
        if plan is None:
            model.export(str(path), format="tf_saved_model", verbose=False)
            return
        plan.save(path)
        onnx_path = plan.convert(Path(path), opset)
        rng = np.random.default_rng(1)
        report = plan.check(
            Path(path), onnx_path, plan.requests(batches_fn(), rng), atol, rtol
        )
        section.clear()
        section.update(describe(plan, report, atol, rtol))
        query, k, _ = plan.requests(batches_fn()[:1], rng)[0]
        section["rest_body"] = {  # TF Serving's columnar format (k is a scalar)
            "signature_name": SIGNATURE,
            "inputs": {
                **{q: np.asarray(v)[:1].tolist() for q, v in query.items()},
                "k": int(k),
                "exclude": [[-1]],
            },
        }
        if not (report["saved_model"]["passed"] and report["onnx"]["passed"]):
            from export.artifact import ExportError

            raise ExportError(
                "recommend parity failed; no version written. Report: "
                + json.dumps(report)
            )

    return save, (lambda: {SIGNATURE: section})


def describe(plan: RecommendPlan, report: dict, atol: float, rtol: float) -> dict:
    """The manifest's ``recommend`` entry."""
    rule = plan.rule
    ins = [
        {"name": n, "dtype": d, "shape": [None, *s[1:]]}
        for n, (s, d) in plan.query_specs.items()
    ]
    if rule.rule == "columns":
        ins[0]["meaning"] = "user index whose column of the reconstruction is ranked"
    ins += [
        {"name": "k", "dtype": "int64", "shape": [], "meaning": K_MEANING},
        {"name": "exclude", "dtype": "int64", "shape": [None, None],
         "meaning": EXCLUDE_MEANING},
    ]  # fmt: skip
    outs = [
        {"name": "item_ids", "dtype": "int64", "shape": [None, None],
         "meaning": "item indices, best first; -1 where fewer than k are left"},
        {"name": "scores", "dtype": "float32", "shape": [None, None],
         "meaning": f"the model's {rule.scores!r} of those items; -inf with id -1"},
    ] + [
        {"name": p, "dtype": "float32", "shape": None, "meaning": "passthrough"}
        for p in rule.passthrough
    ]  # fmt: skip
    return {
        "available": True,
        "signature": SIGNATURE,
        "onnx": ONNX_FILE,
        "rule": rule.rule,
        "factor": plan.factor is not None,
        "onnx_writer": getattr(plan, "onnx_writer", "tf2onnx"),
        "scores_from": rule.scores,
        "catalogue_size": plan.size,
        "never_recommended": list(plan.never),
        "item_side_constants": sorted(plan.constants),
        "inputs": ins,
        "outputs": outs,
        "bad_requests": (
            "in the graph k is clamped into [1, catalogue_size] and exclusion ids "
            "outside [0, catalogue_size) are ignored (TF and ONNX agree); the "
            "Python client raises ValueError for both"
        ),
        "parity": {**report, "atol": atol, "rtol": rtol,
                   "ids_rule": "ids compared where the score gap to both "
                               "neighbours exceeds 2 * (atol + rtol * |score|)"},
    }  # fmt: skip


def check_request(manifest: Mapping, query: Mapping, k, exclude) -> tuple:
    """Validates a recommend request against the manifest; returns the feed parts
    ``(query, k, exclude)`` as arrays. Raises ``ValueError`` for a bad ``k`` or
    exclusion id."""
    entry = manifest.get(SIGNATURE) or {}
    if not entry.get("available"):
        raise ValueError(
            "This export has no `recommend` signature: "
            + entry.get("reason", "exported before it existed; re-export")
        )
    n = int(entry["catalogue_size"])
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(
            f"`k` must be an int in [1, {n}] (the catalogue size). Received: k={k!r}"
        )
    names = [s["name"] for s in entry["inputs"] if s["name"] not in ("k", "exclude")]
    if sorted(query) != sorted(names):
        raise ValueError(
            f"recommend takes the query inputs {names}; received {sorted(query)}."
        )
    specs = {s["name"]: s for s in entry["inputs"]}
    query = {q: np.asarray(v, dtype=specs[q]["dtype"]) for q, v in query.items()}
    b = len(next(iter(query.values())))
    if exclude is None:
        exclude = np.zeros((b, 0), np.int64)
    exclude = np.asarray(exclude, dtype=np.int64)
    if exclude.ndim == 1:
        exclude = np.broadcast_to(exclude, (b, exclude.shape[0]))
    if exclude.ndim != 2 or exclude.shape[0] != b:
        raise ValueError(
            f"`exclude` must be a list of ids or [batch={b}, n]; received shape "
            f"{list(exclude.shape)}."
        )
    bad = exclude[(exclude < -1) | (exclude >= n)]
    if bad.size:
        raise ValueError(
            f"Exclusion ids must be item indices in [0, {n}) (-1 = padding). "
            f"Received: {sorted(set(bad.tolist()))[:10]}"
        )
    return query, np.asarray(k, np.int64), np.ascontiguousarray(exclude)


def run_recommend(exported, query: Mapping, k, exclude=None) -> dict[str, np.ndarray]:
    """`export.serving.ExportedModel.recommend`: validates the request, then runs
    ``recommend.onnx`` (onnxruntime) or the ``recommend`` signature (TF1 loader,
    as TF Serving runs it), whichever runtime ``exported`` uses."""
    query, k, exclude = check_request(exported.manifest, query, k, exclude)
    feed = {**query, "k": k, "exclude": exclude}
    runner = getattr(exported, "_recommend_runner", None)
    if runner is None:
        if exported.runtime == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(
                str(exported.path / ONNX_FILE), providers=["CPUExecutionProvider"]
            )
            names = [o.name for o in session.get_outputs()]

            def runner(f):
                return dict(zip(names, session.run(None, f), strict=True))
        else:
            from export.parity import Tf1SignatureRunner

            runner = Tf1SignatureRunner(exported.path, signature=SIGNATURE)
        exported._recommend_runner = runner
    return runner(feed)


def _graph_of(manifest: Mapping) -> tuple[str, dict]:
    model = manifest.get("model") or {}
    return model.get("registry_name") or manifest.get("name"), dict(
        model.get("kwargs") or {}
    )


def serves_user_requests(manifest: Mapping) -> bool:
    """Whether ``tfrec recommend --artifact DIR --user ID`` goes through the
    export's ``recommend`` signature: it has one, and the graph's recipe builds a
    user's query (``serving_query``: MV-DNN, AutoRec, CDAE)."""
    from tfrec.registry import model_info

    if not (manifest.get(SIGNATURE) or {}).get("available"):
        return False
    try:
        recipe = model_info(_graph_of(manifest)[0]).recipe
    except ValueError:
        return False
    return callable(getattr(recipe, "serving_query", None))


def user_query(manifest: Mapping, vocab, user: int) -> dict[str, np.ndarray]:
    """The ``recommend`` query inputs of user index ``user`` (batch of 1): the
    recipe's ``serving_query(graph, kwargs, vocab, user)`` where it has one (MV-DNN's
    user view, CDAE's item vector, U-AutoRec's rating row), else ``user_id``; only
    the inputs the signature takes are kept."""
    from tfrec.registry import model_info

    entry = manifest.get(SIGNATURE) or {}
    names = [s["name"] for s in entry.get("inputs", ()) if s["name"] not in ("k", "exclude")]
    graph, kwargs = _graph_of(manifest)
    hook = getattr(model_info(graph).recipe, "serving_query", None)
    if hook is not None:
        query = hook(graph, kwargs, vocab, int(user))
    else:
        query = {"user_id": np.array([user], np.int64)}
    missing = sorted(set(names) - set(query))
    if missing:
        raise ValueError(
            f"{graph}'s recommend signature takes {names}; a user's request gives "
            f"only {sorted(query)} (missing {missing})."
        )
    return {n: np.asarray(query[n]) for n in names}


def recommend_for_user(
    exported, vocab, user: str, *, k: int = 10, exclude_seen: bool = True
) -> list[tuple[str, float]]:
    """Top-``k`` ``(raw item id, score)`` for the raw user id ``user`` through the
    export's ``recommend`` signature (ONNX or SavedModel, ``exported.runtime``):
    the query from the export's ``vocab/``, the user's known items as the
    request's exclusions (``exclude_seen``); ids -1 (nothing left) dropped."""
    from tfrec.recipes.interactions import seen_items, user_index

    u = user_index(vocab, user)
    n = int(exported.manifest[SIGNATURE]["catalogue_size"])
    query = user_query(exported.manifest, vocab, u)
    exclude = np.asarray(seen_items(vocab, u) if exclude_seen else (), np.int64)
    out = exported.recommend(query, min(int(k), n), exclude[None, :])
    return [
        (vocab.items[int(i)], float(s))
        for i, s in zip(out["item_ids"][0], out["scores"][0], strict=True)
        if int(i) >= 0
    ]
