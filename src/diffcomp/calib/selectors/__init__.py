"""Calibration selectors: which (x_t, t) samples of the FP trajectories a method calibrates on.

A selector picks (sampling step, trajectory) pairs; ``Calibration.select`` turns them into a
``CalibSet``: the inputs, their timesteps, and for a class-conditional model each input's label
(with guided sampling each input twice, with its label and with the null label, as the
calibration of guided models takes both the conditional and the unconditional inputs).

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
    select: Callable[..., Any]  # select(trajectories, params, seed[, model]) -> (steps, index)
    module: str
    label: str = ""
    needs_model: bool = False  # select also takes the FP UNet (model=)


SELECTORS: Registry[SelectorEntry] = Registry("calibration selector", __name__)


def selector(name: str, *, params: type, label: str = "", needs_model: bool = False):
    """Register the decorated ``select(trajectories, params, seed) -> (steps, index)``: the
    sampling step and the trajectory of each calibration input, two int64 tensors of one length
    (with ``needs_model``: ``select(trajectories, params, seed, model)``, model the FP UNet)."""

    def deco(fn):
        SELECTORS.add(SelectorEntry(name, params, fn, fn.__module__, label or name, needs_model))
        return fn

    return deco


@dataclass(frozen=True)
class CalibSet:
    """Calibration inputs ``xs`` (n, C, H, W), their timesteps ``ts`` (n,) and, for a
    class-conditional model, their labels (n,). A batch is ``(x, t)`` or ``(x, t, labels)``: the
    UNet's positional arguments, so ``model(*batch)`` runs either kind of model."""

    xs: Any
    ts: Any
    labels: Any = None

    def __len__(self) -> int:
        return int(self.xs.shape[0])

    def tensors(self) -> tuple:
        return (self.xs, self.ts) if self.labels is None else (self.xs, self.ts, self.labels)

    def subset(self, pick) -> "CalibSet":
        return CalibSet(*(v[pick] for v in self.tensors()))

    def batches(self, size: int, device: Any = "cpu") -> list[tuple]:
        """Consecutive batches of at most ``size`` inputs on ``device``."""
        return [tuple(v[i : i + size].to(device) for v in self.tensors()) for i in range(0, len(self), size)]


def gather(trajectories: Any, steps: Any, index: Any) -> CalibSet:
    """The inputs at (``steps[k]``, ``index[k]``) of ``trajectories``, with their labels if the
    trajectories have them; under guidance (the sampler's ``guidance`` != 1) each input is followed
    by the same input with the null label (the trajectories' ``null_label``)."""
    import torch

    xs, ts = trajectories.xs[steps, index], trajectories.ts[steps]
    labels = trajectories.labels
    if labels is None:
        return CalibSet(xs, ts)
    labels = labels[index]
    if trajectories.guidance == 1.0:
        return CalibSet(xs, ts, labels)
    null = trajectories.meta.get("null_label")
    if null is None:
        raise ValueError("guided trajectories need their null label (meta 'null_label'): capture them again")
    both = lambda a, b: torch.stack([a, b], 1).flatten(0, 1)  # noqa: E731 (input k, then its null twin)
    return CalibSet(both(xs, xs), both(ts, ts), both(labels, torch.full_like(labels, int(null))))


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

    def select(self, trajectories: Any, seed: int = 0, model: Any = None) -> CalibSet:
        """The calibration inputs this choice picks from ``trajectories`` (``gather``); ``model``
        is the FP UNet, which selectors that look at its features need (the others ignore it)."""
        entry = SELECTORS[self.selector]
        if not entry.needs_model:
            steps, index = entry.select(trajectories, self.params, seed)
        elif model is None:
            raise ValueError(f"calibration selector {self.selector!r} needs the FP model: call select(..., model=unet)")
        else:
            steps, index = entry.select(trajectories, self.params, seed, model)
        return gather(trajectories, steps, index)
