"""TF Serving warm-up records: ``<version>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays this file (a TFRecord of ``tensorflow.serving.PredictionLog``,
at most 1000 records) after loading a version and before serving it, so the first
real requests do not pay for lazy initialisation; a record that fails to run makes
the version fail to load. Each record here is a ``predict_log.request`` (a
``PredictRequest`` naming the model and the signature) holding one of the export's
parity batches, checked against the SavedModel's signature before it is written.
Every signature of the SavedModel is warmed up: ``serving_default`` (and Keras'
twin ``serve``) with the batches, ``recommend`` with their query plus ``k`` and
``exclude``. The file is listed with its sha256 in the manifest, and
:func:`read_warmup` checks it before reading.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from export.artifact import ExportError

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving reads no more than this many


def _serve_signatures(saved_model_dir: str | os.PathLike):
    """``(path of saved_model.pb, signature_def map of its serve MetaGraph)``."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(saved_model_dir) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(path.read_bytes())
    metas = [m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags]
    if not metas:
        raise ExportError(f"{path} has no MetaGraph tagged 'serve'.")
    return path, metas[0].signature_def


def signature_inputs(saved_model_dir: str | os.PathLike, signature: str) -> dict:
    """``{input key: (numpy dtype, shape with None for -1)}`` of ``signature`` in
    the ``serve`` MetaGraph of ``saved_model_dir/saved_model.pb``."""
    import tensorflow as tf

    path, sigs = _serve_signatures(saved_model_dir)
    if signature not in sigs:
        raise ExportError(
            f"{path} has no signature {signature!r}; found "
            f"{sorted(k for k in sigs if not k.startswith('__'))}."
        )
    out = {}
    for key, info in sigs[signature].inputs.items():
        dtype = tf.dtypes.as_dtype(info.dtype)
        shape = (
            None
            if info.tensor_shape.unknown_rank
            else tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim)
        )
        out[key] = (
            np.dtype(object) if dtype == tf.string else dtype.as_numpy_dtype,
            shape,
        )
    return out


def _checked(
    batch: Mapping[str, np.ndarray], inputs: Mapping[str, tuple], where: str
) -> dict[str, np.ndarray]:
    """``batch`` as the signature takes it, or ExportError naming the problem."""
    extra = sorted(set(batch) - set(inputs))
    missing = sorted(set(inputs) - set(batch))
    if extra or missing:
        raise ExportError(
            f"Warm-up {where} does not fit the signature: "
            + (f"inputs {extra} are not signature inputs; " if extra else "")
            + (f"inputs {missing} are missing; " if missing else "")
            + f"the signature takes {sorted(inputs)}. No version written."
        )
    out = {}
    for key, (dtype, shape) in inputs.items():
        value = np.asarray(batch[key])
        want = np.dtype(dtype)
        if want.kind == "O":
            if value.dtype.kind not in "OUS":
                raise ExportError(
                    f"Warm-up {where}: input {key!r} has dtype {value.dtype}, the "
                    "signature takes strings. No version written."
                )
            flat = [v if isinstance(v, bytes) else str(v).encode() for v in value.flat]
            cast = np.array(flat, dtype=object).reshape(value.shape)
        else:
            kind_ok = value.dtype.kind == want.kind or (
                value.dtype.kind in "iu" and want.kind in "iu"
            )
            cast = value.astype(want) if kind_ok else None
            if cast is None or (want.kind in "iub" and not np.array_equal(cast, value)):
                raise ExportError(
                    f"Warm-up {where}: input {key!r} has dtype {value.dtype}, the "
                    f"signature takes {want}. No version written."
                )
        if shape is not None and (
            cast.ndim != len(shape)
            or any(
                s is not None and s != d for s, d in zip(shape, cast.shape, strict=True)
            )
        ):
            raise ExportError(
                f"Warm-up {where}: input {key!r} has shape {cast.shape}, the "
                f"signature takes {tuple(-1 if s is None else s for s in shape)} "
                "(-1: any size). No version written."
            )
        out[key] = cast
    return out


RECOMMEND_INPUTS = ("k", "exclude")  # request inputs of export.recommend's signature


def saved_model_signatures(saved_model_dir: str | os.PathLike) -> list[str]:
    """The callable signatures of the ``serve`` MetaGraph, ``serving_default``
    first (TF Serving's default), then the others sorted."""
    _, sigs = _serve_signatures(saved_model_dir)
    keys = sorted(k for k in sigs if not k.startswith("__"))
    return sorted(keys, key=lambda k: k != "serving_default")


