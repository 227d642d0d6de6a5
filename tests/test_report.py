import json

import pandas as pd
import pytest

from diffcomp.report.grid import make_grid
from diffcomp.report.tables import fid_vs_bits_figure, load_metrics, protocol_caption, table1, write_table


def _rec(variant, fid, sfid, is_):
    return {"variant": variant, "metrics": {"fid": fid, "sfid": sfid, "is": is_},
            "protocol": {"feature_extractor": "fmnist-classifier", "n_samples": 1000, "n_reference": 10000,
                         "seed": 0, "reference": "test", "sampler": {"name": "ddim", "steps": 10, "eta": 0.0, "skip": "uniform"}}}


@pytest.fixture
def records(tmp_path):
    recs = [_rec("fp", 1.0, 2.0, 8.0), _rec("linear-w8a8", 1.1, 2.1, 7.9), _rec("linear-w4a8", 9.0, 12.0, 5.0)]
    paths = []
    for r in recs:
        p = tmp_path / f"{r['variant']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    return load_metrics(paths)


def test_table1_layout(records):
    df = table1(records, [("linear", "Linear Quant"), ("qdiff", "Q-Diffusion")], ["W8A8", "W4A8"])
    assert list(df.index) == ["FP (W32A32)", "Linear Quant", "Q-Diffusion"]
    assert list(df.columns) == ["W8A8 FID", "W8A8 sFID", "W8A8 IS", "W4A8 FID", "W4A8 sFID", "W4A8 IS"]
    assert df.loc["Linear Quant", "W4A8 FID"] == 9.0 and df.loc["FP (W32A32)", "W4A8 FID"] == 1.0
    assert pd.isna(df.loc["Q-Diffusion", "W8A8 FID"])  # missing variant -> empty cell, never invented


def test_a_text_to_image_table_has_a_clip_score_column(records):
    """The CLIP score is a column only where it was measured, read from each variant's record."""
    from diffcomp.report.tables import table3, with_paper_columns

    with_clip = {k: {**r, "metrics": {**r["metrics"], "clip_score": 30.0 + i}} for i, (k, r) in enumerate(records.items())}
    df = table1(with_clip, [("linear", "Linear Quant")], ["W8A8", "W4A8"])
    assert list(df.columns) == ["W8A8 FID", "W8A8 sFID", "W8A8 IS", "W8A8 CLIP", "W4A8 FID", "W4A8 sFID", "W4A8 IS",
                                "W4A8 CLIP"]
    assert df.loc["FP (W32A32)", "W8A8 CLIP"] == 30.0 and df.loc["Linear Quant", "W4A8 CLIP"] == 32.0

    class NoPaper:
        def get(self, *key):
            return None

    assert "W4A8 CLIP (paper)" in with_paper_columns(df, NoPaper(), [("linear", "Linear Quant")], ["W8A8", "W4A8"])
    assert "W8A8 CLIP" not in table1(records, [("linear", "Linear Quant")], ["W8A8"]).columns
    steps = {"fp-s4": {**records["fp"], "variant": "fp-s4", "metrics": {"fid": 1.0, "clip_score": 29.5}}}
    assert table3(steps, [], [4]).loc[:, "4 steps CLIP"].tolist() == [29.5]


