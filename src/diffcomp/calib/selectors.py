"""Selectors pick calibration samples (x_t, t) from FP trajectories."""

from __future__ import annotations

import torch

from .trajectories import Trajectories


def uniform(traj: Trajectories, n_steps: int, n_per_step: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Q-Diffusion's timestep-aware selection: every ``S // n_steps``-th step from the noisiest,
    ``n_per_step`` random trajectories at each (20 x 256 for 100 steps in the paper)."""
    S, N = traj.xs.shape[:2]
    if not 1 <= n_steps <= S:
        raise ValueError(f"calibration wants {n_steps} steps but the trajectories have {S} (sampler.steps)")
    if not 1 <= n_per_step <= N:
        raise ValueError(f"calibration wants {n_per_step} samples per step but only {N} trajectories were captured")
    steps = list(range(0, S, S // n_steps))[:n_steps]
    gen = torch.Generator().manual_seed(seed)
    xs, ts = [], []
    for s in steps:
        pick = torch.randperm(N, generator=gen)[:n_per_step]
        xs.append(traj.xs[s, pick])
        ts.append(traj.ts[s].repeat(n_per_step))
    return torch.cat(xs), torch.cat(ts)


SELECTORS = {"uniform": uniform}
