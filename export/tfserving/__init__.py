"""TF Serving's own load path, checked without a TF Serving binary.

``loader.c`` (beside this file) loads an exported version through the TensorFlow C
API the way TF Serving does (``TF_LoadSessionFromSavedModel``, tag ``serve``, which
restores the variables and runs the init op), reads the SignatureDefs from the
MetaGraphDef, and runs a signature on inputs from a file, or replays the version's
warm-up records. This module compiles it (once, cached) and drives it; before
the program runs, the files it will read are checked against the sha256 the
version's manifest records (:func:`verify_saved_model`).

Example:
    >>> from export.tfserving import run_loader, replay_warmup
    >>> run_loader("saved_models/neumf/1", {"user_id": [1], "item_id": [2]})
    {'score': array([0.51], dtype=float32)}
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("loader.c")
MAGIC = b"TFRECTN1"
# TF_DataType values <-> numpy dtypes of the tensor file format (see loader.c).
_DTYPES = {
    1: np.dtype("float32"),
    2: np.dtype("float64"),
    3: np.dtype("int32"),
    4: np.dtype("uint8"),
    5: np.dtype("int16"),
    6: np.dtype("int8"),
    7: np.dtype(object),
    9: np.dtype("int64"),
    10: np.dtype("bool"),
}
_CODES = {v: k for k, v in _DTYPES.items()}


class LoaderError(RuntimeError):
    """The loader program could not be built, or it failed (the message is its
    one-line error)."""


def tf_lib_dir() -> Path:
    """``tf.sysconfig.get_lib()`` (the folder with ``libtensorflow_cc.so.2`` and
    ``include/``) without importing TensorFlow."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise LoaderError("TensorFlow is not installed; the loader links against it.")
    return Path(list(spec.submodule_search_locations)[0])


def compile_command(output: str | os.PathLike) -> list[str]:
    """The gcc line: gold linker (linking the 1.1 GB library takes ~2.5 s instead of
    11-20 s), the libraries by their versioned names (there is no unversioned
    ``.so``; ``TF_NewStatus`` & co. live only in the framework library), and an
    rpath so it runs without ``LD_LIBRARY_PATH``."""
    tf = tf_lib_dir()
    return [
        "gcc", "-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fuse-ld=gold",
        f"-I{tf / 'include'}", str(SOURCE), "-o", str(output), f"-L{tf}",
        "-l:libtensorflow_cc.so.2", "-l:libtensorflow_framework.so.2",
        f"-Wl,-rpath,{tf}",
    ]  # fmt: skip


def _cache_dir() -> Path:
    root = os.environ.get("TFREC_CACHE_DIR") or os.path.join("~", ".cache", "tfrec")
    return Path(root).expanduser() / "tfserving_loader"


