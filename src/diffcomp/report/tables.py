"""Paper-style tables and figures from the per-variant metric JSONs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..io import atomic_path, damaged, read_json_object, write_text
from ..variant import BitSetting, Variant

METRIC_COLUMNS = (("fid", "FID"), ("sfid", "sFID"), ("is", "IS"))
CLIP_COLUMN = ("clip_score", "CLIP")  # a text-to-image protocol's (evaluation.clip_score)


def metric_columns(records: dict[str, dict]) -> tuple[tuple[str, str], ...]:
    """FID, sFID, IS, and the CLIP score when any record has one."""
    clip = any(CLIP_COLUMN[0] in r["metrics"] for r in records.values())
    return METRIC_COLUMNS + ((CLIP_COLUMN,) if clip else ())


def load_metrics(paths: Sequence[str | Path]) -> dict[str, dict]:
    """``variant -> record`` from evaluate's JSON files."""
    out = {}
    for p in paths:
        rec = read_json_object(p, ("variant", "metrics", "protocol"))
        if not isinstance(rec["metrics"], dict) or not isinstance(rec["protocol"], dict):
            raise damaged(p, "'metrics' and 'protocol' must be JSON objects")
        out[rec["variant"]] = rec
    return out


def table1(records: dict[str, dict], methods: Sequence[tuple[str, str]], bits: Sequence[str]) -> pd.DataFrame:
    """Rows = methods (FP first), columns = ``"{W/A} {metric}"``.

    ``methods`` is ``[(instance name, display label)]``; ``bits`` like ``["W8A8", "W4A8"]``.
    The FP row is the same model under every W/A column group (its reference).
    """
    rows, cols = [], metric_columns(records)
    if "fp" in records:
        rows.append(_row(records, "FP (W32A32)", [(b, "fp") for b in bits], cols))
    for name, label in methods:
        rows.append(_row(records, label, [(b, _quant(name, b)) for b in bits], cols))
    return pd.DataFrame(rows).set_index("Method")


def with_paper_columns(df: pd.DataFrame, paper, methods: Sequence[tuple[str, str]], bits: Sequence[str]) -> pd.DataFrame:
    """Table 1 with a "paper" column group beside each bit setting's measured columns:
    ``"{W/A} {metric} (paper)"`` from ``paper`` (``PaperNumbers``; the FP row's key is ``fp``),
    empty where the paper gives no number."""
    keys = {"FP (W32A32)": "fp", **{label: name for name, label in methods}}
    out = df.copy()
    order = []
    cols = [(k, c) for k, c in (*METRIC_COLUMNS, CLIP_COLUMN) if not bits or f"{bits[0]} {c}" in df.columns]
    for b in bits:
        for key, col in cols:
            out[f"{b} {col} (paper)"] = [paper.get(keys.get(label, ""), b, key) for label in df.index]
        order += [f"{b} {col}" for _, col in cols] + [f"{b} {col} (paper)" for _, col in cols]
    return out[order]


def _quant(name: str, bits_label: str) -> str:
    return str(Variant(name, bits=BitSetting.parse(bits_label)))


def _steps(name: str, n: int) -> str:
    return str(Variant(name, steps=n))


def _row(records: dict[str, dict], label: str, columns: Sequence[tuple[str, str]],
         metrics: Sequence[tuple[str, str]] = METRIC_COLUMNS) -> dict:
    """One table row: for each (column prefix, variant), its ``metrics`` (FID/sFID/IS, and the
    CLIP score where measured; None where missing)."""
    row = {"Method": label}
    for prefix, variant in columns:
        rec = records.get(variant)
        for key, col in metrics:
            row[f"{prefix} {col}"] = rec["metrics"].get(key) if rec else None
    return row


def _protocol_head(records: dict[str, dict]) -> tuple[dict, dict, str]:
    """(a protocol, its sampler, the caption's opening: extractor, sample counts, reference)."""
    protos = [r["protocol"] for r in records.values()]
    p = protos[0]
    ns = sorted({q["n_samples"] for q in protos})
    head = (f"Feature extractor: {p.get('feature_extractor')}; samples per variant: {', '.join(map(str, ns))}; "
            f"reference: {p.get('reference', '?')} ({p.get('n_reference')} images)")
    if p.get("precision", "fp32") != "fp32" or p.get("compile"):
        head += f"; sampled in {p.get('precision', 'fp32')}" + (f", compiled ({p['compile']})" if p.get("compile") else "")
    return p, p.get("sampler", {}), head


