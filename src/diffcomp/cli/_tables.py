"""What the table verbs share: the arguments and steps of a methods x bit-settings table (tables
1 and 2), and the writing of any table (csv/md/tex, the optional HTML page, the log)."""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)


def add_bits_table_arguments(p, bits_example: str) -> None:
    """Arguments of a methods x W/A settings table with its FID figure and diagnostics."""
    p.add_argument("--metrics", nargs="+", required=True, help="evaluate's JSON files")
    p.add_argument("--methods", required=True, help='JSON list of [name, label], e.g. [["linear", "Linear Quant"]]')
    p.add_argument("--bits", required=True, help=f"JSON list like {bits_example}")
    p.add_argument("--out-stem", required=True, help="writes STEM.csv, STEM.md, STEM.tex")
    p.add_argument("--figure", default=None)
    p.add_argument("--html", default=None, help="the table as an HTML page (for the report)")
    p.add_argument("--diagnostics", nargs="*", default=[], help="diagnose's JSON files of the quantized variants")
    p.add_argument("--diagnostics-stem", default=None, help="writes STEM.csv, STEM.md of the diagnostics")
    p.add_argument("--diagnostics-figure", default=None, help="error, gain and bias vs timestep")


def bits_table(args):
    """(metric sets, methods, bits, the table of the first set, its protocol caption)."""
    from ..report.tables import load_metric_sets, protocol_caption, table1

    sets = load_metric_sets(args.metrics)
    methods = [tuple(m) for m in json.loads(args.methods)]
    bits = json.loads(args.bits)
    return sets, methods, bits, table1(sets[0], methods, bits), protocol_caption(sets[0])


def diagnostics_caption(args, methods, table: str, figure_name: str, md_name: str) -> str:
    """Writes the per-timestep diagnostics (if given) and returns the caption's sentence on them."""
    if not args.diagnostics:
        return ""
    from ..report.diagnostics import write_diagnostics

    return write_diagnostics(args.diagnostics, methods, table, args.diagnostics_figure, args.diagnostics_stem,
                             figure_name, md_name)


def write_outputs(df, args, title: str, caption: str) -> None:
    """STEM.csv/md/tex, the HTML page if asked for, and the table in the log."""
    from ..report.html import write_table_html
    from ..report.tables import write_table

    write_table(df, args.out_stem, title, caption)
    if args.html:
        write_table_html(df, args.html, title, caption)
    log.info("\n%s", df.to_string())
