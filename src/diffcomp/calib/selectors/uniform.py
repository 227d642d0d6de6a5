"""Q-Diffusion's timestep-aware calibration: the same number of samples at evenly spaced steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...typedconfig import ConfigError, PositiveInt
from . import selector


@dataclass(frozen=True)
class UniformParams:
    """Every ``S // steps``-th sampling step from the noisiest, ``per_step`` random trajectories at
    each (Q-Diffusion: 20 x 256 for 100 DDIM steps, README ``--cali_st 20 --cali_n 256``)."""

    steps: PositiveInt = 20
    per_step: PositiveInt = 256

    def check_against(self, cfg: Any, where: str) -> None:
        if self.steps > cfg.sampler.steps:
            raise ConfigError(f"config key '{where}.steps': {self.steps} is more than sampler.steps ({cfg.sampler.steps})")
        if self.per_step > cfg.calibration.n_trajectories:
            raise ConfigError(f"config key '{where}.per_step': {self.per_step} is more than calibration.n_trajectories "
                              f"({cfg.calibration.n_trajectories})")


@selector("uniform", params=UniformParams, label="uniform over steps")
def uniform(traj, params: UniformParams, seed: int = 0):
    import torch

    S, N = traj.xs.shape[:2]
    if not 1 <= params.steps <= S:
        raise ValueError(f"calibration wants {params.steps} steps but the trajectories have {S} (sampler.steps)")
    if not 1 <= params.per_step <= N:
        raise ValueError(f"calibration wants {params.per_step} samples per step but only {N} trajectories were captured")
    steps = list(range(0, S, S // params.steps))[: params.steps]
    gen = torch.Generator().manual_seed(seed)
    picks = [torch.randperm(N, generator=gen)[: params.per_step] for _ in steps]
    return (torch.cat([torch.full((params.per_step,), s, dtype=torch.long) for s in steps]), torch.cat(picks))
