"""Where PD's first stage (16 -> 8 steps of the epsilon teacher) starts, step by step: the stage's
loss at every student step k = 1..N on a fixed probe, for

* ``eps``: an epsilon student, i.e. the teacher itself (one of its DDIM steps standing in for two),
* ``v``: a v student after the stage's least-squares refit of the output layer (the GPU config's
  start),

and, with ``--iters N``, both again after the first N iterations of the stage's recipe (the given
``--stage-iters`` long, so the learning rate follows that stage's cosine; the run stops at N as a
job killed there would). The loss is the stage's own (max(MSE_x0, MSE_eps) per sample against the
PD target of the unclipped teacher), so the figures compare with the ``top_step`` / ``other_steps``
losses a stage records (``stats.diagnostics.gradient``); ``stage_probe`` repeats them on the
stage's own probe (8 inputs per step, its seed), ``per_step`` gives each step on a larger probe.

    python benchmarks/pd_start.py [--iters 0] [--stage-iters 10000] [--batch 128] [--lr 5e-5]
        [--per-step 128] [--kinds eps v] [--data results/data/train.npz] [--out pd_start.json]

CPU is enough for the start (a minute); iterations cost about a second each at batch 128 on two
cores. Prints and writes one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from diffcomp.data.fmnist import to_model_range
from diffcomp.distill.diagnostics import probe_batch
from diffcomp.distill.methods.pd import PDParams
from diffcomp.distill.reparam import refit_inputs, refit_output
from diffcomp.distill.stage import _student_loss, distill_stage
from diffcomp.distill.targets import PDObjective, pd_target
from diffcomp.io import load_npz
from diffcomp.models.parameterization import coefficients
from diffcomp.models.pipeline import load_pipeline
from diffcomp.models.sampler import unet_fn

STEPS = 8


@torch.no_grad()
def step_losses(student, kind: str, teacher_eps, probe, ac: torch.Tensor, chunk: int = 64) -> dict[int, float]:
    """The stage's loss of ``student`` (predicting ``kind``) at each student step on ``probe``."""
    z, t, t_mid, t_end, k = probe
    out: dict[int, float] = {}
    for step in range(1, STEPS + 1):
        idx = (k == step).nonzero().flatten()
        parts = []
        for i in range(0, len(idx), chunk):
            j = idx[i:i + chunk]
            a, s = coefficients(ac, t[j])
            target = pd_target(teacher_eps, z[j], t[j], t_mid[j], t_end[j], ac, False)
            loss, _ = _student_loss(student, kind, PDObjective(), z[j], t[j], target, a, s)
            parts.append(float(loss) * len(j))
        out[step] = sum(parts) / len(idx)
    return out


def summary(losses: dict[int, float]) -> dict:
    others = [v for s, v in losses.items() if s != STEPS]
    return {"per_step": {str(s): round(v, 6) for s, v in losses.items()}, "top": round(losses[STEPS], 6),
            "others_mean": round(float(np.mean(others)), 6)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="resources/models/fmnist-ddpm")
    p.add_argument("--data", default="results/data/train.npz")
    p.add_argument("--kinds", nargs="+", default=["eps", "v"], choices=["eps", "x", "v"])
    p.add_argument("--per-step", type=int, default=128, help="probe inputs per student step")
    p.add_argument("--iters", type=int, default=0, help="iterations to train each student (0: the start only)")
    p.add_argument("--stage-iters", type=int, default=10_000, help="the stage the iterations are the start of")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--probe-every", type=int, default=0, help="the stage's own gradient probe every so many iterations")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="pd_start.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.teacher)
    ac = pipe.alphas_cumprod.double()
    images = load_npz(args.data, {"images": "uint8"})["images"]
    data = to_model_range(images)
    teacher = pipe.unet.eval().requires_grad_(False)
    teacher_eps = unet_fn(teacher, None, "eps", ac)
    big = probe_batch(data, ac, STEPS, args.per_step, seed=12345)
    own = probe_batch(data, ac, STEPS, 8, seed=PDParams().seed + 2)  # the stage's own probe
    result: dict = {"teacher": args.teacher, "student_steps": STEPS, "probe_per_step": args.per_step,
                    "recipe": {"stage_iters": args.stage_iters, "batch": args.batch, "lr": args.lr,
                               "iters_run": args.iters}, "students": {}}
    for kind in args.kinds:
        params = PDParams(iters=args.stage_iters, batch_size=args.batch, lr=args.lr, parameterization=kind,
                          probe_every=args.probe_every, match_noises=0)
        row: dict = {}
        student = copy.deepcopy(teacher)
        if kind != "eps":  # the stage's refit, on the stage's own refit inputs
            zr, tr = refit_inputs(data, ac, STEPS, params.refit_samples, params.seed + 1)
            row["refit"] = refit_output(student, teacher_eps, zr, tr, ac, kind)
        row["start"] = {**summary(step_losses(student, kind, teacher_eps, big, ac)),
                        "stage_probe": summary(step_losses(student, kind, teacher_eps, own, ac))}
        if args.iters:
            t0 = time.time()
            trained, stats = distill_stage(teacher, images, pipe.alphas_cumprod, STEPS, "pd", params,
                                           stop_at=args.iters)
            row["trained"] = {**summary(step_losses(trained, kind, teacher_eps, big, ac)),
                              "stage_probe": summary(step_losses(trained, kind, teacher_eps, own, ac)),
                              "seconds": round(time.time() - t0, 1),
                              "gradient": stats["diagnostics"]["gradient"]}
        result["students"][kind] = row
        print(kind, json.dumps(row["start"]), flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
