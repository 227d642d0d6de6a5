"""The figure of docs/results.md's "GPU speed" section from the records in benchmarks/gpu_runs/:
sampling throughput per path, and the loss curves of the eager and graph reconstruction engines.

    python benchmarks/plot_gpu_runs.py --out docs/figures/gpu_speed.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = Path(__file__).resolve().parent / "gpu_runs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/figures/gpu_speed.png")
    args = ap.parse_args()
    paths: dict[str, float] = {}
    for f in sorted(RUNS.glob("throughput_*.json")):
        for k, v in json.loads(f.read_text())["paths"].items():
            paths.setdefault(k, v["img_s_per_100_steps"])
    curves = json.loads((RUNS / "recon_curves_h200.json").read_text())["curves"]
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    names = sorted(paths, key=lambda k: -paths[k])
    ax.barh(names, [paths[k] for k in names], color=["#888" if "eager" in k else "#1f77b4" for k in names])
    ax.invert_yaxis()
    ax.set_xlabel("images / s (100 DDIM steps, batch 1024)")
    ax.set_title("Sampling, CIFAR-10 DDPM architecture, one H200")
    for i, k in enumerate(names):
        ax.text(paths[k], i, f" {paths[k]:.0f}", va="center", fontsize=8)
    for axis, phase in ((bx, "weights"), (cx, "acts")):
        for engine, style in (("eager", "-"), ("graph", "--")):
            for unit, cv in curves[f"{engine} {phase}"].items():
                axis.plot(range(len(cv)), cv, style, label=f"{engine} ({unit})", lw=1)
        axis.set_xlabel("iteration")
        axis.set_ylabel("loss")
        axis.set_yscale("log")
        axis.set_title(f"Reconstruction loss, {'AdaRound' if phase == 'weights' else 'LSQ'} phase")
        axis.legend(fontsize=7)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
