"""Calibration inputs per sampling step of every calibration (selector and parameters) in use,
as a figure and JSON: what each selector picks from the FP trajectories."""

from __future__ import annotations

import json
import logging

from ..io import atomic_path
from ._common import pick_device, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="FP diffusers folder (selectors that look at its features)")
    p.add_argument("--trajectories", required=True, help="FP trajectories (safetensors)")
    p.add_argument("--calibrations", required=True,
                   help='JSON list of {"instances": [labels], "calibration": {selector: .., ...}}')
    p.add_argument("--figure", required=True, help="PNG")
    p.add_argument("--out", required=True, help="the counts as JSON")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..calib.selectors import Calibration
    from ..calib.trajectories import Trajectories
    from ..models.pipeline import load_pipeline
    from ..report.figures import calibration_counts_figure
    from ..typedconfig import ConfigError

    set_threads(args.threads)
    device = pick_device(args.device)
    traj = Trajectories.load(args.trajectories)
    unet = load_pipeline(args.model, device=device).unet.eval()
    timesteps = [int(t) for t in traj.ts]
    rows = []
    for entry in json.loads(args.calibrations):
        try:
            cal = Calibration.from_config(entry["calibration"], "calibration")
        except ConfigError as e:
            raise SystemExit(str(e))
        ts = cal.select(traj, seed=0, model=unet).ts
        counts = [int((ts == t).sum()) for t in traj.ts]
        params = ", ".join(f"{k} {v}" for k, v in entry["calibration"].items()
                           if k not in ("selector", "batch_size", "feature"))
        label = f"{cal.selector} ({params}): {', '.join(entry['instances'])}"
        rows.append({"label": label, "instances": entry["instances"], "calibration": entry["calibration"],
                     "counts": counts})
        log.info("%s: %s", label, counts)
    calibration_counts_figure(timesteps, [(r["label"], r["counts"]) for r in rows], args.figure)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps({"timesteps": timesteps, "calibrations": rows}, indent=1))
