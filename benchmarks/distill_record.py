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
``--gap-to fp-s16`` draws, instead of the FID panel, every 8-step student of the run and of the
``--with`` records as its FID above the 16-step teacher against its stage's final teacher-match
error (how far its samples are from its teacher's, from the same noises).
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


def gap_points(records: dict[str, dict], teacher: str) -> list[dict]:
    """Every student of half ``teacher``'s steps in ``records`` (label -> record; "" for this run)
    with its stage's teacher-match error at the end and its FID above ``teacher`` per seed set
    (the teacher's row from the student's own record, else from any record that has it)."""
    m = VARIANT.match(teacher)
    if not m:
        raise SystemExit(f"distill_record: --gap-to takes a variant such as fp-s16, not {teacher!r}")
    steps = int(m["steps"]) // 2
    rows = [r["metrics"][teacher] for r in records.values() if teacher in r["metrics"]]
    if not rows:
        raise SystemExit(f"distill_record: no record has the variant {teacher!r} that --gap-to names")
    points = []
    for source, rec in records.items():
        ref = rec["metrics"].get(teacher, rows[0])["seeds"]
        for variant, row in sorted(rec["metrics"].items()):
            v = VARIANT.match(variant)
            stage = rec.get("stages", {}).get(f"{v['method']}-steps{steps}") if v else None
            if not v or int(v["steps"]) != steps or not stage or "end" not in stage["teacher_match"]:
                continue
            gaps = {seed: round(vals["fid"] - ref[seed]["fid"], 4) for seed, vals in row["seeds"].items() if seed in ref}
            if gaps:
                points.append({"method": v["method"], "source": source, "match": stage["teacher_match"]["end"],
                               "gaps": gaps, "prediction": stage.get("prediction"), "iterations": stage["iterations"]})
    return points


def _draw_gaps(ax, points: list[dict], teacher: str, title: str) -> None:
    for p in points:
        mean = sum(p["gaps"].values()) / len(p["gaps"])
        color = "tab:orange" if p["prediction"] == "eps" else "tab:blue"
        ax.scatter([p["match"]] * len(p["gaps"]), list(p["gaps"].values()), s=9, color=color, alpha=0.6)
        ax.scatter([p["match"]], [mean], marker="o" if not p["source"] else "s", color=color, s=30)
        ax.annotate(f"{p['method']} {p['iterations'] // 1000}k" + (f" [{p['source']}]" if p["source"] else ""),
                    (p["match"], mean), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("teacher-match MSE at the stage's end (student vs its teacher, same noises)")
    ax.set_ylabel(f"FID above {teacher} (mean; dots: each seed set)")
    ax.set_title(title + " (orange: eps students, blue: v)")


def draw(record: dict, out: Path, title: str = "Table 3's rows", others: dict[str, dict] | None = None,
         gap_to: str | None = None):
    """The figure; ``others`` maps a label to an earlier record whose rows are drawn dashed beside.
    ``gap_to`` (a teacher variant, e.g. ``fp-s16``): the left panel is instead each student of half
    its steps, its FID above that teacher against its stage's final teacher-match error."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4))
    if gap_to:
        _draw_gaps(ax, gap_points({"": record, **(others or {})}, gap_to), gap_to, title)
    else:
        _draw_fid(ax, record, others, title)
    _draw_probes(bx, record["stages"])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return fig


def _draw_fid(ax, record: dict, others: dict[str, dict] | None, title: str) -> None:
    series = [(method, rows, "") for method, rows in sorted(_by_method(record["metrics"]).items())]
    for name, other in (others or {}).items():
        series += [(method, rows, name) for method, rows in sorted(_by_method(other["metrics"]).items())]
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


def _draw_probes(bx, stages: dict) -> None:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="the drivers' OUT folders")
    ap.add_argument("--what", required=True, help="what ran where (config, machine, precision)")
    ap.add_argument("--record", type=Path, required=True)
    ap.add_argument("--figure", type=Path)
    ap.add_argument("--title", default="Table 3's rows", help="the FID panel's title")
    ap.add_argument("--with", dest="others", type=Path, action="append", default=[],
                    help="an earlier record whose rows the figure draws beside (dashed)")
    ap.add_argument("--gap-to", metavar="VARIANT",
                    help="the left panel: each student of half VARIANT's steps (e.g. fp-s16), its FID above "
                         "VARIANT against its stage's final teacher-match error, over this run and the --with records")
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
        draw(record, args.figure, args.title, others, args.gap_to)


if __name__ == "__main__":
    main()
