"""How much TF32 arithmetic in an epsilon teacher changes progressive distillation's target (GPU).

PD regresses the student on the x0 target x~ of two teacher DDIM steps (``distill.targets.pd_target``);
an epsilon teacher's x0 estimate (z - s eps) / a magnifies the network's error by s / a, up to ~157
at t = 999. This draws training images, noise and every student step k of an N-step student, computes
x~ with the teacher in exact fp32 (TF32 off) and in TF32, and reports per step the error the TF32
target adds under the loss's own weighting (max(1, SNR) * MSE in x0, ``distill.targets.pd_loss``)
beside the weighted MSE between the fp32 target and the teacher's own one-step x0 estimate (the
scale of what the student learns). Prints one JSON line per N and writes them to ``--out``.

    python benchmarks/tf32_target.py [--model resources/models/fmnist-ddpm]
        [--data results/data/train.npz] [--batch 512] [--out tf32_target.json]
"""

from __future__ import annotations

import argparse
import json

import torch

from diffcomp.data.fmnist import to_model_range
from diffcomp.distill.targets import pd_target, stage_times
from diffcomp.io import load_npz
from diffcomp.models.parameterization import coefficients, to_x0
from diffcomp.models.pipeline import load_pipeline
from diffcomp.models.sampler import set_precision, unet_fn


def weighted_mse(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> float:
    """mean over the batch of max(1, SNR) * MSE in x0 (the PD loss's weighting)."""
    w = torch.clamp((a / s.clamp(min=1e-12)).pow(2), min=1.0).reshape(-1)
    return float((w * (x.double() - y.double()).pow(2).flatten(1).mean(1)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resources/models/fmnist-ddpm")
    p.add_argument("--data", default="results/data/train.npz")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--out", default="tf32_target.json")
    p.add_argument("--device", default="cuda", help="cpu only as a smoke run (TF32 exists only on CUDA: errors 0)")
    args = p.parse_args()
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("tf32_target: needs CUDA (TF32 exists only there)")
    pipe = load_pipeline(args.model)
    teacher = pipe.unet.to(dev).eval().requires_grad_(False)
    ac = pipe.alphas_cumprod.to(dev)
    fn = unet_fn(teacher, None, "epsilon", ac)
    images = load_npz(args.data, {"images": "uint8"})["images"]
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(images), (args.batch,), generator=g)
    x = to_model_range(images[idx.numpy()]).to(dev)
    noise = torch.randn(x.shape, generator=g).to(dev)
    rows = []
    for n in (8, 4, 2, 1):
        row = {"student_steps": n, "steps": []}
        for k in range(n, 0, -1):
            kk = torch.full((args.batch,), k)
            t, t_mid, t_end = (v.to(dev) for v in stage_times(len(ac), n, kk))
            a, s = coefficients(ac, t)
            z = (a * x + s * noise).float()
            out = {}
            for prec in ("fp32", "tf32"):
                set_precision(prec, dev)
                with torch.no_grad():
                    out[prec] = pd_target(fn, z, t, t_mid, t_end, ac)
                    if prec == "fp32":
                        one_step = to_x0(fn(z, t).double(), z.double(), a, s, "eps")
            set_precision("fp32", dev)
            row["steps"].append({
                "k": k, "t": int(t[0]),
                "tf32_error": weighted_mse(out["tf32"], out["fp32"], a, s),
                "target_vs_one_step": weighted_mse(out["fp32"], one_step, a, s),
                "max_abs_x_diff": float((out["tf32"] - out["fp32"]).abs().max()),
            })
        err = sum(r["tf32_error"] for r in row["steps"]) / n
        sig = sum(r["target_vs_one_step"] for r in row["steps"]) / n
        row.update(mean_tf32_error=err, mean_target_vs_one_step=sig, ratio=err / sig)
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(args.out, "w") as f:
        json.dump({"device": torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu", "batch": args.batch, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
