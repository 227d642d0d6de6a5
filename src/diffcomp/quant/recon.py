"""The reconstruction engine (BRECQ / Q-Diffusion), generic over units.

A unit is a block (a diffusers ``ResnetBlock2D``, ``Attention`` or ``BasicTransformerBlock``) or a
quantized layer outside every block. Units are visited in execution order. For each unit the
engine captures its inputs (from the quantized model, or from the FP model) and its FP outputs on
the calibration set, then optimises the unit's parameters against an L_p output loss:

* weights: AdaRound rounding variables with the rounding regulariser (beta annealed after a
  warm-up); the hard rounding is baked in at the end;
* activations: the LSQ step sizes of the unit's activation quantizers, cosine-decayed Adam.

Q-Diffusion and EDA-DM are configurations of this engine (``ReconConfig``); extra loss terms
(e.g. EDA-DM's per-layer alignment) plug in through ``extra_loss``.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..config import ReconConfig
from .adaround import BetaSchedule
from .calibrate import act_quantizers
from .layer import QuantLayer

log = logging.getLogger(__name__)

UNIT_TYPES = ("ResnetBlock2D", "Attention", "BasicTransformerBlock")


def lp_loss(pred: torch.Tensor, target: torch.Tensor, p: float) -> torch.Tensor:
    """``|pred - target|^p`` summed over dim 1 and averaged over the rest (Q-Diffusion's lp_loss)."""
    return (pred - target).abs().pow(p).sum(1).mean()


def find_units(model: nn.Module) -> list[str]:
    """Names of the reconstruction units: outermost blocks of ``UNIT_TYPES`` and quantized layers
    outside them (registration order; see ``execution_order``)."""
    units: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(u + ".") for u in units):
            continue
        if type(m).__name__ in UNIT_TYPES and any(isinstance(c, QuantLayer) for c in m.modules()):
            units.append(name)
        elif isinstance(m, QuantLayer):
            units.append(name)
    return units


class _Stop(Exception):
    pass


def execution_order(model: nn.Module, units: Sequence[str], run: Callable[[nn.Module], object]) -> list[str]:
    """``units`` sorted by when they first run in one forward pass (``run(model)``)."""
    seen: list[str] = []
    handles = [model.get_submodule(u).register_forward_hook(lambda m, a, o, u=u: seen.append(u) if u not in seen else None)
               for u in units]
    try:
        with torch.no_grad():
            run(model)
    finally:
        for h in handles:
            h.remove()
    missing = [u for u in units if u not in seen]
    if missing:
        raise RuntimeError(f"units never executed: {missing[:3]}")
    return seen


def _cat(items: list):
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(items)
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([it[i] for it in items]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _cat([it[k] for it in items]) for k in first}
    return first


def _index(obj, idx):
    if isinstance(obj, torch.Tensor):
        return obj[idx]
    if isinstance(obj, (tuple, list)):
        return type(obj)(_index(o, idx) for o in obj)
    if isinstance(obj, dict):
        return {k: _index(v, idx) for k, v in obj.items()}
    return obj


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


@torch.no_grad()
def capture(model: nn.Module, unit: str, batches: Sequence[tuple], run: Callable, want_input: bool,
            want_output: bool) -> tuple:
    """Inputs ``(args, kwargs)`` and/or outputs of ``model``'s ``unit`` over all batches (on CPU);
    each forward stops right after the unit."""
    module = model.get_submodule(unit)
    ins, outs = [], []

    def hook(m, args, kwargs, out):
        if want_input:
            ins.append(_to((args, kwargs), "cpu"))
        if want_output:
            outs.append(out.detach().cpu())
        raise _Stop

    h = module.register_forward_hook(hook, with_kwargs=True)
    try:
        for b in batches:
            try:
                run(model, b)
            except _Stop:
                pass
    finally:
        h.remove()
    return (_cat(ins) if want_input else None), (_cat(outs) if want_output else None)


def _unit_data(qmodel: nn.Module, fp_model: nn.Module, unit: str, batches, run, asym: bool):
    """The unit's inputs (from the quantized model if ``asym``, else from the FP model) and its
    FP outputs; one pass of the FP model when both come from it."""
    if not asym:
        return capture(fp_model, unit, batches, run, want_input=True, want_output=True)
    inputs, _ = capture(qmodel, unit, batches, run, want_input=True, want_output=False)
    _, target = capture(fp_model, unit, batches, run, want_input=False, want_output=True)
    return inputs, target


