"""The dependency rules the layout promises, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "tfrec" / "models").glob("*.py")),
                         ids=lambda p: p.name)
def test_models_are_pure_builders(path):
    """Models never import training code, recipes, samplers or pipelines."""
    bad = {
        m for m in _imports(path)
        if m.startswith(("tfrec.training", "tfrec.recipes", "tfrec.data.pipelines",
                         "tfrec.data.pairwise", "tfrec.data.word2vec"))
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_tfrec_never_imports_export():
    offenders = {}
    for path in (ROOT / "tfrec").rglob("*.py"):
        if path.name == "cli.py":  # the application layer, lazily
            continue
        bad = {m for m in _imports(path) if m == "export" or m.startswith("export.")}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, offenders


def test_reproduction_scripts_hold_no_trainer_classes():
    """Scripts loop over the runner; trainer models live in recipes."""
    for path in (ROOT / "scripts").glob("reproduce_*.py"):
        tree = ast.parse(path.read_text())
        classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        assert not classes, f"{path.name} defines {classes}"
