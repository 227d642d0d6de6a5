"""Sampling throughput of the default model: FP vs fake-quantized (W4A8, linear), CPU or CUDA.

    python benchmarks/sampling_speed.py [--device cuda] [--batch 250] [--steps 10]

Prints images per second for each variant; the CPU target is that fake quantization costs at
most 1.5x the FP time (measured on 2 cores: FP ~14 img/s at 10 DDIM steps, W4A8 ~1.3x slower).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from diffcomp.calib.capture import capture  # noqa: E402
from diffcomp.calib.selectors import Calibration  # noqa: E402
from diffcomp.calib.selectors.uniform import UniformParams  # noqa: E402
from diffcomp.methods.linear import LinearParams, recipe  # noqa: E402
from diffcomp.models.config import SamplerConfig  # noqa: E402
from diffcomp.variant import BitSetting  # noqa: E402
from diffcomp.models.pipeline import load_pipeline  # noqa: E402
from diffcomp.models.sampler import generate, unet_fn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--bf16", action="store_true")
    args = ap.parse_args()
    pipe = load_pipeline(ROOT / "resources/models/fmnist-ddpm", device=args.device)
    cfg = SamplerConfig(steps=args.steps, skip="uniform", clip_x0=True)
    traj = capture(unet_fn(pipe.unet), 16, (1, 32, 32), pipe.alphas_cumprod, cfg, 0, 16, args.device)
    q, _ = recipe(pipe.unet, traj, BitSetting(4, 8), LinearParams(Calibration("uniform", UniformParams(args.steps, 16))), args.device)
    dtype = torch.bfloat16 if args.bf16 else None
    for name, model in (("fp", pipe.unet), ("linear-w4a8", q)):
        fn = unet_fn(model, dtype)
        generate(fn, range(8), (1, 32, 32), pipe.alphas_cumprod, cfg, 0, args.device)  # warm-up
        t0 = time.perf_counter()
        generate(fn, range(args.batch), (1, 32, 32), pipe.alphas_cumprod, cfg, 0, args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"{name:12s} {args.batch / dt:8.1f} img/s  ({args.steps} DDIM steps, batch {args.batch}, {args.device})")


if __name__ == "__main__":
    main()
