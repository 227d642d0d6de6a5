"""MPQ-DM: EfficientDM's LoRA QAT with outlier-driven mixed quantization of the weights (OMQ,
``omq.py``) and time-smoothed relation distillation (TRD, ``trd.py``), each switchable (the
paper's ablation rows)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ...typedconfig import Fraction, NonNegativeFloat, PositiveInt
from .. import quant_method
from ...quant.lora_qat import LoRAQATParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MPQDMParams(LoRAQATParams):
    """MPQ-DM (Feng et al., AAAI 2025; repo cantbebetter2/MPQ-DM): EfficientDM's training
    (``LoRAQATParams``, same defaults) plus:

    * ``omq``: outlier-driven mixed quantization of every LoRA layer's weight: SmoothQuant
      pre-scaling with ``alpha`` 0.5 (input maxima over ``omq_samples`` 32 calibration inputs of
      the FP model, spread over the sampling steps), kurtosis per output channel of the scaled
      weight, top-k channels N+1 bits and bottom-k N-1 (mean exactly N); k chosen among 0, g,
      ..., ``omq_groups`` g with g = c_out // ``omq_group_divisor`` (10; at least 1) by the
      layer's output MSE against the FP layer on those inputs. The paper searches up to 5 groups
      (``omq_groups`` 5); the released code tries 0 and one group (``omq_groups`` 1);
    * ``trd``: time-smoothed relation distillation added to the QAT loss: last up block's
      features over a window of ``trd_window`` 2 steps, weight ``trd_weight`` 100;
      ``trd_detach`` true reproduces the released code, whose hooks detach the features so the
      term trains nothing (default false: the paper's method, with gradient).
    """

    omq: bool = True
    trd: bool = True
    alpha: Fraction = 0.5
    omq_samples: PositiveInt = 32
    omq_groups: int = 5
    omq_group_divisor: PositiveInt = 10
    trd_weight: NonNegativeFloat = 100.0
    trd_window: PositiveInt = 2
    trd_detach: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.omq_groups < 0:
            raise ValueError(f"omq_groups must be >= 0, got {self.omq_groups}")


def omq_layers(model):
    """(name, layer) of every quantized layer whose weight quantizer has mixed widths."""
    from ...quant.module import quant_modules

    return [(n, m) for n, m in quant_modules(model)
            if m.allow_weights and any(leaf.mixed for q, _ in m.weight_parts() for leaf in q.leaves())]


def run_omq(model, fp, traj, bits, p: MPQDMParams, device) -> dict:
    """OMQ on every mixed layer, from the FP model's inputs to that layer."""
    import torch

    from ...quant.lora_qat import spread_batch
    from .omq import apply_omq

    layers = omq_layers(model)
    batch = spread_batch(traj, p.omq_samples, device)
    seen: dict[str, torch.Tensor] = {}
    handles = [fp.get_submodule(n).register_forward_pre_hook(
        lambda mod, args, n=n: seen.__setitem__(n, args[0].detach())) for n, _ in layers]
    try:
        with torch.no_grad():
            fp(*batch)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for n, layer in layers:
        out[n] = apply_omq(layer, seen[n], bits.w, p.alpha, p.omq_group_divisor, p.omq_groups, p.w_init)
    ks = [v["k"] for v in out.values()]
    log.info("OMQ: %d layers, k > 0 in %d", len(ks), sum(k > 0 for k in ks))
    return out


def build(unet, traj, bits, p: MPQDMParams, device):
    """The quantized model with ranges set (and OMQ done), before LoRA and QAT."""
    from ...quant.calibrate import init_weights
    from ...quant.wrap import quantize_model
    from ...quant.lora_qat import INIT, init_ranges, spec_for

    fp = unet.to(device).eval()
    spec = spec_for(bits, traj.ts.tolist(), p, mixed=p.omq, smooth=p.omq)
    model = quantize_model(fp, spec).to(device)
    init_weights(model, INIT[p.w_init])
    info = {"omq": run_omq(model, fp, traj, bits, p, device)} if p.omq else {}
    init_ranges(model, traj, p, device, weights=False)
    return model, spec, info


def terms(p: MPQDMParams):
    from .trd import TRD

    return [TRD(p.trd_weight, p.trd_window, p.trd_detach)] if p.trd else []


@quant_method("mpqdm", label="MPQ-DM", params=MPQDMParams,
              contract={"epochs": 1, "batch_size": 4, "init_samples": 4, "lora_rank": 4, "omq_samples": 8,
                        "w_init": "max", "a_init": "max"}, conditional=True)
def recipe(unet, traj, bits, params: MPQDMParams, device: str = "cpu", state_dir=None):
    from ...quant.lora_qat import train

    model, spec, info = build(unet, traj, bits, params, device)
    info["qat"] = train(model, unet, traj, params, device, terms(params), state_dir=state_dir)
    if "omq" in info:  # keep the provenance small: the widths and k per layer, not the kurtosis
        info["omq"] = {n: {"k": v["k"], "channels": v["channels"], "mse_by_k": v["mse_by_k"]}
                       for n, v in info["omq"].items()}
    return model.eval(), spec, info
