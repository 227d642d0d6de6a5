"""Convert an original DDPM checkpoint (the DDIM code's ``Model`` layout) into a diffusers folder."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="a .ckpt fetched by `diffcomp fetch` (its .json record beside it)")
    p.add_argument("--sample-size", type=int, default=32)
    p.add_argument("--beta-start", type=float, default=1e-4)
    p.add_argument("--beta-end", type=float, default=0.02)
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--out", required=True)


def run(args) -> None:
    from ..fetch import verify_fetched
    from ..io import FileError, atomic_path
    from ..models.ddpm_checkpoint import CheckpointError, convert, load_original
    from ..models.pipeline import save_pipeline
    from ..models.unet import build_scheduler

    rec = verify_fetched(args.checkpoint)  # the sha256 recorded at download, before torch reads the file
    try:
        unet, arch = convert(load_original(args.checkpoint), args.sample_size)
    except CheckpointError as e:
        raise FileError(f"{args.checkpoint}: {e}") from None
    sched = build_scheduler(args.timesteps, args.beta_start, args.beta_end)
    prov = {"what": "original DDPM checkpoint converted to a diffusers UNet2DModel by `diffcomp convert`",
            "checkpoint": {k: rec[k] for k in ("url", "md5", "sha256", "bytes") if k in rec},
            "arch": {"ch": arch.ch, "ch_mult": list(arch.ch_mult), "num_res_blocks": arch.num_res_blocks,
                     "attn_levels": list(arch.attn_levels)}}
    with atomic_path(args.out, suffix="") as tmp:
        save_pipeline(unet, sched, tmp, provenance=prov)
    log.info("converted %s (ch %d, mult %s, %d blocks, attention at levels %s) -> %s", args.checkpoint, arch.ch,
             arch.ch_mult, arch.num_res_blocks, arch.attn_levels, args.out)
