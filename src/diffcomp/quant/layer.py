"""The quantized layer: one wrapper for ``Conv2d`` and ``Linear`` with a weight quantizer and an
input quantizer, and switches for what is quantized now."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .quantizer import UniformQuantizer


class QuantLayer(nn.Module):
    """Wraps a ``Conv2d`` or ``Linear``; its parameters stay the wrapped module's.

    ``quant_weights`` / ``quant_acts`` switch weight and input fake quantization; with both off
    the layer computes exactly what the original module computes.
    """

    def __init__(self, module: nn.Conv2d | nn.Linear, w_bits: int, a_bits: int, w_symmetric: bool = False,
                 a_symmetric: bool = False, w_per_channel: bool = True):
        super().__init__()
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"QuantLayer wraps Conv2d or Linear, got {type(module).__name__}")
        self.module = module
        out_ch = module.weight.shape[0]
        self.weight_quantizer = UniformQuantizer(w_bits, w_symmetric, channels=out_ch if w_per_channel else None, axis=0)
        self.input_quantizer = UniformQuantizer(a_bits, a_symmetric, channels=None)
        self.quant_weights = True
        self.quant_acts = True

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.module.bias

    def set_quant_state(self, weights: bool, acts: bool) -> None:
        self.quant_weights, self.quant_acts = bool(weights), bool(acts)

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quantizer(self.module.weight) if self.quant_weights else self.module.weight

    def _apply_op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        m = self.module
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise NotImplementedError("QuantLayer supports zero padding only")
            return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)
        return F.linear(x, w, m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant_acts:
            x = self.input_quantizer(x)
        return self._apply_op(x, self.quantized_weight())
