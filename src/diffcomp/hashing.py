"""Content hashes of the code a rule runs, for Snakemake's params-based rerun trigger.

A rule's params carry ``module_hash(verb module, plug-in module, ...)``: a hash over the source
files those modules import, followed through the package (``import_closure``). So editing a
method's module reruns that method's jobs, editing the quantization core reruns every method
that imports it, and adding a new method (a new file that nothing imports) reruns nothing.
Imports are read from the source (``ast``), including imports inside functions; modules loaded
by name at run time (registry discovery) are not followed, which is what keeps plug-ins apart.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PACKAGE = PACKAGE_ROOT.name  # "diffcomp"


def _file_of(module: str, root: Path) -> Path | None:
    parts = module.split(".")[1:]
    base = root.joinpath(*parts) if parts else root
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_package(module: str, root: Path) -> bool:
    f = _file_of(module, root)
    return f is not None and f.name == "__init__.py"


def _imports(module: str, path: Path, root: Path) -> set[str]:
    """Package modules that ``module`` (source ``path``) imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for a in node.names:  # ``from pkg import submodule``
                if _file_of(f"{target}.{a.name}", root) is not None:
                    found.add(f"{target}.{a.name}")
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(*modules: str, skip: tuple[str, ...] = (), root: Path = PACKAGE_ROOT) -> list[Path]:
    """Source files of ``modules`` and of every package module they import, transitively, with
    the ``__init__`` of every package on the way (importing ``a.b.c`` runs ``a/__init__`` and
    ``a/b/__init__``). Modules under a prefix in ``skip`` are not followed. A module that does
    not exist is an error (a typo must not silently drop code from a hash)."""
    todo = []
    for m in modules:
        if _file_of(m, root) is None:
            raise FileNotFoundError(f"import_closure: no module {m!r} under {root}")
        todo.append(m)
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        m = todo.pop()
        if m in seen or any(m == s or m.startswith(s + ".") for s in skip):
            continue
        seen.add(m)
        path = _file_of(m, root)
        if path is None:  # an attribute imported from a package (``from .x import name``)
            continue
        files.add(path)
        todo.extend(p for p in _with_parents(m) if p not in seen)
        todo.extend(_imports(m, path, root) - seen)
    return sorted(files)


def _digest(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def _module_hash(modules: tuple[str, ...], skip: tuple[str, ...], root: Path) -> str:
    return _digest(import_closure(*modules, skip=skip, root=root), root)


def module_hash(*modules: str, skip: tuple[str, ...] = (), root: Path = PACKAGE_ROOT) -> str:
    """sha256 (16 hex digits) over the names and contents of ``import_closure(*modules)``."""
    return _module_hash(tuple(sorted(modules)), tuple(sorted(skip)), root)


def code_hash(*patterns: str, root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the files matching glob ``patterns`` under ``root`` (data files, or code that
    is not imported); a pattern that matches nothing is an error."""
    files: set[Path] = set()
    for pat in patterns:
        found = sorted(p for p in root.glob(pat) if p.is_file() and "__pycache__" not in p.parts)
        if not found:
            raise FileNotFoundError(f"code_hash: pattern {pat!r} matches no file under {root}")
        files.update(found)
    return _digest(sorted(files), root)
