"""Quantization methods: one module (or small package) each, registered where it is defined.

A method module defines its parameter dataclass (defaults: the paper's values, each documented),
its recipe, its table label and the settings the shared contract test runs it with, and
registers them with ``@quant_method``. ``METHODS`` discovers the modules of this package on first
use; importing this package (or a method module) does not import torch, so the Snakefile
validates method names and parameters before any job runs. A recipe is
``recipe(unet, trajectories, bits, params, device) -> (quantized unet, QuantSpec[, info])`` (``info``:
what the recipe measured, recorded in the model's provenance); the method's
code hash (its rerun trigger) covers its own module and the core it imports. ``conditional``: the
recipe calibrates class-conditional models too (its calibration batches carry the labels,
``calib.selectors.CalibSet``); the quantize verb refuses labelled trajectories for the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..registry import Registry


@dataclass(frozen=True)
class QuantMethod:
    name: str
    label: str  # row label in tables
    params: type  # frozen dataclass of the method's parameters
    recipe: Callable[..., Any]
    module: str
    contract: Mapping[str, Any] = field(default_factory=dict)  # parameters of the fast contract test
    conditional: bool = False  # calibrates class-conditional models (labelled trajectories)


METHODS: Registry[QuantMethod] = Registry("quantization method", __name__)


def quant_method(name: str, *, label: str, params: type, contract: Mapping[str, Any], conditional: bool = False):
    """Register the decorated recipe as quantization method ``name``."""

    def deco(fn):
        METHODS.add(QuantMethod(name, label, params, fn, fn.__module__, dict(contract), conditional))
        return fn

    return deco
