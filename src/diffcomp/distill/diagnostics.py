"""Diagnostics of a distillation stage, recorded in the student's provenance and the log:

* ``gradient_split``: the objective's value and the student's gradient norm on the top student
  step (the noisiest timestep, t = T - 1) against all other steps together, on a fixed probe
  batch. Each part's loss is scaled by its share of the probe batch, as in the batch mean the
  stage trains on, so the two norms compare the parts' pulls on the weights.
* ``teacher_match``: the mean squared pixel error between the N-step student and its 2N-step
  teacher sampled with DDIM (eta 0, trailing grid) from the same noises.

Neither changes the student, the objective's state or the stage's random streams.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn

from ..models.parameterization import coefficients
from ..models.sampler import ddim_sample, initial_noise
from ..models.config import SamplerConfig
from .targets import pd_target, stage_times

# (student output, z, PD target, a, s) -> (loss, parts): the stage's loss of a student output
StudentLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                       tuple[torch.Tensor, dict]]


def probe_batch(data: torch.Tensor, alphas_cumprod: torch.Tensor, student_steps: int, per_step: int, seed: int):
    """A fixed batch of ``per_step`` noised images at every student step k = 1..N: (z, t, t_mid,
    t_end, k), from its own generator (``seed``)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(1, student_steps + 1).repeat_interleave(per_step)
    x0 = data[torch.randint(0, data.shape[0], (len(k),), generator=g).to(data.device)]
    t, t_mid, t_end = (v.to(data.device) for v in stage_times(int(alphas_cumprod.shape[0]), student_steps, k))
    a, s = coefficients(alphas_cumprod, t)
    z = (a * x0.double() + s * torch.randn(x0.shape, generator=g).to(data.device).double()).float()
    return z, t, t_mid, t_end, k.to(data.device)


def gradient_split(student: nn.Module, objective: nn.Module, student_loss: StudentLoss, teacher_eps,
                   probe, alphas_cumprod: torch.Tensor, student_steps: int, clip_teacher_x0: bool = False) -> dict:
    """Loss and gradient norm of the top student step vs the rest together, on ``probe``
    (``probe_batch``'s tuple). The objective is a copy, so a stateful one (RDD's memory queue)
    is left as it was."""
    z, t, t_mid, t_end, k = probe
    target = pd_target(teacher_eps, z, t, t_mid, t_end, alphas_cumprod, clip_teacher_x0)
    a, s = coefficients(alphas_cumprod, t)
    params = [p for p in student.parameters() if p.requires_grad]
    out: dict = {}
    for name, sel in (("top_step", k == student_steps), ("other_steps", k != student_steps)):
        n = int(sel.sum())
        if n == 0:
            out[name] = None
            continue
        probe_objective = copy.deepcopy(objective)
        loss, _ = student_loss(probe_objective, z[sel], t[sel], target[sel], a[sel], s[sel])
        grads = torch.autograd.grad(loss * n / len(k), params, allow_unused=True)
        norm = torch.sqrt(sum(g.double().pow(2).sum() for g in grads if g is not None))
        out[name] = {"samples": n, "loss": float(loss.detach()), "grad_norm": float(norm)}
    top, rest = out["top_step"], out["other_steps"]
    out["top_share"] = (top["grad_norm"] / (top["grad_norm"] + rest["grad_norm"])) if top and rest else None
    return out


@torch.no_grad()
def teacher_match(student_eps, teacher_eps, alphas_cumprod: torch.Tensor, student_steps: int, noises: int,
                  seed: int, shape: tuple[int, ...], clip_x0: bool = True, device="cpu", batch_size: int = 64) -> dict:
    """Mean squared pixel error (images in [-1, 1]) between the student sampled with N steps
    and the teacher with 2N, both DDIM eta 0 on the trailing grid with x0 clipped as
    ``clip_x0``, from the noises of image indices 0..``noises``-1 at base seed ``seed``
    (``models.sampler.initial_noise``)."""
    x_T, _ = initial_noise(range(noises), shape, seed)
    errs = []
    for i in range(0, noises, batch_size):
        x = x_T[i:i + batch_size].to(device)
        imgs = [ddim_sample(fn, x, alphas_cumprod, SamplerConfig("ddim", n, 0.0, "trailing", clip_x0)).float().clamp(-1, 1)
                for fn, n in ((student_eps, student_steps), (teacher_eps, 2 * student_steps))]
        errs.append((imgs[0] - imgs[1]).pow(2).flatten(1).mean(1).double().cpu())
    e = torch.cat(errs)
    return {"mse": float(e.mean()), "noises": noises, "seed": seed, "clip_x0": clip_x0,
            "student_steps": student_steps, "teacher_steps": 2 * student_steps}
