"""Where PD's gradient comes from at the start of the first stage (16 -> 8 steps), per student
parameterisation: the gradient norm of the loss on the top step's samples (t = 999) against the
norm of the loss on all other steps' samples together, for a student initialised from the
teacher (eps: a copy; x, v: a copy with the output layer refitted, as the stage does).

    python benchmarks/pd_grad_share.py [--per-step 16] [--data results/data/train.npz]

Prints one JSON object (docs/results.md quotes it)."""
import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
import torch

from diffcomp.distill.reparam import refit_output
from diffcomp.distill.targets import pd_loss, pd_target, stage_times
from diffcomp.io import load_npz
from diffcomp.models.parameterization import coefficients, to_eps, to_x0
from diffcomp.models.sampler import unet_fn
from diffcomp.models.pipeline import load_pipeline

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="resources/models/fmnist-ddpm")
ap.add_argument("--data", default="results/data/train.npz")
ap.add_argument("--student-steps", type=int, default=8)
ap.add_argument("--per-step", type=int, default=16)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)
pipe = load_pipeline(args.model)
teacher = pipe.unet.eval().requires_grad_(False)
ac = pipe.alphas_cumprod
T, N = int(ac.shape[0]), args.student_steps
images = torch.from_numpy(load_npz(args.data, {"images": "uint8"})["images"]).float().div(127.5).sub(1)
g = torch.Generator().manual_seed(0)
k = torch.arange(1, N + 1).repeat_interleave(args.per_step)
x0 = images[torch.randint(0, len(images), (len(k),), generator=g)]
t, t_mid, t_end = stage_times(T, N, k)
a, s = coefficients(ac, t)
z = (a * x0.double() + s * torch.randn(x0.shape, generator=g).double()).float()
target = pd_target(unet_fn(teacher), z, t, t_mid, t_end, ac)
out = {}
for kind in ("eps", "x", "v"):
    student = copy.deepcopy(teacher)
    refit = None
    if kind != "eps":
        refit = refit_output(student, unet_fn(teacher), z, t, ac, kind)
    student.requires_grad_(True)
    norms = {}
    for name, sel in (("top", k == N), ("rest", k != N)):
        student.zero_grad()
        o = student(z[sel], t[sel]).sample
        aa, ss = a[sel], s[sel]
        x0_s = None if kind == "eps" else to_x0(o, z[sel], aa, ss, kind)
        loss, _ = pd_loss(to_eps(o, z[sel], aa, ss, kind), z[sel], target[sel], aa, ss, x0_s)
        (loss * sel.sum() / len(k)).backward()  # each part's share of the batch mean
        norms[name] = float(torch.sqrt(sum(p.grad.pow(2).sum() for p in student.parameters() if p.grad is not None)))
    out[kind] = {"grad_norm_top_step": norms["top"], "grad_norm_other_steps": norms["rest"],
                 "top_share": norms["top"] / (norms["top"] + norms["rest"]),
                 "refit_rel_err": None if refit is None else [refit["rel_err_before"], refit["rel_err_after"]]}
print(json.dumps(out, indent=1))
