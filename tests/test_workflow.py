"""The DAG end to end on the micro config, dry runs of every config, and partial reruns."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, needs_fmnist

COPY = ["Snakefile", "workflow", "config", "src", "resources", "envs", "tests/configs"]


def make_copy(dst: Path) -> Path:
    for item in COPY:
        src = REPO / item
        target = dst / item
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dst


def snakemake(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def planned_jobs(out: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    jobs = {}
    m = re.search(r"Job stats:\n(.*?)\n\n", out + "\n\n", re.S)
    if not m:
        return jobs
    for line in m.group(1).splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    return make_copy(tmp_path_factory.mktemp("wf"))


@pytest.mark.workflow
@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_dry_run_of_every_config(repo_copy, config):
    p = snakemake(repo_copy, "-n", "--configfile", f"config/{config}", "results/table1.csv")
    assert "table1" in planned_jobs(p.stdout + p.stderr)


@pytest.mark.workflow
def test_bad_config_stops_before_any_job(repo_copy):
    bad = repo_copy / "bad.yaml"
    bad.write_text((repo_copy / "config/default.yaml").read_text().replace("steps: 10", "steps: -3"))
    p = snakemake(repo_copy, "-n", "--configfile", "bad.yaml", check=False)
    assert p.returncode != 0
    assert "invalid config: config key 'sampler.steps': -3 is less than the minimum of 1" in p.stdout + p.stderr
    assert not (repo_copy / "results").exists()


@pytest.mark.workflow
@needs_fmnist
def test_micro_dag_end_to_end_then_partial_rerun(tmp_path):
    wd = make_copy(tmp_path)
    cfg = ["--configfile", "tests/configs/micro.yaml"]
    snakemake(wd, *cfg, "results/table1.csv")
    df = pd.read_csv(wd / "results/table1.csv", index_col=0)
    assert list(df.index) == ["FP (W32A32)", "Linear Quant", "Q-Diffusion"]
    assert list(df.columns) == ["W8A8 FID", "W8A8 sFID", "W8A8 IS", "W4A8 FID", "W4A8 sFID", "W4A8 IS"]
    assert df.drop(index="Q-Diffusion").notna().all().all() and (df.fillna(1) > 0).all().all()
    assert df.loc["Q-Diffusion"].isna().tolist() == [True] * 3 + [False] * 3  # only W4A8 was asked for
    for f in ["results/table1.md", "results/table1.tex", "results/figures/fid_vs_bits.png",
              "results/grids/fp.png", "results/grids/linear-w4a8.png", "logs/quantize/linear-w4a8.log"]:
        assert (wd / f).stat().st_size > 0, f
    assert "quantized in" in (wd / "logs/quantize/linear-w4a8.log").read_text()

    # nothing to do the second time
    p = snakemake(wd, *cfg, "-n", "results/table1.csv")
    assert planned_jobs(p.stdout + p.stderr) == {}, p.stdout

    # editing the linear method reruns only its quantize/sample/gather/evaluate jobs and the table,
    # not the dataset, trajectories, reference statistics, FP samples or Q-Diffusion
    src = wd / "src/diffcomp/methods/linear.py"
    src.write_text(src.read_text() + "\n# an edit\n")
    p = snakemake(wd, *cfg, "-n", "results/table1.csv")
    assert planned_jobs(p.stdout + p.stderr) == {
        "quantize": 2, "sample_shard": 4, "gather": 2, "evaluate": 2, "table1": 1,
    }, p.stdout
