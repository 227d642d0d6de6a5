"""The calibration section of the config (torch-free): how the FP trajectories are captured."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CalibrationConfig:
    """FP trajectories captured once; selectors pick from them. Q-Diffusion: 20 steps x 256."""

    n_trajectories: int = 256
    batch_size: int = 256
    seed: int = 1_000_000