def _unit_layers(module: nn.Module) -> list[QuantLayer]:
    return [m for m in module.modules() if isinstance(m, QuantLayer)]


def _unit_act_scales(module: nn.Module) -> list[nn.Parameter]:
    """The learnable (LSQ) step sizes of the activation quantizers in use inside ``module``."""
    return [q.scale for _, q in act_quantizers(module) if isinstance(q.scale, nn.Parameter)]


def _optimise(unit: nn.Module, inputs, target: torch.Tensor, params: list[nn.Parameter], iters: int, lr: float,
              p: float, batch_size: int, seed: int, device, reg: Callable[[int], torch.Tensor] | None = None,
              cosine: bool = False, positive: bool = False, extra_loss: Callable | None = None,
              desc: str = "") -> float:
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=0.0) if cosine else None
    n = target.shape[0]
    gen = torch.Generator().manual_seed(seed)
    last = float("nan")
    for it in tqdm(range(iters), desc=desc, mininterval=10, leave=False):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        args, kwargs = _to(_index(inputs, idx), device)
        out = unit(*args, **kwargs)
        loss = lp_loss(out, target[idx].to(device), p)
        if extra_loss is not None:
            loss = loss + extra_loss(unit, args, kwargs, idx)
        if reg is not None:
            loss = loss + reg(it)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if positive:  # step sizes stay positive
            for q in params:
                q.data.clamp_(min=1e-8)
        last = float(loss.detach())
    return last


def reconstruct_weights(qmodel: nn.Module, fp_model: nn.Module, batches: Sequence[tuple], run: Callable,
                        cfg: ReconConfig, device, units: Sequence[str]) -> dict[str, float]:
    """AdaRound every unit in order (activation quantization off), baking each unit's rounding."""
    losses = {}
    for k, u in enumerate(tqdm(units, desc="weight reconstruction")):
        unit = qmodel.get_submodule(u)
        layers = [m for m in _unit_layers(unit) if m.quant_weights]
        if not layers:
            continue
        inputs, target = _unit_data(qmodel, fp_model, u, batches, run, cfg.asym_w)
        for m in layers:
            m.start_adaround()
        alphas = [r.alpha for m in layers for r in m.rounding]
        sched = BetaSchedule(cfg.iters_w, cfg.b_start, cfg.b_end, cfg.warmup)

        def reg(it, layers=layers, sched=sched):
            if not sched.active(it):
                return torch.zeros((), device=device)
            beta = sched(it)
            return cfg.round_weight * sum(r.regularizer(beta) for m in layers for r in m.rounding)

        with torch.enable_grad():
            losses[u] = _optimise(unit, inputs, target, alphas, cfg.iters_w, cfg.lr_w, cfg.p_w, cfg.batch_size,
                                  cfg.seed + k, device, reg=reg, desc=f"adaround {u}")
        for m in layers:
            m.bake_rounding()
        log.info("weights %s: loss %.4g", u, losses[u])
    return losses


def reconstruct_activations(qmodel: nn.Module, fp_model: nn.Module, batches: Sequence[tuple], run: Callable,
                            cfg: ReconConfig, device, units: Sequence[str]) -> dict[str, float]:
    """LSQ step sizes of every unit's activation quantizers, in order."""
    losses = {}
    for k, u in enumerate(tqdm(units, desc="activation reconstruction")):
        unit = qmodel.get_submodule(u)
        scales = _unit_act_scales(unit)
        if not scales:
            continue
        inputs, target = _unit_data(qmodel, fp_model, u, batches, run, cfg.asym_a)
        with torch.enable_grad():
            losses[u] = _optimise(unit, inputs, target, scales, cfg.iters_a, cfg.lr_a, cfg.p_a, cfg.batch_size,
                                  cfg.seed + 1000 + k, device, cosine=True, positive=True, desc=f"lsq {u}")
        log.info("activations %s: loss %.4g", u, losses[u])
    return losses

