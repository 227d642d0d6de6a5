"""Per-job wall times of workflow runs, side by side: what each rule's jobs cost on one machine
against another (e.g. the default table 1 on a 2-core laptop and on one GPU).

    python benchmarks/job_times.py collect results/benchmarks --out jobs.csv      # one run's jobs
    python benchmarks/job_times.py compare cpu.csv gpu.csv --labels "2-core CPU" "H200" \
        --out docs/figures/dag_job_times.png --table job_times.md

``collect`` reads Snakemake's benchmark files (one TSV per job, written by each rule's
``benchmark:``, read as the workflow's own ``job_times`` figure reads them) and writes one row
per job: the job (its path below the folder), the rule and the wall seconds. ``compare`` prints, per rule,
the number of jobs, the median job and the summed job time of each run and their ratio, writes it
as a Markdown table and draws it. Summed job time is not the run's wall time when jobs run side
by side; pass each run's wall time with ``--wall`` to put it in the table's last row.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffcomp.report.figures import read_benchmarks  # noqa: E402


def collect(folder: Path) -> list[dict]:
    try:
        times = read_benchmarks(folder)
    except ValueError as e:
        raise SystemExit(str(e))
    if not times:
        raise SystemExit(f"{folder}: no benchmark files")
    return [{"job": t.job, "rule": t.rule, "s": t.seconds} for t in times]


def read(path: Path) -> list[dict]:
    with path.open() as f:
        return [{**r, "s": float(r["s"])} for r in csv.DictReader(f)]


def by_rule(rows: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(r["rule"], []).append(r["s"])
    return out


def compare(runs: list[list[dict]], labels: list[str], walls: list[float] | None) -> list[list[str]]:
    rules = sorted({r["rule"] for rows in runs for r in rows}, key=lambda k: -sum(by_rule(runs[0]).get(k, [0])))
    table = [["rule", "jobs"] + [f"{lab}: median job s" for lab in labels] + [f"{lab}: summed s" for lab in labels]
             + ([f"{labels[0]} / {labels[-1]}"] if len(runs) > 1 else [])]
    grouped = [by_rule(rows) for rows in runs]
    for rule in rules:
        times = [g.get(rule, []) for g in grouped]
        sums = [sum(t) for t in times]
        table.append([rule, "/".join(str(len(t)) for t in times)]
                     + [f"{statistics.median(t):.1f}" if t else "-" for t in times]
                     + [f"{s:.0f}" for s in sums]
                     + ([f"{sums[0] / sums[-1]:.1f}x" if sums[-1] else "-"] if len(runs) > 1 else []))
    totals = [sum(r["s"] for r in rows) for rows in runs]
    table.append(["all jobs", "/".join(str(len(rows)) for rows in runs)] + ["" for _ in runs]
                 + [f"{t:.0f}" for t in totals] + ([f"{totals[0] / totals[-1]:.1f}x"] if len(runs) > 1 else []))
    if walls:
        table.append(["run wall time", ""] + ["" for _ in runs] + [f"{w:.0f}" for w in walls]
                     + ([f"{walls[0] / walls[-1]:.1f}x"] if len(runs) > 1 else []))
    return table


def plot(runs: list[list[dict]], labels: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = [by_rule(rows) for rows in runs]
    rules = sorted({k for g in grouped for k in g}, key=lambda k: -sum(grouped[0].get(k, [0])))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 0.45 * len(rules) + 1.8))
    h = 0.8 / len(runs)
    for i, (g, lab) in enumerate(zip(grouped, labels)):
        ys = [j + i * h for j in range(len(rules))]
        ax.barh(ys, [sum(g.get(k, [0])) for k in rules], height=h, label=lab)
        bx.barh(ys, [statistics.median(g[k]) if g.get(k) else 0 for k in rules], height=h, label=lab)
    for axis, title in ((ax, "summed job time per rule (s)"), (bx, "median job (s)")):
        axis.set_yticks([j + 0.4 - h / 2 for j in range(len(rules))], rules)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_title(title)
        axis.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("folder", type=Path)
    c.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("compare")
    m.add_argument("csvs", type=Path, nargs="+")
    m.add_argument("--labels", nargs="+", required=True)
    m.add_argument("--wall", type=float, nargs="*", help="each run's wall time in seconds")
    m.add_argument("--out", type=Path, help="the figure")
    m.add_argument("--table", type=Path, help="the Markdown table")
    args = ap.parse_args()
    if args.cmd == "collect":
        rows = collect(args.folder)
        with args.out.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"{len(rows)} jobs, {sum(r['s'] for r in rows):.0f} s summed -> {args.out}")
        return
    if len(args.labels) != len(args.csvs):
        raise SystemExit("--labels: one label per CSV")
    if args.wall and len(args.wall) != len(args.csvs):
        raise SystemExit("--wall: one wall time per CSV")
    runs = [read(p) for p in args.csvs]
    table = compare(runs, args.labels, args.wall)
    md = "\n".join("| " + " | ".join(r) + " |" + ("\n|" + "---|" * len(r) if i == 0 else "") for i, r in enumerate(table))
    print(md)
    if args.table:
        args.table.write_text(md + "\n")
    if args.out:
        plot(runs, args.labels, args.out)


if __name__ == "__main__":
    sys.exit(main())
