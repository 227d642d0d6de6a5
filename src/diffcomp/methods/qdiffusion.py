"""Q-Diffusion: timestep-aware calibration, split shortcut quantization, AdaRound block
reconstruction of weights, then LSQ reconstruction of activation step sizes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from ..calib.selectors import Calibration
from ..calib.selectors.uniform import UniformParams
from ..typedconfig import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from . import quant_method

log = logging.getLogger(__name__)

_INIT = {"max": "minmax", "mse": "mse"}
Bits = Annotated[int, Range(2, 16)]


@dataclass(frozen=True)
class QDiffusionParams:
    """Q-Diffusion (Li et al., ICCV 2023), its CIFAR-10 settings (repo Xiuyu-Li/q-diffusion:
    ``qdiff/block_recon.py``, ``qdiff/layer_recon.py`` and the README's CIFAR-10 command):

    * calibration: 20 x 256 inputs uniformly over the sampler's steps (``--cali_st 20
      --cali_n 256``), drawn with ``seed``;
    * ``split``: split shortcut quantization of the layers that receive ``cat([h, skip])``
      (``--split``); the ablation is ``split: false``;
    * weights: per-channel asymmetric, ``w_init`` 'max' for CIFAR-10 ('mse' for LDM/SD); then
      ``iters_w`` 20k AdaRound iterations per block at ``batch_size`` 32, regulariser weight
      ``round_weight`` 0.01, beta ``b_start`` 20 -> ``b_end`` 2 after a ``warmup`` of 20%, Adam
      ``lr_w`` 1e-3, output loss L_``p_w`` (2) with inputs from the quantized model
      (``asym_w``), activations unquantized;
    * activations: per-tensor, ``a_sym`` symmetric (``--a_sym``), ``a_init`` 'max' on CIFAR ('mse'
      for Church/SD), ``running_stat`` for Bedroom/SD, initialised on ``a_init_samples`` 64 inputs;
      then ``iters_a`` 5k LSQ iterations of the step sizes per block, Adam ``lr_a`` 4e-4 with
      cosine decay, loss L_``p_a`` (2.4), inputs from the FP model unless ``asym_a``;
    * attention: q, k, v at the activation bit-width, softmax output at ``sm_bits`` 8, unsigned;
    * every Conv2d/Linear is quantized, first and last layer included (no layer kept FP).
    """

    calibration: Calibration = Calibration("uniform", UniformParams(steps=20, per_step=256))
    split: bool = True
    w_init: str = "max"
    a_init: str = "max"
    a_sym: bool = True
    running_stat: bool = False
    a_init_samples: PositiveInt = 64
    sm_bits: Bits = 8
    quant_attention: bool = True
    iters_w: PositiveInt = 20000
    iters_a: PositiveInt = 5000
    batch_size: PositiveInt = 32
    round_weight: NonNegativeFloat = 0.01
    b_start: PositiveFloat = 20.0
    b_end: PositiveFloat = 2.0
    warmup: Fraction = 0.2
    lr_w: PositiveFloat = 1e-3
    lr_a: PositiveFloat = 4e-4
    p_w: PositiveFloat = 2.0
    p_a: PositiveFloat = 2.4
    asym_w: bool = True
    asym_a: bool = False
    seed: NonNegativeInt = 0

    def __post_init__(self):
        for k in ("w_init", "a_init"):
            if getattr(self, k) not in _INIT:
                raise ValueError(f"{k} must be 'max' or 'mse', got {getattr(self, k)!r}")


def spec_for(unet, bits, p: QDiffusionParams):
    from ..quant.spec import AttentionConfig, QuantizerConfig, QuantSpec
    from ..quant.wrap import with_split_shortcut

    act = QuantizerConfig(bits.a, symmetric=p.a_sym, learnable=True)
    attention = AttentionConfig(act, QuantizerConfig(p.sm_bits, unsigned=True, learnable=True)) if p.quant_attention else None
    spec = QuantSpec(weight=QuantizerConfig(bits.w, per_channel=True), act=act, attention=attention)
    return with_split_shortcut(spec, unet) if p.split else spec


def phases(p: QDiffusionParams):
    """The two passes of the reconstruction engine: AdaRound of the weights, then LSQ steps."""
    from ..quant.recon import Phase, ReconLoss, RoundingReg

    weights = Phase(learn=("rounding",), iters=p.iters_w, batch_size=p.batch_size, lr=(("rounding", p.lr_w),),
                    inputs="quantized" if p.asym_w else "fp", loss=ReconLoss(p.p_w),
                    rounding_reg=RoundingReg(p.round_weight, p.b_start, p.b_end, p.warmup), seed=p.seed,
                    name="weight reconstruction")
    acts = Phase(learn=("act_steps",), iters=p.iters_a, batch_size=p.batch_size, lr=(("act_steps", p.lr_a),),
                 cosine=("act_steps",), inputs="quantized" if p.asym_a else "fp", loss=ReconLoss(p.p_a),
                 seed=p.seed + 1000, name="activation reconstruction")
    return weights, acts


@quant_method("qdiffusion", label="Q-Diffusion", params=QDiffusionParams,
              contract={"calibration": {"selector": "uniform", "steps": 2, "per_step": 8}, "iters_w": 3, "iters_a": 3,
                        "batch_size": 8, "a_init_samples": 8})
def recipe(unet, traj, bits, params: QDiffusionParams, device: str = "cpu"):
    import torch

    from ..quant.calibrate import init_activations, init_weights
    from ..quant.module import set_quant_state
    from ..quant.recon import execution_order, find_units, reconstruct
    from ..quant.wrap import quantize_model

    def run(m, b):
        return m(*b).sample

    fp = unet.to(device).eval()
    spec = spec_for(fp, bits, params)
    model = quantize_model(fp, spec).to(device)
    xs, ts = params.calibration.select(traj, seed=params.seed)
    bs = params.batch_size
    batches = [(xs[i : i + bs].to(device), ts[i : i + bs].to(device)) for i in range(0, len(xs), bs)]
    units = execution_order(model, find_units(model), lambda m: run(m, batches[0]))
    log.info("%d reconstruction units; split layers: %s", len(units),
             [p for p, c in spec.overrides if "split" in c][:3])
    weights, acts = phases(params)

    # 1. weights: range init, then AdaRound unit by unit (activations unquantized)
    init_weights(model, _INIT[params.w_init])
    set_quant_state(model, weights=True, acts=False)
    reconstruct(model, fp, batches, run, weights, device, units)

    # 2. activations: range init on a subset, then LSQ step sizes unit by unit
    set_quant_state(model, weights=True, acts=True)
    gen = torch.Generator().manual_seed(params.seed)
    pick = torch.randperm(len(xs), generator=gen)[: params.a_init_samples]
    init_batches = [(xs[pick[i : i + bs]].to(device), ts[pick[i : i + bs]].to(device)) for i in range(0, len(pick), bs)]
    mode = "running" if params.running_stat else _INIT[params.a_init]
    init_activations(model, batches if params.running_stat else init_batches, run, mode)
    reconstruct(model, fp, batches, run, acts, device, units)
    return model.eval(), spec
