"""Naive min-max PTQ, the grid's baseline ("Linear Quant")."""

from __future__ import annotations

import torch

from ..calib.selectors import uniform
from ..calib.trajectories import Trajectories
from ..config import BitSetting
from ..quant.calibrate import init_acts_minmax, init_weights_minmax
from ..quant.wrap import QuantSpec, quantize_model
from .params import LinearParams


def spec_for(bits: BitSetting) -> QuantSpec:
    """Every Conv2d and Linear: per-channel asymmetric weights, per-tensor asymmetric inputs."""
    return QuantSpec(w_bits=bits.w, a_bits=bits.a, w_symmetric=False, a_symmetric=False, w_per_channel=True)


def run_unet(model, batch):
    x, t = batch
    return model(x, t).sample


def recipe(unet: torch.nn.Module, traj: Trajectories, bits: BitSetting, params: LinearParams,
           device: str = "cpu") -> tuple[torch.nn.Module, QuantSpec]:
    spec = spec_for(bits)
    model = quantize_model(unet, spec).to(device)
    xs, ts = uniform(traj, params.calib_steps, params.calib_per_step)
    batches = [(xs[i : i + params.batch_size].to(device), ts[i : i + params.batch_size].to(device))
               for i in range(0, len(xs), params.batch_size)]
    init_weights_minmax(model)
    init_acts_minmax(model, batches, run_unet)
    return model.eval(), spec
