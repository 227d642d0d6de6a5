"""Generate one shard of images (indices [start, end), seed = base seed + index) for a variant."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..config import SamplerConfig
from ..io import save_npz
from .common import pick_device, section, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="FP diffusers folder")
    p.add_argument("--quantized", default=None, help="quantized state (quantize's output); FP if absent")
    p.add_argument("--sampler", default=None, help="sampler section as JSON")
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--end", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--out", required=True, help="shard .npz")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU fast path)")


def run(args) -> None:
    import torch
    from tqdm.auto import tqdm

    from ..data.fmnist import to_uint8
    from ..models.sampler import generate, unet_fn
    from ..variants import load_variant

    if not 0 <= args.start < args.end:
        raise SystemExit(f"bad shard range [{args.start}, {args.end})")
    set_threads(args.threads)
    device = pick_device(args.device)
    cfg = section(SamplerConfig, args.sampler, "sampler")
    pipe = load_variant(args.model, args.quantized, device=device)
    fn = unet_fn(pipe.unet, torch.bfloat16 if args.bf16 else None)
    shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    t0 = time.time()
    chunks = []
    for s in tqdm(range(args.start, args.end, args.batch_size), desc=f"sample {Path(args.out).name}", mininterval=5):
        idx = list(range(s, min(s + args.batch_size, args.end)))
        chunks.append(to_uint8(generate(fn, idx, shape, pipe.alphas_cumprod, cfg, args.seed, device)))
    images = np.concatenate(chunks)
    save_npz(args.out, images=images, indices=np.arange(args.start, args.end))
    dt = time.time() - t0
    log.info("%d images in %.1f s (%.1f img/s)", len(images), dt, len(images) / dt)
