"""FID of the default model's samples drawn by the exact fp32 path and by the GPU fast path (bf16
autocast + torch.compile), same seeds, two seed sets: FP and a quantized model, in one run.

    python benchmarks/precision_fid.py --trajectories results/calib/trajectories.safetensors \
        --reference results/reference/fmnist-classifier-test.npz --out precision_fid.json

The quantized model is Linear Quant W4A8 as the default config calibrates it (10 steps x 64
inputs of ``--trajectories``, the workflow's calibration file). Metrics in the shipped
classifier's features against ``--reference`` (the workflow's reference statistics).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from diffcomp.calib.trajectories import Trajectories  # noqa: E402
from diffcomp.data.fmnist import to_uint8  # noqa: E402
from diffcomp.methods import METHODS  # noqa: E402
from diffcomp.metrics.fidelity import compare, make_extractor  # noqa: E402
from diffcomp.models.config import SamplerConfig  # noqa: E402
from diffcomp.models.pipeline import load_pipeline  # noqa: E402
from diffcomp.models.sampler import compiled, generate, set_precision, unet_fn  # noqa: E402
from diffcomp.quant.inference import frozen  # noqa: E402
from diffcomp.typedconfig import build_dataclass  # noqa: E402
from diffcomp.variant import BitSetting  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "resources/models/fmnist-ddpm"))
    ap.add_argument("--classifier", default=str(ROOT / "resources/models/fmnist-classifier"))
    ap.add_argument("--trajectories", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seeds", default="0,100000")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="precision_fid.json")
    args = ap.parse_args()
    dev = args.device
    pipe = load_pipeline(args.model, device=dev)
    cfg = SamplerConfig(name="ddim", steps=10, eta=0.0, skip="uniform", clip_x0=False)  # the default's sampler
    entry = METHODS["linear"]
    params = build_dataclass(entry.params, {"calibration": {"selector": "uniform", "steps": 10, "per_step": 64}}, "linear")
    q, *_ = entry.recipe(copy.deepcopy(pipe.unet), Trajectories.load(args.trajectories), BitSetting(4, 8), params, dev)
    models = {"fp": pipe.unet.eval(), "linear W4A8": q.to(dev).eval()}
    ref = dict(np.load(args.reference))
    ext = make_extractor("fmnist-classifier", args.classifier)
    shape = (1, 32, 32)
    out = {"n": args.n, "sampler": cfg.__dict__, "results": []}
    for name, model in models.items():
        for precision, mode in (("fp32", None), ("bf16", "default")):
            autocast = set_precision(precision, dev)
            fn = unet_fn(compiled(model, mode), autocast)
            with frozen(model, autocast):
                for seed in (int(s) for s in args.seeds.split(",")):
                    t0 = time.perf_counter()
                    imgs = np.concatenate([to_uint8(generate(fn, list(range(s, s + args.batch)), shape, pipe.alphas_cumprod,
                                                             cfg, seed, dev)) for s in range(0, args.n, args.batch)])
                    dt = time.perf_counter() - t0
                    m = compare(imgs, ref, ext, dev)
                    rec = {"model": name, "precision": precision, "compile": mode, "seed": seed, "fid": m["fid"],
                           "sfid": m.get("sfid"), "wall_s": dt, "images": imgs}
                    out["results"].append(rec)
                    print(f"{name:12s} {precision} {str(mode):8s} seed {seed:6d}: FID {m['fid']:.3f}  ({dt:.1f} s)", flush=True)
    base = {(r["model"], r["seed"]): r["images"] for r in out["results"] if r["precision"] == "fp32"}
    for r in out["results"]:
        imgs = r.pop("images")
        r["mean_abs_pixel_diff_vs_fp32"] = float(np.abs(imgs.astype(np.int16) - base[(r["model"], r["seed"])]).mean())
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
