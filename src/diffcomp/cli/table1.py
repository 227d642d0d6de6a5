"""Table 1 (methods x W/A settings x FID/sFID/IS) as csv/md/tex, and the FID-vs-bits figure."""

from __future__ import annotations

import json
import logging

from ..report.tables import fid_vs_bits_figure, load_metrics, protocol_caption, table1, write_table

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--metrics", nargs="+", required=True, help="evaluate's JSON files")
    p.add_argument("--methods", required=True, help='JSON list of [name, label], e.g. [["linear", "Linear Quant"]]')
    p.add_argument("--bits", required=True, help='JSON list like ["W8A8", "W4A8"]')
    p.add_argument("--out-stem", required=True, help="writes STEM.csv, STEM.md, STEM.tex")
    p.add_argument("--figure", default=None)


def run(args) -> None:
    records = load_metrics(args.metrics)
    methods = [tuple(m) for m in json.loads(args.methods)]
    bits = json.loads(args.bits)
    df = table1(records, methods, bits)
    write_table(df, args.out_stem, "Table 1: post-training quantization", protocol_caption(records))
    if args.figure:
        fid_vs_bits_figure(records, methods, bits, args.figure)
    log.info("\n%s", df.to_string())
