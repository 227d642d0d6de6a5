"""The GPU-machine drivers of table 3 (benchmarks/h200_distill_*.sh) run here against a stand-in
for Python that records each snakemake call and makes the files it was asked for: the targets
they request, the GPUs they pin and what they hand back are checked without a GPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_PY = r"""#!/usr/bin/env bash
# stands in for python3: '-c' answers the GPU count; '-m snakemake' records its call and makes
# every target it names (a .json a metrics file, anything else a student folder)
if [ "$1" = -c ]; then echo "${FAKE_GPUS:-0}"; exit 0; fi
if [ "$1" = -m ] && [ "$2" = snakemake ]; then
  shift 2
  printf '%s\n' "$(printf '%s\t' "${CUDA_VISIBLE_DEVICES:-}" "$@")" >> "$CALLS"
  for a in "$@"; do
    case "$a" in
      results/metrics/*.json) mkdir -p results/metrics; echo '{"metrics": {"fid": 1.0}}' > "$a" ;;
      results/distill/*/steps*/provenance.json) mkdir -p "$(dirname "$a")/unet"; echo '{}' > "$a" ;;
      results/distill/*/steps*) mkdir -p "$a/unet"; echo '{}' > "$a/provenance.json"; echo x > "$a/unet/w" ;;
      results/*.npz) mkdir -p "$(dirname "$a")"; echo x > "$a" ;;
    esac
  done
  exit 0
fi
exit 0  # job_times.py and the like
"""


@pytest.fixture
def sandbox(tmp_path):
    work = tmp_path / "work"
    (work / "benchmarks").mkdir(parents=True)
    for f in ("h200_distill_split.sh", "h200_distill_gpus.sh", "distill_env.sh"):
        shutil.copy(REPO / "benchmarks" / f, work / "benchmarks" / f)
    py = tmp_path / "python"
    py.write_text(FAKE_PY)
    py.chmod(0o755)
    env = {**os.environ, "PY": str(py), "CALLS": str(tmp_path / "calls.tsv")}
    return work, env, tmp_path / "calls.tsv"


def _calls(path: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t")[:-1] for line in path.read_text().splitlines()]


def _targets(call: list[str]) -> list[str]:
    return [a for a in call[1:] if a.startswith("results/")]


def test_the_split_driver_asks_for_metrics_files_and_hands_back_pds_student(sandbox):
    work, env, calls = sandbox
    out = work / "out"
    env = {**env, "DATASET_ROOT": "/data/fm", "CONFIG_EXTRA": "distillation={precision: fp32}",
           "SNAKEMAKE_ARGS": "--scheduler greedy"}
    # the fake makes no students: give it PD's 8-step one, as the real run leaves it
    (work / "results/distill/pd/steps8/unet").mkdir(parents=True)
    (work / "results/distill/pd/steps8/provenance.json").write_text("{}")
    p = subprocess.run(["bash", "benchmarks/h200_distill_split.sh", "pd", str(out)], cwd=work, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    runs = _calls(calls)
    assert len(runs) == 2  # one per seed set
    for run, seed in zip(runs, (0, 100000)):
        assert _targets(run) == [f"results/metrics/{v}.json" for v in
                                 ("fp-s1", "fp-s2", "fp-s4", "fp-s8", "fp-s16", "pd-s1", "pd-s2", "pd-s4", "pd-s8")]
        assert f"evaluation={{seed: {seed}}}" in run and "dataset={root: /data/fm}" in run
        assert "distillation={precision: fp32}" in run and "--scheduler" in run
        assert (out / f"s{seed}" / "pd-s8.json").exists()
    assert (out / "students" / "pd-steps8.json").exists()  # the stage diagnostics come back
    with tarfile.open(out / "pd-s8.tgz") as t:
        assert "steps8/provenance.json" in t.getnames()

    # the rdd part unpacks that student before asking for the RDD rows
    calls.unlink()
    shutil.rmtree(work / "results")
    p = subprocess.run(["bash", "benchmarks/h200_distill_split.sh", "rdd", str(work / "out2"), str(out / "pd-s8.tgz")],
                       cwd=work, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    runs = _calls(calls)
    assert _targets(runs[0]) == ["results/data/train.npz"]
    assert _targets(runs[1]) == [f"results/metrics/{r}-s{n}.json" for r in ("rdd", "rdd_pd") for n in (1, 2, 4)]
    assert (work / "results/distill/pd/steps8/provenance.json").exists()

    # the ablations part: the rows named (all three by default), both seed sets; a wrong name is refused
    calls.unlink()
    p = subprocess.run(["bash", "benchmarks/h200_distill_split.sh", "ablations", str(work / "out3"), "pd_eps", "pd_clip"],
                       cwd=work, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    runs = _calls(calls)
    assert len(runs) == 2 and all(_targets(r) == ["results/metrics/pd_eps-s8.json", "results/metrics/pd_clip-s8.json"]
                                  for r in runs)
    assert (work / "out3/s100000/pd_clip-s8.json").exists()
    calls.unlink()
    p = subprocess.run(["bash", "benchmarks/h200_distill_split.sh", "ablations", str(work / "out4")],
                       cwd=work, env=env, capture_output=True, text=True)
    assert p.returncode == 0 and _targets(_calls(calls)[0]) == [f"results/metrics/pd_{a}-s8.json"
                                                                for a in ("eps", "clip", "long", "eps_long")] + \
        [f"results/metrics/pd_eps_v-s{n}.json" for n in (4, 2, 1)]
    p = subprocess.run(["bash", "benchmarks/h200_distill_split.sh", "ablations", str(work / "out5"), "pd_x"],
                       cwd=work, env=env, capture_output=True, text=True)
    assert p.returncode == 2 and "no row 'pd_x'" in p.stderr


def test_the_multi_gpu_driver_runs_one_chain_per_gpu_after_the_shared_student(sandbox):
    work, env, calls = sandbox
    out = work / "out"
    p = subprocess.run(["bash", "benchmarks/h200_distill_gpus.sh", str(out)], cwd=work,
                       env={**env, "FAKE_GPUS": "3"}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr + p.stdout
    runs = _calls(calls)
    first = runs[0]
    assert first[0] == "0" and "results/distill/pd/steps8/provenance.json" in _targets(first)
    by_gpu: dict[str, list[list[str]]] = {}
    for run in runs[1:]:
        assert "--nolock" in run
        by_gpu.setdefault(run[0], []).append(run)
    assert sorted(by_gpu) == ["0", "1", "2"]  # three GPUs: no ablation rows
    wanted = {"0": ("fp-s1", "fp-s2", "fp-s4", "fp-s8", "fp-s16", "pd-s1", "pd-s2", "pd-s4", "pd-s8"),
              "1": ("rdd-s1", "rdd-s2", "rdd-s4"), "2": ("rdd_pd-s1", "rdd_pd-s2", "rdd_pd-s4")}
    for gpu, rows in wanted.items():
        assert len(by_gpu[gpu]) == 2  # both seed sets
        for run in by_gpu[gpu]:
            assert _targets(run) == [f"results/metrics/{v}.json" for v in rows]
        for seed in (0, 100000):
            assert all((out / f"s{seed}" / f"{v}.json").exists() for v in rows)
    assert json.loads((out / "s0" / "rdd-s1.json").read_text())["metrics"]["fid"] == 1.0

    calls.unlink()
    p = subprocess.run(["bash", "benchmarks/h200_distill_gpus.sh", str(work / "o4")], cwd=work,
                       env={**env, "FAKE_GPUS": "4"}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    fourth = [run for run in _calls(calls) if run[0] == "3"]
    assert len(fourth) == 2 and all(_targets(r) == [f"results/metrics/pd_{a}-s8.json"
                                                    for a in ("eps", "clip", "long", "eps_long")]
                                    + [f"results/metrics/pd_eps_v-s{n}.json" for n in (4, 2, 1)] for r in fourth)

    p = subprocess.run(["bash", "benchmarks/h200_distill_gpus.sh", str(work / "o")], cwd=work,
                       env={**env, "FAKE_GPUS": "2"}, capture_output=True, text=True)
    assert p.returncode == 2 and "needs 3 GPUs" in p.stderr

    # chains named: on two GPUs, the two RDD rows side by side after PD's student
    calls.unlink()
    p = subprocess.run(["bash", "benchmarks/h200_distill_gpus.sh", str(work / "o2"), "rdd", "rdd_pd"], cwd=work,
                       env={**env, "FAKE_GPUS": "2"}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    runs = _calls(calls)
    assert runs[0][0] == "0" and "results/distill/pd/steps8/provenance.json" in _targets(runs[0])
    assert sorted((r[0], tuple(_targets(r))) for r in runs[1:]) == sorted(
        (gpu, tuple(f"results/metrics/{row}-s{n}.json" for n in (1, 2, 4)))
        for gpu, row in (("0", "rdd"), ("1", "rdd_pd")) for _ in (0, 100000))
    # the ablations alone need no PD student; a chain name that does not exist is refused
    calls.unlink()
    p = subprocess.run(["bash", "benchmarks/h200_distill_gpus.sh", str(work / "o3"), "ablations"], cwd=work,
                       env={**env, "FAKE_GPUS": "1"}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "results/distill/pd/steps8/provenance.json" not in _targets(_calls(calls)[0])
    # single ablation rows as chains: one GPU each, no PD student first
    calls.unlink()
    p = subprocess.run(["bash", "benchmarks/h200_distill_gpus.sh", str(work / "o4"), "pd_long", "pd_eps_v"], cwd=work,
                       env={**env, "FAKE_GPUS": "2"}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    runs = _calls(calls)
    assert "results/distill/pd/steps8/provenance.json" not in _targets(runs[0])
    assert sorted((r[0], tuple(_targets(r))) for r in runs[1:]) == sorted(
        [("0", ("results/metrics/pd_long-s8.json",))] * 2
        + [("1", tuple(f"results/metrics/pd_eps_v-s{n}.json" for n in (4, 2, 1)))] * 2)
    # the budget chain: both longer first stages on GPU 0, in one snakemake run with cores for both
    calls.unlink()
    p = subprocess.run(["bash", "benchmarks/h200_distill_gpus.sh", str(work / "o6"), "budget", "pd_eps_v"], cwd=work,
                       env={**env, "FAKE_GPUS": "2"}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    zero = [r for r in _calls(calls)[1:] if r[0] == "0"]
    assert len(zero) == 2 and all(_targets(r) == ["results/metrics/pd_long-s8.json", "results/metrics/pd_eps_long-s8.json"]
                                  for r in zero)
    cores = int(zero[0][zero[0].index("--cores") + 1])
    assert cores == max(5, len(os.sched_getaffinity(0)) // 2)
    p = subprocess.run(["bash", "benchmarks/h200_distill_gpus.sh", str(work / "o5"), "rdd", "rdx"], cwd=work,
                       env={**env, "FAKE_GPUS": "2"}, capture_output=True, text=True)
    assert p.returncode == 2 and "no chain 'rdx'" in p.stderr


def test_the_pd_switch_driver_adds_three_switching_chains_to_the_default(sandbox):
    """benchmarks/pd_switch.sh: one --config mapping that adds the three chains (each the default's
    PD recipe with eps students up to a stage and v from the next on, after the default's eps
    chain), beside the default's v and eps PD rows: all 19 variants for both seed sets."""
    import yaml

    work, env, calls = sandbox
    shutil.copy(REPO / "benchmarks" / "pd_switch.sh", work / "benchmarks" / "pd_switch.sh")
    for m, steps in (("pd", (8, 4, 2, 1)), ("pd_eps", (8, 4, 2, 1)), ("pd_v4", (4, 2, 1)), ("pd_v2", (2, 1)), ("pd_v1", (1,))):
        for n in steps:  # the fake makes no students: leave them as the real run does
            (work / f"results/distill/{m}/steps{n}").mkdir(parents=True)
            (work / f"results/distill/{m}/steps{n}/provenance.json").write_text("{}")
    p = subprocess.run(["bash", "benchmarks/pd_switch.sh", str(work / "out")], cwd=work, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    runs = _calls(calls)
    assert len(runs) == 2
    for run, seed in zip(runs, (0, 100000)):
        assert len(_targets(run)) == 19 and "results/metrics/pd_v1-s1.json" in _targets(run)
        assert f"evaluation={{seed: {seed}}}" in run
        extra = next(a for a in run if a.startswith("distillation="))
        rows = yaml.safe_load(extra.split("=", 1)[1])["methods"]
        assert set(rows) == {"pd_v4", "pd_v2", "pd_v1"}
        assert all(r["method"] == "pd" and r["parameterization"] == "v" and r["iters"] == 60 for r in rows.values())
        assert all(r["teacher"] == "pd_eps" for r in rows.values()) and rows["pd_v2"]["steps"] == [2, 1]
        assert {"results/metrics/pd-s8.json", "results/metrics/pd_eps-s1.json"} <= set(_targets(run))
    assert (work / "out/s100000/pd_eps-s8.json").exists() and (work / "out/students/pd_v4-steps2.json").exists()
    # the chains' teacher is a row of the default config, with eps students
    from diffcomp.config import load_config

    cfg = load_config(REPO / "config/default.yaml", check_paths=False, base_dir=REPO)
    assert cfg.distill_method("pd_eps").built.parameterization == "eps"
    assert cfg.distill_method("pd").built.parameterization == "v"
