"""benchmarks/distill_record.py: table 3's rows and stage diagnostics from the GPU drivers' output
folders, with each row's mean and spread over seed sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _metrics(fid: float) -> dict:
    return {"metrics": {"fid": fid, "sfid": fid + 1, "is": 5.0, "kid": fid / 100, "precision": 0.8, "recall": 0.5},
            "protocol": {"n_samples": 5000}}


def _student(prediction: str, probes: list[tuple[int, float | None, float]]) -> dict:
    return {"what": "a student", "stats": {
        "seconds": 12.34, "iterations": 100, "prediction": prediction, "params": {"clip_teacher_x0": False},
        "final_losses": {"loss": 0.0123456789}, "refit_output": None,
        "diagnostics": {"gradient": [{"iteration": it, "top_step": {"loss": top, "samples": 8},
                                      "other_steps": {"loss": other or 0.0, "samples": 0 if other is None else 8},
                                      "top_share": None if other is None else 0.5} for it, other, top in probes],
                        "teacher_match": {"start": {"mse": 0.3}, "end": {"mse": 0.01}}}}}


def test_the_record_has_each_rows_seed_sets_mean_and_spread(tmp_path):
    a, b = tmp_path / "pd", tmp_path / "abl"
    for run, rows in ((a, {"fp-s1": (40.0, 39.0), "pd-s1": (8.0, 8.5)}), (b, {"pd_eps-s8": (4.5, 4.25)})):
        for i, seed in enumerate((0, 100000)):
            (run / f"s{seed}").mkdir(parents=True)
            for v, fids in rows.items():
                (run / f"s{seed}" / f"{v}.json").write_text(json.dumps(_metrics(fids[i])))
    (b / "students").mkdir()
    (b / "students" / "pd_eps-steps8.json").write_text(json.dumps(_student("eps", [(0, 0.004, 1.2), (100, 0.001, 0.01)])))
    (b / "students" / "pd-steps1.json").write_text(json.dumps(_student("v", [(0, None, 0.08)])))
    rec, fig = tmp_path / "rec.json", tmp_path / "fig.png"
    p = subprocess.run([sys.executable, str(REPO / "benchmarks/distill_record.py"), str(a), str(b), "--what", "test",
                        "--record", str(rec), "--figure", str(fig)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = json.loads(rec.read_text())
    assert r["what"] == "test" and set(r["metrics"]) == {"fp-s1", "pd-s1", "pd_eps-s8"}
    assert r["metrics"]["fp-s1"]["seeds"]["100000"]["fid"] == 39.0
    assert r["metrics"]["fp-s1"]["mean"]["fid"] == 39.5 and r["metrics"]["fp-s1"]["spread"]["fid"] == 1.0
    assert r["metrics"]["pd_eps-s8"]["mean"]["kid"] == pytest.approx(0.04375, abs=1e-4) and r["metrics"]["pd-s1"]["spread"]["fid"] == 0.5
    eps = r["stages"]["pd_eps-steps8"]
    assert eps["prediction"] == "eps" and eps["final_loss"] == 0.012346 and eps["teacher_match"] == {"start": 0.3, "end": 0.01}
    assert [(q["iteration"], q["other_steps"], q["top_step"]) for q in eps["probes"]] == [(0, 0.004, 1.2), (100, 0.001, 0.01)]
    assert r["stages"]["pd-steps1"]["probes"][0]["other_steps"] is None  # a 1-step student has no other steps
    assert fig.stat().st_size > 10_000

    p = subprocess.run([sys.executable, str(REPO / "benchmarks/distill_record.py"), str(tmp_path / "none"), "--what", "x",
                        "--record", str(rec)], capture_output=True, text=True)
    assert p.returncode != 0 and "no run folder" in p.stderr


def test_the_figure_draws_an_earlier_records_rows_dashed_beside(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_record", REPO / "benchmarks/distill_record.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = {"seeds": {"0": {"fid": 9.0}, "1": {"fid": 8.0}}, "mean": {"fid": 8.5}}
    cpu = {"metrics": {"rdd-s1": row, "rdd-s2": row, "fp-s1": row}, "stages": {}}
    gpu = {"metrics": {"pd-s1": row, "pd-s2": row, "fp-s1": row}, "stages": {}}
    fig = mod.draw(cpu, tmp_path / "f.png", others={"distill_h200": gpu})
    lines = {ln.get_label(): ln.get_linestyle() for ln in fig.axes[0].get_lines()}
    assert lines["rdd"] == "-" and lines["pd [distill_h200]"] == "--"  # this record's rows solid, the other's dashed
    assert set(lines) == {"rdd", "DDIM (FP teacher)", "pd [distill_h200]", "DDIM (FP teacher) [distill_h200]"}
    run = tmp_path / "run" / "s0"
    run.mkdir(parents=True)
    (run / "rdd-s1.json").write_text(json.dumps(_metrics(9.0)))
    p = subprocess.run([sys.executable, str(REPO / "benchmarks/distill_record.py"), str(tmp_path / "run"), "--what", "x",
                        "--record", str(tmp_path / "r.json"), "--figure", str(tmp_path / "g.png"),
                        "--with", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert p.returncode != 0 and "no record" in p.stderr


def test_gap_points_pair_each_student_with_its_teachers_seed_sets_and_its_end_match(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_record", REPO / "benchmarks/distill_record.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def row(a: float, b: float) -> dict:
        return {"seeds": {"0": {"fid": a}, "100000": {"fid": b}}, "mean": {"fid": (a + b) / 2}}

    def stage(pred: str, end: float) -> dict:
        return {"prediction": pred, "iterations": 20000, "probes": [], "teacher_match": {"start": 0.3, "end": end}}

    earlier = {"metrics": {"fp-s16": row(4.0, 3.5), "pd-s8": row(6.5, 6.0), "pd-s4": row(7.0, 7.0)},
               "stages": {"pd-steps8": stage("v", 0.011), "pd-steps4": stage("v", 0.002)}}
    run = {"metrics": {"pd_eps_long-s8": row(4.5, 4.25), "pd_x-s8": row(5.0, 5.0)},
           "stages": {"pd_eps_long-steps8": stage("eps", 0.001)}}  # pd_x has no stage record: left out
    pts = mod.gap_points({"": run, "distill_h200": earlier}, "fp-s16")
    got = {(p["method"], p["source"]): (p["match"], p["gaps"], p["prediction"]) for p in pts}
    # the teacher's seed sets come from the record that has them, paired seed by seed; 4-step students are not 8-step
    assert got == {("pd_eps_long", ""): (0.001, {"0": 0.5, "100000": 0.75}, "eps"),
                   ("pd", "distill_h200"): (0.011, {"0": 2.5, "100000": 2.5}, "v")}
    fig = mod.draw(run, tmp_path / "g.png", others={"distill_h200": earlier}, gap_to="fp-s16")
    assert "FID above fp-s16" in fig.axes[0].get_ylabel() and (tmp_path / "g.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no record has the variant 'fp-s32'"):
        mod.gap_points({"": run}, "fp-s32")
