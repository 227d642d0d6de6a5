"""The first PD stage (16 -> 8 steps) of the default's budget for one student parameterisation,
then the 8-step student's FID on two seed sets of 500 samples (CPU, one thread, minutes):

    python benchmarks/pd_first_stage.py eps|x|v [--data results/data/train.npz]
        [--reference results/reference/fmnist-classifier-test.npz]

Prints one JSON line (docs/results.md quotes it)."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
import numpy as np, torch
torch.set_num_threads(1)
from diffcomp.distill.stage import distill_stage
from diffcomp.distill.methods.pd import PDParams
from diffcomp.models.pipeline import load_pipeline
from diffcomp.models.sampler import generate, unet_fn
from diffcomp.models.config import SamplerConfig
from diffcomp.io import load_npz
from diffcomp.data.fmnist import to_uint8
from diffcomp.metrics.fidelity import compare, make_extractor
ap = argparse.ArgumentParser()
ap.add_argument("kind", choices=["eps", "x", "v"])
ap.add_argument("--model", default="resources/models/fmnist-ddpm")
ap.add_argument("--classifier", default="resources/models/fmnist-classifier")
ap.add_argument("--data", default="results/data/train.npz")
ap.add_argument("--reference", default="results/reference/fmnist-classifier-test.npz")
args = ap.parse_args()
kind = args.kind
pipe = load_pipeline(args.model)
imgs = load_npz(args.data, {"images": "uint8"})["images"]
p = PDParams(iters=60, low_step_factor=2, batch_size=32, lr=1e-5, parameterization=kind)
t0 = time.time()
student, stats = distill_stage(pipe.unet, imgs, pipe.alphas_cumprod, 8, "pd", p)
ds = time.time() - t0
ref = dict(np.load(args.reference))
ext = make_extractor("fmnist-classifier", args.classifier)
cfg = SamplerConfig(name="ddim", steps=8, eta=0.0, skip="trailing", clip_x0=False)
pt = {"eps": "epsilon", "v": "v_prediction", "x": "sample"}[kind]
out = {"kind": kind, "distill_s": round(ds, 1), "refit": stats["refit_output"], "final": stats["final_losses"]}
for seed in (0, 100000):
    im = np.concatenate([to_uint8(generate(unet_fn(student, None, pt, pipe.alphas_cumprod), list(range(s, s + 250)), (1, 32, 32), pipe.alphas_cumprod, cfg, seed, "cpu")) for s in (0, 250)])
    out[f"fid_s{seed}"] = round(compare(im, ref, ext, "cpu")["fid"], 2)
print(json.dumps(out))
