"""EDA-DM: temporal distribution alignment calibration (TDAC, the ``density_diversity``
selector) and fine-grained block reconstruction (FBR, one joint phase of the engine)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from ..calib.selectors import Calibration
from ..calib.selectors.density_diversity import DensityDiversityParams
from ..typedconfig import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from . import quant_method

log = logging.getLogger(__name__)

_INIT = {"max": "minmax", "mse": "mse"}
Bits = Annotated[int, Range(2, 16)]


@dataclass(frozen=True)
class EDADMParams:
    """EDA-DM (Liu et al., arXiv 2401.04585), its CIFAR-10 settings (repo BienLuky/EDA-DM:
    ``scripts/for_cifar.sh``, ``scripts/sample_diffusion_ddim.py``, ``scripts/calibration.py``,
    ``qdiff/block_recon.py``):

    * ``calibration``: TDAC, 1024 inputs over the steps by density (r 3.0) and diversity
      (lambda 1.2) of the middle block's attention input, each from its own trajectory. The
      ablation without TDAC is the same selector with ``weights: even``;
    * quantizers: weights per channel, activations per tensor, both ``w_sym``/``a_sym``
      symmetric grids (the released code's ``symmetric = not a_sym`` without ``--a_sym``) with
      ranges from the L_p (2.4) search (``w_init``/``a_init`` 'mse'); activation ranges set on
      the quantized network (``a_init_samples`` inputs); split shortcut quantization (``split``,
      ``--split``); attention q, k, v at the activation bits and the softmax output at
      ``sm_bits`` 8;
    * ``first_last_8bit``: the first (``conv_in``) and last (``conv_out``) layers' weights at 8
      bits; ``output_fp``: the network output layer's input not quantized (the released code's
      ``disable_network_output_quantization``);
    * FBR (``fbr``): block by block (layers outside blocks alone), ``iters`` 5000 iterations at
      ``batch_size`` 32 that learn the AdaRound rounding and the activation step sizes jointly,
      each with its own Adam and cosine decay to 0, no rounding regulariser; loss = block output
      L_2 + ``add_loss`` 0.8 x the sum of the block's quantized layers' output L_2 but the last
      one's; inputs QDrop-mixed (each element FP with probability ``qdrop_p`` 0.5) and inside
      the block each activation element left FP with probability ``act_drop_p`` 0.5 while
      learning (QDrop's quantizer ``prob`` 0.5). ``fbr: false`` is the ablation without FBR: the
      same reconstruction with the block output loss alone (no layer terms);
    * learning rates per bit width (for_cifar.sh): ``lr_w`` 0.5 and ``lr_a`` 5e-4 for weights
      below 8 bits (W4A8), ``lr_w_8bit`` 5e-2 and ``lr_a_8bit`` 1e-3 at 8-bit weights (W8A8);
    * ``seed``: the calibration permutation and the mini-batches.
    """

    calibration: Calibration = Calibration("density_diversity", DensityDiversityParams())
    fbr: bool = True
    split: bool = True
    w_sym: bool = True
    a_sym: bool = True
    w_init: str = "mse"
    a_init: str = "mse"
    a_init_samples: PositiveInt = 256
    sm_bits: Bits = 8
    first_last_8bit: bool = True
    output_fp: bool = True
    iters: PositiveInt = 5000
    batch_size: PositiveInt = 32
    add_loss: NonNegativeFloat = 0.8
    qdrop_p: Fraction = 0.5
    act_drop_p: Fraction = 0.5
    lr_w: PositiveFloat = 0.5
    lr_a: PositiveFloat = 5e-4
    lr_w_8bit: PositiveFloat = 5e-2
    lr_a_8bit: PositiveFloat = 1e-3
    seed: NonNegativeInt = 0

    def __post_init__(self):
        for k in ("w_init", "a_init"):
            if getattr(self, k) not in _INIT:
                raise ValueError(f"{k} must be 'max' or 'mse', got {getattr(self, k)!r}")

    def lrs(self, bits) -> tuple[float, float]:
        """(rounding, activation step) learning rates at ``bits``."""
        return (self.lr_w_8bit, self.lr_a_8bit) if bits.w >= 8 else (self.lr_w, self.lr_a)


def first_last_layers(unet) -> tuple[str, str]:
    """Names of the first and last Conv2d/Linear of the UNet in registration order (diffusers:
    ``conv_in``, ``conv_out``)."""
    import torch.nn as nn

    names = [n for n, m in unet.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return names[0], names[-1]


def spec_for(unet, bits, p: EDADMParams):
    import re

    from ..quant.spec import AttentionConfig, QuantizerConfig, QuantSpec
    from ..quant.wrap import with_split_shortcut

    act = QuantizerConfig(bits.a, symmetric=p.a_sym, learnable=True)
    attention = AttentionConfig(act, QuantizerConfig(p.sm_bits, symmetric=p.a_sym, learnable=True))
    spec = QuantSpec(weight=QuantizerConfig(bits.w, per_channel=True, symmetric=p.w_sym), act=act, attention=attention)
    if p.split:
        spec = with_split_shortcut(spec, unet)
    first, last = first_last_layers(unet)
    overrides = []
    if p.first_last_8bit:
        overrides += [(f"^{re.escape(n)}$", {"weight.bits": 8}) for n in (first, last)]
    if p.output_fp:
        overrides.append((f"^{re.escape(last)}$", {"act": None}))
    return spec.with_overrides(*overrides) if overrides else spec


def phase(p: EDADMParams, bits):
    """FBR: one joint pass of the reconstruction engine."""
    from ..quant.recon import Phase, ReconLoss

    lr_w, lr_a = p.lrs(bits)
    loss = ReconLoss(2.0, layer_weight=p.add_loss if p.fbr else 0.0, layer_p=2.0, skip_last_layer=True)
    return Phase(learn=("rounding", "act_steps"), iters=p.iters, batch_size=p.batch_size,
                 lr=(("rounding", lr_w), ("act_steps", lr_a)), cosine=("rounding", "act_steps"), inputs="qdrop",
                 qdrop_p=p.qdrop_p, act_drop_p=p.act_drop_p, loss=loss, rounding_reg=None, seed=p.seed,
                 name="fine-grained block reconstruction" if p.fbr else "block reconstruction")


@quant_method("edadm", label="EDA-DM", params=EDADMParams,
              contract={"calibration": {"selector": "density_diversity", "n": 8, "r": 0.3, "batch_size": 8},
                        "iters": 3, "batch_size": 8, "a_init_samples": 8, "a_init": "max"}, conditional=True)
def recipe(unet, traj, bits, params: EDADMParams, device: str = "cpu"):
    import torch

    from ..quant.calibrate import init_activations, init_weights
    from ..quant.module import set_quant_state
    from ..quant.recon import execution_order, find_units, reconstruct
    from ..quant.wrap import quantize_model

    def run(m, b):
        return m(*b).sample

    fp = unet.to(device).eval()
    cal = params.calibration.select(traj, seed=params.seed, model=fp)
    counts = {int(t): int((cal.ts == t).sum()) for t in traj.ts}
    log.info("calibration inputs per timestep: %s", counts)
    bs = params.batch_size
    batches = cal.batches(bs, device)
    spec = spec_for(fp, bits, params)
    model = quantize_model(fp, spec).to(device)
    units = execution_order(model, find_units(model), lambda m: run(m, batches[0]))

    # ranges: weights from the weights, then activations on the quantized network
    init_weights(model, _INIT[params.w_init])
    set_quant_state(model, weights=True, acts=True)
    pick = torch.randperm(len(cal), generator=torch.Generator().manual_seed(params.seed))[: params.a_init_samples]
    init_activations(model, cal.subset(pick).batches(len(pick), device), run, _INIT[params.a_init], sequential=True)

    # FBR: rounding and activation steps of each unit jointly, weights and activations quantized
    losses = reconstruct(model, fp, batches, run, phase(params, bits), device, units)
    return model.eval(), spec, {"calibration_counts": counts, "units": len(losses)}
