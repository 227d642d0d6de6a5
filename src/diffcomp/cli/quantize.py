"""Quantize the FP model with a registered method at one bit setting."""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import time

from ..methods import METHODS
from ..typedconfig import build_dataclass, to_plain
from ..variant import BitSetting
from ._common import keyed_state_dir, pick_device, set_threads

log = logging.getLogger(__name__)


def check_conditional(entry, traj, path) -> None:
    """A method not registered ``conditional`` refuses labelled trajectories (its recipe would
    drop the labels) in one line naming the file."""
    if traj.labels is not None and not entry.conditional:
        raise SystemExit(f"{path}: these trajectories are of a class-conditional model; method "
                         f"{entry.name!r} calibrates unconditional models only (its inputs would lose their labels)")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="FP diffusers folder")
    p.add_argument("--trajectories", required=True, help="FP trajectories (safetensors)")
    p.add_argument("--method", required=True, help="a registered quantization method")
    p.add_argument("--bits", required=True, help="e.g. w4a8")
    p.add_argument("--params", default=None, help="the method's parameters as JSON")
    p.add_argument("--out", required=True, help="quantized model (.safetensors)")
    p.add_argument("--state-dir", default=None,
                   help="resume state of methods that train (their recipe takes state_dir), kept across retries")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..calib.trajectories import Trajectories
    from ..models.pipeline import load_pipeline
    from ..quant.wrap import save_quantized

    try:
        entry = METHODS[args.method]
        bits = BitSetting.parse(args.bits)
    except (KeyError, ValueError) as e:
        raise SystemExit(str(e).strip("'\""))
    set_threads(args.threads)
    device = pick_device(args.device)
    params = build_dataclass(entry.params, json.loads(args.params or "{}"), f"quantization.methods.{args.method}")
    pipe = load_pipeline(args.model, device=device)
    if pipe.prediction_type != "epsilon":  # the recipes and diagnostics compare noise predictions
        raise SystemExit(f"{args.model}: quantization needs a noise-predicting model (prediction_type "
                         f"'epsilon'), this one predicts {pipe.prediction_type!r}")
    traj = Trajectories.load(args.trajectories)
    check_conditional(entry, traj, args.trajectories)
    t0 = time.time()
    extra = {}
    if "state_dir" in inspect.signature(entry.recipe).parameters:  # a training method: resumable
        extra["state_dir"] = keyed_state_dir(args.state_dir, [args.method, to_plain(params), bits.label,
                                                              traj.meta, device])
    model, spec, *info = entry.recipe(pipe.unet, traj, bits, params, device=device, **extra)
    seconds = time.time() - t0
    save_quantized(model.cpu(), spec, args.out, meta={"method": args.method, "bits": bits.label,
                                                      "params": to_plain(params), "seconds": seconds, "device": device,
                                                      "recipe": info[0] if info else {}})
    if extra.get("state_dir") is not None:
        shutil.rmtree(extra["state_dir"], ignore_errors=True)
    log.info("%s %s quantized in %.1f s", args.method, bits.label, seconds)
