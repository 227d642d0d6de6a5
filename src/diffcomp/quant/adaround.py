"""AdaRound (Nagel et al. 2020): learn, per weight, whether to round up or down.

The rectified sigmoid ``h(a) = clamp(sigmoid(a) (zeta - gamma) + gamma, 0, 1)`` with zeta 1.1,
gamma -0.1 gives the soft rounding; ``a`` is initialised so that ``h(a) = frac(w / s)`` (the soft
weight equals the FP weight). The regulariser ``sum(1 - |2h - 1|^beta)`` pushes h to 0 or 1 while
beta anneals from 20 to 2 after a 20% warm-up; the hard rounding is ``a >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .quantizer import UniformQuantizer

ZETA, GAMMA = 1.1, -0.1


class AdaRound(nn.Module):
    """Rounding variables for one weight tensor quantized by ``quantizer``'s (fixed) grid."""

    def __init__(self, weight: torch.Tensor, quantizer: UniformQuantizer):
        super().__init__()
        s = quantizer._view(quantizer.scale.detach(), weight)
        x = weight.detach() * (1.0 / s)
        rest = (x - x.floor()).clamp(1e-6, 1 - 1e-6)
        self.alpha = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))

    def soft(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def hard(self) -> torch.Tensor:
        return (self.alpha >= 0).to(self.alpha.dtype)

    def forward(self, weight: torch.Tensor, quantizer: UniformQuantizer, hard: bool = False) -> torch.Tensor:
        s = quantizer._view(quantizer.scale.detach(), weight)
        z = quantizer._view(quantizer.zero_point, weight)
        base = torch.floor(weight.detach() * (1.0 / s))
        q = torch.clamp(base + (self.hard() if hard else self.soft()) + z, quantizer.qmin, quantizer.qmax)
        return (q - z) * s

    def regularizer(self, beta: float) -> torch.Tensor:
        return (1 - (2 * self.soft() - 1).abs().pow(beta)).sum()


@dataclass(frozen=True)
class BetaSchedule:
    """Q-Diffusion/BRECQ's temperature: ``start`` during the warm-up (where the regulariser is
    off), then linear decay to ``end`` at the last iteration."""

    iters: int
    start: float = 20.0
    end: float = 2.0
    warmup: float = 0.2

    def active(self, it: int) -> bool:
        return it >= self.warmup * self.iters

    def __call__(self, it: int) -> float:
        begin = self.warmup * self.iters
        if it < begin:
            return self.start
        rel = (it - begin) / max(self.iters - begin, 1)
        return self.end + (self.start - self.end) * max(0.0, 1.0 - rel)

