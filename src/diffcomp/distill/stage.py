"""One stage of progressive distillation: a teacher sampling with 2N DDIM steps -> a student
that samples with N, trained on the PD target with the registered method's objective (PD's loss,
RDD's relational losses in a frozen feature network's space, ...).

Resumable: with ``state_dir`` the student, optimisers, RNG states, the objective's
state (RDD's memory queue) and the diagnostics so far are kept there every ``checkpoint_every``
iterations; a restarted job continues from the last checkpoint with the same data order.

Diagnostics (``distill.diagnostics``): the top step's loss and gradient norm against the other
steps' at the start, every ``probe_every`` iterations and at the end; the teacher-match error at
the start and the end. They are in the returned stats and the log.
"""

from __future__ import annotations

import copy
import logging
import math
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


ENGINES = ("eager", "graph")


def pick_engine(engine: str, device: torch.device, autocast: torch.dtype | None) -> str:
    """``auto``: ``graph`` on CUDA in fp32/tf32, else ``eager``. ``graph`` needs CUDA and no
    autocast (the autocast weight cache does not survive a capture)."""
    if engine == "auto":
        return "graph" if device.type == "cuda" and autocast is None else "eager"
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES} or 'auto', got {engine!r}")
    if engine == "graph" and (device.type != "cuda" or autocast is not None):
        raise ValueError("the graph engine needs a CUDA device and fp32 or tf32 precision (no bf16 autocast)")
    return engine


def cosine_lr(base: float, iters: int, step: int) -> float:
    """The learning rate of iteration ``step`` (0-based) under cosine decay to 0 over ``iters``."""
    return base * (1 + math.cos(math.pi * step / iters)) / 2


