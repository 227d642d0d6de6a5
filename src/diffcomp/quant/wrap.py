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
from .attention import QuantAttnProcessor
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
    split: int = 0


@dataclass(frozen=True)
class QuantSpec:
    """Which layers are quantized, and how.

    ``include``/``exclude`` are regexes matched (``re.search``) against module names;
    ``overrides`` is an ordered tuple of ``(regex, {LayerSpec field: value})``, e.g.
    ``(("^conv_in$|^conv_out$", {"w_bits": 8, "a_bits": 8}),)`` for 8-bit first/last layers.
    ``split_shortcut`` adds ``{"split": C}`` overrides for the layers that receive
    ``cat([h, skip])`` (see ``concat_splits``); ``attention`` quantizes q, k, v and the softmax
    output (``sm_bits``, unsigned) through ``QuantAttnProcessor``; ``a_learnable`` makes
    activation scales trainable (LSQ).
    """

    w_bits: int
    a_bits: int
    w_symmetric: bool = False
    a_symmetric: bool = False
    w_per_channel: bool = True
    include: tuple[str, ...] = (".*",)
    exclude: tuple[str, ...] = ()
    overrides: tuple[tuple[str, dict], ...] = field(default_factory=tuple)
    attention: bool = False
    sm_bits: int = 8
    a_learnable: bool = False

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


def concat_splits(unet: nn.Module) -> dict[str, int]:
    """``{layer name: C}`` for the shortcut convs of diffusers up blocks, whose input is
    ``cat([h, skip], dim=1)`` with ``h`` of C channels (Q-Diffusion's split points).

    Found from the model itself: resnet 0 of an up block receives the block's input hidden
    states, resnet j > 0 the output of resnet j - 1 (diffusers' ``UpBlock2D``/``AttnUpBlock2D``).
    One forward of a single zero input records each up block's input channels.
    """
    up_blocks = getattr(unet, "up_blocks", None)
    if up_blocks is None:
        return {}
    entry: dict[int, int] = {}

    def record(i):
        def hook(module, args):
            entry.setdefault(i, args[0].shape[1])  # returns None: the inputs are left as they are

        return hook

    handles = [b.register_forward_pre_hook(record(i)) for i, b in enumerate(up_blocks)]
    try:
        cfg = unet.config
        p = next(unet.parameters())
        with torch.no_grad():
            unet(torch.zeros(1, cfg.in_channels, cfg.sample_size, cfg.sample_size, device=p.device, dtype=p.dtype),
                 torch.zeros(1, device=p.device, dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
    splits = {}
    for i, block in enumerate(up_blocks):
        for j, res in enumerate(block.resnets):
            shortcut = getattr(res, "conv_shortcut", None)
            if shortcut is None:
                continue
            h = entry[i] if j == 0 else block.resnets[j - 1].out_channels
            splits[f"up_blocks.{i}.resnets.{j}.conv_shortcut"] = int(h)
    return splits


def with_split_shortcut(spec: QuantSpec, unet: nn.Module) -> QuantSpec:
    """``spec`` plus explicit ``split`` overrides for every concat-input shortcut conv (stored in
    the spec, so loading needs no forward pass)."""
    extra = tuple((f"^{re.escape(n)}$", {"split": c}) for n, c in concat_splits(unet).items())
    return dataclasses.replace(spec, overrides=spec.overrides + extra)


def quantize_model(model: nn.Module, spec: QuantSpec, inplace: bool = False) -> nn.Module:
    """A copy of ``model`` whose chosen Conv2d/Linear layers are ``QuantLayer``s and, with
    ``spec.attention``, whose attention modules use ``QuantAttnProcessor`` (ranges not yet set)."""
    from diffusers.models.attention_processor import Attention

    model = model if inplace else copy.deepcopy(model)
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for name, module in targets:
        ls = spec.layer_spec(name)
        if ls is None:
            continue
        q = QuantLayer(module, ls.w_bits, ls.a_bits, ls.w_symmetric, ls.a_symmetric, ls.w_per_channel,
                       split=ls.split, a_learnable=spec.a_learnable, allow_weights=ls.quant_weights,
                       allow_acts=ls.quant_acts)
        _set_submodule(model, name, q)
    if spec.attention:
        for name, m in model.named_modules():
            if isinstance(m, Attention) and spec.layer_spec(name) is not None:
                m.set_processor(QuantAttnProcessor(spec.a_bits, spec.sm_bits, spec.a_symmetric, spec.a_learnable))
    return model


def quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            yield name, m


def set_quant_state(model: nn.Module, weights: bool, acts: bool) -> None:
    """Switch weight/activation quantization of every quantized layer and attention processor
    (FP when both are off)."""
    for _, m in model.named_modules():
        if isinstance(m, QuantLayer):
            m.set_quant_state(weights, acts)
        elif isinstance(m, QuantAttnProcessor):
            m.quant_acts = bool(acts)


def check_initialized(model: nn.Module) -> None:
    """Raise if a quantizer that is in use was never given a range."""
    missing = []
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            if m.quant_weights:
                missing += [f"{name}.weight" for q, _ in m.weight_parts() if not bool(q.initialized)]
            if m.quant_acts:
                missing += [f"{name}.input" for q, _ in m.input_parts() if not bool(q.initialized)]
        elif isinstance(m, QuantAttnProcessor) and m.quant_acts:
            missing += [f"{name}.{n}" for n, q in m.act_quantizers() if not bool(q.initialized)]
    if missing:
        raise RuntimeError(f"{len(missing)} quantizers have no range, e.g. {missing[:3]}")


def _switches(model: nn.Module) -> dict[str, list[bool]]:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            out[name] = [m.quant_weights, m.quant_acts]
        elif isinstance(m, QuantAttnProcessor):
            out[name] = [False, m.quant_acts]
    return out


def save_quantized(model: nn.Module, spec: QuantSpec, path: str | Path, meta: dict | None = None) -> None:
    """Write the spec, the quant switches and the full ``state_dict``."""
    if any(m.rounding is not None for _, m in quant_layers(model)):
        raise RuntimeError("bake the AdaRound rounding (QuantLayer.bake_rounding) before saving")
    states = _switches(model)
    save_torch(path, {"spec": spec.to_dict(), "quant_state": states, "state_dict": model.state_dict(), "meta": meta or {}})


def load_quantized(fp_model: nn.Module, path: str | Path) -> nn.Module:
    """Wrap ``fp_model`` with the saved spec and load the saved state (strict)."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model = quantize_model(fp_model, QuantSpec.from_dict(blob["spec"]))
    model.load_state_dict(blob["state_dict"], strict=True)
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            m.set_quant_state(*blob["quant_state"][name])
        elif isinstance(m, QuantAttnProcessor):
            m.quant_acts = blob["quant_state"][name][1]
    check_initialized(model)
    return model.eval()
