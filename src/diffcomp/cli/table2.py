"""Table 2 (extremely low-bit quantization: PTQ baselines, EfficientDM, MPQ-DM and its ablation rows
x W/A settings x FID/sFID/IS) as csv/md/tex/html, the FID-vs-bits figure, the per-timestep
diagnostics and MPQ-DM's bits per output channel."""

from __future__ import annotations

from pathlib import Path

from ._tables import add_bits_table_arguments, bits_table, diagnostics_caption, write_outputs


def add_arguments(p) -> None:
    add_bits_table_arguments(p, '["W4A4", "W2A4"]')
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
    from ..report.tables import fid_vs_bits_figure

    sets, methods, bits, df, caption = bits_table(args)
    title = "Table 2: extremely low-bit quantization"
    caption += diagnostics_caption(args, methods, "Table 2", "figures/eps_vs_timestep_table2.png",
                                   "table2_diagnostics.md")
    if args.bits_figure:
        from ..report.figures import channel_bits_figure

        channel_bits_figure(channel_widths(args.models), args.bits_figure)
        caption += " Bits per output channel of the mixed-precision models: figures/channel_bits.png."
    write_outputs(df, args, title, caption)
    if args.figure:
        fid_vs_bits_figure(sets, methods, bits, args.figure)