def _means(entries: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each logged loss part over ``entries``."""
    return {k: float(np.mean([e[k] for e in entries])) for k in entries[0]}


def draw_chunk(gen: torch.Generator, n: int, n_images: int, image_shape: tuple[int, ...], batch: int,
               student_steps: int, T: int, hflip: bool) -> dict[str, torch.Tensor]:
    """``n`` iterations' random inputs (on the CPU, stacked along a first axis), drawn from
    ``gen`` iteration by iteration in a fixed order: the image indices, the flips (with
    ``hflip``), the student steps k and the noise; the model timesteps (t, t_mid, t_end) of k
    with them. The order is the data order a resumed stage continues from ``gen``'s state."""
    rows: dict[str, list[torch.Tensor]] = {"idx": [], "flip": [], "t": [], "t_mid": [], "t_end": [], "noise": []}
    for _ in range(n):
        rows["idx"].append(torch.randint(0, n_images, (batch,), generator=gen))
        rows["flip"].append(torch.rand(batch, generator=gen) < 0.5 if hflip else torch.zeros(batch, dtype=torch.bool))
        k = torch.randint(1, student_steps + 1, (batch,), generator=gen)
        for key, v in zip(("t", "t_mid", "t_end"), stage_times(T, student_steps, k)):
            rows[key].append(v)
        rows["noise"].append(torch.randn((batch, *image_shape), generator=gen))
    return {k: torch.stack(v) for k, v in rows.items()}


def _student_loss(fwd, kind: str, objective, z, t, x_target, a, s, autocast: torch.dtype | None = None,
                  draws: dict[str, torch.Tensor] | None = None):
    """The objective on the student's output for (z, t), whatever the student predicts (its
    forward under ``autocast`` if given, the loss in fp32); ``draws``: the objective's random
    inputs of this step (None: it draws them itself)."""
    with torch.autocast(device_type=z.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        out = fwd(z, t).sample
    out = out.float()
    if kind == "eps":
        return objective(out, z, x_target, a, s, draws=draws)
    return objective(to_eps(out, z, a, s, kind), z, x_target, a, s, to_x0(out, z, a, s, kind), draws=draws)


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
    engine: str = "auto",
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
    the distillation grid's sampler does). ``engine`` (``pick_engine``): ``eager`` runs each
    iteration from the host; ``graph`` captures one iteration as a CUDA graph after a few eager
    ones and replays it. Both read the same random inputs (drawn on the host a chunk at a time,
    ``draw_chunk``), learning rates and optimiser, so they train the same student up to kernel
    rounding, and a stage resumes under either. Returns (student, stats).
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
    engine = pick_engine(engine, device, autocast)
    graph = engine == "graph"
    # The learning rate is a tensor the step copies from the iteration's row of a table, so a
    # captured step reads each iteration's; on CUDA the optimisers keep their step counts on the
    # device (capturable), which also spares the eager loop a synchronisation per iteration.
    capturable = device.type == "cuda"
    opt = torch.optim.Adam(student.parameters(), lr=torch.tensor(params.lr, device=device),
                           weight_decay=params.weight_decay, capturable=capturable)
    own = objective.trainable()  # e.g. RDD's projection head, with its own optimiser
    head_opt = (torch.optim.Adam(own, lr=torch.tensor(params.lr, device=device), weight_decay=params.weight_decay,
                                 capturable=capturable) if own else None)
    ac = alphas_cumprod.to(device=device, dtype=torch.float64)
    teacher_kind, kind = kind_of(teacher_prediction), params.parameterization
    refit = None
    if kind != teacher_kind and params.refit_output:  # before the optimiser's state is restored, if resuming
        from .reparam import refit_inputs, refit_output

        # from a generator of their own, not the data order's
        zr, tr = refit_inputs(data, ac, student_steps, params.refit_samples, params.seed + 1)
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
        if head_opt is not None:
            head_opt.load_state_dict(st["head_opt"])
        objective.load_extra_state(st["objective_extra"])
        gen.set_state(st["gen"].cpu())  # a CPU generator, whatever device the checkpoint was mapped to
        start = st["step"]
        diagnostics = st["diagnostics"]
        log.info("resumed distillation from iteration %d (%s)", start, state_path)
    else:
        diagnostics = {"gradient": [], "teacher_match": {}}
    teacher_fn = unet_fn(compiled(teacher, compile), autocast, teacher_kind, ac)
    student_fwd = compiled(student, compile)
    probe = (probe_batch(data, ac, student_steps, params.probe_per_step, params.seed + 2)
             if params.probe_per_step else None)

    def loss_of(fwd, obj, z, t, x_target, a, s, draws=None):
        return _student_loss(fwd, kind, obj, z, t, x_target, a, s, autocast, draws)

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
    history: list[dict[str, float]] = []
    B, shape = params.batch_size, tuple(data.shape[1:])
    log_every = max(1, min(100, iters // 10))
    chunk = min(log_every, iters)  # iterations drawn at a time; chunks end at every log, probe, checkpoint
    lr_tab = torch.tensor([cosine_lr(params.lr, iters, i) for i in range(iters)], dtype=torch.float32)

    def draw(first: int, n: int) -> dict[str, torch.Tensor]:
        d = draw_chunk(gen, n, data.shape[0], shape, B, student_steps, T, params.hflip)
        d["lr"] = lr_tab[first:first + n]
        return {**d, **{f"obj.{k}": v for k, v in objective.draw(n, B, shape, device).items()}}

    bufs: dict[str, torch.Tensor] = {}  # the chunk's inputs on the device; a captured step reads them in place
    it = torch.zeros((), dtype=torch.long, device=device)  # the step's row in the chunk
    rec: dict[str, torch.Tensor] = {}  # "values": each iteration's loss and parts (rows as in bufs)
    names: list[str] = []

    def load(d: dict[str, torch.Tensor]) -> None:
        for k, v in d.items():
            if k not in bufs:
                bufs[k] = torch.zeros((chunk, *v.shape[1:]), dtype=v.dtype, device=device)
            bufs[k][: v.shape[0]].copy_(v)
        it.zero_()

    def step() -> None:
        row = lambda k: bufs[k].index_select(0, it.view(1)).squeeze(0)  # noqa: E731
        x0 = data.index_select(0, row("idx"))
        if params.hflip:
            x0 = torch.where(row("flip")[:, None, None, None], x0.flip(-1), x0)
        t, t_mid, t_end = row("t"), row("t_mid"), row("t_end")
        a, s = coefficients(ac, t)
        z = (a * x0.double() + s * row("noise").double()).float()
        x_target = pd_target(teacher_fn, z, t, t_mid, t_end, ac, params.clip_teacher_x0)
        draws = {k[4:]: row(k) for k in bufs if k.startswith("obj.")}
        loss, parts = loss_of(student_fwd, objective, z, t, x_target, a, s, draws)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), params.grad_clip)
        opt.param_groups[0]["lr"].copy_(row("lr"))
        opt.step()
        if head_opt is not None:
            head_opt.step()
        values = torch.stack([loss.detach().float(), *(v.float() for v in parts.values())])
        if not names:
            names.extend(["loss", *parts])
            rec["values"] = torch.zeros((chunk, len(names)), device=device)
        rec["values"].index_copy_(0, it.view(1), values[None])
        it.add_(1)

    def zero() -> None:
        opt.zero_grad(set_to_none=True)
        if head_opt is not None:
            head_opt.zero_grad(set_to_none=True)

    def boundary(done: int) -> int:
        """The end of the chunk that starts after iteration ``done``."""
        ends = [iters, done + chunk] + [(done // e + 1) * e for e in (log_every, params.checkpoint_every,
                                                                     params.probe_every) if e]
        if stop_at is not None and stop_at > done:
            ends.append(stop_at)
        return min(ends)

    captured: torch.cuda.CUDAGraph | None = None
    warmup = 3  # eager iterations before the capture (lazy initialisation, the optimiser's state)
    done = start
    bar = tqdm(total=iters, initial=start, desc=f"distill -> {student_steps} steps", mininterval=5)
    nxt = draw(done, boundary(done) - done) if done < iters else None
    while nxt is not None:
        n = nxt["idx"].shape[0]
        load(nxt)
        if graph and captured is None:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            eager_n = min(warmup, n)
            with torch.cuda.stream(side):
                for _ in range(eager_n):
                    zero()
                    step()
            torch.cuda.current_stream(device).wait_stream(side)
            captured = torch.cuda.CUDAGraph()
            zero()
            with torch.cuda.graph(captured):
                step()
            for _ in range(n - eager_n):
                captured.replay()
        elif captured is not None:
            for _ in range(n):
                captured.replay()
        else:
            for _ in range(n):
                zero()
                step()
        end = done + n
        streams = {"gen": gen.get_state(), "objective_extra": objective.extra_state()}  # as of iteration `end`
        # the next chunk is drawn on the host while the device works through this one
        nxt = draw(end, boundary(end) - end) if end < iters and (stop_at is None or end < stop_at) else None
        values = rec["values"][:n].tolist()  # the chunk's one synchronisation
        history.extend(dict(zip(names, v)) for v in values)
        done = end
        bar.update(n)
        if done % log_every == 0:
            log.info("iteration %d/%d: %s", done, iters,
                     ", ".join(f"{k} {v:.4g}" for k, v in _means(history[-50:]).items()))
        if params.probe_every and done % params.probe_every == 0 and done < iters:
            probe_gradient(done)
        if stop_at is not None and done >= stop_at:
            break
        if state_path is not None and done % params.checkpoint_every == 0 and done < iters:
            save_torch(state_path, {"student": student.state_dict(), "objective": objective.state_dict(),
                                    "opt": opt.state_dict(), "head_opt": head_opt.state_dict() if head_opt else None,
                                    **streams, "step": done, "diagnostics": diagnostics})
    bar.close()
    seconds = time.time() - t0  # the training loop's, without the diagnostics at the end
    if done >= iters:
        probe_gradient(done)
        match("end")
    tail = history[-max(1, iters // 10):]  # the last tenth of the stage (what a resumed run also ran)
    stats = {
        "method": method, "student_steps": student_steps, "teacher_steps": 2 * student_steps,
        "iterations": done, "planned_iterations": iters, "resumed_from": start, "seconds": seconds,
        "final_losses": _means(tail) if tail else {},
        "params": asdict(params), "teacher_prediction": teacher_kind, "prediction": kind, "refit_output": refit,
        "diagnostics": diagnostics,
    }
    return student.cpu().requires_grad_(False), stats
