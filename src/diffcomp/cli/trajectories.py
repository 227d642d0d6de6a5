"""Run the FP sampler for N calibration samples, storing (x_t, t) at every step."""

from __future__ import annotations

import dataclasses
import logging

from ..calib.config import CaptureConfig
from ..models.config import SamplerConfig
from ._common import pick_device, section, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--sampler", default=None, help="sampler section as JSON")
    p.add_argument("--cfg", required=True, help='the capture as JSON: {"n_trajectories": .., "batch_size": .., "seed": ..}')
    p.add_argument("--out", required=True, help="trajectories (.safetensors)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..calib.capture import capture
    from ..models.conditioning import guided, num_classes
    from ..models.pipeline import load_pipeline
    from ..models.sampler import unet_fn

    set_threads(args.threads)
    device = pick_device(args.device)
    sampler = section(SamplerConfig, args.sampler, "sampler")
    cfg = section(CaptureConfig, args.cfg, "calibration")
    pipe = load_pipeline(args.model, device=device)
    fn = unet_fn(pipe.unet, None, pipe.prediction_type, pipe.alphas_cumprod)
    classes = num_classes(pipe.unet)
    if classes is not None:  # the trajectories of guided sampling, as the sample jobs run it
        fn = guided(fn, sampler.guidance, null_label=classes)
    traj = capture(fn, cfg.n_trajectories, pipe.sample_shape, pipe.alphas_cumprod, sampler, cfg.seed, cfg.batch_size,
                   device, classes=classes)
    traj.meta = {"sampler": dataclasses.asdict(sampler), "capture": dataclasses.asdict(cfg)}
    if classes is not None:
        traj.meta["null_label"] = classes
    traj.save(args.out)
    log.info("trajectories %s at timesteps %s", tuple(traj.xs.shape), traj.ts.tolist())