def _recommend_requests(
    batches: Sequence[Mapping[str, np.ndarray]],
    inputs: Mapping[str, tuple],
    signature: str,
    recommend: Mapping | None,
) -> list[dict]:
    """One request per batch for a ``recommend``-style signature (inputs ``k`` and
    ``exclude``): the batch's query inputs, ``k`` = the whole catalogue for the
    first batch and ``min(3, N)`` for the others, and 2 exclusion ids per row
    (padding -1 included). A query input the batches lack (AutoRec's user index)
    comes from the manifest's ``rest_body`` example, repeated per row."""
    if not recommend or not recommend.get("available"):
        raise ExportError(
            f"Warm-up for signature {signature!r} needs its catalogue (the manifest's "
            "recommend entry); none was given. No version written."
        )
    n = int(recommend["catalogue_size"])
    example = (recommend.get("rest_body") or {}).get("inputs") or {}
    rng = np.random.default_rng(0)
    out = []
    for i, batch in enumerate(batches):
        query = {}
        for key in inputs:
            if key in RECOMMEND_INPUTS:
                continue
            if key in batch:
                query[key] = np.asarray(batch[key])
            elif key not in example:
                raise ExportError(
                    f"Warm-up batch {i} has no input {key!r} for signature "
                    f"{signature!r}, and the manifest gives no example of it. No "
                    "version written."
                )
        arrays = [np.asarray(v) for v in (query or batch).values()]
        rows = [len(v) for v in arrays if v.ndim]
        b = rows[0] if rows else 1
        for key in inputs:
            if key not in RECOMMEND_INPUTS and key not in query:
                row = np.asarray(example[key])[:1]
                query[key] = np.repeat(row, b, axis=0)
        k = n if i == 0 else min(3, n)
        exclude = rng.integers(-1, n, (b, 2)).astype(np.int64)
        out.append({**query, "k": np.asarray(k, np.int64), "exclude": exclude})
    return out


def write_warmup(
    version_tmp_dir: str | os.PathLike,
    name: str,
    batches: Sequence[Mapping[str, np.ndarray]],
    signatures: Sequence[str] | None = None,
    *,
    recommend: Mapping | None = None,
) -> dict:
    """Writes ``PredictionLog`` records for every signature into the (not yet
    renamed) version folder, after checking every request against its signature.

    Each signature gets one record per batch: ``serving_default`` (and Keras'
    twin ``serve``) the batches themselves, a ``recommend`` signature the
    batches' query with ``k`` and ``exclude`` (:func:`_recommend_requests`).
    ``serving_default``'s records come first.

    Args:
        version_tmp_dir: the version folder being built (holds ``saved_model.pb``).
        name: the model name TF Serving serves it under (``model_spec.name``).
        batches: input dicts keyed by the model's input names.
        signatures: the signatures to warm up (default: every one in the
            SavedModel's ``serve`` MetaGraph).
        recommend: the manifest's ``recommend`` entry (catalogue size, example
            request), needed when a signature takes ``k`` and ``exclude``.

    Returns:
        The manifest entry: ``file``, ``records`` (all of them),
        ``signatures`` (``{signature: {"records", "batch_sizes", "inputs"}}``),
        and ``signature``/``batch_sizes``/``inputs`` of the first signature.

    Raises:
        ExportError: a request lacks an input, has one the signature lacks, or has
            the wrong dtype or shape, or the file does not read back; the file is
            not written then (the caller removes the version folder).
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    if not batches:
        raise ExportError("Warm-up needs at least one batch; none given.")
    keys = list(signatures) if signatures else saved_model_signatures(version_tmp_dir)
    records, entries = [], {}
    for signature in keys:
        inputs = signature_inputs(version_tmp_dir, signature)
        if set(RECOMMEND_INPUTS) <= set(inputs):
            requests = _recommend_requests(batches, inputs, signature, recommend)
        else:
            requests = list(batches)
        sizes = []
        for i, batch in enumerate(requests):
            where = f"batch {i}" + (
                "" if signature == "serving_default" else f" of signature {signature!r}"
            )
            tensors = _checked(batch, inputs, where)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = signature
            for key, value in tensors.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            records.append(log.SerializeToString())
            rows = [v.shape[0] for v in tensors.values() if v.ndim]
            sizes.append(int(rows[0]) if rows else 0)
        entries[signature] = {
            "records": len(requests), "batch_sizes": sizes, "inputs": sorted(inputs),
        }  # fmt: skip
    if len(records) > MAX_RECORDS:
        raise ExportError(
            f"{len(records)} warm-up records; TF Serving reads at most {MAX_RECORDS}."
        )
    path = Path(version_tmp_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    back = read_warmup(version_tmp_dir, verify=False)
    if len(back) != len(records):
        raise ExportError(
            f"{path} reads back {len(back)} records, {len(records)} were written."
        )
    first = entries[keys[0]]
    return {
        "file": WARMUP_FILE,
        "records": len(records),
        "signatures": entries,
        "signature": keys[0],
        "batch_sizes": first["batch_sizes"],
        "inputs": first["inputs"],
    }


def read_warmup(version_dir: str | os.PathLike, *, verify: bool = True) -> list[dict]:
    """The records of a version's warm-up file, each ``{"model_name",
    "signature_name", "inputs": {name: np.ndarray}}`` (strings as ``bytes``).

    ``verify``: first check the file's size and sha256 against the version's
    ``manifest.json`` (`export.artifact.verify_files`); a modified file raises
    `ExportError` naming it. Only the export itself, building the version, reads
    with ``verify=False``.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        raise ExportError(f"No warm-up file: {path} is missing.")
    if verify:
        from export.artifact import verify_listed

        verify_listed(version_dir, [WARMUP_FILE])
    out = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)):
            log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise ExportError(
                    f"{path}: record {len(out)} is a {log.WhichOneof('log_type')}, "
                    "not a predict_log."
                )
            request = log.predict_log.request
            out.append(
                {
                    "model_name": request.model_spec.name,
                    "signature_name": request.model_spec.signature_name,
                    "inputs": {
                        k: tf.make_ndarray(v) for k, v in sorted(request.inputs.items())
                    },
                }
            )
    except tf.errors.DataLossError as err:
        raise ExportError(f"{path} is corrupt: {err.message}") from err
    return out
