"""Content hashes of source files, for Snakemake's params-based rerun trigger.

A rule's params carry the hash of exactly the code it runs, so editing one method's module
reruns that method's jobs and nothing else (DESIGN.md, "Partial reruns").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


def code_hash(*patterns: str, root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the contents (and relative names) of the files matching glob ``patterns``
    under the package root; a pattern that matches nothing is an error (a typo must not silently
    drop code from the hash)."""
    files: set[Path] = set()
    for pat in patterns:
        found = sorted(p for p in root.glob(pat) if p.is_file() and "__pycache__" not in p.parts)
        if not found:
            raise FileNotFoundError(f"code_hash: pattern {pat!r} matches no file under {root}")
        files.update(found)
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]
