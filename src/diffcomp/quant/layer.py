"""The quantized layer: one wrapper for ``Conv2d`` and ``Linear`` whose weight and input
quantizers are built from a ``LayerConfig`` (any ``Quantizer``: uniform, per-timestep, mixed
bit widths; AdaRound swapped in during reconstruction), with optional weight adapters (LoRA)
applied before weight quantization. Its forward never branches on the quantizer type.

Split shortcut quantization (Q-Diffusion) is the same layer with ``split > 0``: a layer whose
input is ``cat([h, skip], dim=1)`` gets two input quantizers (channels ``[:split]`` and
``[split:]``) and two per-output-channel weight quantizers on ``W[:, :split]`` and
``W[:, split:]``; the dequantized halves are concatenated and go through one op.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .factory import build_quantizer
from .module import QuantModule
from .quantizer import Quantizer
from .spec import LayerConfig
from .timestep import StepContext


class QuantLayer(QuantModule):
    """Wraps a ``Conv2d`` or ``Linear``; its parameters stay the wrapped module's."""

    def __init__(self, module: nn.Conv2d | nn.Linear, config: LayerConfig, timesteps: Sequence[int] = (),
                 context: StepContext | None = None):
        super().__init__()
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"QuantLayer wraps Conv2d or Linear, got {type(module).__name__}")
        if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
            raise NotImplementedError("QuantLayer supports zero padding only")
        in_ch, out_ch = module.weight.shape[1], module.weight.shape[0]
        split = int(config.split)
        if split and not 0 < split < in_ch:
            raise ValueError(f"split {split} outside 1..{in_ch - 1}")
        if split and isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError("split quantization needs groups == 1")
        self.module = module
        self.split = split
        self.slices = [slice(0, split), slice(split, None)] if split else [slice(None)]
        w, a = config.weight, config.act
        self.weight_quantizers = nn.ModuleList(
            build_quantizer(w, out_ch, 0, timesteps, context) for _ in self.slices) if w else nn.ModuleList()
        self.input_quantizers = nn.ModuleList(
            build_quantizer(a, None, 1, timesteps, context) for _ in self.slices) if a else nn.ModuleList()
        self.weight_adapters = nn.ModuleList()
        self.smooth = bool(config.smooth)
        if self.smooth:  # the stored weight is W * s; the input is divided by s
            self.register_buffer("smooth_scale", torch.ones(in_ch))
        self.allow_weights, self.allow_acts = w is not None, a is not None
        self.quant_weights, self.quant_acts = self.allow_weights, self.allow_acts
        self.register_buffer("frozen_weight", None, persistent=False)  # see quant.inference.frozen

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.module.bias

    def adapted_weight(self) -> torch.Tensor:
        w = self.module.weight
        for adapter in self.weight_adapters:
            w = adapter(w)
        return w

    def weight_parts(self) -> list[tuple[Quantizer, torch.Tensor]]:
        w = self.adapted_weight().detach()
        return [(q, w[:, sl]) for q, sl in zip(self.weight_quantizers, self.slices)]

    def act_quantizers(self) -> list[tuple[str, Quantizer]]:
        return [(f"input{'_skip' if i else ''}", q) for i, q in enumerate(self.input_quantizers)]

    def swap_weight_quantizers(self, make) -> None:
        w = self.module.weight.detach()
        for i, sl in enumerate(self.slices[: len(self.weight_quantizers)]):
            self.weight_quantizers[i] = make(self.weight_quantizers[i], w[:, sl])

    @torch.no_grad()
    def set_smoothing(self, s: torch.Tensor) -> None:
        """Pre-scale by ``s`` (per input channel, > 0): the weight becomes ``W * s`` and the input
        ``x / s``, so the layer's FP output is unchanged. Applied once, before ranges are set."""
        if not self.smooth:
            raise RuntimeError("set_smoothing: this layer was not built with smooth=True")
        if self.weight_adapters:
            raise RuntimeError("set_smoothing: smooth before adding weight adapters")
        s = s.to(self.smooth_scale).flatten()
        if s.shape != self.smooth_scale.shape or not bool((s > 0).all()):
            raise ValueError(f"set_smoothing: expected {self.smooth_scale.numel()} positive scales")
        w = self.module.weight
        view = [1, -1] + [1] * (w.dim() - 2)
        w.mul_((s / self.smooth_scale).view(view))
        self.smooth_scale.copy_(s)

    @torch.no_grad()
    def merge_adapters(self) -> None:
        """Write the adapted weight into the stored weight and drop the adapters (exact: the
        quantizers see the same tensor as before)."""
        if self.weight_adapters:
            self.module.weight.copy_(self.adapted_weight())
            self.weight_adapters = nn.ModuleList()

    @torch.no_grad()
    def bake_weights(self) -> None:
        if self.weight_adapters and any(q.pending for q in self.weight_quantizers):
            raise RuntimeError("cannot bake a rounding into a weight that has adapters")
        w = self.module.weight
        for i, sl in enumerate(self.slices[: len(self.weight_quantizers)]):
            q = self.weight_quantizers[i]
            new_w, new_q = q.bake(w[:, sl])
            if new_q is not q:
                w[:, sl] = new_w
                self.weight_quantizers[i] = new_q

    def _by_part(self, quantizers: nn.ModuleList, t: torch.Tensor) -> torch.Tensor:
        """Each quantizer on its channel slice (dim 1) of ``t``, concatenated back."""
        if len(self.slices) == 1:
            return quantizers[0](t)
        return torch.cat([q(t[:, sl]) for q, sl in zip(quantizers, self.slices)], dim=1)

    def quantized_weight(self) -> torch.Tensor:
        w = self.adapted_weight()
        return self._by_part(self.weight_quantizers, w) if self.quant_weights else w

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.smooth:  # channels: dim 1 of a conv input, the last dim of a linear one
            s = self.smooth_scale
            x = x / (s.view([1, -1] + [1] * (x.dim() - 2)) if isinstance(self.module, nn.Conv2d) else s)
        return self._by_part(self.input_quantizers, x) if self.quant_acts else x

    @torch.no_grad()
    def freeze_weight(self, dtype: torch.dtype | None = None, clear: bool = False) -> None:
        """Store the weight this layer computes with now (quantized or not, in ``dtype``) and use it
        until ``clear``; ``quant.inference.frozen`` is the way to call it."""
        if clear:
            self.frozen_weight = None
            return
        if any(q.pending for q in self.weight_quantizers):
            raise RuntimeError("freeze_weight: bake learned rounding into the weight first")
        w = self.quantized_weight().detach()
        self.frozen_weight = w.to(dtype) if dtype is not None else w.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quantized_input(x)
        w = self.frozen_weight if self.frozen_weight is not None else self.quantized_weight()
        m = self.module
        if isinstance(m, nn.Conv2d):
            return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)
        return F.linear(x, w, m.bias)
