"""What MPQ-DM's two parts do on the default model, without training it (CPU, a few minutes):

* OMQ: per bit width, how many layers the search gives mixed widths (k > 0), and the output MSE
  of one group of mixed channels (k = g) relative to none (k = 0), per layer;
* TRD: at the start of QAT (ranges set, LoRA added, OMQ off), the gradient of the MSE term and
  of the TRD term on the LoRA parameters, over one window of two sampling steps: their norms and
  the cosine between them.

    python benchmarks/mpqdm_probe.py --trajectories results/calib/trajectories.safetensors

Prints one JSON object (docs/results.md quotes it).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
import torch

from diffcomp.calib.trajectories import Trajectories
from diffcomp.methods.mpqdm import MPQDMParams, build
from diffcomp.methods.mpqdm.trd import TRD
from diffcomp.models.pipeline import load_pipeline
from diffcomp.quant.lora_qat import add_lora, param_groups
from diffcomp.variant import BitSetting

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="resources/models/fmnist-ddpm")
ap.add_argument("--trajectories", default="results/calib/trajectories.safetensors")
ap.add_argument("--bits", default="w4a4,w3a4,w2a4")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--w-init", default="mse", help="weight range init of the OMQ search: mse (ours) or max "
                "(the released code searches with min-max quantizers)")
ap.add_argument("--omq-only", action="store_true")
args = ap.parse_args()
torch.set_num_threads(args.threads)
fp = load_pipeline(args.model, device="cpu").unet.eval()
traj = Trajectories.load(args.trajectories)
out = {"omq": {}, "trd": {}}

for b in args.bits.split(","):
    bits = BitSetting.parse(b)
    _, _, info = build(fp, traj, bits, MPQDMParams(w_init=args.w_init), "cpu")
    layers = info["omq"]
    ratio = sorted(v["mse_by_k"][sorted(v["mse_by_k"])[1]] / v["mse_by_k"][0]
                   for v in layers.values() if len(v["mse_by_k"]) > 1 and v["mse_by_k"][0] > 0)
    out["omq"][b] = {"layers": len(layers), "mixed": sum(v["k"] > 0 for v in layers.values()),
                     "mse_one_group_over_none": {"min": ratio[0], "median": ratio[len(ratio) // 2], "max": ratio[-1]}}

for b in [] if args.omq_only else args.bits.split(","):
    bits = BitSetting.parse(b)
    p = MPQDMParams(omq=False)
    model, _, _ = build(fp, traj, bits, p, "cpu")
    add_lora(model, p)
    lora = [q for g in param_groups(model, p) if g.name.startswith("lora:") for q in g.params]
    model.requires_grad_(False)
    for q in lora:
        q.requires_grad_(True)
    term = TRD(p.trd_weight, p.trd_window)
    term.attach(model, fp)
    term.begin()
    idx = torch.arange(p.batch_size)
    grads = {"mse": [torch.zeros_like(q) for q in lora], "trd": [torch.zeros_like(q) for q in lora]}
    losses = {"mse": 0.0, "trd": 0.0}
    for s in range(p.trd_window):  # the first window: steps t = 900, 800
        x = traj.xs[s, idx]
        t = traj.ts[s].expand(len(idx))
        with torch.no_grad():
            ref = fp(x, t).sample
        mse = (model(x, t).sample - ref).pow(2).sum()
        extra = term(s)
        for name, loss in (("mse", mse), ("trd", extra)):
            if loss is None:
                continue
            g = torch.autograd.grad(loss, lora, retain_graph=True, allow_unused=True)
            for acc, gi in zip(grads[name], g):
                if gi is not None:
                    acc += gi
            losses[name] += float(loss.detach())
    term.detach_hooks()
    flat = {k: torch.cat([g.flatten() for g in v]) for k, v in grads.items()}
    out["trd"][b] = {"loss_mse": losses["mse"], "loss_trd": losses["trd"],
                     "grad_norm_mse": float(flat["mse"].norm()), "grad_norm_trd": float(flat["trd"].norm()),
                     "cosine": float(torch.nn.functional.cosine_similarity(flat["mse"], flat["trd"], dim=0))}
print(json.dumps(out, indent=1))
