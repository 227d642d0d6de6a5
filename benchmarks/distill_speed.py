"""Distillation throughput of the default model: PD vs RDD iterations per second, CPU or CUDA.

    python benchmarks/distill_speed.py [--device cuda] [--batch 128] [--iters 30 130] [--precision tf32]
        [--compile default] [--engine graph]

The rate is (N2 - N1) / (t2 - t1) over two stages of N1 and N2 iterations (``--iters N1 N2``)
after a 2-iteration stage that compiles, so the start-up of a stage (copying the student, the
graph capture) cancels out.

Measured on one H200 (batch 128, 4-step student, torch 2.11; ``--iters 20 80`` eager, ``100 400``
graph): fp32 eager PD 15.4 / RDD 13.7 it/s; fp32 graph 36.7 / 29.5 (2.4x / 2.2x); tf32 graph
54.9 / 41.3; tf32 graph with ``--compile default`` about 68 / 52.6; fp32 graph with compile about
35 / 30.1 (no gain: exact fp32 convolutions bound the step). Three fp32 graph stages sharing the
GPU ran at 8.9 it/s each.

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
    ap.add_argument("--iters", type=int, nargs=2, default=[10, 40], metavar=("N1", "N2"))
    ap.add_argument("--engine", default="auto", choices=["auto", "eager", "graph"])
    ap.add_argument("--steps", type=int, default=4, help="the student's steps")
    ap.add_argument("--compile", default=None, help="a torch.compile mode (default: eager)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--profile", action="store_true", help="print the timed stage's top operators (torch.profiler)")
    args = ap.parse_args()
    autocast = set_precision(args.precision, args.device)
    pipe = load_pipeline(ROOT / "resources/models/fmnist-ddpm")
    images = np.random.default_rng(0).integers(0, 256, (1024, 1, 32, 32), dtype=np.uint8)
    feats = load_features("fmnist-resnet", ROOT / "resources/models/fmnist-resnet")
    # the training loop alone: no start/end diagnostics in the timed stages
    common = dict(low_step_factor=1, batch_size=args.batch, probe_per_step=0, match_noises=0)
    rates = {}
    cuda = args.device.startswith("cuda")
    for name, method, ptype, f in [("PD", "pd", PDParams, None), ("RDD", "rdd", RDDParams, feats)]:
        seconds = []
        # a first short stage compiles (torch.compile caches its kernels for the later stages)
        distill_stage(pipe.unet, images, pipe.alphas_cumprod, args.steps, method, ptype(iters=2, **common), features=f,
                      device=args.device, compile=args.compile, autocast=autocast, engine=args.engine)
        for n in args.iters:
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
            prof_on = args.profile and n == args.iters[-1]
            with torch.profiler.profile(activities=acts) if prof_on else contextlib.nullcontext() as prof:
                t0 = time.time()
                _, stats = distill_stage(pipe.unet, images, pipe.alphas_cumprod, args.steps, method,
                                         ptype(iters=n, **common), features=f, device=args.device,
                                         compile=args.compile, autocast=autocast, engine=args.engine)
                seconds.append(stats["seconds"])
            print(f"{name}: {n} iterations, loop {stats['seconds']:.2f} s, call {time.time() - t0:.2f} s", flush=True)
            if prof is not None:
                key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
                print(prof.key_averages().table(sort_by=key, row_limit=20), flush=True)
        rates[name] = (args.iters[1] - args.iters[0]) / (seconds[1] - seconds[0])
        print(f"{name}: {rates[name]:.2f} it/s at batch {args.batch} on {args.device} (engine {args.engine}, "
              f"precision {args.precision}, compile {args.compile})", flush=True)
    print(f"RDD / PD time per iteration: {rates['PD'] / rates['RDD']:.2f}x")


if __name__ == "__main__":
    main()
