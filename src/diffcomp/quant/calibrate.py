"""Range initialisation of a wrapped model's quantizers from calibration data."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .wrap import quant_layers

RunFn = Callable[[nn.Module, tuple[torch.Tensor, ...]], object]


@torch.no_grad()
def init_weights_minmax(model: nn.Module) -> None:
    """Min-max range of every weight quantizer (per output channel where so configured)."""
    for _, m in quant_layers(model):
        m.weight_quantizer.init_minmax(m.weight.detach())


@torch.no_grad()
def init_acts_minmax(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], run: RunFn,
                     quantized_inputs: bool = False) -> None:
    """Per-tensor min/max of every quantized layer's input over all ``batches``.

    With ``quantized_inputs`` false the statistics are taken on the FP model (all quantization
    off during the pass); the previous quant switches are restored afterwards.
    """
    layers = list(quant_layers(model))
    saved = {n: (m.quant_weights, m.quant_acts) for n, m in layers}
    lo: dict[str, torch.Tensor] = {}
    hi: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(_mod, args):
            x = args[0].detach()
            mn, mx = x.amin().float(), x.amax().float()
            lo[name] = torch.minimum(lo[name], mn) if name in lo else mn
            hi[name] = torch.maximum(hi[name], mx) if name in hi else mx

        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers]
    try:
        if not quantized_inputs:
            for _, m in layers:
                m.set_quant_state(False, False)
        for batch in tqdm(list(batches), desc="activation ranges", mininterval=5):
            run(model, batch)
    finally:
        for h in handles:
            h.remove()
        for n, m in layers:
            m.set_quant_state(*saved[n])
    for n, m in layers:
        if n not in lo:
            raise RuntimeError(f"layer {n} saw no calibration input")
        m.input_quantizer.set_range(lo[n], hi[n])
