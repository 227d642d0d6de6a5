"""Distil a teacher diffusers folder into a student that samples with half its steps (PD or RDD)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time

from ..models.config import COMPILE_MODES, PRECISIONS
from ..typedconfig import build_dataclass
from ..io import atomic_path, load_npz
from ..provenance import provenance
from ..weights import pipeline_kind, record
from ._common import keyed_state_dir, pick_device, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--teacher", required=True, help="teacher diffusers folder (the FP model or a previous stage)")
    p.add_argument("--steps", type=int, required=True, help="the student's sampling steps N (teacher: 2N)")
    p.add_argument("--method", required=True, help="a registered distillation method (pd, rdd, ...)")
    p.add_argument("--params", default=None, help="the method's parameters as JSON")
    p.add_argument("--data", required=True, help="train.npz from prepare-data")
    p.add_argument("--feature-net", default=None, help="weights folder of the frozen feature network (methods that use one)")
    p.add_argument("--feature-net-name", default="fmnist-resnet", help="a network of distill.methods.rdd.features")
    p.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=True,
                   help="clip x0 in the teacher-match samples (as the distillation grid's sampler does)")
    p.add_argument("--out", required=True, help="student diffusers folder")
    p.add_argument("--state-dir", default=None, help="resume state (kept across retries)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 exact (TF32 off), tf32, or teacher and student under bf16 autocast")
    p.add_argument("--compile", choices=COMPILE_MODES, default=None, help="torch.compile mode of teacher and student")
    p.add_argument("--engine", choices=("auto", "eager", "graph"), default="auto",
                   help="graph: one iteration captured as a CUDA graph and replayed (auto: on CUDA in fp32/tf32)")


def run(args) -> None:
    from ..distill.methods import DISTILLERS
    from ..distill.stage import distill_stage
    from ..models.pipeline import load_pipeline, save_pipeline
    from ..models.sampler import set_precision

    try:
        entry = DISTILLERS[args.method]
    except KeyError as e:
        raise SystemExit(str(e).strip("'\""))
    params = build_dataclass(entry.params, json.loads(args.params) if args.params else {}, f"distillation.{args.method}")
    set_threads(args.threads)
    device = pick_device(args.device)
    autocast = set_precision(args.precision, device)
    features = None
    if entry.uses_features:
        if not args.feature_net:
            raise SystemExit(f"{args.method} needs --feature-net")
        features = entry.features(args.feature_net_name, args.feature_net)
    teacher = load_pipeline(args.teacher)  # its weights checked against their recorded sha256
    images = load_npz(args.data, {"images": "uint8"})["images"]
    state_dir = keyed_state_dir(args.state_dir, [args.method, params.__dict__, args.steps,
                                                 record(args.teacher, pipeline_kind(args.teacher)),
                                                 str(args.data), args.feature_net, device, args.precision, args.compile,
                                                 "stage-state-2"])
    t0 = time.time()
    student, stats = distill_stage(teacher.unet, images, teacher.alphas_cumprod, args.steps, args.method, params,
                                   features=features, device=device, state_dir=state_dir, compile=args.compile, autocast=autocast,
                                   teacher_prediction=teacher.prediction_type, match_clip_x0=args.clip_x0,
                                   engine=args.engine)
    from ..models.parameterization import DIFFUSERS

    # the student's scheduler records what it predicts, so sampling converts its output to eps
    scheduler = type(teacher.scheduler).from_config(teacher.scheduler.config,
                                                    prediction_type=DIFFUSERS[stats["prediction"]])
    with atomic_path(args.out, suffix="") as tmp:
        save_pipeline(student, scheduler, tmp, provenance=provenance(
            what=f"{entry.label} student sampling with {args.steps} trailing DDIM steps, distilled from "
                 f"{args.teacher} at {2 * args.steps} steps by `diffcomp distill`",
            teacher=str(args.teacher), feature_net=args.feature_net, stats=stats, wall_seconds=time.time() - t0))
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
    log.info("%s -> %d steps: %d iterations in %.1f s, final losses %s", args.method, args.steps,
             stats["iterations"], stats["seconds"], stats["final_losses"])
