"""Train the default DDPM UNet on the dataset and save it as a diffusers folder."""

from __future__ import annotations

import logging
import shutil
import time

from ..models.config import TrainConfig, UNetArch
from ..io import atomic_path, load_npz
from ..provenance import provenance
from ._common import keyed_state_dir, pick_device, section, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="train.npz from prepare-data")
    p.add_argument("--arch", default=None, help="model.arch as JSON")
    p.add_argument("--cfg", default=None, help="model.train as JSON")
    p.add_argument("--out", required=True, help="output diffusers folder")
    p.add_argument("--state-dir", default=None, help="resume state (kept across retries)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None, help="stop early after this long (recorded)")


def run(args) -> None:
    from ..models.pipeline import save_pipeline
    from ..models.train import train_ddpm
    from ..models.unet import build_scheduler, build_unet

    set_threads(args.threads)
    device = pick_device(args.device)
    arch = section(UNetArch, args.arch, "model.arch")
    cfg = section(TrainConfig, args.cfg, "model.train")
    images = load_npz(args.data, {"images": "uint8"})["images"]
    unet, scheduler = build_unet(arch), build_scheduler()
    # The resume state belongs to this exact setting: a changed config starts afresh.
    state_dir = keyed_state_dir(args.state_dir, [arch.__dict__, cfg.__dict__, str(args.data)])
    t0 = time.time()
    ema, stats = train_ddpm(unet, scheduler, images, cfg, device=device, state_dir=state_dir,
                            max_seconds=args.max_minutes * 60 if args.max_minutes else None)
    with atomic_path(args.out, suffix="") as tmp:
        save_pipeline(ema, scheduler, tmp, provenance=provenance(
            what="DDPM UNet (EMA weights) trained on the dataset by `diffcomp train`",
            arch=arch.__dict__, train_stats=stats, wall_seconds=time.time() - t0,
            parameters=sum(p.numel() for p in ema.parameters())))
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
    log.info("saved %s (%.0f s)", args.out, time.time() - t0)
