"""The CIFAR-10 paper DAG on a GPU with stand-ins for what needs the internet, and the projection
of the full 50k table from the measured job times.

``prepare`` writes, under ``results/acceptance/``:

* a checkpoint of the CIFAR-10 DDPM architecture (ch 128, ch_mult 1,2,2,2, 2 blocks, attention
  at 16x16) with random weights, in the original key layout (the inverse of ``convert``), which
  the workflow fetches from a ``file://`` URL with its md5 and converts, as it would the paper's;
* random weights in torch-fidelity's inception-v3-compat format (``feature_net.weights_path``);
* an ADM-format reference batch (``mu``, ``sigma``, ``mu_s``, ``sigma_s`` and random images
  ``arr_0``) in place of the CIFAR-10 training set, which would need a download;
* ``cifar10-acceptance.yaml``: ``config/cifar10.yaml`` with those three, ``n_samples`` and
  ``shard_size`` given here, and the variants FP and Q-Diffusion W4A8 (its reconstruction
  shortened to ``--iters-w`` / ``--iters-a``; the projection scales it back).

``report`` reads the run's ``results/benchmarks/**.tsv`` and prints every job's wall time and the
projected time of config/cifar10.yaml's full table (6 variants, 50,000 samples each, Q-Diffusion's
20k + 5k iterations) on one GPU and on 8. The numbers the run produces are meaningless (random
weights); only the times are.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
OUT = Path("results/acceptance")
CONFIG = OUT / "cifar10-acceptance.yaml"
PAPER_ITERS = (20000, 5000)  # Q-Diffusion's AdaRound and LSQ iterations per block


def prepare(args) -> None:
    import torch
    from diffusers import UNet2DModel

    from diffcomp.metrics.inception import random_weights
    from diffcomp.models.ddpm_checkpoint import OriginalArch, to_original

    OUT.mkdir(parents=True, exist_ok=True)
    arch = OriginalArch(in_channels=3, out_channels=3, ch=args.ch, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
                        attn_levels=(1,))
    torch.manual_seed(0)
    unet = UNet2DModel(**arch.unet_config(32))
    ckpt = OUT / "stand-in-model-790000.ckpt"
    torch.save(to_original(unet.state_dict(), 4), ckpt)
    md5 = hashlib.md5(ckpt.read_bytes()).hexdigest()
    n_params = sum(p.numel() for p in unet.parameters())
    weights = OUT / "stand-in-inception.pth"
    random_weights(str(weights), seed=0)
    rng = np.random.default_rng(0)
    ref = OUT / "stand-in-reference.npz"
    np.savez(ref, arr_0=rng.integers(0, 256, (args.n_reference, 32, 32, 3), dtype=np.uint8),
             mu=np.zeros(2048), sigma=np.eye(2048), mu_s=np.zeros(2023), sigma_s=np.eye(2023))
    cfg = yaml.safe_load((REPO / "config" / "cifar10.yaml").read_text())
    cfg["name"] = "cifar10-acceptance"
    cfg["device"] = args.device
    cfg["model"]["checkpoint"].update(name="stand-in-ddpm-cifar10", url=ckpt.resolve().as_uri(), md5=md5)
    cfg["feature_net"]["weights_path"] = str(weights)
    cfg["sampler"]["steps"] = args.steps
    cfg["calibration"] = {"n_trajectories": args.trajectories, "batch_size": args.trajectories,
                          "heldout": args.trajectories}
    per_step = min(256, args.trajectories)
    calib = {"selector": "uniform", "steps": min(20, args.steps), "per_step": per_step}
    cfg["quantization"] = {"bits": [{"w": 4, "a": 8}], "methods": {
        "qdiffusion": {"calibration": calib, "iters_w": args.iters_w, "iters_a": args.iters_a}}}
    cfg["evaluation"].update(n_samples=args.n_samples, shard_size=args.shard_size, batch_size=args.batch_size,
                             reference=str(ref))
    for r in ("trajectories", "quantize", "sample", "reference", "evaluate"):
        cfg["resources"][r]["gpu"] = 1 if args.device != "cpu" else 0
    CONFIG.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (OUT / "prepare.json").write_text(json.dumps({"n_params": n_params, "ch": args.ch, "md5": md5,
                                                  "iters": [args.iters_w, args.iters_a], "steps": args.steps,
                                                  "n_samples": args.n_samples, "shard_size": args.shard_size,
                                                  "n_reference": args.n_reference}, indent=2))
    print(f"stand-in checkpoint {ckpt} ({n_params / 1e6:.1f}M parameters, md5 {md5}); config {CONFIG}")


def _seconds(tsv: Path) -> float:
    with tsv.open() as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["s"])


def job_times(root: Path = Path("results/benchmarks")) -> dict[str, float]:
    return {str(p.relative_to(root).with_suffix("")): _seconds(p) for p in sorted(root.rglob("*.tsv"))}


def project(times: dict[str, float], info: dict) -> dict:
    """Projected seconds of config/cifar10.yaml's table on 1 and on 8 GPUs from this run's jobs."""
    scale = 50_000 / info["n_samples"]
    steps_scale = 100 / info["steps"]
    shards = {v: sum(t for k, t in times.items() if k.startswith(f"sample/{v}/")) for v in ("fp", "qdiffusion-w4a8")}
    per_image = {v: t / info["n_samples"] * steps_scale for v, t in shards.items()}
    q = times.get("quantize/qdiffusion-w4a8", 0.0)
    q_full = q * sum(PAPER_ITERS) / max(1, sum(info["iters"]))
    lin = times.get("trajectories", 0.0)  # Linear Quant is not run: a calibration pass, about a trajectory capture
    ev = {v: times.get(f"evaluate/{v}", 0.0) * scale for v in shards}
    ref = times.get("reference_stats", 0.0) * 50_000 / info["n_reference"]
    traj = times.get("trajectories", 0.0) * steps_scale + times.get("heldout_trajectories", 0.0) * steps_scale
    diag = sum(t for k, t in times.items() if k.startswith("diagnose/")) / max(1, sum(
        1 for k in times if k.startswith("diagnose/")))
    # config/cifar10.yaml: fp; linear W8A8, W4A8; qdiffusion W8A8, W4A8; qdiffusion_nosplit W4A8.
    # Linear Quant is sampled as fast as Q-Diffusion's model (the same fake-quantized layers).
    quant = {"linear-w8a8": ("qdiffusion-w4a8", lin), "linear-w4a8": ("qdiffusion-w4a8", lin),
             "qdiffusion-w8a8": ("qdiffusion-w4a8", q_full), "qdiffusion-w4a8": ("qdiffusion-w4a8", q_full),
             "qdiffusion_nosplit-w4a8": ("qdiffusion-w4a8", q_full)}
    sample_full = {"fp": per_image["fp"] * 50_000, **{v: per_image[m] * 50_000 for v, (m, _) in quant.items()}}
    eval_full = {"fp": ev["fp"], **{v: ev[m] for v, (m, _) in quant.items()}}
    total = (traj + ref + sum(t for _, t in quant.values()) + sum(sample_full.values()) + sum(eval_full.values())
             + diag * len(quant))
    shard_full = {v: t / 10 for v, t in sample_full.items()}  # 10 shards of 5,000 per variant
    chain = traj + max(t for _, t in quant.values()) + max(shard_full.values()) * math.ceil(10 / 8) + max(eval_full.values())
    return {"one_gpu_s": total, "eight_gpu_s": max(total / 8, chain), "critical_path_s": chain,
            "parts_s": {"trajectories": traj, "reference_50k": ref, "quantize": {v: t for v, (_, t) in quant.items()},
                        "sample_50k": sample_full, "evaluate_50k": eval_full, "diagnose_each": diag}}


def report(args) -> None:
    info = json.loads((OUT / "prepare.json").read_text())
    times = job_times()
    print("job wall times (s), from results/benchmarks/:")
    for k, t in times.items():
        print(f"  {k:45s} {t:9.1f}")
    print(f"  {'sum':45s} {sum(times.values()):9.1f}")
    p = project(times, info)
    print(json.dumps(p, indent=2, default=lambda x: round(x, 1)))
    h = lambda s: f"{s / 3600:.1f} h"  # noqa: E731
    print(f"projected config/cifar10.yaml table1 (6 variants x 50,000 samples, Q-Diffusion {PAPER_ITERS[0]}+"
          f"{PAPER_ITERS[1]} iterations): {h(p['one_gpu_s'])} on 1 GPU, {h(p['eight_gpu_s'])} on 8 "
          f"(critical path {h(p['critical_path_s'])})")
    print(f"assumptions: sampling time per image-step as measured; Q-Diffusion's quantize job scaled by "
          f"{sum(PAPER_ITERS)}/{sum(info['iters'])} iterations (an upper bound: its fixed setup is scaled too); "
          "Linear Quant's quantize about one trajectory capture; evaluate and the reference scaled by image count; "
          "8 GPUs: the larger of the total / 8 and the longest chain of jobs")
    (OUT / "projection.json").write_text(json.dumps({"times": times, **p}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--ch", type=int, default=128, help="the CIFAR-10 DDPM's 128; tests use 32")
    p.add_argument("--n-samples", type=int, default=5000)
    p.add_argument("--shard-size", type=int, default=2500)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--trajectories", type=int, default=256)
    p.add_argument("--iters-w", type=int, default=400)
    p.add_argument("--iters-a", type=int, default=100)
    p.add_argument("--n-reference", type=int, default=5000)
    p.add_argument("--device", default="cuda")
    sub.add_parser("report")
    args = ap.parse_args()
    {"prepare": prepare, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
