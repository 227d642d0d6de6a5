"""The small DDPM trainer for the default model (epsilon prediction, EMA, resumable)."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import TrainConfig
from .sampler import compiled, set_precision
from ..io import load_torch, save_torch

log = logging.getLogger(__name__)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)


def train_ddpm(
    unet: torch.nn.Module,
    scheduler,
    images_u8: np.ndarray,
    cfg: TrainConfig,
    device: str | torch.device = "cpu",
    state_dir: str | Path | None = None,
    max_seconds: float | None = None,
    stop_at: int | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Train ``unet`` to predict the noise added by ``scheduler``; return (EMA model, stats).

    With ``state_dir``, a checkpoint is kept there every ``cfg.checkpoint_every`` steps and a
    restarted job resumes from it (same data order, so the result matches an uninterrupted run).
    ``max_seconds`` stops early (the steps actually done are in the returned stats). The
    arithmetic is ``cfg.precision`` (bf16: the forward under autocast) and ``cfg.compile`` (the
    forward through ``torch.compile``; on a GPU the small UNet is launch-bound).
    ``stop_at`` ends this call after that step, as a job killed there would (tests, budgets).
    """
    device = torch.device(device)
    autocast_dtype = set_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    data = torch.from_numpy(images_u8).to(device).float().div(127.5).sub(1.0)
    unet = unet.to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup, 1)))
    ac = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    T = ac.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    start = 0
    state_path = Path(state_dir) / "train_state.pt" if state_dir else None
    if state_path is not None and state_path.exists():
        st = load_torch(state_path, map_location=device)
        unet.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])  # dropout
        if device.type == "cuda" and st.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(st["cuda_rng"], device)
        start = st["step"]
        log.info("resumed training from step %d (%s)", start, state_path)
    fwd = compiled(unet, cfg.compile)
    t0 = time.time()
    losses = []
    done = start
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train", mininterval=5):
        idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
        x0 = data[idx.to(device)]
        if cfg.hflip:
            flip = (torch.rand(cfg.batch_size, generator=gen) < 0.5).to(device)
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(0, T, (cfg.batch_size,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(device_type=device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            pred = fwd(xt, t).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        _ema_update(ema, unet, cfg.ema_decay)
        losses.append(loss.item() if step % 50 == 0 else None)
        done = step + 1
        if stop_at is not None and done >= stop_at:
            break
        if max_seconds is not None and time.time() - t0 > max_seconds:
            log.warning("stopping at step %d of %d: time budget of %.0f s spent", done, cfg.steps, max_seconds)
            break
        if (step + 1) % 1000 == 0:
            recent = [v for v in losses[-1000:] if v is not None]
            log.info("step %d loss %.4f", step + 1, float(np.mean(recent)))
        if state_path is not None and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save_torch(state_path, {"model": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                                    "sched": sched.state_dict(), "gen": gen.get_state(),
                                    "torch_rng": torch.get_rng_state(),
                                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                                    "step": step + 1})
    recent = [v for v in losses[-2000:] if v is not None]
    stats = {"steps": done, "planned_steps": cfg.steps, "resumed_from": start, "seconds": time.time() - t0,
             "final_loss": float(np.mean(recent)) if recent else None, "config": asdict(cfg)}
    return ema.cpu(), stats
