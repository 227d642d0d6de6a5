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
      (``--split``); the ablation is ``split: false``. ``split_check`` (ours, off in the paper's
      recipe): keep a layer's split only where it lowers both that layer's output error and the
      network's noise-prediction error, each measured with only that layer quantized (range
      init, the calibration inputs); the numbers go into the model's provenance;
    * weights: per-channel asymmetric, ``w_init`` 'max' for CIFAR-10 ('mse' for LDM/SD); then
      ``iters_w`` 20k AdaRound iterations per block at ``batch_size`` 32, regulariser weight
      ``round_weight`` 0.01, beta ``b_start`` 20 -> ``b_end`` 2 after a ``warmup`` of 20%, Adam
      ``lr_w`` 1e-3, output loss L_``p_w`` (2) with inputs from the quantized model
      (``asym_w``), activations unquantized;
    * activations: per-tensor, ``a_sym`` symmetric (``--a_sym``), ``a_init`` 'max' on CIFAR ('mse'
      for Church/SD), ``running_stat`` for Bedroom/SD, initialised on ``a_init_samples`` 64 inputs
      in one forward pass of the quantized network (``a_init_quantized``: the released code sets
      each range on the first forward, so a layer's range is taken from inputs that the already
      quantized layers before it produce); then ``iters_a`` 5k LSQ iterations of the step sizes
      per block, Adam ``lr_a`` 4e-4 with cosine decay, loss L_``p_a`` (2.4), inputs from the FP
      model unless ``asym_a``;
    * attention: q, k, v at the activation bit-width, softmax output at ``sm_bits`` 8 on the
      activations' grid (``sm_unsigned`` false: the released code builds the softmax quantizer
      from the activation parameters, so with ``--a_sym`` it is symmetric and its negative half
      goes unused; true: an unsigned 8-bit grid);
    * every Conv2d/Linear is quantized, first and last layer included (no layer kept FP).
    """

    calibration: Calibration = Calibration("uniform", UniformParams(steps=20, per_step=256))
    split: bool = True
    split_check: bool = False
    w_init: str = "max"
    a_init: str = "max"
    a_sym: bool = True
    running_stat: bool = False
    a_init_samples: PositiveInt = 64
    a_init_quantized: bool = True
    sm_bits: Bits = 8
    sm_unsigned: bool = False
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
    sm = QuantizerConfig(p.sm_bits, unsigned=True, learnable=True) if p.sm_unsigned else \
        QuantizerConfig(p.sm_bits, symmetric=p.a_sym, learnable=True)
    attention = AttentionConfig(act, sm) if p.quant_attention else None
    spec = QuantSpec(weight=QuantizerConfig(bits.w, per_channel=True), act=act, attention=attention)
    return with_split_shortcut(spec, unet) if p.split else spec


def split_criterion(fp, bits, p: QDiffusionParams, batches, device) -> tuple[dict[str, int], dict[str, dict]]:
    """``({layer: split} kept, {layer: measured errors})``: each candidate layer quantized alone
    (weights and input, range initialisation), split or not; its output error relative to the FP
    layer's and the network's eps error relative to the FP eps, over ``batches``."""
    import dataclasses

    import torch

    from ..quant.calibrate import init_activations, init_weights
    from ..quant.module import set_quant_state
    from ..quant.wrap import concat_splits, quantize_model

    splits = concat_splits(fp)
    plain = dataclasses.replace(p, split=False)
    models = {}
    for with_split in (True, False):
        m = quantize_model(fp, spec_for(fp, bits, dataclasses.replace(plain, split=with_split))).to(device)
        init_weights(m, _INIT[p.w_init])
        init_activations(m, batches, lambda mm, b: mm(*b).sample, _INIT[p.a_init])
        models[with_split] = m

    def errors(model, name):
        set_quant_state(model, False, False)
        model.get_submodule(name).set_quant_state(True, True)
        num = {"layer": 0.0, "eps": 0.0}
        den = {"layer": 0.0, "eps": 0.0}
        for x, t in batches:
            got, ref = {}, {}
            hq = model.get_submodule(name).register_forward_hook(lambda m, a, o: got.__setitem__("y", o))
            hf = fp.get_submodule(name).register_forward_hook(lambda m, a, o: ref.__setitem__("y", o))
            with torch.no_grad():
                eq, ef = model(x, t).sample, fp(x, t).sample
            hq.remove()
            hf.remove()
            for k, (a, b) in {"layer": (got["y"], ref["y"]), "eps": (eq, ef)}.items():
                num[k] += float((a - b).pow(2).sum())
                den[k] += float(b.pow(2).sum())
        return {k: (num[k] / den[k]) ** 0.5 for k in num}

    kept, numbers = {}, {}
    for name, c in splits.items():
        e_split, e_plain = errors(models[True], name), errors(models[False], name)
        keep = e_split["layer"] < e_plain["layer"] and e_split["eps"] < e_plain["eps"]
        numbers[name] = {"split": e_split, "no_split": e_plain, "kept": keep}
        if keep:
            kept[name] = c
    return kept, numbers


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
                        "batch_size": 8, "a_init_samples": 8}, conditional=True)
def recipe(unet, traj, bits, params: QDiffusionParams, device: str = "cpu"):
    import torch

    from ..quant.calibrate import init_activations, init_weights
    from ..quant.module import set_quant_state
    from ..quant.recon import execution_order, find_units, reconstruct
    from ..quant.wrap import quantize_model

    def run(m, b):
        return m(*b).sample

    fp = unet.to(device).eval()
    cal = params.calibration.select(traj, seed=params.seed, model=fp)
    bs = params.batch_size
    batches = cal.batches(bs, device)
    info = {}
    if params.split and params.split_check:
        import dataclasses
        import re

        kept, info["split_criterion"] = split_criterion(fp, bits, params, batches, device)
        spec = spec_for(fp, bits, dataclasses.replace(params, split=False)).with_overrides(
            *((f"^{re.escape(n)}$", {"split": c}) for n, c in kept.items()))
        log.info("split kept for %d of %d layers: %s", len(kept), len(info["split_criterion"]), sorted(kept))
    else:
        spec = spec_for(fp, bits, params)
    model = quantize_model(fp, spec).to(device)
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
    pick = torch.randperm(len(cal), generator=gen)[: params.a_init_samples]
    one = params.a_init_quantized and not params.running_stat  # one forward of all the init inputs
    init_batches = cal.subset(pick).batches(len(pick) if one else bs, device)
    mode = "running" if params.running_stat else _INIT[params.a_init]
    init_activations(model, batches if params.running_stat else init_batches, run, mode,
                     sequential=params.a_init_quantized and not params.running_stat)
    reconstruct(model, fp, batches, run, acts, device, units)
    return model.eval(), spec, info
