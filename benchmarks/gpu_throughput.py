"""Sampling throughput of every path on one GPU, in one run: a plain bf16 compiled DDIM loop (the
anchor), the FP model and every registered method's fake-quantized model through the workflow's
own sampler (``precision`` x ``compile``), with img/s, peak memory and the ratios.

    python benchmarks/gpu_throughput.py --out throughput.json            # CIFAR-10 DDPM architecture
    python benchmarks/gpu_throughput.py --arch tiny --device cpu --batch 8 --steps 4 --eager-steps 2 \
        --compile none                                                   # a CPU smoke run

The model is the CIFAR-10 DDPM architecture (35.7M parameters, built from its diffusers config,
random weights, no download). Each method is quantized by its own recipe at its contract-test
settings (few iterations: the inference graph, which is what is timed, is the paper-budget one's).
Throughput is measured on ``--batches`` batches after a warm-up batch (which compiles); the
fp32 eager paths run ``--eager-steps`` steps per batch and are reported per 100 steps like the
others (the per-step cost does not depend on the step count). Results are appended to ``--out``
as they come, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from diffcomp.calib.capture import capture  # noqa: E402
from diffcomp.methods import METHODS  # noqa: E402
from diffcomp.models.config import SamplerConfig  # noqa: E402
from diffcomp.models.ddpm_checkpoint import OriginalArch  # noqa: E402
from diffcomp.models.sampler import compiled, generate, set_precision, unet_fn  # noqa: E402
from diffcomp.models.unet import build_scheduler  # noqa: E402
from diffcomp.quant.inference import frozen  # noqa: E402
from diffcomp.typedconfig import build_dataclass  # noqa: E402
from diffcomp.variant import BitSetting  # noqa: E402

ARCHS = {
    "cifar10": OriginalArch(3, 3, 128, (1, 2, 2, 2), 2, (1,)),  # Ho et al.'s CIFAR-10 DDPM, 35.7M
    "tiny": OriginalArch(1, 1, 32, (1, 2), 1, (1,)),
}
W4A4 = ("efficientdm", "mpqdm")  # the methods whose papers report W4A4


def build_unet(arch: str) -> torch.nn.Module:
    from diffusers import UNet2DModel

    cfg = ARCHS[arch].unet_config(32)
    if arch == "tiny":
        cfg["norm_num_groups"] = 8
    torch.manual_seed(0)
    unet = UNet2DModel(**cfg).eval()
    with torch.no_grad():  # diffusers zero-initialises some output convs; give them a range
        for p in unet.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return unet


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop(unet, batch: int, steps: int, device: str, compile_mode):
    """The anchor: diffusers' DDIM scheduler over a bf16 copy of the UNet, compiled."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    model = compiled(copy.deepcopy(unet).to(device, torch.bfloat16), compile_mode)
    c = unet.config

    @torch.no_grad()
    def run(n_steps: int) -> None:
        sched.set_timesteps(n_steps)
        x = torch.randn(batch, c.in_channels, c.sample_size, c.sample_size, device=device, dtype=torch.bfloat16)
        for t in sched.timesteps:
            eps = model(x, t.to(device)).sample
            x = sched.step(eps, t, x).prev_sample
    return run


def ours(unet, batch: int, device: str, precision: str, compile_mode, alphas):
    """The workflow's sampler (``models.sampler.generate``) as the sample verb runs it."""
    autocast = set_precision(precision, device)
    fn = unet_fn(compiled(unet, compile_mode), autocast)
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)

    def run(n_steps: int) -> None:
        cfg = SamplerConfig(steps=n_steps, skip="uniform")
        generate(fn, range(batch), shape, alphas, cfg, 0, device)
    return run


