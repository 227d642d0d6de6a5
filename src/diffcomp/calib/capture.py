"""Capture FP sampler trajectories: the UNet input (x_t, t) at every sampling step (and each
trajectory's class label for a class-conditional model)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..models.conditioning import labels_for, with_labels
from ..models.sampler import ddim_sample, initial_noise
from ..models.config import SamplerConfig
from .trajectories import Trajectories


@torch.no_grad()
def capture(model_fn, n: int, shape: tuple[int, ...], alphas_cumprod: torch.Tensor, cfg: SamplerConfig,
            seed: int, batch_size: int, device: str | torch.device = "cpu", classes: int | None = None) -> Trajectories:
    """``model_fn(x, t)`` predicts eps; with ``classes`` (a class-conditional model) it is
    ``model_fn(x, t, labels)`` and trajectory i has label ``i mod classes``, as in sampling."""
    xs_steps: list[list[torch.Tensor]] = []
    ts: list[int] = []
    for start in tqdm(range(0, n, batch_size), desc="trajectories", mininterval=5):
        idx = list(range(start, min(start + batch_size, n)))
        x_T, gens = initial_noise(idx, shape, seed)
        per_step: list[torch.Tensor] = []

        def record(i, x, t):
            per_step.append(x.detach().float().cpu())
            if start == 0:
                ts.append(int(t[0]))

        fn = model_fn if classes is None else with_labels(model_fn, labels_for(idx, classes).to(device))
        ddim_sample(fn, x_T.to(device), alphas_cumprod, cfg, generators=gens, record=record)
        xs_steps.append(per_step)
    xs = torch.stack([torch.cat([b[s] for b in xs_steps]) for s in range(len(ts))])
    return Trajectories(xs=xs, ts=torch.tensor(ts, dtype=torch.long),
                        labels=labels_for(range(n), classes) if classes is not None else None)
