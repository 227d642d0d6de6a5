"""Table 2 (extremely low-bit quantization: PTQ baselines, EfficientDM, MPQ-DM and its ablation rows
x W/A settings x FID/sFID/IS) as csv/md/tex/html, the FID-vs-bits figure, the per-timestep
diagnostics and MPQ-DM's bits per output channel."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..report.html import write_table_html
from ..report.tables import fid_vs_bits_figure, load_metric_sets, protocol_caption, table1, write_table

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--metrics", nargs="+", required=True, help="evaluate's JSON files")
    p.add_argument("--methods", required=True, help='JSON list of [name, label]')
    p.add_argument("--bits", required=True, help='JSON list like ["W4A4", "W2A4"]')
    p.add_argument("--out-stem", required=True, help="writes STEM.csv, STEM.md, STEM.tex")
    p.add_argument("--figure", default=None)
    p.add_argument("--html", default=None, help="the table as an HTML page (for the report)")
    p.add_argument("--diagnostics", nargs="*", default=[], help="diagnose's JSON files of the quantized variants")
    p.add_argument("--diagnostics-stem", default=None, help="writes STEM.csv, STEM.md of the diagnostics")
    p.add_argument("--diagnostics-figure", default=None, help="error, gain and bias vs timestep")
    p.add_argument("--models", nargs="*", default=[], help="quantized models (results/quant/*.safetensors)")
    p.add_argument("--bits-figure", default=None, help="bits per output channel of the mixed-precision models")


def channel_widths(paths) -> dict[str, dict[str, "object"]]:
    """``{variant: {layer: widths}}`` of the models with per-channel mixed bit widths."""
    from ..quant.wrap import read_quantized

    out = {}
    for path in paths:
        _, _, _, state = read_quantized(path)
        suffix = ".weight_quantizers.0.channel_bits"
        widths = {k[: -len(suffix)]: v.numpy() for k, v in state.items() if k.endswith(suffix)}
        if any(len(set(w.tolist())) > 1 for w in widths.values()):
            out[Path(path).name.removesuffix(".safetensors")] = widths
    return out


def run(args) -> None:
    sets = load_metric_sets(args.metrics)
    records = sets[0]
    methods = [tuple(m) for m in json.loads(args.methods)]
    bits = json.loads(args.bits)
    df = table1(records, methods, bits)
    title, caption = "Table 2: extremely low-bit quantization", protocol_caption(records)
    if args.diagnostics:
        from ..report.diagnostics import write_diagnostics

        caption += write_diagnostics(args.diagnostics, methods, "Table 2", args.diagnostics_figure, args.diagnostics_stem,
                                     "figures/eps_vs_timestep_table2.png", "table2_diagnostics.md")
    if args.bits_figure:
        from ..report.figures import channel_bits_figure

        channel_bits_figure(channel_widths(args.models), args.bits_figure)
        caption += " Bits per output channel of the mixed-precision models: figures/channel_bits.png."
    write_table(df, args.out_stem, title, caption)
    if args.html:
        write_table_html(df, args.html, title, caption)
    if args.figure:
        fid_vs_bits_figure(sets, methods, bits, args.figure)
    log.info("\n%s", df.to_string())
