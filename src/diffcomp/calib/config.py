"""The calibration section of the config (torch-free): how the FP trajectories are captured."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CaptureConfig:
    """One capture of FP sampler trajectories: how many, at which batch size, from which seed."""

    n_trajectories: int
    batch_size: int
    seed: int


@dataclass(frozen=True)
class CalibrationConfig:
    """FP trajectories captured once; selectors pick calibration inputs from them (Q-Diffusion:
    20 steps x 256 of them). ``heldout`` further trajectories from ``heldout_seed`` are never
    calibrated on: the per-timestep diagnostics of every quantized variant are measured on them."""

    n_trajectories: int = 256
    batch_size: int = 256
    seed: int = 1_000_000
    heldout: int = 256
    heldout_seed: int = 2_000_000

    def capture(self, heldout: bool = False) -> CaptureConfig:
        if heldout:
            return CaptureConfig(self.heldout, min(self.batch_size, self.heldout), self.heldout_seed)
        return CaptureConfig(self.n_trajectories, self.batch_size, self.seed)
