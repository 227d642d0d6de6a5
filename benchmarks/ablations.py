"""Ablations of a PTQ method on the default model, outside the workflow, many variants in one
process: each variant is quantized with the library's own recipe, optionally corrected, measured
on held-out FP trajectories (per-step eps error, gain, bias) and sampled with two seed sets
(FID in the default classifier's features, pixel shift vs the FP samples).

    python benchmarks/ablations.py benchmarks/ablations/qdiffusion_1.json --out results/ablations

A variant: {"name", "method" (a registered method, "fp", or "qd_custom": Q-Diffusion's recipe
with the knobs skip_w / only_w (regexes of units AdaRound skips / is limited to) and bc_after_w),
"bits", "params" (the method's, as in the config), "clip" (x0 clipping, default true),
"bc" (bias correction), "correction" ("none" | "channel" | "pixel"), "seeds"}. It needs the
trajectories (`--trajectories`, `--heldout`: the workflow's results/calib files of the default
config) and the reference statistics (`--reference`). docs/results.md reports the three lists
run on an H200 (exact fp32); on 2 CPU cores a variant takes 2 to 4 minutes.
"""
import argparse
import copy
import json, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
import numpy as np, torch
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
from diffcomp.calib.trajectories import Trajectories
from diffcomp.calib.capture import capture
from diffcomp.methods import METHODS
from diffcomp.models.pipeline import load_pipeline
from diffcomp.models.sampler import generate, unet_fn
from diffcomp.models.config import SamplerConfig
from diffcomp.typedconfig import build_dataclass
from diffcomp.variant import BitSetting
from diffcomp.diagnostics.eps import eps_stats, sample_stats
from diffcomp.data.fmnist import to_uint8
from diffcomp.metrics.fidelity import compare, make_extractor
from diffcomp.quant.correction import with_correction
from diffcomp.quant.bias_correction import correct_biases
import re as _re


def qd_custom(v, fp, traj, bits):
    """Q-Diffusion's recipe with experiment knobs: skip_w (regexes of units AdaRound skips),
    bc_after_w (bias correction between the phases)."""
    from diffcomp.methods.qdiffusion import QDiffusionParams, spec_for, phases, _INIT
    from diffcomp.quant.calibrate import init_activations, init_weights
    from diffcomp.quant.module import set_quant_state
    from diffcomp.quant.recon import execution_order, find_units, reconstruct
    from diffcomp.quant.wrap import quantize_model
    p = build_dataclass(QDiffusionParams, v.get("params", {}), v["name"])
    run = lambda m, b: m(*b).sample
    spec = spec_for(fp, bits, p)
    model = quantize_model(fp, spec).to(qdev)
    cal = p.calibration.select(traj, seed=p.seed)
    xs, ts = cal.xs, cal.ts  # the default model is unconditional
    bs = p.batch_size
    batches = [(xs[i:i + bs].to(qdev), ts[i:i + bs].to(qdev)) for i in range(0, len(xs), bs)]
    units = execution_order(model, find_units(model), lambda m: run(m, batches[0]))
    w_units = [u for u in units if not any(_re.search(r, u) for r in v.get("skip_w", []))]
    if v.get("only_w"):
        w_units = [u for u in units if any(_re.search(r, u) for r in v["only_w"])]
    weights, acts = phases(p)
    init_weights(model, _INIT[p.w_init])
    set_quant_state(model, True, False)
    reconstruct(model, fp, batches, run, weights, qdev, w_units)
    if v.get("bc_after_w"):
        correct_biases(model, fp, (xs.to(qdev), ts.to(qdev)), run)
    set_quant_state(model, True, True)
    gen = torch.Generator().manual_seed(p.seed)
    pick = torch.randperm(len(xs), generator=gen)[: p.a_init_samples]
    init_activations(model, [(xs[pick].to(qdev), ts[pick].to(qdev))], run, _INIT[p.a_init], sequential=p.a_init_quantized)
    reconstruct(model, fp, batches, run, acts, qdev, units)
    return model.eval(), spec

