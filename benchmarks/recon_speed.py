"""Q-Diffusion's block reconstruction: ms per unit-iteration of the eager loop and of the
resident CUDA-graph engine, the projected time of the paper's budget (20k AdaRound + 5k LSQ
iterations per unit), and the loss curves of a long run of both on the same units, in one run.

    python benchmarks/recon_speed.py --out recon_speed.json                    # CIFAR-10 DDPM, CUDA
    python benchmarks/recon_speed.py --arch tiny --device cpu --engines eager,resident \
        --iters 4,8 --curve-iters 20 --n-cal 64                                # a CPU smoke run

The model is the CIFAR-10 DDPM architecture with random weights (benchmarks/gpu_throughput.py),
quantized W4A8 by Q-Diffusion's spec (split shortcuts, quantized attention); the calibration set
is ``--n-cal`` noisy inputs at random timesteps. Each phase runs over every unit twice, at the
two iteration counts of ``--iters``: the slope of the wall time is the cost of one
unit-iteration, the intercept the fixed cost (capturing each unit's inputs and targets; for the
graph engine also its warm-up and capture). The projection is intercept + slope x units x the
paper's iterations, per phase.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_throughput import ARCHS, build_unet, sync  # noqa: E402

from diffcomp.methods.qdiffusion import QDiffusionParams, phases, spec_for  # noqa: E402
from diffcomp.quant.calibrate import init_activations, init_weights  # noqa: E402
from diffcomp.quant.module import set_quant_state  # noqa: E402
from diffcomp.quant.recon import execution_order, find_units, reconstruct  # noqa: E402
from diffcomp.quant.wrap import quantize_model  # noqa: E402
from diffcomp.variant import BitSetting  # noqa: E402


def run(m, b):
    return m(*b).sample


def prepared(fp, batches, device, acts: bool):
    """The W4A8 Q-Diffusion model with ranges set, weights only (``acts`` False) or both."""
    model = quantize_model(fp, spec_for(fp, BitSetting(4, 8), QDiffusionParams())).to(device)
    init_weights(model)
    set_quant_state(model, True, acts)
    if acts:
        init_activations(model, [batches[0]], run, sequential=True)
    return model


def timed(fp, batches, device, phase, units, engine, acts: bool) -> float:
    model = prepared(fp, batches, device, acts)
    sync(device)
    t0 = time.perf_counter()
    reconstruct(model, fp, batches, run, phase, device, units, engine=engine)
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="cifar10")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--engines", default="eager,graph")
    ap.add_argument("--iters", default="20,60", help="the two iteration counts per unit (slope and intercept)")
    ap.add_argument("--graph-iters", default="20,420", help="the same for the graph engine")
    ap.add_argument("--n-cal", type=int, default=1024)
    ap.add_argument("--curve-iters", type=int, default=2000)
    ap.add_argument("--curve-units", default="down_blocks.0.resnets.0,down_blocks.1.attentions.0")
    ap.add_argument("--no-timing", action="store_true", help="only the loss curves")
    ap.add_argument("--no-curves", action="store_true", help="only the timing")
    ap.add_argument("--out", default="recon_speed.json")
    args = ap.parse_args()
    dev = args.device
    fp = build_unet(args.arch).to(dev)
    p = QDiffusionParams()
    g = torch.Generator().manual_seed(0)
    c = fp.config
    xs = torch.randn(args.n_cal, c.in_channels, c.sample_size, c.sample_size, generator=g)
    ts = torch.randint(0, 1000, (args.n_cal,), generator=g)
    batches = [(xs[i : i + p.batch_size].to(dev), ts[i : i + p.batch_size].to(dev)) for i in range(0, args.n_cal, p.batch_size)]
    probe = prepared(fp, batches, dev, False)
    units = execution_order(probe, find_units(probe), lambda m: run(m, batches[0]))
    del probe
    w_phase, a_phase = phases(p)
    for engine in [] if args.no_timing else args.engines.split(","):  # warm-up: CUDA context, cuDNN plans, lazy imports
        timed(fp, batches, dev, dataclasses.replace(a_phase, iters=4), units[:2], engine, True)
    out = {"arch": args.arch, "units": len(units), "n_cal": args.n_cal, "batch_size": p.batch_size,
           "device": torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu", "torch": torch.__version__,
           "paper_iters": {"weights": p.iters_w, "acts": p.iters_a}, "engines": {}, "curves": {}}

    def save():
        Path(args.out).write_text(json.dumps(out, indent=1))

    for engine in [] if args.no_timing else args.engines.split(","):
        n1, n2 = (int(v) for v in (args.graph_iters if engine == "graph" else args.iters).split(","))
        res = {}
        for name, phase, acts, paper in (("weights", w_phase, False, p.iters_w), ("acts", a_phase, True, p.iters_a)):
            t1 = timed(fp, batches, dev, dataclasses.replace(phase, iters=n1), units, engine, acts)
            t2 = timed(fp, batches, dev, dataclasses.replace(phase, iters=n2), units, engine, acts)
            slope = (t2 - t1) / ((n2 - n1) * len(units))
            fixed = t1 - slope * n1 * len(units)
            res[name] = {"ms_per_unit_iter": 1e3 * slope, "fixed_s": fixed, "wall_s": [t1, t2], "iters": [n1, n2],
                         "projected_paper_s": fixed + slope * paper * len(units)}
            print(f"{engine:9s} {name:8s} {1e3 * slope:8.3f} ms/unit-iteration  fixed {fixed:7.1f} s  "
                  f"paper budget {res[name]['projected_paper_s'] / 60:7.1f} min", flush=True)
        res["projected_paper_min"] = (res["weights"]["projected_paper_s"] + res["acts"]["projected_paper_s"]) / 60
        out["engines"][engine] = res
        save()
    if len(out["engines"]) == 2:
        a, b = list(out["engines"])
        out["speedup"] = out["engines"][a]["projected_paper_min"] / out["engines"][b]["projected_paper_min"]
        print(f"projected paper budget: {a} {out['engines'][a]['projected_paper_min']:.1f} min, "
              f"{b} {out['engines'][b]['projected_paper_min']:.1f} min ({out['speedup']:.1f}x)")
    curve_units = [u for u in args.curve_units.split(",") if u in units] or units[:1]
    for engine in [] if args.no_curves else args.engines.split(","):
        for name, phase, acts in (("weights", w_phase, False), ("acts", a_phase, True)):
            model = prepared(fp, batches, dev, acts)
            curves: dict = {}
            reconstruct(model, fp, batches, run, dataclasses.replace(phase, iters=args.curve_iters), dev, curve_units,
                        engine=engine, curves=curves)
            out["curves"][f"{engine} {name}"] = curves
            save()
    window = max(1, args.curve_iters // 10)
    for key, curves in out["curves"].items():
        for u, cv in curves.items():
            means = [sum(cv[i : i + window]) / len(cv[i : i + window]) for i in range(0, len(cv), window)]
            print(f"{key:18s} {u:32s} " + " ".join(f"{m:.4g}" for m in means))
    save()


if __name__ == "__main__":
    main()
