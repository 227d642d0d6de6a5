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


@dataclass(frozen=True)
class QDiffusionParams:
    """Q-Diffusion (Li et al., ICCV 2023), its CIFAR-10 settings (repo Xiuyu-Li/q-diffusion):

    * calibration: ``calib_steps`` x ``calib_per_step`` = 20 x 256 inputs uniformly over the
      sampler's steps (README: ``--cali_st 20 --cali_n 256``);
    * ``split``: split shortcut quantization of the layers that receive ``cat([h, skip])``
      (``--split``); the ablation is ``split: false``;
    * weights: per-channel asymmetric, ``w_init`` 'max' for CIFAR-10 ('mse' for LDM/SD), then
      AdaRound block reconstruction: ``iters_w`` 20000, batch 32, ``round_weight`` 0.01,
      beta 20 -> 2 after a 20% warm-up, Adam lr 1e-3, L_2 output loss, inputs from the
      quantized model;
    * activations: per-tensor, ``a_sym`` symmetric (``--a_sym``), ``a_init`` 'max' on CIFAR
      ('mse' for Church/SD), ``running_stat`` for Bedroom/SD, initialised on ``a_init_samples``
      64 inputs, then LSQ step sizes: ``iters_a`` 5000, lr 4e-4 cosine, L_2.4, inputs from FP;
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
    iters_w: int = 20000
    iters_a: int = 5000
    batch_size: int = 32
    round_weight: float = 0.01
    b_start: float = 20.0
    b_end: float = 2.0
    warmup: float = 0.2
    lr_w: float = 1e-3
    lr_a: float = 4e-4
    p_w: float = 2.0
    p_a: float = 2.4
    seed: int = 0
