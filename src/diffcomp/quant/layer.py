"""The quantized layer: one wrapper for ``Conv2d`` and ``Linear`` with weight and input
quantizers, and switches for what is quantized now.

Split shortcut quantization (Q-Diffusion) is the same layer with ``split > 0``: a layer whose
input is ``cat([h, skip], dim=1)`` gets two input quantizers (channels ``[:split]`` and
``[split:]``) and two per-output-channel weight quantizers on ``W[:, :split]`` and
``W[:, split:]``; the dequantized halves are concatenated and go through one op.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .adaround import AdaRound
from .quantizer import UniformQuantizer


class QuantLayer(nn.Module):
    """Wraps a ``Conv2d`` or ``Linear``; its parameters stay the wrapped module's.

    ``quant_weights`` / ``quant_acts`` switch weight and input fake quantization; with both off
    the layer computes exactly what the original module computes. ``allow_weights`` /
    ``allow_acts`` (from the spec, fixed) bound the switches: a layer the spec keeps at FP
    activations stays so whatever a calibration phase switches on.
    """

    def __init__(self, module: nn.Conv2d | nn.Linear, w_bits: int, a_bits: int, w_symmetric: bool = False,
                 a_symmetric: bool = False, w_per_channel: bool = True, split: int = 0, a_learnable: bool = False,
                 allow_weights: bool = True, allow_acts: bool = True):
        super().__init__()
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"QuantLayer wraps Conv2d or Linear, got {type(module).__name__}")
        in_ch = module.weight.shape[1]
        if split and not 0 < split < in_ch:
            raise ValueError(f"split {split} outside 1..{in_ch - 1}")
        if split and isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError("split quantization needs groups == 1")
        self.module = module
        self.split = int(split)
        out_ch = module.weight.shape[0]

        def wq():
            return UniformQuantizer(w_bits, w_symmetric, channels=out_ch if w_per_channel else None, axis=0)

        def aq():
            return UniformQuantizer(a_bits, a_symmetric, channels=None, learnable=a_learnable)

        self.weight_quantizer = wq()
        self.input_quantizer = aq()
        if self.split:
            self.weight_quantizer_skip = wq()
            self.input_quantizer_skip = aq()
        self.rounding: nn.ModuleList | None = None  # AdaRound variables while reconstructing
        self.allow_weights, self.allow_acts = bool(allow_weights), bool(allow_acts)
        self.quant_weights, self.quant_acts = self.allow_weights, self.allow_acts

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.module.bias

    def set_quant_state(self, weights: bool, acts: bool) -> None:
        self.quant_weights = bool(weights) and self.allow_weights
        self.quant_acts = bool(acts) and self.allow_acts

    def _slices(self) -> list[slice]:
        return [slice(0, self.split), slice(self.split, None)] if self.split else [slice(None)]

    def weight_parts(self) -> list[tuple[UniformQuantizer, slice]]:
        """(quantizer, input-channel slice of the weight) for each weight part."""
        qs = [self.weight_quantizer] + ([self.weight_quantizer_skip] if self.split else [])
        return list(zip(qs, self._slices()))

    def input_parts(self) -> list[tuple[UniformQuantizer, slice]]:
        qs = [self.input_quantizer] + ([self.input_quantizer_skip] if self.split else [])
        return list(zip(qs, self._slices()))

    # --- AdaRound
    def start_adaround(self) -> None:
        """Attach AdaRound variables initialised at the nearest rounding of each weight part."""
        w = self.module.weight.detach()
        self.rounding = nn.ModuleList(AdaRound(w[:, sl], q) for q, sl in self.weight_parts())

    def bake_rounding(self) -> None:
        """Fix the hard AdaRound decision: the weight becomes its dequantized grid value (which
        nearest rounding reproduces exactly), and the rounding variables are dropped."""
        if self.rounding is None:
            return
        with torch.no_grad():
            w = self.module.weight
            for r, (q, sl) in zip(self.rounding, self.weight_parts()):
                w[:, sl] = r(w[:, sl], q, hard=True)
        self.rounding = None

    def quantized_weight(self) -> torch.Tensor:
        w = self.module.weight
        if not self.quant_weights:
            return w
        parts = []
        for i, (q, sl) in enumerate(self.weight_parts()):
            parts.append(self.rounding[i](w[:, sl], q) if self.rounding is not None else q(w[:, sl]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quant_acts:
            return x
        if not self.split:
            return self.input_quantizer(x)
        return torch.cat([q(x[:, sl]) for q, sl in self.input_parts()], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self.quantized_input(x), self.quantized_weight()
        m = self.module
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise NotImplementedError("QuantLayer supports zero padding only")
            return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)
        return F.linear(x, w, m.bias)
