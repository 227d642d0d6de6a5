"""Convert an original checkpoint into a diffusers folder: a DDPM checkpoint (the DDIM code's
``Model`` layout) or a latent-diffusion one (``--format ldm``: denoiser, first-stage autoencoder
and, for a class-conditional model, its class embedding)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="a .ckpt fetched by `diffcomp fetch` (its .json record beside it)")
    p.add_argument("--format", choices=("ddpm", "ldm"), default="ddpm")
    p.add_argument("--member", default=None, help="the checkpoint's name inside a .zip download")
    p.add_argument("--sample-size", type=int, default=32, help="the UNet's input size (latent size for ldm)")
    p.add_argument("--image-size", type=int, default=256, help="ldm: the autoencoder's image size")
    heads = p.add_mutually_exclusive_group()
    heads.add_argument("--heads", type=int, default=None, help="ldm: attention heads per layer (num_heads)")
    heads.add_argument("--head-channels", type=int, default=None, help="ldm: channels per head (num_head_channels)")
    p.add_argument("--scaling-factor", type=float, default=None,
                   help="ldm: the latents' scale factor (default: the checkpoint's scale_factor, else 1)")
    p.add_argument("--no-ema", action="store_true", help="ldm: the plain weights even where EMA weights exist")
    p.add_argument("--beta-start", type=float, default=1e-4)
    p.add_argument("--beta-end", type=float, default=0.02)
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--out", required=True)


def run(args) -> None:
    from ..fetch import verify_fetched
    from ..io import FileError, atomic_path
    from ..models.ddpm_checkpoint import CheckpointError, load_original
    from ..models.pipeline import save_pipeline

    rec = verify_fetched(args.checkpoint)  # the sha256 recorded at download, before torch reads the file
    prov = {"checkpoint": {k: rec[k] for k in ("url", "md5", "sha256", "bytes") if k in rec}}
    try:
        sd = load_original(args.checkpoint, args.member)
        if args.format == "ldm":
            unet, vae, sched, arch = _ldm(sd, args)
        else:
            unet, vae, sched, arch = _ddpm(sd, args)
    except (CheckpointError, ValueError) as e:
        raise FileError(f"{args.checkpoint}: {e}") from None
    prov.update(arch)
    with atomic_path(args.out, suffix="") as tmp:
        save_pipeline(unet, sched, tmp, provenance=prov, vae=vae)
    log.info("converted %s (%s) -> %s", args.checkpoint, prov["arch"], args.out)


def _ddpm(sd, args):
    from ..models.ddpm_checkpoint import convert
    from ..models.unet import build_scheduler

    unet, arch = convert(sd, args.sample_size)
    sched = build_scheduler(args.timesteps, args.beta_start, args.beta_end)
    return unet, None, sched, {
        "what": "original DDPM checkpoint converted to a diffusers UNet2DModel by `diffcomp convert`",
        "arch": {"ch": arch.ch, "ch_mult": list(arch.ch_mult), "num_res_blocks": arch.num_res_blocks,
                 "attn_levels": list(arch.attn_levels)}}


def _ldm(sd, args):
    from dataclasses import asdict

    from ..models.ldm_checkpoint import convert, ldm_scheduler

    sched = ldm_scheduler(args.timesteps, args.beta_start, args.beta_end)
    unet, vae, arch = convert(sd, args.sample_size, args.image_size, args.head_channels, args.heads, sched,
                              args.scaling_factor, use_ema=not args.no_ema)
    return unet, vae, sched, {
        "what": f"latent-diffusion checkpoint converted to a diffusers {type(unet).__name__} and "
                f"{type(vae).__name__} by `diffcomp convert --format ldm`",
        "arch": {**asdict(arch), "heads": args.heads, "head_channels": args.head_channels,
                 "scaling_factor": vae.config.scaling_factor}}
