"""``tfrec-export RUN_DIR``: export a finished run (also ``tfrec export``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def export_run(
    run: str | os.PathLike,
    *,
    name: str | None = None,
    base_dir: str | os.PathLike = "saved_models",
    version: int | None = None,
    verbose: bool = True,
) -> Path:
    """Exports ``run/model.keras`` with its registry tolerance and vocabularies."""
    from export.artifact import export_model
    from tfrec import model_info
    from tfrec.training import load_run

    model, config = load_run(run)
    cfg = config["config"]
    info = model_info(cfg["model"])
    kwargs = cfg["model_kwargs"]
    vocab = Path(run) / "vocab"
    path = export_model(
        model,
        name or cfg["model"],
        base_dir=base_dir,
        version=version,
        example_inputs=lambda b, rng: info.example_inputs(kwargs, b, rng),
        atol=info.parity.atol,
        rtol=info.parity.rtol,
        tolerance_reason=info.parity.reason,
        model_config={"registry_name": cfg["model"], "kwargs": kwargs, "train": cfg},
        extra_files={
            f"vocab/{p.name}": p
            for p in sorted(vocab.iterdir())
            if p.suffix in (".tsv", ".npz") and not p.name.startswith(".")
        },
    )
    if verbose:
        report = json.loads((path / "manifest.json").read_text())["parity"]
        print(f"Exported {path}")
        for runtime in ("saved_model", "onnx"):
            r = report[runtime]
            print(
                f"  parity {runtime:<11} max_abs_diff={r['max_abs_diff']:.2e} "
                f"max_rel_diff={r['max_rel_diff']:.2e} passed={r['passed']}"
            )
        tol = report["tolerance"]
        print(f"  tolerance atol={tol['atol']} rtol={tol['rtol']} ({tol['reason']})")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfrec-export", description=__doc__)
    parser.add_argument("run", help="a finished tfrec run directory")
    parser.add_argument("--name", default=None)
    parser.add_argument("--base-dir", default="saved_models")
    parser.add_argument("--version", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        export_run(
            args.run, name=args.name, base_dir=args.base_dir, version=args.version
        )
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"tfrec-export: error: {type(err).__name__}: {first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
