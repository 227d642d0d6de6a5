"""Empirical bias correction (Nagel et al. 2019, applied sequentially): every quantized layer's
per-output-channel mean output is made equal to the FP layer's on calibration data.

Layers are corrected in execution order, each one with every earlier layer already corrected, so
rounding and clipping errors that are not zero-mean, and the mean shifts they cause downstream,
stop accumulating. That takes one pass of each model over the calibration inputs as one batch:
the FP pass records every layer's mean output; in the quantized pass each layer's hook measures
its mean output, subtracts the difference from the layer's bias and from the output it passes on,
so the layers after it see the corrected network. A layer without a bias is left as it is.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .module import quant_modules


def _channel_dim(module: nn.Module, out: torch.Tensor) -> int:
    return out.dim() - 1 if isinstance(getattr(module, "module", module), nn.Linear) else 1  # Linear: features last


def _mean(module: nn.Module, out: torch.Tensor) -> tuple[torch.Tensor, int]:
    ch = _channel_dim(module, out)
    return out.double().mean(dim=[d for d in range(out.dim()) if d != ch]), ch


@torch.no_grad()
def correct_biases(qmodel: nn.Module, fp_model: nn.Module, batch: tuple, run: Callable) -> dict[str, float]:
    """Correct the biases of ``qmodel``'s quantized layers on the calibration inputs ``batch``
    (one batch: ``run(model, batch)`` is one forward pass). Returns each layer's largest
    absolute correction."""
    layers = {n: m for n, m in quant_modules(qmodel) if m.allow_weights and getattr(m, "bias", None) is not None}
    fp_means: dict[str, torch.Tensor] = {}
    handles = [fp_model.get_submodule(n).register_forward_hook(
        lambda m, a, o, n=n: fp_means.__setitem__(n, _mean(m, o)[0])) for n in layers]
    try:
        run(fp_model, batch)
    finally:
        for h in handles:
            h.remove()
    shifts: dict[str, float] = {}

    def correct(name):
        def hook(m, args, out):
            if name in shifts:  # a layer called twice in one pass is corrected once
                return None
            mean, ch = _mean(m, out)
            delta = (mean - fp_means[name]).to(out.dtype)
            m.bias.sub_(delta.to(m.bias.dtype))
            shifts[name] = float(delta.abs().max())
            shape = [1] * out.dim()
            shape[ch] = -1
            return out - delta.view(shape)

        return hook

    handles = [layers[n].register_forward_hook(correct(n)) for n in layers]
    try:
        run(qmodel, batch)
    finally:
        for h in handles:
            h.remove()
    missing = sorted(set(layers) - set(shifts))
    if missing:
        raise RuntimeError(f"bias correction: {len(missing)} layers never ran, e.g. {missing[:3]}")
    return shifts
