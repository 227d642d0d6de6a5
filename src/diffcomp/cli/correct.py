"""Apply post-quantization corrections to a quantized model: bias correction, eps correction."""

from __future__ import annotations

import logging
import time

from ._common import pick_device, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="FP diffusers folder")
    p.add_argument("--quantized", required=True, help="the quantized model to correct (quantize's output)")
    p.add_argument("--trajectories", required=True, help="FP calibration trajectories (safetensors)")
    p.add_argument("--bias-correction", action="store_true", help="make each layer's mean output the FP layer's")
    p.add_argument("--eps-correction", default="none", choices=["none", "channel", "pixel"],
                   help="per-timestep gain and bias of the noise prediction")
    p.add_argument("--max-inputs", type=int, default=1024,
                   help="bias correction runs on at most this many trajectory inputs, evenly spaced (one batch)")
    p.add_argument("--out", required=True, help="corrected quantized model (.safetensors)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..calib.trajectories import Trajectories
    from ..models.pipeline import load_pipeline
    from ..quant.bias_correction import correct_biases
    from ..quant.correction import with_correction
    from ..quant.wrap import load_quantized, read_quantized, save_quantized

    if not args.bias_correction and args.eps_correction == "none":
        raise SystemExit("nothing to do: give --bias-correction and/or --eps-correction")
    set_threads(args.threads)
    device = pick_device(args.device)
    spec, _, meta, _ = read_quantized(args.quantized)
    traj = Trajectories.load(args.trajectories)
    pipe = load_pipeline(args.model, device="cpu")
    fp = pipe.to(device).unet.eval()
    model = load_quantized(pipe.unet, args.quantized).to(device).eval()
    t0 = time.time()
    shifts = {}
    if args.bias_correction:  # on the trajectories' inputs, every step, as one batch
        import torch

        from ..calib.selectors import gather

        S, N = traj.xs.shape[:2]
        pick = torch.linspace(0, S * N - 1, min(S * N, args.max_inputs)).round().long()
        batch = gather(traj, pick // N, pick % N).tensors()  # with labels (and null twins) if conditional
        shifts = correct_biases(model, fp, tuple(v.to(device) for v in batch), lambda m, b: m(*b).sample)
    if args.eps_correction != "none":
        model, spec = with_correction(model, fp, spec, traj, per_pixel=args.eps_correction == "pixel")
    seconds = time.time() - t0
    meta = {**meta, "corrections": {"bias_correction": args.bias_correction, "eps_correction": args.eps_correction,
                                    "base": str(args.quantized), "seconds": seconds,
                                    "largest_bias_shift": max(shifts.values()) if shifts else 0.0}}
    save_quantized(model.cpu(), spec, args.out, meta=meta)
    log.info("corrected %s in %.1f s (bias correction: %s, largest shift %.4g; eps correction: %s)", args.quantized,
             seconds, args.bias_correction, meta["corrections"]["largest_bias_shift"], args.eps_correction)