FP_TEACHER_LABEL = "DDIM (FP teacher)"


def table3(records: dict[str, dict], rows: Sequence[tuple[str, str]], steps: Sequence[int]) -> pd.DataFrame:
    """Rows = the FP teacher sampled with N DDIM steps, then every distillation instance;
    columns = ``"{N} steps {metric}"`` (variants ``fp-s{N}`` and ``{name}-s{N}``)."""
    cols = metric_columns(records)
    out = [_row(records, label, [(f"{n} steps", _steps(name, n)) for n in steps], cols)
           for name, label in [("fp", FP_TEACHER_LABEL), *rows]]
    return pd.DataFrame(out).set_index("Method")


def beats_teacher(records: dict[str, dict], teachers: dict[str, str]) -> list[tuple[str, float, str, float]]:
    """(student, its FID, teacher, the teacher's FID) for every student whose FID is lower than
    its own teacher's (both measured)."""
    out = []
    for student, teacher in teachers.items():
        fs, ft = (records.get(v, {}).get("metrics", {}).get("fid") for v in (student, teacher))
        if fs is not None and ft is not None and fs < ft:
            out.append((student, fs, teacher, ft))
    return out


def _steps_label(variant: str, labels: dict[str, str]) -> str:
    v = Variant.parse(variant)
    return f"{labels.get(v.name, v.name)}, {v.steps} steps"


def distill_caption(records: dict[str, dict], wall_seconds: dict[str, float], teachers: dict[str, str] | None = None,
                    labels: dict[str, str] | None = None) -> str:
    """The protocol of table 3, the students that score better than their own teacher
    (``teachers``: {student variant: teacher variant}; ``labels``: {instance: row label}) and the
    wall time of every distillation stage."""
    if not records:
        return ""
    p, s, head = _protocol_head(records)
    times = "; ".join(f"{k} {v:.0f} s" for k, v in wall_seconds.items())
    labels = {"fp": FP_TEACHER_LABEL, **(labels or {})}
    better = beats_teacher(records, teachers or {})
    flagged = ("Students with a lower FID than their own teacher: " + "; ".join(
        f"{_steps_label(st, labels)} (FID {fs:.2f}) < its teacher {_steps_label(te, labels)} (FID {ft:.2f})"
        for st, fs, te, ft in better) + ". ") if better else "No student has a lower FID than its own teacher. "
    return (
        f"{head}; sampler: DDIM eta 0 on the "
        f"{s.get('skip', '?')} grid, x0 clipped: {s.get('clip_x0', '?')}; seeds: {p.get('seed', '?')} + image index. "
        "An N-step student is distilled from its chain's 2N-step model (the first stage from the FP model "
        "or the chain's teacher). "
        f"FID/sFID lower is better, IS higher is better. {flagged if teachers else ''}"
        f"Distillation wall time per stage: {times or 'n/a'}."
    )


def protocol_caption(records: dict[str, dict]) -> str:
    if not records:
        return ""
    p, s, head = _protocol_head(records)
    return (
        f"{head}; sampler: {s.get('name', '?')} "
        f"{s.get('steps', '?')} steps, eta {s.get('eta', '?')}, {s.get('skip', '?')} skip; seeds: "
        f"{p.get('seed', '?')} + image index. FID/sFID lower is better, IS higher is better. "
        "The FP row repeats the full-precision model in every column group."
    )


_MARKDOWN_SPECIAL = "\\`*_[]<>|"
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}


def markdown_escape(text: str) -> str:
    """``text`` as literal Markdown inline text (a ``|`` in a label must not open a table column)."""
    return "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in str(text))


