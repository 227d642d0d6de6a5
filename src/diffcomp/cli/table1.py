"""Table 1 (methods x W/A settings x FID/sFID/IS) as csv/md/tex/html, and the FID-vs-bits figure.

Metric files of several seed sets (``protocol.seed``) may be given: the table is the first set's,
the figure shows the spread over all of them."""

from __future__ import annotations

from ._tables import add_bits_table_arguments, bits_table, diagnostics_caption, write_outputs


def add_arguments(p) -> None:
    add_bits_table_arguments(p, '["W8A8", "W4A8"]')
    p.add_argument("--paper-numbers", default=None, help="the papers' numbers (YAML) for a 'paper' column group")
    p.add_argument("--paper-setting", default=None, help="the setting of that file to show")


def run(args) -> None:
    from ..report.tables import fid_vs_bits_figure

    sets, methods, bits, df, caption = bits_table(args)
    title = "Table 1: post-training quantization"
    if args.paper_numbers:
        from ..config import read_yaml
        from ..paper import paper_numbers
        from ..report.tables import with_paper_columns

        paper = paper_numbers(read_yaml(args.paper_numbers), args.paper_numbers, args.paper_setting)
        df = with_paper_columns(df, paper, methods, bits)
        caption += (f" Columns marked (paper): the numbers the papers report ({paper.protocol}); empty where no "
                    f"number has a source. Sources: {'; '.join(paper.sources)}.")
    caption += diagnostics_caption(args, methods, "Table 1", "figures/eps_vs_timestep.png", "table1_diagnostics.md")
    write_outputs(df, args, title, caption)
    if args.figure:
        fid_vs_bits_figure(sets, methods, bits, args.figure)
