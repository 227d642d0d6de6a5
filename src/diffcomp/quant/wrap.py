"""Model wrapping: ``quantize_model(unet, spec)`` replaces the ``Conv2d``/``Linear`` layers chosen
by name patterns with ``QuantLayer``s, never by list position or exact model type. Per-layer
overrides are an ordered list of ``(regex, changes)``; every matching entry applies, later ones
win. A quantized model is saved as its spec plus its ``state_dict`` and loaded by wrapping a fresh
FP model with the same spec."""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from ..io import save_torch
from .layer import QuantLayer


@dataclass(frozen=True)
class LayerSpec:
    """How one layer is quantized."""

    w_bits: int
    a_bits: int
    w_symmetric: bool = False
    a_symmetric: bool = False
    w_per_channel: bool = True
    quant_weights: bool = True
    quant_acts: bool = True


@dataclass(frozen=True)
class QuantSpec:
    """Which layers are quantized, and how.

    ``include``/``exclude`` are regexes matched (``re.search``) against module names;
    ``overrides`` is an ordered tuple of ``(regex, {LayerSpec field: value})``, e.g.
    ``(("^conv_in$|^conv_out$", {"w_bits": 8, "a_bits": 8}),)`` for 8-bit first/last layers.
    """

    w_bits: int
    a_bits: int
    w_symmetric: bool = False
    a_symmetric: bool = False
    w_per_channel: bool = True
    include: tuple[str, ...] = (".*",)
    exclude: tuple[str, ...] = ()
    overrides: tuple[tuple[str, dict], ...] = field(default_factory=tuple)

    def layer_spec(self, name: str) -> LayerSpec | None:
        if not any(re.search(p, name) for p in self.include) or any(re.search(p, name) for p in self.exclude):
            return None
        spec = LayerSpec(self.w_bits, self.a_bits, self.w_symmetric, self.a_symmetric, self.w_per_channel)
        for pattern, changes in self.overrides:
            if re.search(pattern, name):
                spec = dataclasses.replace(spec, **changes)
        return spec

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = [[p, dict(c)] for p, c in self.overrides]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QuantSpec":
        d = dict(d)
        d["include"] = tuple(d.get("include", (".*",)))
        d["exclude"] = tuple(d.get("exclude", ()))
        d["overrides"] = tuple((p, dict(c)) for p, c in d.get("overrides", ()))
        return cls(**d)


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    parent._modules[child] = new


def quantize_model(model: nn.Module, spec: QuantSpec, inplace: bool = False) -> nn.Module:
    """A copy of ``model`` whose chosen Conv2d/Linear layers are ``QuantLayer``s (ranges not yet set)."""
    model = model if inplace else copy.deepcopy(model)
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for name, module in targets:
        ls = spec.layer_spec(name)
        if ls is None:
            continue
        q = QuantLayer(module, ls.w_bits, ls.a_bits, ls.w_symmetric, ls.a_symmetric, ls.w_per_channel)
        q.set_quant_state(ls.quant_weights, ls.quant_acts)
        _set_submodule(model, name, q)
    return model


def quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            yield name, m


def set_quant_state(model: nn.Module, weights: bool, acts: bool) -> None:
    """Switch weight/activation quantization of every quantized layer (FP when both are off)."""
    for _, m in quant_layers(model):
        m.set_quant_state(weights, acts)


def check_initialized(model: nn.Module) -> None:
    """Raise if an enabled quantizer of a layer that quantizes was never given a range."""
    missing = []
    for name, m in quant_layers(model):
        if m.quant_weights and not bool(m.weight_quantizer.initialized):
            missing.append(f"{name}.weight_quantizer")
        if m.quant_acts and not bool(m.input_quantizer.initialized):
            missing.append(f"{name}.input_quantizer")
    if missing:
        raise RuntimeError(f"{len(missing)} quantizers have no range, e.g. {missing[:3]}")


def save_quantized(model: nn.Module, spec: QuantSpec, path: str | Path, meta: dict | None = None) -> None:
    """Write the spec, the per-layer quant switches and the full ``state_dict``."""
    states = {name: [m.quant_weights, m.quant_acts] for name, m in quant_layers(model)}
    save_torch(path, {"spec": spec.to_dict(), "quant_state": states, "state_dict": model.state_dict(), "meta": meta or {}})


def load_quantized(fp_model: nn.Module, path: str | Path) -> nn.Module:
    """Wrap ``fp_model`` with the saved spec and load the saved state (strict)."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model = quantize_model(fp_model, QuantSpec.from_dict(blob["spec"]))
    model.load_state_dict(blob["state_dict"], strict=True)
    for name, m in quant_layers(model):
        w, a = blob["quant_state"][name]
        m.set_quant_state(w, a)
    check_initialized(model)
    return model.eval()
