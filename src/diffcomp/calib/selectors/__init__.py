"""Calibration selectors: which (x_t, t) samples of the FP trajectories a method calibrates on.

A selector is one module in this package that registers itself with ``@selector(name,
params=...)``; a method's parameters hold a ``Calibration`` (a selector and its parameters),
written in the config as ``calibration: {selector: uniform, steps: 20, per_step: 256}``, so any
PTQ method can use any selector. A selector that looks at the FP model's features (``needs_model``)
gets the model from the recipe: recipes pass ``model=`` to ``Calibration.select``. Importing this
package does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ...registry import Registry
from ...typedconfig import ConfigError, build_dataclass, to_plain


@dataclass(frozen=True)
class SelectorEntry:
    name: str
    params: type  # frozen dataclass of the selector's parameters (defaults: the paper's)
    select: Callable[..., Any]  # select(trajectories, params, seed[, model]) -> (xs, ts)
    module: str
    label: str = ""
    needs_model: bool = False  # select also takes the FP UNet (model=)


SELECTORS: Registry[SelectorEntry] = Registry("calibration selector", __name__)


def selector(name: str, *, params: type, label: str = "", needs_model: bool = False):
    """Register the decorated ``select(trajectories, params, seed) -> (xs, ts)`` (with
    ``needs_model``: ``select(trajectories, params, seed, model)``, model the FP UNet)."""

    def deco(fn):
        SELECTORS.add(SelectorEntry(name, params, fn, fn.__module__, label or name, needs_model))
        return fn

    return deco


@dataclass(frozen=True)
class Calibration:
    """A registered selector and its parameters (a method parameter; see the module docstring)."""

    selector: str
    params: Any

    @classmethod
    def from_config(cls, value: Any, where: str) -> "Calibration":
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{where}': expected a mapping like {{selector: uniform, steps: 20}}, got {value!r}")
        value = dict(value)
        if "selector" not in value:
            raise ConfigError(f"config key '{where}.selector': required key is missing (known: {', '.join(SELECTORS.names())})")
        name = value.pop("selector")
        if name not in SELECTORS:
            raise ConfigError(f"config key '{where}.selector': unknown calibration selector {name!r} (known: {', '.join(SELECTORS.names())})")
        return cls(name, build_dataclass(SELECTORS[name].params, value, where))

    def to_config(self) -> dict[str, Any]:
        return {"selector": self.selector, **to_plain(self.params)}

    def check_against(self, cfg: Any, where: str) -> None:
        if hasattr(self.params, "check_against"):
            self.params.check_against(cfg, where)

    def code_modules(self) -> list[str]:
        """The selector's module (chosen by name, so no import of the method leads to it)."""
        return [SELECTORS[self.selector].module]

    def select(self, trajectories: Any, seed: int = 0, model: Any = None) -> Any:
        """(xs, ts): the calibration inputs this choice picks from ``trajectories``; ``model`` is
        the FP UNet, which selectors that look at its features need (the others ignore it)."""
        entry = SELECTORS[self.selector]
        if not entry.needs_model:
            return entry.select(trajectories, self.params, seed)
        if model is None:
            raise ValueError(f"calibration selector {self.selector!r} needs the FP model: call select(..., model=unet)")
        return entry.select(trajectories, self.params, seed, model)
