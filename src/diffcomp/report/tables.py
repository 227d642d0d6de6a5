"""Paper-style tables and figures from the per-variant metric JSONs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..io import atomic_path, read_json, write_text

METRIC_COLUMNS = (("fid", "FID"), ("sfid", "sFID"), ("is", "IS"))


def load_metrics(paths: Sequence[str | Path]) -> dict[str, dict]:
    """``variant -> record`` from evaluate's JSON files."""
    out = {}
    for p in paths:
        rec = read_json(p)
        out[rec["variant"]] = rec
    return out


def table1(records: dict[str, dict], methods: Sequence[tuple[str, str]], bits: Sequence[str]) -> pd.DataFrame:
    """Rows = methods (FP first), columns = ``"{W/A} {metric}"``.

    ``methods`` is ``[(instance name, display label)]``; ``bits`` like ``["W8A8", "W4A8"]``.
    The FP row is the same model under every W/A column group (its reference).
    """
    rows = []
    fp = records.get("fp")
    if fp is not None:
        row = {"Method": "FP (W32A32)"}
        for b in bits:
            for key, col in METRIC_COLUMNS:
                row[f"{b} {col}"] = fp["metrics"].get(key)
        rows.append(row)
    for name, label in methods:
        row = {"Method": label}
        for b in bits:
            rec = records.get(f"{name}-{b.lower()}")
            for key, col in METRIC_COLUMNS:
                row[f"{b} {col}"] = rec["metrics"].get(key) if rec else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("Method")


FP_TEACHER_LABEL = "DDIM (FP teacher)"


def table3(records: dict[str, dict], rows: Sequence[tuple[str, str]], steps: Sequence[int]) -> pd.DataFrame:
    """Rows = the FP teacher sampled with N DDIM steps, then every distillation instance;
    columns = ``"{N} steps {metric}"`` (variants ``fp-s{N}`` and ``{name}-s{N}``)."""
    out = []
    for name, label in [("fp", FP_TEACHER_LABEL), *rows]:
        row = {"Method": label}
        for n in steps:
            rec = records.get(f"{name}-s{n}")
            for key, col in METRIC_COLUMNS:
                row[f"{n} steps {col}"] = rec["metrics"].get(key) if rec else None
        out.append(row)
    return pd.DataFrame(out).set_index("Method")


def distill_caption(records: dict[str, dict], wall_seconds: dict[str, float]) -> str:
    """The protocol of table 3 and the wall time of every distillation stage."""
    protos = [r["protocol"] for r in records.values()]
    if not protos:
        return ""
    p = protos[0]
    s = p.get("sampler", {})
    ns = sorted({q["n_samples"] for q in protos})
    times = "; ".join(f"{k} {v:.0f} s" for k, v in wall_seconds.items())
    return (
        f"Feature extractor: {p.get('feature_extractor')}; samples per variant: {', '.join(map(str, ns))}; "
        f"reference: {p.get('reference', '?')} ({p.get('n_reference')} images); sampler: DDIM eta 0 on the "
        f"{s.get('skip', '?')} grid, x0 clipped: {s.get('clip_x0', '?')}; seeds: {p.get('seed', '?')} + image index. "
        "An N-step student is distilled from its chain's 2N-step model (the first stage from the FP model "
        "or the chain's teacher). "
        f"FID/sFID lower is better, IS higher is better. Distillation wall time per stage: {times or 'n/a'}."
    )


def protocol_caption(records: dict[str, dict]) -> str:
    protos = [r["protocol"] for r in records.values()]
    if not protos:
        return ""
    p = protos[0]
    s = p.get("sampler", {})
    ns = sorted({q["n_samples"] for q in protos})
    return (
        f"Feature extractor: {p.get('feature_extractor')}; samples per variant: {', '.join(map(str, ns))}; "
        f"reference: {p.get('reference', '?')} ({p.get('n_reference')} images); sampler: {s.get('name', '?')} "
        f"{s.get('steps', '?')} steps, eta {s.get('eta', '?')}, {s.get('skip', '?')} skip; seeds: "
        f"{p.get('seed', '?')} + image index. FID/sFID lower is better, IS higher is better. "
        "The FP row repeats the full-precision model in every column group."
    )


def write_table(df: pd.DataFrame, stem: str | Path, title: str, caption: str) -> None:
    """``{stem}.csv``, ``{stem}.md`` and ``{stem}.tex``."""
    stem = Path(stem)
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        df.to_csv(tmp, float_format="%.4g")
    md = f"## {title}\n\n{df.to_markdown(floatfmt='.3g')}\n\n{caption}\n"
    write_text(stem.with_suffix(".md"), md)
    tex = df.to_latex(float_format="%.2f", na_rep="--", caption=f"{title}. {caption}".replace("_", r"\_"))
    write_text(stem.with_suffix(".tex"), tex)


def fid_vs_bits_figure(records: dict[str, dict], methods: Sequence[tuple[str, str]], bits: Sequence[str],
                       path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = []
    for name, label in methods:
        for b in bits:
            rec = records.get(f"{name}-{b.lower()}")
            if rec:
                rows.append({"method": label, "W/A": b, "FID": rec["metrics"]["fid"]})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if rows:
        sns.pointplot(data=pd.DataFrame(rows), x="W/A", y="FID", hue="method", order=list(bits), ax=ax, markers="o")
    if "fp" in records:
        ax.axhline(records["fp"]["metrics"]["fid"], ls="--", c="k", lw=1, label="FP")
        ax.legend()
    ax.set_yscale("log")
    ax.set_title("FID vs bit-width")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def fid_vs_steps_figure(records: dict[str, dict], rows: Sequence[tuple[str, str]], steps: Sequence[int],
                        path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for (name, label), style in zip([("fp", FP_TEACHER_LABEL), *rows], ["k--o", "-o", "-s", "-^", "-v", "-D"]):
        pts = [(n, records[f"{name}-s{n}"]["metrics"]["fid"]) for n in steps if f"{name}-s{n}" in records]
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(steps), [str(n) for n in steps])
    ax.set_yscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("FID")
    ax.set_title("FID vs sampling steps")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
