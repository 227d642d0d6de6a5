"""Table 1 (methods x W/A settings x FID/sFID/IS) as csv/md/tex/html, and the FID-vs-bits figure.

Metric files of several seed sets (``protocol.seed``) may be given: the table is the first set's,
the figure shows the spread over all of them."""

from __future__ import annotations

import json
import logging

from ..report.html import write_table_html
from ..report.tables import fid_vs_bits_figure, load_metric_sets, protocol_caption, table1, write_table

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--metrics", nargs="+", required=True, help="evaluate's JSON files")
    p.add_argument("--methods", required=True, help='JSON list of [name, label], e.g. [["linear", "Linear Quant"]]')
    p.add_argument("--bits", required=True, help='JSON list like ["W8A8", "W4A8"]')
    p.add_argument("--out-stem", required=True, help="writes STEM.csv, STEM.md, STEM.tex")
    p.add_argument("--figure", default=None)
    p.add_argument("--html", default=None, help="the table as an HTML page (for the report)")
    p.add_argument("--diagnostics", nargs="*", default=[], help="diagnose's JSON files of the quantized variants")
    p.add_argument("--diagnostics-stem", default=None, help="writes STEM.csv, STEM.md of the diagnostics")
    p.add_argument("--diagnostics-figure", default=None, help="error, gain and bias vs timestep")
    p.add_argument("--paper-numbers", default=None, help="the papers' numbers (YAML) for a 'paper' column group")
    p.add_argument("--paper-setting", default=None, help="the setting of that file to show")


def run(args) -> None:
    sets = load_metric_sets(args.metrics)
    records = sets[0]
    methods = [tuple(m) for m in json.loads(args.methods)]
    bits = json.loads(args.bits)
    df = table1(records, methods, bits)
    title, caption = "Table 1: post-training quantization", protocol_caption(records)
    if args.paper_numbers:
        from ..config import read_yaml
        from ..paper import paper_numbers
        from ..report.tables import with_paper_columns

        paper = paper_numbers(read_yaml(args.paper_numbers), args.paper_numbers, args.paper_setting)
        df = with_paper_columns(df, paper, methods, bits)
        caption += (f" Columns marked (paper): the numbers the papers report ({paper.protocol}); empty where no "
                    f"number has a source. Sources: {'; '.join(paper.sources)}.")
    if args.diagnostics:
        from ..report.diagnostics import write_diagnostics

        caption += write_diagnostics(args.diagnostics, methods, "Table 1", args.diagnostics_figure, args.diagnostics_stem,
                                     "figures/eps_vs_timestep.png", "table1_diagnostics.md")
    write_table(df, args.out_stem, title, caption)
    if args.html:
        write_table_html(df, args.html, title, caption)
    if args.figure:
        fid_vs_bits_figure(sets, methods, bits, args.figure)
    log.info("\n%s", df.to_string())
