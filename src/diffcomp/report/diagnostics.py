"""The per-timestep diagnostics of the quantized variants as a table and a figure."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..io import atomic_path, read_json_object

MIN_T = 100  # the acceptance band: every step t >= 100 (t = 0 predicts noise from a clean image)


def load_diagnostics(paths: Sequence[str | Path]) -> dict[str, dict]:
    return {rec["variant"]: rec for rec in (read_json_object(p, ("variant", "per_step", "samples")) for p in paths)}


def diagnostics_table(diags: dict[str, dict], labels: dict[str, str]) -> pd.DataFrame:
    """One row per variant: mean pixel shift and RMS distance of its samples from the FP model's
    (same seeds), and over the held-out steps with t >= 100 the largest |gain - 1|, the largest
    mean-bias RMS and the mean relative error of the noise prediction."""
    rows = []
    for variant, d in diags.items():
        steps = [s for s in d["per_step"] if s["t"] >= MIN_T]
        rows.append({
            "Variant": labels.get(variant, variant),
            "pixel shift": d["samples"]["pixel_shift"],
            "RMS distance to FP": d["samples"]["rms_distance"],
            "max abs(gain - 1) (t>=100)": max(abs(s["gain"] - 1) for s in steps),
            "max bias RMS (t>=100)": max(s["bias_rms"] for s in steps),
            "mean rel. error (t>=100)": sum(s["rel_err"] for s in steps) / len(steps),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("Variant")


def eps_vs_timestep_figure(diags: dict[str, dict], labels: dict[str, str], path: str | Path) -> None:
    """Relative error, gain and mean-bias RMS of the noise prediction against the timestep (the
    steps with t >= 100; at t = 0 the prediction is of noise from an almost clean image), one line
    per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for variant, d in diags.items():
        steps = [s for s in d["per_step"] if s["t"] >= MIN_T]
        t = [s["t"] for s in steps]
        for ax, key in zip(axes, ("rel_err", "gain", "bias_rms")):
            ax.plot(t, [s[key] for s in steps], "-o", ms=3, label=labels.get(variant, variant))
    for ax, title in zip(axes, ("relative error of eps", "gain of eps (slope on FP)", "mean-bias RMS of eps")):
        ax.set_xlabel("timestep t")
        ax.set_title(title)
        ax.invert_xaxis()
    axes[1].axhline(1.0, c="k", lw=0.8, ls="--")
    axes[0].set_yscale("log")
    axes[2].legend(fontsize=7)
    fig.suptitle(f"Quantized noise prediction vs the FP model's on held-out FP trajectories (steps with t >= {MIN_T})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_diagnostics(paths: Sequence[str | Path], methods: Sequence[tuple[str, str]], table: str,
                      figure: str | Path | None, stem: str | Path | None, figure_ref: str, stem_ref: str) -> str:
    """A table's per-variant diagnostics: the eps-vs-timestep figure (``figure``) and the diagnostics
    table (``stem``, titled "``table`` diagnostics"), each where given; returns the sentence the
    table's caption gains (naming them as ``figure_ref`` and ``stem_ref``)."""
    from ..variant import Variant
    from .tables import write_table

    diags = load_diagnostics(paths)
    names = dict(methods)
    labels = {v: f"{names.get(Variant.parse(v).name, v)} {Variant.parse(v).bits.label}" for v in diags}
    if figure:
        eps_vs_timestep_figure(diags, labels, figure)
    if stem:
        write_table(diagnostics_table(diags, labels), stem, f"{table} diagnostics",
                    "Samples vs the FP model's on the same seeds (pixel values in [-1, 1]); the noise prediction vs "
                    "the FP model's on held-out FP trajectories, over the steps with t >= 100.")
    return (" Per-timestep error, gain and bias of every quantized variant's noise prediction: "
            f"{figure_ref} and {stem_ref}.")
