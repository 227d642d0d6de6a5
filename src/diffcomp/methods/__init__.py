"""The method registry: ``name -> (parameter dataclass, recipe module)``.

Importing this package does not import torch: the Snakefile validates method names and
parameters before any job runs. ``get_recipe(name)`` imports the method's module on demand.
A recipe is ``recipe(unet, calib, bits, params) -> quantized unet`` (DESIGN.md, "Methods").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .params import LinearParams, QDiffusionParams


@dataclass(frozen=True)
class MethodEntry:
    params: type
    module: str  # module under diffcomp.methods that defines ``recipe``
    label: str  # row label in tables

    @property
    def source(self) -> str:
        """Path of the module's source relative to the package root (for code hashes)."""
        return f"methods/{self.module}.py"


METHODS: dict[str, MethodEntry] = {
    "linear": MethodEntry(LinearParams, "linear", "Linear Quant"),
    "qdiffusion": MethodEntry(QDiffusionParams, "qdiffusion", "Q-Diffusion"),
}


def get_recipe(name: str) -> Callable[..., Any]:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return importlib.import_module(f"{__name__}.{METHODS[name].module}").recipe
