"""A record and a figure of table 3's rows from the GPU drivers' output folders
(benchmarks/h200_distill_split.sh and h200_distill_gpus.sh: OUT/s<seed>/<variant>.json metrics,
OUT/students/<method>-steps<N>.json the students' provenance).

    python benchmarks/distill_record.py RUN_DIR [RUN_DIR ...] --what "..." \\
        --record benchmarks/gpu_runs/distill_h200.json --figure docs/figures/distill_h200.png

The record keeps, per variant (``fp-s8``, ``pd-s1``, ``pd_eps-s8``, ...), each seed set's FID,
sFID, IS, KID and precision/recall and their mean and spread (max - min over seed sets); per
student stage, its wall time, final loss, the top step's and the other steps' probe losses and
gradient share at each probe, and the teacher-match error at its start and end. The figure:
FID against sampling steps per method (DDIM = the FP teacher), each seed set a marker, beside the
16 -> 8 stage's lower-step probe loss over its iterations per first-stage variant. ``--with
RECORD`` draws an earlier record's rows beside them (dashed, labelled with its file name): rows
sampled and evaluated elsewhere, e.g. on the GPU, beside students evaluated on the CPU.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KEYS = ("fid", "sfid", "is", "kid", "precision", "recall")
VARIANT = re.compile(r"^(?P<method>.+)-s(?P<steps>\d+)$")


def read_metrics(runs: list[Path]) -> dict[str, dict]:
    """``{variant: {"seeds": {seed: metrics}, "mean": {...}, "spread": {...}}}`` over every run folder."""
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for run in runs:
        for seed_dir in sorted(run.glob("s[0-9]*")):
            seed = int(seed_dir.name[1:])
            for f in sorted(seed_dir.glob("*.json")):
                m = json.loads(f.read_text())["metrics"]
                rows.setdefault(f.stem, {})[seed] = {k: round(float(m[k]), 4) for k in KEYS if k in m}
    out = {}
    for variant, seeds in rows.items():
        keys = [k for k in KEYS if all(k in m for m in seeds.values())]
        out[variant] = {
            "seeds": {str(s): seeds[s] for s in sorted(seeds)},
            "mean": {k: round(sum(m[k] for m in seeds.values()) / len(seeds), 4) for k in keys},
            "spread": {k: round(max(m[k] for m in seeds.values()) - min(m[k] for m in seeds.values()), 4)
                       for k in keys},
        }
    return out


def _probe_loss(part: dict | None) -> float | None:
    return None if not part or not part.get("samples") else round(float(part["loss"]), 6)


def read_stages(runs: list[Path]) -> dict[str, dict]:
    """Each student's stage diagnostics, by ``<method>-steps<N>`` (the last run folder's copy wins)."""
    stages = {}
    for run in runs:
        for f in sorted((run / "students").glob("*.json")):
            prov = json.loads(f.read_text())
            st = prov.get("stats", prov)
            diag = st.get("diagnostics") or {}
            stages[f.stem] = {
                "seconds": round(float(st["seconds"]), 1),
                "iterations": st["iterations"],
                "prediction": st.get("prediction"),
                "clip_teacher_x0": (st.get("params") or {}).get("clip_teacher_x0"),
                "final_loss": round(float(st["final_losses"]["loss"]), 6) if st.get("final_losses") else None,
                "refit_output": st.get("refit_output"),
                "probes": [{"iteration": g["iteration"], "top_step": _probe_loss(g.get("top_step")),
                            "other_steps": _probe_loss(g.get("other_steps")),
                            "top_share": None if g.get("top_share") is None else round(float(g["top_share"]), 3)}
                           for g in diag.get("gradient", [])],
                "teacher_match": {k: round(float(v["mse"]), 6) for k, v in (diag.get("teacher_match") or {}).items()},
            }
    return stages


def _by_method(metrics: dict) -> dict[str, dict[int, dict]]:
    by_method: dict[str, dict[int, dict]] = {}
    for variant, row in metrics.items():
        m = VARIANT.match(variant)
        if m:
            by_method.setdefault(m["method"], {})[int(m["steps"])] = row
    return by_method


def draw(record: dict, out: Path, title: str = "Table 3's rows", others: dict[str, dict] | None = None):
    """The figure; ``others`` maps a label to an earlier record whose rows are drawn dashed beside."""
    stages = record["stages"]
    series = [(method, rows, "") for method, rows in sorted(_by_method(record["metrics"]).items())]
    for name, other in (others or {}).items():
        series += [(method, rows, name) for method, rows in sorted(_by_method(other["metrics"]).items())]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4))
    markers = "os^vDP*Xh"
    for i, (method, rows, source) in enumerate(series):
        steps = sorted(rows)
        label = ("DDIM (FP teacher)" if method == "fp" else method) + (f" [{source}]" if source else "")
        style = ("--" if source else "-") if len(steps) > 1 else ""
        line = ax.plot(steps, [rows[s]["mean"]["fid"] for s in steps], style,
                       marker=markers[i % len(markers)], label=label, lw=1.2)[0]
        for s in steps:
            vals = [v["fid"] for v in rows[s]["seeds"].values()]
            ax.scatter([s] * len(vals), vals, s=9, color=line.get_color(), alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("FID (mean of seed sets; dots: each set)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    for name, st in sorted(stages.items()):
        if not name.endswith("-steps8"):
            continue
        pts = [(p["iteration"], p["other_steps"]) for p in st["probes"] if p["other_steps"] is not None]
        if pts:
            bx.plot(*zip(*pts), marker=".", label=f"{name.removesuffix('-steps8')} ({st['prediction']} student)")
    bx.set_yscale("log")
    bx.set_xlabel("iteration of the 16 -> 8 stage")
    bx.set_ylabel("PD loss of the 7 lower student steps (probe)")
    bx.set_title("Where each first-stage variant ends")
    bx.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="the drivers' OUT folders")
    ap.add_argument("--what", required=True, help="what ran where (config, machine, precision)")
    ap.add_argument("--record", type=Path, required=True)
    ap.add_argument("--figure", type=Path)
    ap.add_argument("--title", default="Table 3's rows", help="the FID panel's title")
    ap.add_argument("--with", dest="others", type=Path, action="append", default=[],
                    help="an earlier record whose rows the figure draws beside (dashed)")
    args = ap.parse_args()
    for run in args.runs:
        if not run.is_dir():
            raise SystemExit(f"distill_record: no run folder {run}")
    others = {}
    for path in args.others:
        if not path.is_file():
            raise SystemExit(f"distill_record: no record {path}")
        others[path.stem] = json.loads(path.read_text())
    record = {"what": args.what, "metrics": read_metrics(args.runs), "stages": read_stages(args.runs)}
    if not record["metrics"]:
        raise SystemExit(f"distill_record: no s<seed>/<variant>.json under {', '.join(map(str, args.runs))}")
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    if args.figure:
        draw(record, args.figure, args.title, others)


if __name__ == "__main__":
    main()
