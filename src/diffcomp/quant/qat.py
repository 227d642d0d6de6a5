"""Quantization-aware training along FP sampler trajectories (EfficientDM's loop), generic over
what is trained and over extra loss terms.

One *epoch* follows a batch of FP DDIM trajectories from the noisiest step to the last: at every
sampling step the quantized and the FP model both predict the noise of the FP trajectory's
``x_t``, the loss is the summed squared difference (plus the method's extra terms), and the
optimiser takes one step. So every sampling step gets its own optimiser step, and per-timestep
quantizers learn from the inputs of their own step. The trajectories are the FP model's
(``calib.trajectories``): the quantized model never drives them.

Resumable: with ``state_dir`` the trained model's state, the optimiser, the learning-rate
schedule and the data order's RNG are kept every ``checkpoint_every`` epochs; a restarted job
that prepares the model the same way continues from the last checkpoint and ends with the same
parameters, bit for bit, as a job that was never stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..io import load_torch, save_torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QATSchedule:
    """``epochs`` batches of ``batch_size`` trajectories (drawn without replacement within an
    epoch, with ``seed``), one AdamW step per sampling step (``weight_decay``: AdamW's default,
    as in the released EfficientDM/MPQ-DM code), learning rates decayed linearly to 0 over all
    steps without warm-up; resume state every ``checkpoint_every`` epochs."""

    epochs: int
    batch_size: int
    seed: int = 0
    weight_decay: float = 0.01
    checkpoint_every: int = 10


@dataclass(frozen=True)
class ParamGroup:
    """Parameters trained with one learning rate."""

    name: str
    params: tuple[nn.Parameter, ...]
    lr: float


class LossTerm(nn.Module):
    """An extra loss term of a QAT method. ``attach`` is called once with both models (hooks);
    ``begin`` at the start of every epoch; ``forward(step)`` after both models' forwards of
    sampling step ``step`` returns the term (a scalar tensor) or None; ``detach_hooks`` at the end."""

    def attach(self, model: nn.Module, fp: nn.Module) -> None:
        pass

    def begin(self) -> None:
        pass

    def detach_hooks(self) -> None:
        pass


def linear_decay(total: int):
    return lambda step: max(0.0, 1.0 - step / total)


def train_qat(model: nn.Module, fp: nn.Module, traj, groups: Sequence[ParamGroup],
              schedule: QATSchedule, terms: Sequence[LossTerm] = (), device: str | torch.device = "cpu",
              state_dir: str | Path | None = None, stop_at: int | None = None) -> dict:
    """Train ``groups`` of ``model`` (a quantized UNet) to match ``fp`` along the trajectories
    ``traj`` (``calib.trajectories.Trajectories``: inputs ``xs`` (S, N, C, H, W) at timesteps
    ``ts`` (S,)), in place. A batch is B trajectories' inputs at one step as calibration takes
    them (``calib.selectors.gather``): with their labels for a class-conditional model, and under
    guidance each followed by its null-label twin; the loss then compares the guided predictions
    ``eps_u + s (eps_c - eps_u)`` of the two models, as the released EfficientDM and MPQ-DM code
    does. ``stop_at``: return after that many optimiser steps, as a job killed there would
    (tests). Returns statistics."""
    from ..calib.selectors import gather
    from ..models.conditioning import guided_pairs

    device = torch.device(device)
    ts, scale = traj.ts, traj.guidance
    S, N = int(traj.xs.shape[0]), int(traj.xs.shape[1])
    B = min(schedule.batch_size, N)
    total = schedule.epochs * S
    trained = [p for g in groups for p in g.params]
    if len({id(p) for p in trained}) != len(trained):
        raise ValueError("a parameter is in two QAT parameter groups")
    fp = fp.to(device).eval().requires_grad_(False)
    model = model.to(device).eval()
    model.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": list(g.params), "lr": g.lr, "name": g.name} for g in groups if g.params],
                            weight_decay=schedule.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(total))
    gen = torch.Generator().manual_seed(schedule.seed)
    state_path = Path(state_dir) / "qat_state.pt" if state_dir else None
    start = 0
    if state_path is not None and state_path.exists():
        st = load_torch(state_path, map_location=device)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        start = int(st["epoch"])
        log.info("resumed QAT from epoch %d (%s)", start, state_path)
    for term in terms:
        term.attach(model, fp)
    per_step = torch.zeros(S, dtype=torch.float64)
    per_step_n = torch.zeros(S, dtype=torch.long)
    history: list[torch.Tensor] = []
    t0, done = time.time(), start * S
    bar = tqdm(total=total, initial=done, desc="QAT", mininterval=5)
    try:
        for epoch in range(start, schedule.epochs):
            idx = torch.randperm(N, generator=gen)[:B]
            for term in terms:
                term.begin()
            for s in range(S):
                batch = tuple(v.to(device) for v in gather(traj, torch.full_like(idx, s), idx).tensors())
                with torch.no_grad():
                    ref = guided_pairs(fp(*batch).sample, scale)
                out = guided_pairs(model(*batch).sample, scale)
                mse = (out - ref).pow(2).sum()
                loss = mse
                for term in terms:
                    extra = term(s)
                    if extra is not None:
                        loss = loss + extra
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                history.append(loss.detach())
                per_step[s] += float(mse.detach()) / len(out)
                per_step_n[s] += 1
                done += 1
                bar.update(1)
                if stop_at is not None and done >= stop_at:
                    return _stats(start, done, total, t0, history, per_step, per_step_n, ts, stopped=True)
            if state_path is not None and (epoch + 1) % schedule.checkpoint_every == 0 and epoch + 1 < schedule.epochs:
                save_torch(state_path, {"model": model.state_dict(), "opt": opt.state_dict(),
                                        "sched": sched.state_dict(), "gen": gen.get_state(), "epoch": epoch + 1})
            if (epoch + 1) % max(1, schedule.epochs // 10) == 0:
                log.info("epoch %d/%d: loss %.4g", epoch + 1, schedule.epochs,
                         float(torch.stack(history[-S:]).mean()))
    finally:
        bar.close()
        for term in terms:
            term.detach_hooks()
    model.requires_grad_(False)
    return _stats(start, done, total, t0, history, per_step, per_step_n, ts)


def _stats(start, done, total, t0, history, per_step, per_step_n, ts, stopped=False) -> dict:
    tail = history[-max(1, len(history) // 10):]
    return {"steps": done, "planned_steps": total, "resumed_from_step": start * len(ts), "stopped": stopped,
            "seconds": time.time() - t0,
            "final_loss": float(torch.stack(tail).mean()) if tail else None,
            "mse_per_sample_by_timestep": {int(t): (float(per_step[i] / per_step_n[i]) if per_step_n[i] else None)
                                           for i, t in enumerate(ts.tolist())}}