ap = argparse.ArgumentParser()
ap.add_argument("variants", help="JSON list of variants")
ap.add_argument("--out", default="results/ablations")
ap.add_argument("--trajectories", default="results/calib/trajectories.safetensors")
ap.add_argument("--heldout", default="results/calib/heldout.safetensors")
ap.add_argument("--reference", default="results/reference/fmnist-classifier-test.npz")
ap.add_argument("--model", default="resources/models/fmnist-ddpm")
ap.add_argument("--n", type=int, default=500, help="samples per seed set")
ap.add_argument("--quantize-device", default=None,
                help="where the recipes run (default: the sampling device); e.g. cpu beside GPU sampling, "
                     "so many one-thread processes can share one GPU for sampling only")
ap.add_argument("--threads", type=int, default=None, help="torch threads of this process")
args = ap.parse_args()
dev = "cuda" if torch.cuda.is_available() else "cpu"
qdev = args.quantize_device or dev
if args.threads:
    torch.set_num_threads(args.threads)
OUT = args.out
os.makedirs(OUT, exist_ok=True)
variants = json.load(open(args.variants))
N = args.n
pipe = load_pipeline(args.model, device=dev)
fp = pipe.unet
fp_q = fp if qdev == dev else copy.deepcopy(fp).to(qdev)
shape = (1, 32, 32)
traj = Trajectories.load(args.trajectories)
held = Trajectories.load(args.heldout)
ref = dict(np.load(args.reference))
ext = make_extractor("fmnist-classifier", os.path.join(os.path.dirname(args.model), "fmnist-classifier"))
fp_cache = {}


def samples(model, seed, clip):
    cfg = SamplerConfig(name="ddim", steps=10, eta=0.0, skip="uniform", clip_x0=clip)
    fn = unet_fn(model)
    return np.concatenate([to_uint8(generate(fn, list(range(s, min(s + 500, N))), shape, pipe.alphas_cumprod, cfg, seed, dev))
                           for s in range(0, N, 500)])


for v in variants:
    t0 = time.time()
    clip = v.get("clip", True)
    if v["method"] == "fp":
        model = fp
    else:
        if v["method"] == "qd_custom":
            model, spec = qd_custom(v, fp_q, traj, BitSetting.parse(v["bits"]))
        else:
            entry = METHODS[v["method"]]
            params = build_dataclass(entry.params, v.get("params", {}), v["name"])
            model, spec, *_ = entry.recipe(fp_q, traj, BitSetting.parse(v["bits"]), params, device=qdev)
        if v.get("bc"):
            bcx, bct = traj.xs.flatten(0, 1), traj.ts.repeat_interleave(traj.xs.shape[1])
            correct_biases(model, fp_q, (bcx.to(qdev), bct.to(qdev)), lambda m, b: m(*b).sample)
        if v.get("correction", "none") != "none":
            model, spec = with_correction(model, fp_q, spec, traj, per_pixel=v["correction"] == "pixel")
    model = model.to(dev).eval()
    qs = time.time() - t0
    steps = []
    with torch.no_grad():
        for s in range(held.xs.shape[0]):
            x = held.xs[s].to(dev); t = torch.full((x.shape[0],), int(held.ts[s]), device=dev)
            steps.append({"t": int(held.ts[s]), **eps_stats(model(x, t).sample.float().cpu(), fp(x, t).sample.float().cpu())})
    rec = {**v, "quantize_s": round(qs, 1), "per_step": steps, "seeds": {}}
    for seed in v.get("seeds", [0, 100000]):
        key = (seed, clip)
        if key not in fp_cache:
            fp_cache[key] = samples(fp, seed, clip)
        imgs = fp_cache[key] if v["method"] == "fp" else samples(model, seed, clip)
        m = compare(imgs, ref, ext, dev)
        rec["seeds"][str(seed)] = {"fid": m["fid"], "sfid": m.get("sfid"), "is": m.get("is"), "kid": m.get("kid"),
                                   **sample_stats(imgs, fp_cache[key])}
    rec["seconds"] = round(time.time() - t0, 1)
    with open(f"{OUT}/results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    g = {d["t"]: d for d in steps}
    print(f"{v['name']:28s} " + " ".join(f"FID{s[:1]} {r['fid']:6.2f} sh {r['pixel_shift']:+.4f}" for s, r in rec["seeds"].items()),
          "| gain900/300 %.4f/%.4f bias900/300 %.4f/%.4f err900/300 %.4f/%.4f | %.0fs" % (
              g[900]["gain"], g[300]["gain"], g[900]["bias_rms"], g[300]["bias_rms"], g[900]["rel_err"], g[300]["rel_err"],
              rec["seconds"]), flush=True)
