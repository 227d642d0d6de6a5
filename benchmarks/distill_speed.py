"""Distillation throughput of the default model: PD vs RDD iterations per second, CPU or CUDA.

    python benchmarks/distill_speed.py [--device cuda] [--batch 128] [--iters 30] [--precision tf32] [--compile default]

Each iteration is two teacher forwards (the PD target), one student forward and backward, and
for RDD the frozen feature network on both images plus the relational losses. Measured on 2 CPU
cores (with the metrics' VGG classifier as RDD's network, before the default moved to the
smaller fmnist-resnet; not remeasured since), batch 32, 4-step student: PD 1.66 it/s, RDD 1.11 it/s (1.49x; the default's stages of
60-120 iterations take 45-125 s). On an H200 (batch 128, fp32 with TF32 off, eager, two chains
sharing the GPU; from the distill jobs' logs): ~13 it/s each.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from diffcomp.distill.methods.pd import PDParams  # noqa: E402
from diffcomp.distill.methods.rdd import RDDParams, load_features  # noqa: E402
from diffcomp.distill.stage import distill_stage  # noqa: E402
from diffcomp.models.pipeline import load_pipeline  # noqa: E402
from diffcomp.models.sampler import set_precision  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--steps", type=int, default=4, help="the student's steps")
    ap.add_argument("--compile", default=None, help="a torch.compile mode (default: eager)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--profile", action="store_true", help="print the timed stage's top operators (torch.profiler)")
    args = ap.parse_args()
    autocast = set_precision(args.precision, args.device)
    pipe = load_pipeline(ROOT / "resources/models/fmnist-ddpm")
    images = np.random.default_rng(0).integers(0, 256, (1024, 1, 32, 32), dtype=np.uint8)
    feats = load_features("fmnist-resnet", ROOT / "resources/models/fmnist-resnet")
    # the training loop alone: no start/end diagnostics in the timed stage
    common = dict(iters=args.iters, low_step_factor=1, batch_size=args.batch, probe_per_step=0, match_noises=0)
    rates = {}
    for name, method, params, f in [("PD", "pd", PDParams(**common), None), ("RDD", "rdd", RDDParams(**common), feats)]:
        warm = dict(common, iters=2)
        distill_stage(pipe.unet, images, pipe.alphas_cumprod, args.steps, method, type(params)(**warm), features=f,
                      device=args.device, compile=args.compile, autocast=autocast)  # warm-up (and compilation)
        cuda = args.device.startswith("cuda")
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=acts) if args.profile else contextlib.nullcontext() as prof:
            t0 = time.time()
            _, stats = distill_stage(pipe.unet, images, pipe.alphas_cumprod, args.steps, method, params, features=f,
                                     device=args.device, compile=args.compile, autocast=autocast)
            rates[name] = stats["iterations"] / (time.time() - t0)
        print(f"{name}: {rates[name]:.2f} it/s at batch {args.batch} on {args.device}", flush=True)
        if prof is not None:
            key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=key, row_limit=20), flush=True)
    print(f"RDD / PD time per iteration: {rates['PD'] / rates['RDD']:.2f}x")


if __name__ == "__main__":
    main()
