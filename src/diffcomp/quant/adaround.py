"""AdaRound (Nagel et al. 2020): learn, per weight, whether to round up or down.

``AdaRoundQuantizer`` wraps a weight's ``UniformQuantizer`` (whose grid stays fixed) and is
swapped into the layer's weight slot for reconstruction; ``bake`` returns the hard-rounded
weight (which nearest rounding on the same grid reproduces exactly) and the wrapped quantizer,
so the layer ends as it began, with a plain grid quantizer. The rectified sigmoid
``h(a) = clamp(sigmoid(a) (zeta - gamma) + gamma, 0, 1)`` with zeta 1.1, gamma -0.1 gives the
soft rounding; ``a`` is initialised so that ``h(a) = frac(w / s)`` (the soft weight equals the FP
weight). The regulariser ``sum(1 - |2h - 1|^beta)`` pushes h to 0 or 1 while beta anneals from
20 to 2 after a 20% warm-up; the hard rounding is ``a >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .quantizer import Quantizer, UniformQuantizer

ZETA, GAMMA = 1.1, -0.1


class AdaRoundQuantizer(Quantizer):
    """Rounding variables for one weight tensor on ``base``'s (fixed) grid."""

    pending = True

    def __init__(self, base: UniformQuantizer, weight: torch.Tensor):
        super().__init__()
        self.base = base
        s = base.view(base.scale.detach(), weight)
        x = weight.detach() * (1.0 / s)
        rest = (x - x.floor()).clamp(1e-6, 1 - 1e-6)
        self.alpha = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))

    def leaves(self) -> list[UniformQuantizer]:
        return [self.base]

    def soft(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def hard(self) -> torch.Tensor:
        return (self.alpha >= 0).to(self.alpha.dtype)

    def rounded(self, weight: torch.Tensor, hard: bool = False) -> torch.Tensor:
        q = self.base
        s = q.view(q.scale.detach(), weight)
        z = q.view(q.zero_point, weight)
        qmin, qmax = q.bounds(weight)
        floor = torch.floor(weight.detach() * (1.0 / s))
        codes = torch.clamp(floor + (self.hard() if hard else self.soft()) + z, qmin, qmax)
        return (codes - z) * s

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.rounded(weight)

    def regularizer(self, beta: float) -> torch.Tensor:
        return (1 - (2 * self.soft() - 1).abs().pow(beta)).sum()

    @torch.no_grad()
    def bake(self, w: torch.Tensor) -> tuple[torch.Tensor, Quantizer]:
        return self.rounded(w, hard=True), self.base


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
