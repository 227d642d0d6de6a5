"""Parameter dataclasses of the methods (torch-free). Defaults are the papers' values; each
docstring says where a value comes from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinearParams:
    """Naive min-max PTQ ("Linear Quant" rows of Q-Diffusion's Table 1): per-output-channel
    asymmetric min-max weights, per-tensor asymmetric min-max activations over the calibration
    set, every Conv2d and Linear quantized (first and last layers included), attention matmuls
    not quantized.

    ``calib_steps`` x ``calib_per_step`` calibration inputs are taken uniformly over the
    sampler's steps (Q-Diffusion's 20 x 256 for 100 steps).
    """

    calib_steps: int = 20
    calib_per_step: int = 256
    batch_size: int = 256
