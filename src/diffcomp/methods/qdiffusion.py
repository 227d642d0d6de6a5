"""Q-Diffusion: timestep-aware calibration, split shortcut quantization, AdaRound block
reconstruction of weights, then LSQ reconstruction of activation step sizes."""

from __future__ import annotations

import logging

import torch

from ..calib.selectors import uniform
from ..calib.trajectories import Trajectories
from ..config import BitSetting
from ..quant.calibrate import init_activations, init_weights
from ..quant.recon import execution_order, find_units, reconstruct_activations, reconstruct_weights
from ..quant.wrap import QuantSpec, quantize_model, set_quant_state, with_split_shortcut
from .params import QDiffusionParams

log = logging.getLogger(__name__)

_INIT = {"max": "minmax", "mse": "mse"}


def spec_for(unet: torch.nn.Module, bits: BitSetting, p: QDiffusionParams) -> QuantSpec:
    spec = QuantSpec(w_bits=bits.w, a_bits=bits.a, w_symmetric=False, a_symmetric=p.a_sym, w_per_channel=True,
                     attention=p.quant_attention, sm_bits=p.sm_bits, a_learnable=True)
    return with_split_shortcut(spec, unet) if p.split else spec


def run_unet(model, batch):
    x, t = batch
    return model(x, t).sample


def recipe(unet: torch.nn.Module, traj: Trajectories, bits: BitSetting, params: QDiffusionParams,
           device: str = "cpu") -> tuple[torch.nn.Module, QuantSpec]:
    if params.w_init not in _INIT or params.a_init not in _INIT:
        raise ValueError("w_init and a_init must be 'max' or 'mse'")
    fp = unet.to(device).eval()
    spec = spec_for(fp, bits, params)
    model = quantize_model(fp, spec).to(device)
    xs, ts = uniform(traj, params.calib_steps, params.calib_per_step, seed=params.seed)
    bs = params.batch_size
    batches = [(xs[i : i + bs].to(device), ts[i : i + bs].to(device)) for i in range(0, len(xs), bs)]
    units = execution_order(model, find_units(model), lambda m: run_unet(m, batches[0]))
    log.info("%d reconstruction units; split layers: %s", len(units),
             [p for p, c in spec.overrides if "split" in c][:3])

    # 1. weights: range init, then AdaRound unit by unit (activations unquantized)
    init_weights(model, _INIT[params.w_init])
    set_quant_state(model, weights=True, acts=False)
    reconstruct_weights(model, fp, batches, run_unet, params, device, units)  # params is a ReconConfig

    # 2. activations: range init on a subset, then LSQ step sizes unit by unit
    set_quant_state(model, weights=True, acts=True)
    gen = torch.Generator().manual_seed(params.seed)
    pick = torch.randperm(len(xs), generator=gen)[: params.a_init_samples]
    init_batches = [(xs[pick[i : i + bs]].to(device), ts[pick[i : i + bs]].to(device)) for i in range(0, len(pick), bs)]
    mode = "running" if params.running_stat else _INIT[params.a_init]
    init_activations(model, batches if params.running_stat else init_batches, run_unet, mode)
    reconstruct_activations(model, fp, batches, run_unet, params, device, units)
    return model.eval(), spec
