"""Atomic writes (every output is written to a temporary sibling, then renamed into place) and
checked reads: a reader of an intermediate file fails with one ``FileError`` line that names the
file and the remedy ("results/samples/fp/shard-0.npz is damaged (...): delete it and rerun"),
never with a traceback of the format library, and never runs code from a file (no unpickling but
torch's restricted ``weights_only`` loader for resume states)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

RERUN = "delete it and rerun"


class FileError(ValueError):
    """An input file is missing, damaged or not what it should be. The message is one line naming
    the file and the remedy; the verbs print it without a traceback."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (a library's multi-line message), at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def damaged(path: str | os.PathLike, why: object, remedy: str = RERUN) -> FileError:
    """The error for a file that exists but cannot be used."""
    return FileError(f"{path} is damaged ({one_line(why)}): {remedy}")


def missing(path: str | os.PathLike, remedy: str = "rerun the workflow to rebuild it") -> FileError:
    return FileError(f"{path} is missing: {remedy}")


def _umask() -> int:
    """The process's umask, read without changing it (Linux's /proc; elsewhere the usual 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and for directories (the block creates whatever it likes at the yielded path).
    An interrupted job leaves no half-written output under the final name. A file gets the mode
    the process's umask gives new files (some writers, safetensors' among them, create theirs
    readable by the owner alone, which hides results from a project's group).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_umask())
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, remedy: str = RERUN) -> Any:
    """The JSON in ``path``; a missing, truncated or non-JSON file is one ``FileError``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise missing(path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise damaged(path, f"not JSON: {e}", remedy) from None


def read_json_object(path: str | os.PathLike, keys: tuple[str, ...] = (), remedy: str = RERUN) -> dict:
    """A JSON object with at least ``keys``; anything else is one ``FileError``."""
    obj = read_json(path, remedy)
    if not isinstance(obj, dict):
        raise damaged(path, f"expected a JSON object, found {type(obj).__name__}", remedy)
    absent = [k for k in keys if k not in obj]
    if absent:
        raise damaged(path, f"no {absent[0]!r} entry", remedy)
    return obj


def load_npz(path: str | os.PathLike, dtypes: Mapping[str, str | None], optional: tuple[str, ...] = (),
             remedy: str = RERUN) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file: every key of ``dtypes`` must be there (with that dtype kind,
    e.g. ``"uint8"``, unless None), keys in ``optional`` are read when present. Never unpickles
    (object arrays are refused); a missing, truncated or foreign file is one ``FileError``."""
    import zipfile
    import zlib

    try:
        with np.load(path, allow_pickle=False) as z:
            absent = [k for k in dtypes if k not in z.files]
            if absent:
                raise damaged(path, f"no array {absent[0]!r}; it has {sorted(z.files)}", remedy)
            out = {k: z[k] for k in [*dtypes, *(k for k in optional if k in z.files)]}
    except FileError:
        raise
    except FileNotFoundError:
        raise missing(path) from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise damaged(path, f"{type(e).__name__}: {e}", remedy) from None
    for k, dt in dtypes.items():
        if dt is not None and out[k].dtype != np.dtype(dt):
            raise damaged(path, f"array {k!r} is {out[k].dtype}, expected {dt}", remedy)
    return out


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def tensors_digest(tensors: Mapping[str, Any]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a dict of tensors: written into a
    safetensors file's header, it lets a reader detect changed bytes (safetensors has no checksum)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike, map_location: Any = "cpu",
               remedy: str = "delete it to start this step afresh") -> Any:
    """Read a resume state written by ``save_torch`` with ``weights_only=True``: tensors, numbers,
    strings and containers only, so a planted pickle cannot run code (it is one ``FileError``)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise missing(path) from None
    except pickle.UnpicklingError:  # not torch's message: it suggests turning weights_only off
        raise damaged(path, "it holds objects other than tensors, numbers and strings; not unpickled", remedy) from None
    except Exception as e:  # zip and torch's own errors
        raise damaged(path, f"{type(e).__name__}: {e}", remedy) from None
