"""TRD, time-smoothed relation distillation (MPQ-DM): the features at the output of the last up
block of the quantized and the FP UNet, averaged over a window of sampling steps, L2-normalised
over channels; per sample, the pixel-to-pixel relation matrix ``F^T F``; the loss is
``weight * KL(softmax(R_fp) || softmax(R_q))`` over the rows (summed, as the released code)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...quant.qat import LossTerm


def relation_logits(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B * HW, HW): row i of sample b holds ``<f_i, f_j>`` for every pixel j."""
    b, c = feat.shape[:2]
    f = feat.reshape(b, c, -1)
    return torch.bmm(f.transpose(1, 2), f).reshape(-1, f.shape[-1])


def relation_kl(q_feat: torch.Tensor, fp_feat: torch.Tensor) -> torch.Tensor:
    """Summed KL between the row softmaxes of the FP (target) and quantized relation matrices."""
    log_q = F.log_softmax(relation_logits(q_feat), dim=1)
    p_fp = F.softmax(relation_logits(fp_feat), dim=1)
    return F.kl_div(log_q, p_fp, reduction="sum")


class TRD(LossTerm):
    """The TRD loss term of the QAT loop.

    Features are recorded by forward hooks on ``module`` (``up_blocks.-1``: the last up block) of
    both UNets. Every ``window`` sampling steps the window's features are averaged and the term is
    returned (None on the other steps). The optimiser steps once per sampling step, so the graph of
    an earlier step of the window is spent when the window closes: its quantized features enter
    the average as constants and the gradient reaches the quantized model through the current
    step's features. ``detach``: the released code's hooks store detached features, so the term
    carries no gradient at all (it only changes the logged loss).
    """

    def __init__(self, weight: float = 100.0, window: int = 2, detach: bool = False, module: str = "up_blocks.-1"):
        super().__init__()
        self.weight, self.window, self.detach, self.module = float(weight), int(window), bool(detach), module
        self._handles: list = []
        self._now: dict[str, torch.Tensor] = {}
        self._buf: dict[str, list[torch.Tensor]] = {"q": [], "fp": []}

    def _target(self, model):
        m = model
        for part in self.module.split("."):
            m = m[int(part)] if part.lstrip("-").isdigit() else getattr(m, part)
        return m

    def attach(self, model, fp) -> None:
        def record(key):
            def hook(mod, args, out):
                self._now[key] = out[0] if isinstance(out, tuple) else out

            return hook

        self._handles = [self._target(model).register_forward_hook(record("q")),
                         self._target(fp).register_forward_hook(record("fp"))]

    def detach_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def begin(self) -> None:
        self._buf = {"q": [], "fp": []}
        self._now = {}

    def forward(self, step: int) -> torch.Tensor | None:
        q, fp = self._now.pop("q"), self._now.pop("fp").detach()
        self._buf["q"] = [f.detach() for f in self._buf["q"]] + [q.detach() if self.detach else q]
        self._buf["fp"].append(fp)
        if len(self._buf["q"]) < self.window:
            return None
        q_feat = F.normalize(torch.stack(self._buf["q"]).mean(dim=0), p=2, dim=1)
        fp_feat = F.normalize(torch.stack(self._buf["fp"]).mean(dim=0), p=2, dim=1)
        self._buf = {"q": [], "fp": []}
        return self.weight * relation_kl(q_feat, fp_feat)
