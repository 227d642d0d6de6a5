"""Figures beyond the tables' own: the samples of every variant side by side on the same seeds,
and the wall time of every job."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import atomic_path


def _save(fig, path: str | Path, dpi: int = 120) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def same_seed_rows(samples: Sequence[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """(rows, n, C, H, W) uint8: the first ``n`` images of every variant, which must be the same
    image indices (seeds) in every row; ``samples`` is ``[(images, indices)]``."""
    if not samples:
        raise ValueError("no samples to show")
    first = samples[0][1][:n]
    rows = []
    for images, indices in samples:
        if not np.array_equal(indices[:n], first):
            raise ValueError(f"rows start at different image indices ({indices[:3]} vs {first[:3]}): not the same seeds")
        rows.append(images[:n])
    return np.stack(rows)


def samples_figure(rows: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> None:
    """One row of images per variant (``rows`` as from ``same_seed_rows``), labelled on the left;
    a column holds one seed."""
    plt = _pyplot()
    r, n = rows.shape[:2]
    fig, axes = plt.subplots(r, n, figsize=(0.8 * n + 1.8, 0.8 * r + 0.5), squeeze=False)
    for i in range(r):
        for j in range(n):
            ax = axes[i][j]
            img = rows[i, j].transpose(1, 2, 0)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(labels[i], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=1.6 / (0.8 * n + 1.8), right=0.99, top=0.99 - 0.4 / (0.8 * r + 0.5), bottom=0.01,
                        wspace=0.05, hspace=0.05)
    _save(fig, path)


@dataclass(frozen=True)
class JobTime:
    """A job's wall time from its Snakemake benchmark file (``results/benchmarks/...``)."""

    rule: str
    job: str
    seconds: float


def read_benchmarks(root: str | Path) -> list[JobTime]:
    """Every ``*.tsv`` under ``root``: the rule is the first path component, the job the rest."""
    root = Path(root)
    out = []
    for f in sorted(root.rglob("*.tsv")):
        rel = f.relative_to(root).with_suffix("")
        with f.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or "s" not in rows[0]:
            raise ValueError(f"{f}: not a Snakemake benchmark file (no 's' column)")
        out.append(JobTime(rel.parts[0], "/".join(rel.parts), float(rows[-1]["s"])))
    return out


def job_times_figure(times: Sequence[JobTime], path: str | Path) -> None:
    """Left: wall time per rule (all its jobs added up, job count beside the bar); right: every
    job, longest first."""
    plt = _pyplot()
    by_rule: dict[str, list[float]] = {}
    for t in times:
        by_rule.setdefault(t.rule, []).append(t.seconds)
    rules = sorted(by_rule, key=lambda r: sum(by_rule[r]))
    jobs = sorted(times, key=lambda t: t.seconds)
    height = max(3.0, 0.18 * len(jobs) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, height), gridspec_kw={"width_ratios": [1, 1.4]})
    colours = {r: plt.cm.tab20(i % 20) for i, r in enumerate(sorted(by_rule))}
    a.barh(rules, [sum(by_rule[r]) for r in rules], color=[colours[r] for r in rules])
    for i, r in enumerate(rules):
        a.text(sum(by_rule[r]), i, f" {len(by_rule[r])} job{'s' if len(by_rule[r]) > 1 else ''}", va="center", fontsize=7)
    a.set_xlabel("wall time, all jobs of the rule (s)")
    a.set_title("per rule")
    b.barh(range(len(jobs)), [t.seconds for t in jobs], color=[colours[t.rule] for t in jobs])
    b.set_yticks(range(len(jobs)), [t.job for t in jobs], fontsize=6)
    b.set_xlabel("wall time (s)")
    b.set_title("per job")
    fig.tight_layout()
    _save(fig, path)


def calibration_counts_figure(timesteps: Sequence[int], counts: Sequence[tuple[str, Sequence[int]]],
                              path: str | Path) -> None:
    """The share of the calibration inputs at each sampling step (noisiest left), one bar per
    calibration in use (``counts``: ``[(label, counts per step)]``; the count on each bar)."""
    plt = _pyplot()
    n = max(len(counts), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(7.0, 0.35 * len(timesteps) * n + 2), 3.2 + 0.25 * n))
    x = np.arange(len(timesteps))
    for i, (label, c) in enumerate(counts):
        total = max(sum(c), 1)
        bars = ax.bar(x - 0.4 + width * (i + 0.5), [v / total for v in c], width, label=f"{label} (n = {sum(c)})")
        if len(timesteps) * n <= 60:
            ax.bar_label(bars, [str(v) for v in c], fontsize=6)
    ax.set_xticks(x, [str(t) for t in timesteps])
    ax.set_xlabel("timestep of the sampling step (noisiest first)")
    ax.set_ylabel("share of the calibration inputs")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, frameon=False)
    ax.set_title("Calibration inputs per sampling step (count on each bar)")
    fig.tight_layout()
    _save(fig, path)


def channel_bits_figure(models: dict[str, dict[str, np.ndarray]], path: str | Path, n_layers: int = 4) -> None:
    """Bit width per output channel: one row per model (``{label: {layer: widths}}``), one column
    per layer (the ``n_layers`` layers of the first model whose widths vary most, in order)."""
    plt = _pyplot()
    first = next(iter(models.values()), {})
    layers = sorted(first, key=lambda n: -float(np.std(first[n])))[:n_layers]
    layers = [n for n in first if n in layers]
    fig, axes = plt.subplots(max(1, len(models)), max(1, len(layers)), squeeze=False,
                             figsize=(3.2 * max(1, len(layers)), 2.2 * max(1, len(models))))
    for r, (label, widths) in enumerate(models.items()):
        for c, layer in enumerate(layers):
            ax = axes[r][c]
            if layer in widths:
                b = widths[layer]
                ax.bar(np.arange(len(b)), b, width=1.0, color="tab:blue")
                ax.axhline(float(np.mean(b)), color="k", lw=0.8, ls="--")
                ax.set_ylim(0, float(np.max(b)) + 1)
            ax.set_title(f"{label}\n{layer}" if r == 0 else label, fontsize=7)
            ax.tick_params(labelsize=6)
            if c == 0:
                ax.set_ylabel("bits", fontsize=7)
            if r == len(models) - 1:
                ax.set_xlabel("output channel", fontsize=7)
    if not models:
        axes[0][0].text(0.5, 0.5, "no model with mixed bit widths", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    _save(fig, path)
