"""Table 3 (FP teacher with DDIM, PD, RDD x 1/2/4/8 steps x FID/sFID/IS) as csv/md/tex/html, and
the FID-vs-steps figure."""

from __future__ import annotations

import json
from pathlib import Path

from ..io import read_json_object
from ..report.tables import distill_caption, fid_vs_steps_figure, load_metrics, table3
from ._tables import write_outputs


def add_arguments(p) -> None:
    p.add_argument("--metrics", nargs="+", required=True, help="evaluate's JSON files")
    p.add_argument("--students", default="{}", help='JSON {variant: distill output folder} (wall times), e.g. {"pd-s4": "results/distill/pd/steps4"}')
    p.add_argument("--rows", required=True, help='JSON list of [name, label], e.g. [["pd", "PD"]]')
    p.add_argument("--steps", required=True, help="JSON list of step counts, e.g. [1, 2, 4, 8]")
    p.add_argument("--teachers", default="{}",
                   help='JSON {student variant: teacher variant}, e.g. {"pd-s8": "fp-s16"}: a student with a lower FID '
                        "than its teacher is named in the caption")
    p.add_argument("--out-stem", required=True, help="writes STEM.csv, STEM.md, STEM.tex")
    p.add_argument("--figure", default=None)
    p.add_argument("--html", default=None, help="the table as an HTML page (for the report)")


def run(args) -> None:
    records = load_metrics(args.metrics)
    rows = [tuple(r) for r in json.loads(args.rows)]
    steps = [int(n) for n in json.loads(args.steps)]
    wall = {}
    for variant, d in json.loads(args.students).items():
        prov = Path(d) / "provenance.json"
        if prov.exists():
            wall[variant] = float(read_json_object(prov, ("wall_seconds",))["wall_seconds"])
    df = table3(records, rows, steps)
    title = "Table 3: few-step students (progressive distillation, RDD)"
    caption = distill_caption(records, wall, json.loads(args.teachers), dict(rows))
    write_outputs(df, args, title, caption)
    if args.figure:
        fid_vs_steps_figure(records, rows, steps, args.figure)