def measure(run, steps: int, batches: int, device: str, batch: int) -> dict:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run(steps)  # warm-up (compiles)
    sync(device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(batches):
        run(steps)
    sync(device)
    dt = (time.perf_counter() - t0) / batches
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {"img_s_per_100_steps": batch / dt * steps / 100, "s_per_batch": dt, "steps_timed": steps,
            "warmup_s": warm, "peak_gib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="cifar10")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eager-steps", type=int, default=10, help="steps per batch of the fp32 eager paths")
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--compile", default="default", help="torch.compile mode, or 'none'")
    ap.add_argument("--methods", default="all", help="comma-separated method names, or 'all'")
    ap.add_argument("--w4a4", action="store_true", help="also W4A4 for " + ", ".join(W4A4))
    ap.add_argument("--no-anchor", action="store_true", help="skip the plain loop (measured in an earlier run)")
    ap.add_argument("--no-method-eager", action="store_true", help="skip the quantized models' fp32 eager paths")
    ap.add_argument("--out", default="gpu_throughput.json")
    args = ap.parse_args()
    mode = None if args.compile == "none" else args.compile
    dev = args.device
    unet = build_unet(args.arch).to(dev)
    alphas = build_scheduler().alphas_cumprod
    results: dict = {"arch": args.arch, "batch": args.batch, "steps": args.steps, "compile": mode,
                     "device": torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu",
                     "torch": torch.__version__, "paths": {}}

    def record(name: str, r: dict) -> None:
        results["paths"][name] = r
        print(f"{name:32s} {r['img_s_per_100_steps']:9.1f} img/s (100 steps)  warm-up {r['warmup_s']:6.1f} s"
              f"  peak {r['peak_gib'] if r['peak_gib'] is None else round(r['peak_gib'], 2)} GiB", flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))

    b = args.batch
    if not args.no_anchor:
        record("anchor: plain loop bf16 compiled", measure(plain_loop(unet, b, args.steps, dev, mode), args.steps, args.batches, dev, b))
    record("fp bf16 compiled", measure(ours(unet, b, dev, "bf16", mode, alphas), args.steps, args.batches, dev, b))
    record("fp fp32 eager", measure(ours(unet, b, dev, "fp32", None, alphas), args.eager_steps, 1, dev, b))
    traj = capture(unet_fn(unet), 8, (unet.config.in_channels, 32, 32), alphas,
                   SamplerConfig(steps=args.steps, skip="uniform"), seed=0, batch_size=8, device=dev)
    names = sorted(METHODS) if args.methods == "all" else args.methods.split(",")
    runs = [(n, BitSetting(4, 8)) for n in names] + [(n, BitSetting(4, 4)) for n in names if args.w4a4 and n in W4A4]
    for name, bits in runs:  # every method at W4A8 first, then W4A4
            entry = METHODS[name]
            params = build_dataclass(entry.params, entry.contract, name)
            t0 = time.perf_counter()
            q, *_ = entry.recipe(copy.deepcopy(unet), traj, bits, params, dev)
            q = q.to(dev).eval()
            built = time.perf_counter() - t0
            with frozen(q, torch.bfloat16):
                r = measure(ours(q, b, dev, "bf16", mode, alphas), args.steps, args.batches, dev, b)
            r["recipe_s"] = built
            record(f"{name} {bits.label} bf16 compiled", r)
            if not args.no_method_eager:
                with frozen(q):
                    record(f"{name} {bits.label} fp32 eager", measure(ours(q, b, dev, "fp32", None, alphas),
                                                                       args.eager_steps, 1, dev, b))
            del q
            if dev.startswith("cuda"):
                torch.cuda.empty_cache()
    p = results["paths"]
    fast, slow = (p[k]["img_s_per_100_steps"] for k in ("fp bf16 compiled", "fp fp32 eager"))
    ratios = {"fp bf16 compiled / fp fp32 eager": fast / slow}
    if "anchor: plain loop bf16 compiled" in p:
        ratios["fp bf16 compiled / anchor"] = fast / p["anchor: plain loop bf16 compiled"]["img_s_per_100_steps"]
    for k, v in p.items():
        if k.endswith("bf16 compiled") and not k.startswith(("fp ", "anchor")):
            ratios[f"{k} / fp bf16 compiled"] = v["img_s_per_100_steps"] / fast
            ratios[f"{k} / fp fp32 eager"] = v["img_s_per_100_steps"] / slow
    results["ratios"] = ratios
    Path(args.out).write_text(json.dumps(results, indent=1))
    for k, v in ratios.items():
        print(f"{k:60s} {v:6.2f}x")


if __name__ == "__main__":
    main()
