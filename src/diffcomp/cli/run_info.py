"""The run's config (as given and resolved) and code version as an HTML page for the report."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from ..io import write_text
from ..report.html import run_info_html


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="the workflow's config as JSON (as given)")
    p.add_argument("--workflow-dir", default=None,
                   help="the checkout whose git commit is reported (default: the one this package is in)")
    p.add_argument("--source-hash", required=True, help="hash of the package's sources")
    p.add_argument("--out", required=True, help="HTML")


def git_version(root: str | Path) -> str:
    """``<commit>`` (with ``-dirty`` for uncommitted changes) of the checkout, if it is one."""
    def git(*a):
        return subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "not a git checkout"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "git not available"


def _without_built(d: Any) -> Any:
    """``to_plain`` of a config without the instances' ``built`` copies of their parameters."""
    if isinstance(d, dict):
        return {k: _without_built(v) for k, v in d.items() if k != "built"}
    if isinstance(d, list):
        return [_without_built(v) for v in d]
    return d


def run(args) -> None:
    import yaml

    from .. import __version__
    from ..config import parse_config
    from ..typedconfig import to_plain

    raw = json.loads(args.config)
    cfg = parse_config(raw, check_paths=False)

    checkout = args.workflow_dir or Path(__file__).resolve().parents[3]  # src/diffcomp/cli/ -> the checkout
    version = {"diffcomp": __version__, "git commit": git_version(checkout),
               "source hash (src/diffcomp)": args.source_hash, "python": platform.python_version()}
    for pkg in ("torch", "diffusers", "snakemake", "torch-fidelity"):
        try:
            version[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            version[pkg] = "not installed"
    write_text(args.out, run_info_html(version, yaml.safe_dump(raw, sort_keys=False),
                                       yaml.safe_dump(_without_built(to_plain(cfg)), sort_keys=False)))
