"""The LDM-4 ImageNet architecture (the class-conditional latent model of MPQ-DM's and EfficientDM's
ImageNet tables) with random weights, through the workflow's verbs on one GPU: guided calibration
trajectories, the Q-Diffusion quantize job (W4A8, a reduced iteration count, with the projection
to the paper's budget) and a 1,000-image guided sampling shard of the FP and the quantized model.
Prints and writes each step's wall time and peak GPU memory.

    python benchmarks/ldm_imagenet.py --out results/benchmarks/ldm_imagenet [--iters 20] [--tiny]
        [--fp-only]

``--fp-only`` skips the trajectories and the quantize job and samples only the FP shard (the
quantize job alone takes about 11 minutes on an H200 at 64 calibration trajectories).

The architecture is the checkpoint's (``--format ldm`` conversion of cin256-v2): UNet channels 192
x (1, 2, 3, 5), 2 resnets per level, one-head cross-attention transformers at the three lower
levels, context 512 from a 1,001-row class table; VQ-f4 autoencoder (channels 128 x (1, 2, 4),
8,192 codes, 3 latent channels); latents 64 x 64; the latent-diffusion schedule (0.0015 ->
0.0195). Sampling as the papers: DDIM 20 steps on the latent-diffusion grid, eta 0, guidance 3.
``--tiny`` shrinks every width for a CPU smoke run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from diffcomp.cli import main as verb
from diffcomp.models.ldm_checkpoint import LDMArch, ldm_scheduler
from diffcomp.models.pipeline import save_pipeline

CIN256 = LDMArch(in_channels=3, out_channels=3, model_channels=192, channel_mult=(1, 2, 3, 5), num_res_blocks=2,
                 attn_levels=(1, 2, 3), spatial_transformer=True, context_dim=512, scale_shift=False, class_rows=1001,
                 label_emb_rows=None, vae_kind="vq", vae_channels=128, vae_mult=(1, 2, 4), vae_res_blocks=2,
                 latent_channels=3, n_embed=8192)
TINY = LDMArch(in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
               attn_levels=(1,), spatial_transformer=True, context_dim=32, scale_shift=False, class_rows=11,
               label_emb_rows=None, vae_kind="vq", vae_channels=32, vae_mult=(1, 2), vae_res_blocks=1,
               latent_channels=3, n_embed=64)


def build(arch: LDMArch, latent: int, image: int, out: Path) -> dict:
    import diffusers

    from diffcomp.models.conditioning import accept_labels

    torch.manual_seed(0)
    uname, ucfg = arch.unet_config(latent, None, 1)
    vname, vcfg = arch.vae_config(image, 1.0)
    unet, vae = getattr(diffusers, uname)(**ucfg), getattr(diffusers, vname)(**vcfg)
    with torch.no_grad():
        unet.encoder_hid_proj.weight.normal_(0, 1.0)
        unet.encoder_hid_proj.bias.zero_()
    save_pipeline(accept_labels(unet), ldm_scheduler(1000, 0.0015, 0.0195), out, provenance={"what": "random weights"},
                  vae=vae)
    return {"unet_params_M": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
            "vae_params_M": round(sum(p.numel() for p in vae.parameters()) / 1e6, 1)}


def step(name: str, argv: list[str], results: dict, cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    rc = verb(argv)
    if cuda:
        torch.cuda.synchronize()
    results[name] = {"rc": rc, "wall_s": round(time.time() - t0, 1)}
    if cuda:
        results[name]["peak_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(name, json.dumps(results[name]), flush=True)
    if rc != 0:
        raise SystemExit(f"{name} failed ({rc})")


def quantize(model: Path, sampler: str, q: Path, args, results: dict, cuda: bool, device: str) -> None:
    """Guided calibration trajectories, then the Q-Diffusion W4A8 quantize job into ``q``."""
    traj = q.parent / "trajectories.safetensors"
    step("trajectories", ["trajectories", "--model", str(model), "--sampler", sampler, "--cfg",
                          json.dumps({"n_trajectories": args.trajectories, "batch_size": 64, "seed": 1000000}),
                          "--out", str(traj), "--device", device], results, cuda)
    params = {"calibration": {"selector": "uniform", "steps": 20, "per_step": args.trajectories},
              "iters_w": args.iters, "iters_a": args.iters, "a_init_samples": 64}
    step("quantize_qdiffusion_w4a8", ["quantize", "--model", str(model), "--trajectories", str(traj), "--method",
                                      "qdiffusion", "--bits", "w4a8", "--params", json.dumps(params), "--out", str(q),
                                      "--device", device], results, cuda)
    # the reconstruction's iterations dominate: at the paper's 20,000 per unit the job scales about linearly
    results["quantize_qdiffusion_w4a8"]["projected_paper_budget_h"] = round(
        results["quantize_qdiffusion_w4a8"]["wall_s"] * 20000 / args.iters / 3600, 1)


def run(args) -> dict:
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arch, latent, image = (TINY, 8, 16) if args.tiny else (CIN256, 64, 256)
    model = out / "model"
    results: dict = {"device": torch.cuda.get_device_name() if cuda else "cpu", "iters": args.iters,
                     **build(arch, latent, image, model)}
    sampler = json.dumps({"name": "ddim", "steps": 20, "eta": 0.0, "skip": "ldm", "guidance": 3.0})
    q = out / "qdiffusion-w4a8.safetensors"
    if not args.fp_only:
        quantize(model, sampler, q, args, results, cuda, device)
    compute = ["--precision", "bf16", "--compile", "default"] if cuda else []
    shards = [("sample_fp", [])] + ([] if args.fp_only else [("sample_qdiffusion_w4a8", ["--quantized", str(q)])])
    for name, extra in shards:
        step(name, ["sample", "--model", str(model), *extra, "--sampler", sampler, "--start", "0", "--end",
                    str(args.n_samples), "--out", str(out / f"{name}.npz"), "--device", device, *compute], results, cuda)
        results[name]["img_per_s"] = round(args.n_samples / results[name]["wall_s"], 1)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/benchmarks/ldm_imagenet")
    p.add_argument("--iters", type=int, default=20, help="reconstruction iterations per unit (paper: 20,000)")
    p.add_argument("--trajectories", type=int, default=64)
    p.add_argument("--n-samples", type=int, default=1000)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--fp-only", action="store_true", help="sample only the FP shard: no trajectories, no quantize job")
    print(json.dumps(run(p.parse_args()), indent=1))
    sys.exit(0)
