"""Per-timestep diagnostics of a quantized model on held-out FP trajectories, and sample shift."""

from __future__ import annotations

import logging

import numpy as np

from ..io import load_npz, write_json
from ._common import pick_device, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="FP diffusers folder")
    p.add_argument("--quantized", required=True, help="quantized model (quantize's output)")
    p.add_argument("--heldout", required=True, help="held-out FP trajectories (safetensors)")
    p.add_argument("--samples", required=True, help="the variant's samples.npz")
    p.add_argument("--fp-samples", required=True, help="the FP model's samples.npz (same seeds)")
    p.add_argument("--variant", required=True)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", required=True, help="diagnostics JSON")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    import torch

    from ..calib.trajectories import Trajectories
    from ..diagnostics.eps import eps_stats, sample_stats
    from ..models.pipeline import load_pipeline
    from ..quant.wrap import load_quantized

    set_threads(args.threads)
    device = pick_device(args.device)
    a = load_npz(args.samples, {"images": "uint8", "indices": None})
    b = load_npz(args.fp_samples, {"images": "uint8", "indices": None})
    traj = Trajectories.load(args.heldout)
    pipe = load_pipeline(args.model, device="cpu")
    fp = pipe.to(device).unet.eval()
    q = load_quantized(pipe.unet, args.quantized).to(device).eval()
    steps = []
    with torch.no_grad():
        for s in range(traj.xs.shape[0]):
            t = int(traj.ts[s])
            qs, fs = [], []
            for i in range(0, traj.xs.shape[1], args.batch_size):  # with labels (and null twins) if conditional
                batch = tuple(v.to(device) for v in traj.step_inputs(s, i, i + args.batch_size))
                qs.append(q(*batch).sample.float().cpu())
                fs.append(fp(*batch).sample.float().cpu())
            steps.append({"step": s, "t": t, **eps_stats(torch.cat(qs), torch.cat(fs))})
    if not np.array_equal(a["indices"], b["indices"]):
        raise SystemExit(f"{args.samples} and {args.fp_samples} hold different image indices (seeds)")
    rec = {"variant": args.variant, "n_heldout": int(traj.xs.shape[1]), "per_step": steps,
           "samples": sample_stats(a["images"], b["images"])}
    write_json(args.out, rec)
    log.info("%s: pixel shift %+.4f; per step (t: rel_err gain bias_rms) %s", args.variant,
             rec["samples"]["pixel_shift"],
             ", ".join(f"{d['t']}: {d['rel_err']:.4f} {d['gain']:.4f} {d['bias_rms']:.4f}" for d in steps))
