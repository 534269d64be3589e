"""Paths to the JavaScript tools the runtime tests drive (installed by ``make
js-tools``). A missing tool FAILS the test that needs it, with the fix in the
message; it never skips."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
CHROMIUM = Path("/usr/lib/chromium/chromium")
FIX = "run `make js-tools` (Debian chromium + `npm ci` in js/)"


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail(f"`node` is not on PATH; install Debian nodejs, then {FIX}.")
    return path


def node_package(name: str) -> Path:
    path = JS / "node_modules" / name
    if not (path / "package.json").is_file():
        pytest.fail(f"{path} is missing; {FIX}.")
    return path


def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing; {FIX}.")
    return CHROMIUM


def check_onnx(*version_dirs: Path, timeout: float = 120) -> tuple[int, list[dict]]:
    """Runs ``node js/check_onnx.mjs`` on the folders: (exit code, JSON lines)."""
    node_package("onnxruntime-node")
    proc = subprocess.run(
        [node(), str(JS / "check_onnx.mjs"), *map(str, version_dirs)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    except json.JSONDecodeError:
        pytest.fail(f"check_onnx.mjs printed non-JSON:\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode not in (0, 1) or len(lines) != len(version_dirs):
        pytest.fail(
            f"check_onnx.mjs exited {proc.returncode} with {len(lines)} results for "
            f"{len(version_dirs)} folders:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.returncode, lines
