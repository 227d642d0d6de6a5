"""One stage of progressive distillation: a teacher sampling with 2N DDIM steps -> a student
that samples with N, trained on the PD target with the registered method's objective (PD's loss,
RDD's relational losses in a frozen feature network's space, ...).

Resumable: with ``state_dir`` the student, optimisers, LR schedule, RNG states, the objective's
state (RDD's memory queue) and the diagnostics so far are kept there every ``checkpoint_every``
iterations; a restarted job continues from the last checkpoint with the same data order.

Diagnostics (``distill.diagnostics``): the top step's loss and gradient norm against the other
steps' at the start, every ``probe_every`` iterations and at the end; the teacher-match error at
the start and the end. They are in the returned stats and the log.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..io import load_torch, save_torch
from ..models.parameterization import coefficients, kind_of, to_eps, to_x0
from ..models.sampler import compiled, unet_fn
from .diagnostics import gradient_split, probe_batch, teacher_match
from .targets import pd_target, stage_times

log = logging.getLogger(__name__)


def _means(entries: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean of each logged loss part over ``entries`` (one device-to-host copy per part)."""
    return {k: float(np.mean(torch.stack([e[k] for e in entries]).tolist())) for k in entries[0]}


def _student_loss(fwd, kind: str, objective, z, t, x_target, a, s, autocast: torch.dtype | None = None):
    """The objective on the student's output for (z, t), whatever the student predicts (its
    forward under ``autocast`` if given, the loss in fp32)."""
    with torch.autocast(device_type=z.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        out = fwd(z, t).sample
    out = out.float()
    if kind == "eps":
        return objective(out, z, x_target, a, s)
    return objective(to_eps(out, z, a, s, kind), z, x_target, a, s, to_x0(out, z, a, s, kind))


def _log_split(it: int, split: dict) -> None:
    top, rest = split["top_step"], split["other_steps"]
    log.info("iteration %d: top step loss %.4g, gradient norm %.4g; other steps loss %s, gradient norm %s; "
             "top step's share of the gradient norm %s", it, top["loss"], top["grad_norm"],
             f"{rest['loss']:.4g}" if rest else "-", f"{rest['grad_norm']:.4g}" if rest else "-",
             f"{split['top_share']:.3f}" if split["top_share"] is not None else "-")


def distill_stage(
    teacher: nn.Module,
    images_u8: np.ndarray,
    alphas_cumprod: torch.Tensor,
    student_steps: int,
    method: str,
    params,
    features: nn.Module | None = None,
    device: str | torch.device = "cpu",
    state_dir: str | Path | None = None,
    stop_at: int | None = None,
    compile: str | None = None,
    autocast: torch.dtype | None = None,
    teacher_prediction: str = "epsilon",
    match_clip_x0: bool = True,
) -> tuple[nn.Module, dict]:
    """Distil ``teacher`` (an epsilon-prediction UNet sampled with 2N trailing DDIM steps) into a
    student initialised from it that matches it with N = ``student_steps`` steps.

    ``method`` is a registered distillation method and ``params`` its parameters (``iters``,
    ``batch_size``, ``lr``, ...: PD's fields, which every method here extends); ``features`` is the
    frozen network its objective needs, if any. ``stop_at`` ends the
    call after that iteration, as a job killed there would (tests). ``compile``: a torch.compile
    mode for the teacher and the student (None: eager); ``autocast``: the dtype both run their
    forward in (None: as they are). ``teacher_prediction``: what the
    teacher predicts (its scheduler's ``prediction_type``); the student predicts
    ``params.parameterization``. ``match_clip_x0``: whether the teacher-match samples clip x0 (as
    the distillation grid's sampler does). Returns (student, stats).
    """
    from .methods import DISTILLERS

    make_objective = DISTILLERS[method].objective
    device = torch.device(device)
    iters = params.stage_iters(student_steps)
    T = int(alphas_cumprod.shape[0])
    if 2 * student_steps > T:
        raise ValueError(f"a {student_steps}-step student needs a teacher of {2 * student_steps} <= {T} steps")
    torch.manual_seed(params.seed)
    data = torch.from_numpy(images_u8).to(device).float().div(127.5).sub(1.0)
    teacher = teacher.to(device).eval().requires_grad_(False)
    student = copy.deepcopy(teacher).requires_grad_(True)
    student.eval()  # PD trains without dropout; the UNet has no other train-mode behaviour
    objective = make_objective(params, features).to(device)
    opt = torch.optim.Adam(student.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters)
    own = objective.trainable()  # e.g. RDD's projection head, with its own optimiser
    head_opt = torch.optim.Adam(own, lr=params.lr, weight_decay=params.weight_decay) if own else None
    ac = alphas_cumprod.to(device=device, dtype=torch.float64)
    teacher_kind, kind = kind_of(teacher_prediction), params.parameterization
    refit = None
    if kind != teacher_kind and params.refit_output:  # before the optimiser's state is restored, if resuming
        from .reparam import refit_output

        g = torch.Generator().manual_seed(params.seed + 1)  # not the data order's generator
        n = params.refit_samples
        x0r = data[torch.randint(0, data.shape[0], (n,), generator=g).to(device)]
        tr = stage_times(T, student_steps, torch.randint(1, student_steps + 1, (n,), generator=g))[0].to(device)
        ar, sr = coefficients(ac, tr)
        zr = (ar * x0r.double() + sr * torch.randn(x0r.shape, generator=g).to(device).double()).float()
        refit = refit_output(student, unet_fn(teacher, None, teacher_kind, ac), zr, tr, ac, kind)
        log.info("output layer refitted from %s to %s: relative error %.4f -> %.4f", teacher_kind, kind,
                 refit["rel_err_before"], refit["rel_err_after"])
    gen = torch.Generator().manual_seed(params.seed)
    state_path = Path(state_dir) / "stage_state.pt" if state_dir else None
    start = 0
    if state_path is not None and state_path.exists():
        st = load_torch(state_path, map_location=device)
        student.load_state_dict(st["student"])
        objective.load_state_dict(st["objective"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        if head_opt is not None:
            head_opt.load_state_dict(st["head_opt"])
        objective.load_extra_state(st["objective_extra"])
        gen.set_state(st["gen"])
        start = st["step"]
        diagnostics = st["diagnostics"]
        log.info("resumed distillation from iteration %d (%s)", start, state_path)
    else:
        diagnostics = {"gradient": [], "teacher_match": {}}
    teacher_fn = unet_fn(compiled(teacher, compile), autocast, teacher_kind, ac)
    student_fwd = compiled(student, compile)
    probe = (probe_batch(data, ac, student_steps, params.probe_per_step, params.seed + 2)
             if params.probe_per_step else None)

    def loss_of(fwd, obj, z, t, x_target, a, s):
        return _student_loss(fwd, kind, obj, z, t, x_target, a, s, autocast)

    def probe_gradient(it: int) -> None:
        if probe is None:
            return
        split = gradient_split(student, objective, lambda obj, *b: loss_of(student, obj, *b), teacher_fn, probe, ac,
                               student_steps, params.clip_teacher_x0)
        diagnostics["gradient"].append({"iteration": it, **split})
        _log_split(it, split)

    def match(when: str) -> None:
        if not params.match_noises:
            return
        m = teacher_match(unet_fn(student, autocast, kind, ac), teacher_fn, ac, student_steps, params.match_noises,
                          params.seed, tuple(data.shape[1:]), match_clip_x0, device)
        diagnostics["teacher_match"][when] = m
        log.info("teacher-match error at the %s: %d-step student vs %d-step teacher, pixel MSE %.5g over %d noises",
                 when, student_steps, 2 * student_steps, m["mse"], m["noises"])

    if start == 0:
        match("start")
        probe_gradient(0)
    t0 = time.time()
    history: list[dict[str, torch.Tensor]] = []
    done = start
    B = params.batch_size
    for step in tqdm(range(start, iters), initial=start, total=iters, desc=f"distill -> {student_steps} steps", mininterval=5):
        idx = torch.randint(0, data.shape[0], (B,), generator=gen)
        x0 = data[idx.to(device)]
        if params.hflip:
            flip = (torch.rand(B, generator=gen) < 0.5).to(device)
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        k = torch.randint(1, student_steps + 1, (B,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t, t_mid, t_end = (v.to(device) for v in stage_times(T, student_steps, k))
        a, s = coefficients(ac, t)
        z = (a * x0.double() + s * noise.double()).float()
        x_target = pd_target(teacher_fn, z, t, t_mid, t_end, ac, params.clip_teacher_x0)
        loss, parts = loss_of(student_fwd, objective, z, t, x_target, a, s)
        opt.zero_grad(set_to_none=True)
        if head_opt is not None:
            head_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), params.grad_clip)
        opt.step()
        if head_opt is not None:
            head_opt.step()
        sched.step()
        history.append({"loss": loss.detach(), **parts})
        done = step + 1
        if done % max(1, min(100, iters // 10)) == 0:
            log.info("iteration %d/%d: %s", done, iters,
                     ", ".join(f"{k} {v:.4g}" for k, v in _means(history[-50:]).items()))
        if params.probe_every and done % params.probe_every == 0 and done < iters:
            probe_gradient(done)
        if stop_at is not None and done >= stop_at:
            break
        if state_path is not None and done % params.checkpoint_every == 0 and done < iters:
            save_torch(state_path, {"student": student.state_dict(), "objective": objective.state_dict(),
                                    "opt": opt.state_dict(), "sched": sched.state_dict(),
                                    "head_opt": head_opt.state_dict() if head_opt else None,
                                    "objective_extra": objective.extra_state(),
                                    "gen": gen.get_state(), "step": done, "diagnostics": diagnostics})
    seconds = time.time() - t0  # the training loop's, without the diagnostics at the end
    if done >= iters:
        probe_gradient(done)
        match("end")
    tail = history[-max(1, len(history) // 10):]
    stats = {
        "method": method, "student_steps": student_steps, "teacher_steps": 2 * student_steps,
        "iterations": done, "planned_iterations": iters, "resumed_from": start, "seconds": seconds,
        "final_losses": _means(tail) if tail else {},
        "params": asdict(params), "teacher_prediction": teacher_kind, "prediction": kind, "refit_output": refit,
        "diagnostics": diagnostics,
    }
    return student.cpu().requires_grad_(False), stats
