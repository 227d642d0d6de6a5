"""Weight adapters: modules a quantized layer applies to its weight before fake quantization
(``QuantLayer.weight_adapters``), so what is quantized is the adapted weight.

``LoRA``: ``W + (alpha / r) B A`` with A of shape (r, in, kh, kw) and B of shape (out, r): for a
convolution, a rank-r product per kernel position (EfficientDM's conv LoRA: A is an r-channel
conv with the layer's kernel, B a 1x1 conv, merged into one kernel). B starts at zero, so the
adapted layer starts equal to the original.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class LoRA(nn.Module):
    """Low-rank weight delta for a weight of shape (out, in, *kernel)."""

    def __init__(self, weight_shape: tuple[int, ...], rank: int = 32, alpha: float | None = None):
        super().__init__()
        out, rest = weight_shape[0], tuple(weight_shape[1:])
        self.rank = int(rank)
        self.scaling = (alpha if alpha is not None else rank) / rank
        self.lora_A = nn.Parameter(torch.empty(rank, *rest))
        self.lora_B = nn.Parameter(torch.zeros(out, rank))
        nn.init.kaiming_uniform_(self.lora_A.view(rank, -1), a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A.flatten(1)).view(self.lora_B.shape[0], *self.lora_A.shape[1:]) * self.scaling

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().to(weight.dtype)
