"""Empirical bias correction (Nagel et al. 2019, applied sequentially): every quantized layer's
per-output-channel mean output is made equal to the FP layer's on calibration data.

Layers are visited in execution order; for each, the mean of its output over the calibration
batches is measured in the quantized model (with every earlier layer already corrected) and in
the FP model, and the difference is subtracted from the layer's bias. Rounding and clipping errors
that are not zero-mean, and the mean shifts they cause downstream, stop accumulating. A layer
without a bias is left as it is.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .module import quant_modules
from .recon import execution_order


class _Stop(Exception):
    pass


@torch.no_grad()
def _channel_mean(model: nn.Module, name: str, batches: Sequence[tuple], run: Callable) -> torch.Tensor:
    total, count = None, 0

    def hook(m, args, out):
        nonlocal total, count
        ch = out.dim() - 1 if isinstance(getattr(m, "module", m), nn.Linear) else 1  # Linear: features last
        dims = [d for d in range(out.dim()) if d != ch]
        s = out.double().sum(dim=dims)
        total = s if total is None else total + s
        count += out.numel() // out.shape[ch]
        raise _Stop

    h = model.get_submodule(name).register_forward_hook(hook)
    try:
        for b in batches:
            try:
                run(model, b)
            except _Stop:
                pass
    finally:
        h.remove()
    return total / count


@torch.no_grad()
def correct_biases(qmodel: nn.Module, fp_model: nn.Module, batches: Sequence[tuple], run: Callable) -> dict[str, float]:
    """Correct the biases of ``qmodel``'s quantized layers, in execution order. Returns each
    layer's largest absolute correction."""
    layers = [n for n, m in quant_modules(qmodel) if m.allow_weights and getattr(m, "bias", None) is not None]
    layers = execution_order(qmodel, layers, lambda m: run(m, batches[0]))
    shifts = {}
    for name in tqdm(layers, desc="bias correction", mininterval=10):
        delta = _channel_mean(qmodel, name, batches, run) - _channel_mean(fp_model, name, batches, run)
        bias = qmodel.get_submodule(name).bias
        bias -= delta.to(bias.dtype)
        shifts[name] = float(delta.abs().max())
    return shifts
