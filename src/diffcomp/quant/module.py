"""The protocol of a module that holds quantizers (a quantized layer, a quantized attention
processor), and the model-wide operations on them.

Callers iterate quantizers, switch weight/activation quantization and save switches through
this protocol, never by testing concrete types: ``quant_modules(model)`` is the one place that
recognises such a module.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

from .quantizer import Quantizer


class QuantModule(nn.Module):
    """Holds weight quantizers (with the weight parts they quantize) and activation quantizers.

    ``allow_weights`` / ``allow_acts`` (fixed at construction: does the module have such
    quantizers) bound the switches ``quant_weights`` / ``quant_acts``; with both switches off the
    module computes exactly what the original computes.
    """

    allow_weights = False
    allow_acts = False

    def __init__(self):
        super().__init__()
        self.quant_weights = False
        self.quant_acts = False

    def set_quant_state(self, weights: bool, acts: bool) -> None:
        self.quant_weights = bool(weights) and self.allow_weights
        self.quant_acts = bool(acts) and self.allow_acts

    def quant_state(self) -> tuple[bool, bool]:
        return self.quant_weights, self.quant_acts

    def weight_parts(self) -> list[tuple[Quantizer, torch.Tensor]]:
        """(weight quantizer, the (adapted) weight part it quantizes, detached)."""
        return []

    def act_quantizers(self) -> list[tuple[str, Quantizer]]:
        """(name, quantizer) of every activation quantizer."""
        return []

    def swap_weight_quantizers(self, make) -> None:
        """Replace every weight quantizer ``q`` by ``make(q, its weight part)``."""

    def bake_weights(self) -> None:
        """Move learned state that belongs in the weight (``Quantizer.bake``) into it."""


def quant_modules(model: nn.Module) -> Iterator[tuple[str, QuantModule]]:
    for name, m in model.named_modules():
        if isinstance(m, QuantModule):
            yield name, m


def set_quant_state(model: nn.Module, weights: bool, acts: bool) -> None:
    """Switch weight/activation quantization of every quantized module (FP when both are off)."""
    for _, m in quant_modules(model):
        m.set_quant_state(weights, acts)


def quant_states(model: nn.Module) -> dict[str, list[bool]]:
    return {name: list(m.quant_state()) for name, m in quant_modules(model)}


def apply_quant_states(model: nn.Module, states: dict[str, list[bool]]) -> None:
    mods = dict(quant_modules(model))
    if set(mods) != set(states):
        raise ValueError(f"quant states name {len(states)} modules, the model has {len(mods)}")
    for name, (w, a) in states.items():
        mods[name].set_quant_state(w, a)


def weight_quantizers(model: nn.Module) -> Iterator[tuple[str, Quantizer, torch.Tensor]]:
    """(module name, quantizer, weight part) of every weight quantizer in the model."""
    for name, m in quant_modules(model):
        for q, w in m.weight_parts():
            yield name, q, w


def act_quantizers(model: nn.Module) -> Iterator[tuple[str, Quantizer]]:
    """Every activation quantizer in use (its module quantizes activations now)."""
    for name, m in quant_modules(model):
        if m.quant_acts:
            for qn, q in m.act_quantizers():
                yield f"{name}.{qn}", q


def learnable_steps(model: nn.Module) -> list[nn.Parameter]:
    """The learnable (LSQ) step sizes of the activation quantizers in use inside ``model``."""
    return [leaf.scale for _, q in act_quantizers(model) for leaf in q.leaves()
            if isinstance(leaf.scale, nn.Parameter)]


def step_contexts(model: nn.Module) -> list:
    """The timestep contexts the model's quantizers read (empty without per-timestep quantizers)."""
    out = []
    for _, m in quant_modules(model):
        for q in [q for q, _ in m.weight_parts()] + [q for _, q in m.act_quantizers()]:
            if q.context is not None and all(q.context is not c for c in out):
                out.append(q.context)
    return out


def check_initialized(model: nn.Module) -> None:
    """Raise if a quantizer that is in use was never given a range, or holds unbaked state."""
    missing, pending = [], []
    for name, m in quant_modules(model):
        if m.quant_weights:
            missing += [f"{name}.weight" for q, _ in m.weight_parts() if not q.is_initialized()]
        if m.quant_acts:
            missing += [f"{name}.{n}" for n, q in m.act_quantizers() if not q.is_initialized()]
        pending += [f"{name}.weight" for q, _ in m.weight_parts() if q.pending]
    if missing:
        raise RuntimeError(f"{len(missing)} quantizers have no range, e.g. {missing[:3]}")
    if pending:
        raise RuntimeError(f"{len(pending)} weight quantizers hold state not baked into the weight, e.g. {pending[:3]}")
