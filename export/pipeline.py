"""Export of a retrieval index (a ``tf.Module``) and of two-stage pipelines.

* :func:`export_module` writes a ``tf.Module`` with a ``serve`` ``tf.function``
  (for example :class:`tfrec.retrieval.RetrievalIndex`, the TFRS top-K index) in
  the same versioned layout as :func:`export.artifact.export_model`: SavedModel
  with signature ``serving_default``, ``model.onnx`` converted from that
  signature, and a ``manifest.json`` with the same parity report
  (:func:`export.parity.check_parity`: TF1 loader vs the module at a tenth of
  the tolerance, ONNX vs the module at the given tolerance, two batch sizes).
  Both go through :func:`export.artifact.write_version`.
* :func:`export_youtube_pipeline` writes the candidate index and the ranking
  model as two artifacts plus ``saved_models/<name>/<version>/pipeline.json``,
  the manifest that says how they chain, and the lookup tables the chaining
  needs (vocabularies, item genres, demographics, training histories).
* :class:`ExportedPipeline` runs a pipeline export with onnxruntime or the
  SavedModels (TF1 loader), for ``tfrec recommend --pipeline youtube``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from export.artifact import (
    ONNX_OPSET,
    PARITY_BATCH_SIZES,
    ExportError,
    _clean_stale_tmp,
    _make_tmp,
    check_export_target,
    export_model,
    next_version,
    publish_version,
    verify_files,
    write_version,
)
from tfrec.io import atomic_write_json

PIPELINE_FILE = "pipeline.json"


def _module_specs(module) -> list[dict]:
    return [
        {
            "name": name,
            "dtype": spec.dtype.name,
            "shape": [None if d is None else int(d) for d in spec.shape],
        }
        for name, spec in sorted(module.input_specs.items())
    ]


def export_module(
    module,
    name: str,
    *,
    base_dir: str | os.PathLike = "saved_models",
    version: int | None = None,
    example_inputs: Callable[[int, np.random.Generator], Mapping[str, np.ndarray]],
    atol: float = 1e-5,
    rtol: float = 1e-5,
    tolerance_reason: str = "",
    model_config: Mapping | None = None,
    extra_files: Mapping[str, str | os.PathLike] | None = None,
    seed: int = 0,
) -> Path:
    """Exports a ``tf.Module`` with ``serve``, ``input_specs`` and ``__call__``.

    ``module(feed)`` must return a dict of numpy arrays (the reference), and
    ``module.serve`` must be a ``tf.function`` taking one dict of tensors.
    Returns the new version folder; raises `ExportError` (nothing written) when
    conversion or parity fails.
    """
    import tensorflow as tf

    check_export_target(base_dir, name)
    ins = _module_specs(module)

    def make_batches():
        rng = np.random.default_rng(seed)
        return [dict(example_inputs(int(b), rng)) for b in PARITY_BATCH_SIZES]

    sample = module(make_batches()[0])
    outs = [
        {"name": k, "dtype": str(np.asarray(v).dtype),
         "shape": [None] + list(np.asarray(v).shape[1:])}
        for k, v in sorted(sample.items())
    ]
    return write_version(
        name,
        base_dir=base_dir,
        version=version,
        save=lambda path: tf.saved_model.save(
            module,
            str(path),
            signatures={"serving_default": module.serve.get_concrete_function()},
        ),
        reference=module,
        reference_name=getattr(module, "name", type(module).__name__),
        ins=ins,
        outs=outs,
        make_batches=make_batches,
        batch_sizes=PARITY_BATCH_SIZES,
        atol=atol,
        rtol=rtol,
        tolerance_reason=tolerance_reason,
        model_config=model_config,
        extra_files=extra_files,
        opset=ONNX_OPSET,
        oov_policy=(
            "history ids outside [0, num_items) are ignored (masked mean); "
            "identically in TF and ONNX"
        ),
    )


def export_youtube_pipeline(
    pipeline,
    *,
    base_dir: str | os.PathLike = "saved_models",
    name: str = "youtube",
    version: int | None = None,
    seed: int = 0,
) -> Path:
    """Exports a trained :class:`tfrec.youtube_serving.YouTubePipeline`.

    Writes ``<base>/<name>_candidate_index/<v>`` (query tower + TFRS index, k
    fixed at export), ``<base>/<name>_ranking/<v>`` (ranking model) and
    ``<base>/<name>/<v>/`` holding ``pipeline.json`` (which records the size and
    sha256 of ``tables.npz``) and ``tables.npz``. Without ``version`` each
    folder takes its next free version (``pipeline.json`` names the stages'
    versions). Returns the pipeline folder.
    """
    from tfrec.registry import model_info

    for folder in (name, f"{name}_candidate_index", f"{name}_ranking"):
        check_export_target(base_dir, folder)  # before any work
    pipe_dir = Path(base_dir) / name
    fixed = version is not None
    if fixed and (pipe_dir / str(int(version))).exists():
        raise ExportError(
            f"Version {pipe_dir / str(int(version))} already exists; pick another."
        )
    index = pipeline.retrieval_index()
    rng_inputs = pipeline.example_requests
    cand = export_module(
        index,
        f"{name}_candidate_index",
        base_dir=base_dir,
        version=version,
        example_inputs=lambda b, r: rng_inputs(b, r, stage="candidate"),
        atol=1e-5,
        rtol=1e-5,
        tolerance_reason="float32 query tower and dot products; ids must match",
        model_config={"registry_name": "youtube_candidate", "k": index.k},
        seed=seed,
    )
    info = model_info("youtube_ranking")
    rank = export_model(
        pipeline.ranking_model,
        f"{name}_ranking",
        base_dir=base_dir,
        version=version,
        example_inputs=lambda b, r: rng_inputs(b, r, stage="ranking"),
        atol=info.parity.atol,
        rtol=info.parity.rtol,
        tolerance_reason=info.parity.reason,
        model_config={"registry_name": "youtube_ranking"},
        seed=seed,
    )
    version = int(version) if fixed else next_version(pipe_dir)
    tmp, lock_fd = _make_tmp(pipe_dir, version)
    _clean_stale_tmp(pipe_dir)
    try:
        pipeline.save_tables(tmp / "tables.npz")
        # Relative to <base>/<name>/<v>: the same for every version number.
        here = pipe_dir / str(version)
        atomic_write_json(
            tmp / PIPELINE_FILE,
            pipeline.chain_manifest(
                candidate_artifact=os.path.relpath(cand, here),
                ranking_artifact=os.path.relpath(rank, here),
            ),
        )
        final = publish_version(
            tmp, pipe_dir, version, fixed=fixed, manifest_name=PIPELINE_FILE
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock_fd)
    return final


class ExportedPipeline:
    """Runs an exported two-stage pipeline (``pipeline.json``) end to end."""

    def __init__(self, path: str | os.PathLike, *, runtime: str = "onnx"):
        import json

        from export.serving import ExportedModel, resolve_version_dir
        from tfrec.youtube_serving import PipelineTables

        self.path = resolve_version_dir(path)
        manifest_path = self.path / PIPELINE_FILE
        if not manifest_path.is_file():
            raise ExportError(
                f"{manifest_path} is missing: {self.path} is not a pipeline export "
                "(export one with scripts/reproduce_youtube.py --export)."
            )
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ExportError(f"{manifest_path} is corrupt: {err}") from err
        verify_files(self.path, self.manifest, PIPELINE_FILE)
        stages = {s["stage"]: s for s in self.manifest["stages"]}
        self.candidate = ExportedModel(
            (self.path / stages["candidate"]["artifact"]).resolve(), runtime=runtime
        )
        self.ranking = ExportedModel(
            (self.path / stages["ranking"]["artifact"]).resolve(), runtime=runtime
        )
        self.tables = PipelineTables.load(self.path / "tables.npz", self.manifest)

    def recommend(self, raw_user_id, k: int = 10) -> list[dict]:
        from tfrec.youtube_serving import chain

        return chain(
            self.tables,
            raw_user_id,
            retrieve=self.candidate,
            rank=self.ranking,
            k=k,
        )