def latex_escape(text: str) -> str:
    """``text`` as literal LaTeX text (``&``, ``%``, ``_`` ... in a label or caption)."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def _relabel(df: pd.DataFrame, escape) -> pd.DataFrame:
    out = df.rename(index=escape, columns=escape)
    out.index.name = escape(df.index.name) if df.index.name else df.index.name
    return out


def _na_to_none(df: pd.DataFrame) -> pd.DataFrame:
    """Empty cells as None (Markdown shows them as ``--``, not ``nan``)."""
    return df.astype(object).where(df.notna(), None)


def write_table(df: pd.DataFrame, stem: str | Path, title: str, caption: str) -> None:
    """``{stem}.csv``, ``{stem}.md`` and ``{stem}.tex``; labels are escaped for Markdown and LaTeX
    (the config refuses labels that are not one line)."""
    stem = Path(stem)
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        df.to_csv(tmp, float_format="%.4g")
    md = f"## {title}\n\n{_na_to_none(_relabel(df, markdown_escape)).to_markdown(floatfmt='.3g', missingval='--')}\n\n{caption}\n"
    write_text(stem.with_suffix(".md"), md)
    tex = _relabel(df, latex_escape).to_latex(float_format="%.2f", na_rep="--", caption=latex_escape(f"{title}. {caption}"))
    write_text(stem.with_suffix(".tex"), tex)


def load_metric_sets(paths: Sequence[str | Path]) -> list[dict[str, dict]]:
    """evaluate's JSON files grouped into seed sets (by ``protocol.seed``, in order of first
    appearance): ``[{variant: record}]``, one mapping per seed set."""
    sets: dict[object, dict[str, dict]] = {}
    for variant, rec in ((r["variant"], r) for p in paths for r in load_metrics([p]).values()):
        sets.setdefault(rec["protocol"].get("seed"), {})[variant] = rec
    return list(sets.values())


def fid_spread(sets: Sequence[dict[str, dict]], methods: Sequence[tuple[str, str]],
               bits: Sequence[str]) -> dict[str, list[tuple[str, float, float, float]]]:
    """``{label: [(W/A, mean FID, lowest, highest)]}`` over the seed sets that have the variant
    (lowest == highest with one set); the FP model is the key "FP"."""
    out: dict[str, list[tuple[str, float, float, float]]] = {}
    rows = [("FP", [(b, "fp") for b in bits])] + [(label, [(b, _quant(name, b)) for b in bits]) for name, label in methods]
    for label, cols in rows:
        pts = []
        for b, variant in cols:
            fids = [s[variant]["metrics"]["fid"] for s in sets if variant in s]
            if fids:
                pts.append((b, sum(fids) / len(fids), min(fids), max(fids)))
        if pts:
            out[label] = pts
    return out


def fid_vs_bits_figure(records: dict[str, dict] | Sequence[dict[str, dict]], methods: Sequence[tuple[str, str]],
                       bits: Sequence[str], path: str | Path) -> None:
    """FID per method at each W/A setting; with several seed sets (a list of ``{variant:
    record}``), the mean with the lowest-to-highest spread as error bars, else plain points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [records] if isinstance(records, dict) else list(records)
    series = fid_spread(sets, methods, bits)
    fp = series.pop("FP", None)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = {b: i for i, b in enumerate(bits)}
    n = max(len(series), 1)
    for k, (label, pts) in enumerate(series.items()):
        off = (k - (n - 1) / 2) * 0.08  # side by side, so error bars do not hide each other
        xs = [x[b] + off for b, *_ in pts]
        mean = [m for _, m, _, _ in pts]
        err = [[m - lo for _, m, lo, _ in pts], [hi - m for _, m, _, hi in pts]]
        ax.errorbar(xs, mean, yerr=err if len(sets) > 1 else None, fmt="-o", capsize=3, label=label)
    if fp:
        ax.axhline(fp[0][1], ls="--", c="k", lw=1, label="FP")
        if len(sets) > 1 and fp[0][2] < fp[0][3]:
            ax.axhspan(fp[0][2], fp[0][3], color="k", alpha=0.08)
    ax.set_xticks(range(len(bits)), list(bits))
    ax.set_xlabel("W/A bits")
    ax.set_ylabel("FID" + (f" (mean, range over {len(sets)} seed sets)" if len(sets) > 1 else ""))
    ax.set_yscale("log")
    ax.set_title("FID vs bit-width")
    if series or fp:
        ax.legend(fontsize=8)
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
        pts = [(n, records[_steps(name, n)]["metrics"]["fid"]) for n in steps if _steps(name, n) in records]
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
