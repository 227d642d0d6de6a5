"""Distillation methods: one module (or small package) each, registered where it is defined.

A method registers its parameter dataclass (defaults: the paper's values), its table label, its
contract-test settings, an objective factory ``objective(params, features) -> nn.Module`` and, if
its objective needs a frozen feature network, the loader ``features(name, weights folder)``. ``DISTILLERS`` discovers the modules of this package on first use; importing this package
does not import torch. The stage loop (``distill.stage``) is the same for every method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ...registry import Registry


@dataclass(frozen=True)
class DistillMethod:
    name: str
    label: str
    params: type
    objective: Callable[..., Any]
    module: str
    features: Callable[[str, str], Any] | None = None  # loads the frozen feature network it needs
    contract: Mapping[str, Any] = field(default_factory=dict)


    @property
    def uses_features(self) -> bool:
        return self.features is not None


DISTILLERS: Registry[DistillMethod] = Registry("distillation method", __name__)


def distiller(name: str, *, label: str, params: type, features: Callable[[str, str], Any] | None = None,
              contract: Mapping[str, Any] | None = None):
    """Register the decorated objective factory as distillation method ``name``."""

    def deco(fn):
        DISTILLERS.add(DistillMethod(name, label, params, fn, fn.__module__, features, dict(contract or {})))
        return fn

    return deco
