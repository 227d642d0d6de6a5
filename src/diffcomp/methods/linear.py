"""Naive min-max PTQ, the grid's baseline ("Linear Quant")."""

from __future__ import annotations

from dataclasses import dataclass

from ..calib.selectors import Calibration
from ..calib.selectors.uniform import UniformParams
from ..typedconfig import PositiveInt
from . import quant_method


@dataclass(frozen=True)
class LinearParams:
    """Naive min-max PTQ ("Linear Quant" rows of Q-Diffusion's Table 1): per-output-channel
    asymmetric min-max weights, per-tensor asymmetric min-max activations over the calibration
    set, every Conv2d and Linear quantized (first and last layers included), attention matmuls
    not quantized.

    ``calibration``: 20 x 256 inputs uniformly over the sampler's steps (Q-Diffusion's setting for
    100 steps); ``batch_size``: inputs per forward while observing ranges.
    """

    calibration: Calibration = Calibration("uniform", UniformParams(steps=20, per_step=256))
    batch_size: PositiveInt = 256


def spec_for(bits):
    """Every Conv2d and Linear: per-channel asymmetric weights, per-tensor asymmetric inputs."""
    from ..quant.spec import QuantizerConfig, QuantSpec

    return QuantSpec(weight=QuantizerConfig(bits.w, per_channel=True), act=QuantizerConfig(bits.a))


@quant_method("linear", label="Linear Quant", params=LinearParams,
              contract={"calibration": {"selector": "uniform", "steps": 2, "per_step": 8}, "batch_size": 8},
              conditional=True)
def recipe(unet, traj, bits, params: LinearParams, device: str = "cpu"):
    from ..quant.calibrate import init_activations, init_weights
    from ..quant.wrap import quantize_model

    spec = spec_for(bits)
    model = quantize_model(unet, spec).to(device)
    batches = params.calibration.select(traj, model=unet).batches(params.batch_size, device)
    init_weights(model, "minmax")
    init_activations(model, batches, lambda m, b: m(*b).sample, "minmax")
    return model.eval(), spec
