"""Parameter dataclasses of the methods (torch-free). Defaults are the papers' values; each
docstring says where a value comes from."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ReconConfig


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


@dataclass(frozen=True)
class QDiffusionParams(ReconConfig):
    """Q-Diffusion (Li et al., ICCV 2023), its CIFAR-10 settings (repo Xiuyu-Li/q-diffusion).
    The reconstruction fields are ``ReconConfig``'s (defaults = the paper's: 20k AdaRound + 5k
    LSQ iterations, batch 32, ...); on top of them:

    * calibration: ``calib_steps`` x ``calib_per_step`` = 20 x 256 inputs uniformly over the
      sampler's steps (README: ``--cali_st 20 --cali_n 256``);
    * ``split``: split shortcut quantization of the layers that receive ``cat([h, skip])``
      (``--split``); the ablation is ``split: false``;
    * weights: per-channel asymmetric, ``w_init`` 'max' for CIFAR-10 ('mse' for LDM/SD);
    * activations: per-tensor, ``a_sym`` symmetric (``--a_sym``), ``a_init`` 'max' on CIFAR
      ('mse' for Church/SD), ``running_stat`` for Bedroom/SD, initialised on ``a_init_samples``
      64 inputs before the LSQ step-size reconstruction;
    * attention: q, k, v at the activation bit-width, softmax output at ``sm_bits`` 8, unsigned;
    * every Conv2d/Linear is quantized, first and last layer included (no layer kept FP).
    """

    calib_steps: int = 20
    calib_per_step: int = 256
    split: bool = True
    w_init: str = "max"
    a_init: str = "max"
    a_sym: bool = True
    running_stat: bool = False
    a_init_samples: int = 64
    sm_bits: int = 8
    quant_attention: bool = True
