"""Registries of plug-ins (quantization methods, distillation methods, calibration selectors).

A plug-in is one module (or one small package) inside its registry's package; it registers
itself where it is defined, and the registry discovers it by importing every module of that
package the first time it is asked for an entry. Nothing outside the plug-in's own files lists
it, so adding one edits no shared file (and, through ``diffcomp.hashing``, reruns no other
plug-in's jobs). Registering must not import torch: the Snakefile validates names and parameters
before any job runs, so plug-ins import torch inside the functions that need it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, Iterator, TypeVar

E = TypeVar("E")


class Registry(Generic[E]):
    """Entries of one ``kind`` (e.g. "quantization method"), discovered in ``package``.

    Every entry has ``name`` and ``module`` (the module that registered it) attributes.
    """

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._entries: dict[str, E] = {}
        self._discovered = False

    def add(self, entry: E) -> E:
        name = entry.name  # type: ignore[attr-defined]
        old = self._entries.get(name)
        if old is not None and old.module != entry.module:  # type: ignore[attr-defined]
            raise ValueError(f"{self.kind} {name!r} is registered twice ({old.module} and {entry.module})")  # type: ignore[attr-defined]
        self._entries[name] = entry
        return entry

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def __getitem__(self, name: str) -> E:
        self._discover()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def entries(self) -> list[E]:
        return [self[n] for n in self.names()]


def modules_of(params) -> list[str]:
    """Modules of the plug-ins that a parameter object chooses by name at run time (a calibration
    selector in a method's config): a code hash must cover them too, since no import leads there.
    Found through ``code_modules()`` on any field value, recursively through dataclasses."""
    import dataclasses

    out: list[str] = []
    if hasattr(params, "code_modules"):
        out += list(params.code_modules())
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        for f in dataclasses.fields(params):
            out += modules_of(getattr(params, f.name))
    return sorted(set(out))