def _build_key() -> str:
    """Changes with the source, the gcc line and the TensorFlow library."""
    lib = tf_lib_dir() / "libtensorflow_cc.so.2"
    stat = lib.stat() if lib.exists() else None
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(" ".join(compile_command("OUT")).encode())
    h.update(f"{stat and stat.st_size}-{stat and stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_loader(output: str | os.PathLike | None = None) -> Path:
    """Compiles ``loader.c`` and returns the program's path.

    With no ``output``, the program goes to ``$TFREC_CACHE_DIR/tfserving_loader/``
    (default ``~/.cache/tfrec``) under a name keyed by the source, the gcc line and
    the TensorFlow library, and is compiled only when that file is missing. With
    ``output``, it is always compiled there (the Makefile's ``make loader``).

    Raises:
        LoaderError: gcc is missing or the compilation failed.
    """
    if shutil.which("gcc") is None:
        raise LoaderError(
            "gcc not found: the TF Serving loader check compiles "
            f"{SOURCE.name} (install it: apt-get install build-essential)."
        )
    target = (
        Path(output)
        if output is not None
        else _cache_dir() / f"tfserving_loader-{_build_key()}"
    )
    if output is None and target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        proc = subprocess.run(
            compile_command(tmp), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise LoaderError(
                f"Compiling {SOURCE} failed (gcc exit {proc.returncode}):\n"
                + proc.stderr[-4000:]
            )
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: concurrent builds never see half a file
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def write_tensor_file(path: str | os.PathLike, tensors: Mapping[str, object]) -> None:
    """Writes ``{name: array}`` in the loader's tensor file format (one group)."""
    parts = [MAGIC, struct.pack("<I", len(tensors))]
    for name, value in tensors.items():
        arr = np.asarray(value)
        is_str = arr.dtype.kind in "OUS"
        dtype = np.dtype(object) if is_str else arr.dtype
        if dtype not in _CODES:
            raise LoaderError(
                f"Input {name!r} has dtype {arr.dtype}; the loader takes "
                f"{sorted(str(d) for d in _CODES)} (object = strings)."
            )
        raw = name.encode()
        parts += [struct.pack("<I", len(raw)), raw]
        parts.append(
            struct.pack(f"<II{arr.ndim}q", _CODES[dtype], arr.ndim, *arr.shape)
        )
        if is_str:
            for v in arr.flat:
                b = v if isinstance(v, bytes) else str(v).encode()
                parts += [struct.pack("<Q", len(b)), b]
        else:
            parts.append(
                np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            )
    Path(path).write_bytes(b"".join(parts))


def read_tensor_file(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """Every group of a tensor file, as ``{name: array}`` (strings as ``bytes``)."""
    data = Path(path).read_bytes()
    if data[:8] != MAGIC:
        raise LoaderError(f"{path} is not a tensor file (bad magic).")
    pos, groups = 8, []

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return vals

    while pos < len(data):
        (count,) = take("<I")
        group = {}
        for _ in range(count):
            (n,) = take("<I")
            name = data[pos : pos + n].decode()
            pos += n
            code, ndim = take("<II")
            shape = take(f"<{ndim}q")
            dtype = _DTYPES[code]
            size = int(np.prod(shape, dtype=np.int64))
            if dtype.kind == "O":
                flat = []
                for _ in range(size):
                    (m,) = take("<Q")
                    flat.append(data[pos : pos + m])
                    pos += m
                group[name] = np.array(flat, dtype=object).reshape(shape)
            else:
                nbytes = size * dtype.itemsize
                group[name] = (
                    np.frombuffer(data, dtype.newbyteorder("<"), size, pos)
                    .astype(dtype)
                    .reshape(shape)
                )
                pos += nbytes
        groups.append(group)
    return groups


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    loader = build_loader()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run(
        [str(loader), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        errors = [
            ln for ln in proc.stderr.splitlines() if ln.startswith("loader: error:")
        ]
        raise LoaderError(
            errors[-1].removeprefix("loader: error: ")
            if errors
            else f"loader exited {proc.returncode}: {proc.stderr[-2000:]}"
        )
    return proc


def run(
    version_dir: str | os.PathLike,
    *,
    inputs: Mapping[str, object] | None = None,
    warmup: bool = False,
    signature: str = "serving_default",
    no_init: bool = False,
    timeout: float = 120,
    verify: bool = True,
) -> list[dict[str, np.ndarray]]:
    """One loader process: loads the version once, runs ``signature`` on
    ``inputs`` (if given), then replays the warm-up file (if ``warmup``).

    Args:
        version_dir: ``saved_models/<name>/<version>``.
        inputs: ``{signature input key: array}``; strings as ``str`` or ``bytes``.
        warmup: also replay ``assets.extra/tf_serving_warmup_requests``.
        signature: the SignatureDef key ``inputs`` are fed to.
        no_init: debug: skip the SavedModel's init op (tables stay uninitialised).
        timeout: seconds before the program is killed.
        verify: check the SavedModel's and the warm-up file's sha256 against the
            manifest first (:func:`verify_saved_model`).

    Returns:
        One ``{signature output key: array}`` per run (strings as ``bytes``): the
        ``inputs`` run first, then one per warm-up record in file order.

    Raises:
        LoaderError: the program failed (its one-line error, e.g. TF's status).
    """
    job = dict(
        inputs=inputs, warmup=warmup, signature=signature, no_init=no_init
    )  # fmt: skip
    (out,) = run_many([(version_dir, job)], timeout=timeout, verify=verify)
    return out


# What the loader reads of a version: the SavedModel and the warm-up file.
_LOADED_PREFIXES = ("variables/", "assets/", "assets.extra/")
_LOADED_FILES = ("saved_model.pb", "fingerprint.pb")


def verify_saved_model(version_dir: str | os.PathLike) -> None:
    """Checks the size and sha256 of every file the loader reads
    (``saved_model.pb``, ``variables/``, ``assets/``, the warm-up file) against
    the version's ``manifest.json`` (`export.artifact.verify_listed`).

    A folder without ``saved_model.pb`` is left to the loader, which names what
    is missing.

    Raises:
        LoaderError: the manifest is missing or lists no checksums, or a file is
            unlisted, missing or modified (naming the file).
    """
    from export.artifact import MANIFEST, ExportError, verify_listed

    root = Path(version_dir)
    if not (root / "saved_model.pb").is_file():
        return
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise LoaderError(
            f"{root / MANIFEST} is missing, so the SavedModel at {root} cannot be "
            "verified before loading (verify=False loads it unchecked)."
        ) from None
    except (OSError, ValueError) as err:
        raise LoaderError(f"{root / MANIFEST} is corrupt: {err}") from err
    listed = manifest.get("checksums") or {}
    rels = {"saved_model.pb"} | {
        r for r in listed if r in _LOADED_FILES or r.startswith(_LOADED_PREFIXES)
    }
    try:
        verify_listed(root, sorted(rels), manifest)
    except ExportError as err:
        raise LoaderError(str(err)) from err


def run_many(
    jobs: list[tuple[str | os.PathLike, Mapping]],
    *,
    timeout: float = 600,
    verify: bool = True,
) -> list[list[dict[str, np.ndarray]]]:
    """Several versions through one loader process (TensorFlow's start-up, about
    0.2-0.8 s, is paid once). Each job is ``(version_dir, {"inputs", "warmup",
    "signature", "no_init"})`` (keys optional, as in :func:`run`); returns each
    job's outputs as :func:`run` does. The first failure stops the process and
    raises `LoaderError` naming that job's folder.

    ``verify``: before the process starts, check every file the loader will
    read against each version's manifest (:func:`verify_saved_model`); a
    modified file raises `LoaderError` naming it."""
    if verify:
        for version_dir, _ in jobs:
            verify_saved_model(version_dir)
    with tempfile.TemporaryDirectory(prefix="tfrec-loader-") as tmp:
        args, outs = [], []
        for i, (version_dir, job) in enumerate(jobs):
            dst = Path(tmp) / f"outputs-{i}.bin"
            args += [str(Path(version_dir).absolute()), "--out", str(dst)]
            args += ["--signature", job.get("signature", "serving_default")]
            if job.get("inputs") is not None:
                src = Path(tmp) / f"inputs-{i}.bin"
                write_tensor_file(src, job["inputs"])
                args += ["--inputs", str(src)]
            args += ["--warmup"] if job.get("warmup") else []
            args += ["--no-init"] if job.get("no_init") else []
            outs.append(dst)
        _run(args, timeout)
        return [read_tensor_file(dst) for dst in outs]


def run_loader(
    version_dir: str | os.PathLike, inputs: Mapping[str, object], **kwargs
) -> dict[str, np.ndarray]:
    """Runs a signature of an exported version on ``inputs`` through TF Serving's
    load path; ``{output key: array}``. Keyword arguments as in :func:`run`."""
    (out,) = run(version_dir, inputs=inputs, **kwargs)
    return out


def replay_warmup(
    version_dir: str | os.PathLike, **kwargs
) -> list[dict[str, np.ndarray]]:
    """Replays ``assets.extra/tf_serving_warmup_requests`` through the loader;
    one output dict per record, in file order."""
    return run(version_dir, warmup=True, **kwargs)


def signatures(
    version_dir: str | os.PathLike, *, timeout: float = 120, verify: bool = True
) -> dict:
    """``{signature: {"inputs"|"outputs": {key: (tensor, dtype, shape)}}}`` as the
    loader reads them from the MetaGraphDef (shape ``None`` = unknown rank, -1 =
    any size). ``verify`` as in :func:`run_many`."""
    if verify:
        verify_saved_model(version_dir)
    out: dict = {}
    current = None
    for line in _run([str(Path(version_dir).absolute())], timeout).stdout.splitlines():
        if line.startswith("signature "):
            current = out.setdefault(line.split()[1], {"inputs": {}, "outputs": {}})
        elif current is not None and line.startswith("  "):
            kind, key, tensor, dtype, shape = line.split(maxsplit=4)
            dims = (
                None
                if shape == "[?]"
                else tuple(int(d) for d in shape.strip("[]").split(",") if d.strip())
            )
            current[kind + "s"][key] = (tensor, dtype, dims)
    return out