def test_write_table_and_figure(records, tmp_path):
    df = table1(records, [("linear", "Linear Quant")], ["W8A8", "W4A8"])
    cap = protocol_caption(records)
    assert "fmnist-classifier" in cap and "1000" in cap and "10 steps" in cap
    write_table(df, tmp_path / "t1", "Table 1", cap)
    back = pd.read_csv(tmp_path / "t1.csv", index_col=0)
    assert back.loc["Linear Quant", "W4A8 FID"] == 9.0
    assert "| Linear Quant" in (tmp_path / "t1.md").read_text()
    assert "\\begin{tabular}" in (tmp_path / "t1.tex").read_text()
    fid_vs_bits_figure(records, [("linear", "Linear Quant")], ["W8A8", "W4A8"], tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_grid_places_images_in_rows():
    import numpy as np

    imgs = np.stack([np.full((1, 4, 4), i * 10, dtype=np.uint8) for i in range(10)])
    g = make_grid(imgs, nrow=4, pad=1)
    assert g.shape == (3 * 5 + 1, 4 * 5 + 1, 1)
    assert g[1, 1, 0] == 0 and g[1 + 5, 1 + 5, 0] == 50 and g[-2, -2, 0] == 255  # last row has 2 images


def test_table3_layout_caption_and_figure(tmp_path):
    from diffcomp.report.tables import distill_caption, fid_vs_steps_figure, table3

    recs = {v: _rec(v, f, 2 * f, 5.0) for v, f in [("fp-s1", 40.0), ("fp-s2", 26.0), ("pd-s1", 50.0), ("pd-s2", 20.0),
                                                   ("rdd-s2", 18.0)]}
    df = table3(recs, [("pd", "PD"), ("rdd", "RDD")], [1, 2])
    assert list(df.index) == ["DDIM (FP teacher)", "PD", "RDD"]
    assert list(df.columns) == ["1 steps FID", "1 steps sFID", "1 steps IS", "2 steps FID", "2 steps sFID", "2 steps IS"]
    assert df.loc["PD", "1 steps FID"] == 50.0 and df.loc["RDD", "2 steps sFID"] == 36.0
    assert pd.isna(df.loc["RDD", "1 steps FID"])  # the 1-step RDD student is missing: an empty cell
    cap = distill_caption(recs, {"pd-s2": 43.2, "pd-s1": 81.0})
    assert "pd-s2 43 s; pd-s1 81 s" in cap and "fmnist-classifier" in cap
    fid_vs_steps_figure(recs, [("pd", "PD"), ("rdd", "RDD")], [1, 2], tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_table3_caption_names_students_that_beat_their_own_teacher():
    from diffcomp.report.tables import beats_teacher, distill_caption

    recs = {v: _rec(v, f, 2 * f, 5.0) for v, f in [("fp-s16", 6.0), ("pd-s8", 5.5), ("pd-s4", 7.0), ("rdd-s4", 6.9),
                                                   ("rdd-s2", 9.0)]}
    teachers = {"pd-s8": "fp-s16", "pd-s4": "pd-s8", "rdd-s4": "pd-s8", "rdd-s2": "rdd-s4", "rdd-s1": "rdd-s2"}
    # better than its own teacher: pd-s8 (5.5 < 6.0); rdd-s4 (6.9) beats pd-s4 (7.0) but not its teacher pd-s8
    assert beats_teacher(recs, teachers) == [("pd-s8", 5.5, "fp-s16", 6.0)]
    cap = distill_caption(recs, {}, teachers, {"pd": "PD", "rdd": "RDD"})
    assert ("Students with a lower FID than their own teacher: PD, 8 steps (FID 5.50) < its teacher "
            "DDIM (FP teacher), 16 steps (FID 6.00).") in cap
    recs["pd-s8"] = _rec("pd-s8", 6.5, 13.0, 5.0)
    assert "No student has a lower FID than its own teacher." in distill_caption(recs, {}, teachers, {})


def _seed_rec(variant, fid, seed):
    return {"variant": variant, "metrics": {"fid": fid, "sfid": 1.0, "is": 1.0},
            "protocol": {"seed": seed, "n_samples": 8, "sampler": {}}}


def test_fid_spread_over_seed_sets_gives_error_bars_and_one_set_plain_points(tmp_path):
    from diffcomp.io import write_json
    from diffcomp.report.tables import fid_spread, fid_vs_bits_figure, load_metric_sets

    paths = []
    for seed, shift in [(0, 0.0), (100000, 1.0)]:
        for v, fid in [("fp", 5.0), ("linear-w8a8", 6.0), ("linear-w4a8", 9.0)]:
            p = tmp_path / f"{v}-{seed}.json"
            write_json(p, _seed_rec(v, fid + shift, seed))
            paths.append(p)
    sets = load_metric_sets(paths)
    assert len(sets) == 2 and sets[1]["fp"]["metrics"]["fid"] == 6.0
    two = fid_spread(sets, [("linear", "Linear")], ["W8A8", "W4A8"])
    assert two["Linear"] == [("W8A8", 6.5, 6.0, 7.0), ("W4A8", 9.5, 9.0, 10.0)]
    assert two["FP"][0][1:] == (5.5, 5.0, 6.0)
    one = fid_spread(sets[:1], [("linear", "Linear")], ["W8A8", "W4A8"])
    assert all(lo == m == hi for _, m, lo, hi in one["Linear"])
    fid_vs_bits_figure(sets, [("linear", "Linear")], ["W8A8", "W4A8"], tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_html_table_has_its_caption_protocol_and_escapes_text():
    import pandas as pd

    from diffcomp.report.html import table_html

    df = pd.DataFrame({"W4A8 FID": [1.234, None]}, index=pd.Index(["FP", "<b>x</b> & y"], name="Method"))
    page = table_html(df, "Table 1: PTQ", "seeds: 0 + index <i>")
    assert "<caption>Table 1: PTQ</caption>" in page and page.index("<caption>") < page.index("<thead>")
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in page and "<b>x</b>" not in page
    assert "1.23" in page and "--" in page
    assert '<p class="protocol">seeds: 0 + index &lt;i&gt;</p>' in page


def test_samples_rows_must_share_their_seeds():
    import numpy as np

    from diffcomp.report.figures import same_seed_rows

    imgs = np.zeros((4, 1, 8, 8), dtype=np.uint8)
    rows = same_seed_rows([(imgs, np.arange(4)), (imgs + 1, np.arange(4))], 3)
    assert rows.shape == (2, 3, 1, 8, 8) and (rows[1] == 1).all()
    with pytest.raises(ValueError, match="not the same seeds"):
        same_seed_rows([(imgs, np.arange(4)), (imgs, np.arange(4) + 16)], 3)


def test_job_times_read_from_benchmark_files(tmp_path):
    from diffcomp.report.figures import job_times_figure, read_benchmarks

    for rel, s in [("quantize/linear-w4a8.tsv", 12.5), ("table1.tsv", 1.0)]:
        f = tmp_path / "bench" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"s\th:m:s\tmax_rss\n{s}\t0:00:12\t100\n")
    times = read_benchmarks(tmp_path / "bench")
    assert [(t.rule, t.job, t.seconds) for t in times] == [("quantize", "quantize/linear-w4a8", 12.5), ("table1", "table1", 1.0)]
    job_times_figure(times, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- wiring (issue 18)


ALL_METRICS = ("fid", "sfid", "is", "is_std", "kid", "kid_std", "precision", "recall")


def _distinct(variant, base):
    """A record whose every metric has its own value (base + 0.1 * position)."""
    rec = _rec(variant, 0, 0, 0)
    rec["metrics"] = {m: base + 0.1 * i for i, m in enumerate(ALL_METRICS)}
    return rec


def test_every_table_cell_reads_its_own_metric():
    recs = {v: _distinct(v, b) for v, b in (("fp", 10), ("linear-w8a8", 20), ("linear-w4a8", 30), ("fp-s1", 40),
                                            ("pd-s1", 50))}
    t1 = table1(recs, [("linear", "Linear Quant")], ["W8A8", "W4A8"])
    t3 = __import__("diffcomp.report.tables", fromlist=["table3"]).table3(recs, [("pd", "PD")], [1])
    for df, cells in ((t1, {("Linear Quant", "W8A8"): "linear-w8a8", ("Linear Quant", "W4A8"): "linear-w4a8",
                            ("FP (W32A32)", "W4A8"): "fp"}),
                      (t3, {("PD", "1 steps"): "pd-s1", ("DDIM (FP teacher)", "1 steps"): "fp-s1"})):
        for (row, prefix), variant in cells.items():
            for key, col in (("fid", "FID"), ("sfid", "sFID"), ("is", "IS")):
                assert df.loc[row, f"{prefix} {col}"] == recs[variant]["metrics"][key], (row, prefix, col)


def test_labels_cannot_break_the_markdown_or_latex_table(tmp_path):
    label = "A|B & C_1 %x $y$ #2 {z} ~^ \\ *w*"
    df = table1({"linear-w8a8": _distinct("linear-w8a8", 1)}, [("linear", label)], ["W8A8"])
    write_table(df, tmp_path / "t", "Table 1", "caption with 50% & a_b")
    md = (tmp_path / "t.md").read_text().splitlines()
    rows = [line for line in md if line.startswith("|")]
    assert len(rows) == 3  # header, rule, one method row: no fake row
    assert all(line.replace("\\|", "").count("|") == 5 for line in rows)  # 4 columns: no extra one
    tex = (tmp_path / "t.tex").read_text()
    row = next(line for line in tex.splitlines() if line.startswith("A"))
    assert row.count("&") - row.count("\\&") == 3  # 3 column separators, the label's & escaped
    for raw, escaped in (("%", "\\%"), ("_", "\\_"), ("$", "\\$"), ("#", "\\#"), ("{", "\\{")):
        assert escaped in row, raw
    assert "50\\% \\& a\\_b" in tex
    assert pd.read_csv(tmp_path / "t.csv", index_col=0).index[0] == label  # the CSV keeps it as it is
