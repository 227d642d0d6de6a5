"""Quantize the FP model with a registered method at one bit setting."""

from __future__ import annotations

import json
import logging
import time

from ..config import BitSetting, build_dataclass
from ..methods import METHODS, get_recipe
from .common import pick_device, set_threads

log = logging.getLogger(__name__)


def parse_bits(tag: str) -> BitSetting:
    import re

    m = re.fullmatch(r"w(\d+)a(\d+)", tag)
    if not m:
        raise SystemExit(f"bad bit setting {tag!r}; expected like w4a8")
    return BitSetting(int(m.group(1)), int(m.group(2)))


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="FP diffusers folder")
    p.add_argument("--trajectories", required=True)
    p.add_argument("--method", required=True, choices=sorted(METHODS))
    p.add_argument("--bits", required=True, help="e.g. w4a8")
    p.add_argument("--params", default=None, help="the method's parameters as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    import torch

    from ..calib.trajectories import Trajectories
    from ..models.pipeline import load_pipeline
    from ..quant.wrap import save_quantized

    set_threads(args.threads)
    device = pick_device(args.device)
    bits = parse_bits(args.bits)
    params = build_dataclass(METHODS[args.method].params, json.loads(args.params or "{}"), f"quantization.methods.{args.method}")
    pipe = load_pipeline(args.model, device=device)
    traj = Trajectories.from_dict(torch.load(args.trajectories, map_location="cpu", weights_only=False))
    t0 = time.time()
    model, spec = get_recipe(args.method)(pipe.unet, traj, bits, params, device=device)
    seconds = time.time() - t0
    save_quantized(model.cpu(), spec, args.out, meta={"method": args.method, "bits": bits.label,
                                                      "params": params.__dict__, "seconds": seconds, "device": device})
    log.info("%s %s quantized in %.1f s", args.method, bits.label, seconds)
