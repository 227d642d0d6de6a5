"""Helpers shared by the verbs: JSON config sections, device choice, thread count."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..typedconfig import build_dataclass


def section(cls: type, text: str | None, where: str) -> Any:
    """Build config dataclass ``cls`` from a JSON string passed on the command line."""
    return build_dataclass(cls, json.loads(text) if text else {}, where)


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"device {name!r} requested but CUDA is not available")
    return name


def set_threads(n: int | None) -> None:
    """Use at most the cores this process may run on (Snakemake may grant more threads than exist)."""
    import torch

    avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, min(n or avail, avail)))


def keyed_state_dir(root: str | None, key: Any) -> Path | None:
    """``root/<hash of key>``: resume state that belongs to exactly one setting (a changed
    setting starts afresh instead of resuming someone else's state); None without a root."""
    if not root:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return Path(root) / digest[:16]
