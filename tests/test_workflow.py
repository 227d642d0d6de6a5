"""The DAG end to end on the micro config (locally and on a real SLURM cluster), dry runs of
every config, bad configs, and partial reruns after code and config changes."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, needs_fmnist, place_hand_inputs
from slurm_cluster import slurm_cluster, unavailable_reason

COPY = ["Snakefile", "workflow", "config", "src", "resources", "envs", "tests/configs"]
MICRO = ["--configfile=tests/configs/micro.yaml"]
pytestmark = pytest.mark.workflow


def make_copy(dst: Path, src: Path = REPO, extra: tuple[str, ...] = ()) -> Path:
    for item in COPY + list(extra):
        s, t = src / item, dst / item
        if not s.exists():
            continue
        if s.is_dir():
            shutil.copytree(s, t, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, t)
    return dst


def snakemake_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a snakemake process that does not use SLURM: SLURM_CONF names a config
    whose controller refuses at once (tests/data/no-controller-slurm.conf says why: up to 10 s per
    snakemake process otherwise, on a machine with slurm-wlm but no live controller)."""
    return {**(os.environ if base is None else base), "SLURM_CONF": str(REPO / "tests/data/no-controller-slurm.conf")}


def snakemake(cwd: Path, *args: str, check: bool = True, slurm: bool = False) -> subprocess.CompletedProcess:
    """snakemake in cwd; slurm=True keeps the machine's SLURM config (the test cluster's)."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1200,
                       env=None if slurm else snakemake_env())
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def planned_jobs(p: subprocess.CompletedProcess) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count} ({} when nothing is to be done)."""
    out = p.stdout + p.stderr
    m = re.search(r"Job stats:\n(.*?)\n\n", out + "\n\n", re.S)
    jobs = {}
    for line in (m.group(1).splitlines()[2:] if m else []):
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    return make_copy(tmp_path_factory.mktemp("wf"))


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_dry_run_of_every_config(repo_copy, config):
    if config in ("sd-v1-4.yaml", "lsun-church-ldm8.yaml"):
        place_hand_inputs(repo_copy)
    tables = ["table1"] + (["table3"] if "distillation" in yaml.safe_load((REPO / "config" / config).read_text()) else [])
    p = snakemake(repo_copy, "-n", f"--configfile=config/{config}", *(f"results/{t}.csv" for t in tables))
    plan = planned_jobs(p)
    assert all(t in plan for t in tables)


def _job_inputs(p: subprocess.CompletedProcess, rule: str) -> dict[str, list[str]]:
    """{first output: inputs} of every ``rule`` job a dry run prints."""
    jobs = {}
    for block in (p.stdout + p.stderr).split(f"\nrule {rule}:\n")[1:]:
        lines = []
        for line in block.splitlines():
            if not line.startswith("    "):
                break
            lines.append(line)
        fields = dict(re.findall(r"^    (input|output): (.*)$", "\n".join(lines), re.M))
        jobs[fields["output"].split(", ")[0]] = fields.get("input", "").split(", ")
    return jobs


def test_rdd_starts_from_pds_8_step_student(repo_copy):
    """The default chains in the papers' protocol: both RDD rows' first stage (4 steps) is taught
    by PD's 8-step student, in the independent feature network; PD's first by the FP model."""
    targets = [f"results/distill/{n}/steps4/provenance.json" for n in ("rdd", "rdd_pd")]
    p = snakemake(repo_copy, "-n", *targets)
    assert planned_jobs(p) == {"dataset": 1, "distill": 3}  # pd 8 once, then rdd 4 and rdd_pd 4
    jobs = _job_inputs(p, "distill")
    pd8 = "results/distill/pd/steps8/unet/diffusion_pytorch_model.safetensors"
    for name in ("rdd", "rdd_pd"):
        inputs = jobs[f"results/distill/{name}/steps4/unet/diffusion_pytorch_model.safetensors"]
        assert pd8 in inputs and "resources/models/fmnist-resnet/model.safetensors" in inputs
        assert not any("fmnist-ddpm" in f or "fmnist-classifier" in f for f in inputs), inputs
    assert "resources/models/fmnist-ddpm/unet/diffusion_pytorch_model.safetensors" in jobs[pd8]


def test_a_trained_rdd_network_is_an_input_of_rdds_stages(repo_copy):
    """With distillation.feature_net.source: train, rule train_classifier trains RDD's network
    with its own recipe, and RDD's first stage reads it."""
    raw = yaml.safe_load((repo_copy / "config/default.yaml").read_text())
    raw["distillation"]["feature_net"]["source"] = "train"
    (repo_copy / "trained_rdd.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    p = snakemake(repo_copy, "-n", "-p", "--configfile=trained_rdd.yaml", "results/distill/rdd/steps4/provenance.json")
    assert planned_jobs(p) == {"dataset": 1, "train_classifier": 1, "distill": 2}
    net = "results/models/rdd-feature-net/model.safetensors"
    assert net in _job_inputs(p, "distill")["results/distill/rdd/steps4/unet/diffusion_pytorch_model.safetensors"]
    assert """--cfg '{"arch": "resnet", "batch_size": 128, "epochs": 4, "lr": 0.002, "seed": 1}'""" in p.stdout + p.stderr


def test_the_sample_jobs_compute_as_the_config_says(repo_copy):
    """evaluation.precision and evaluation.compile reach every sample job's command (the verb's
    flags were unreachable from the workflow before), and the metrics' protocol records them."""
    raw = yaml.safe_load((repo_copy / "config/default.yaml").read_text())
    raw["evaluation"].update(precision="bf16", compile="default", batch_size=1000)
    (repo_copy / "fast.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    p = snakemake(repo_copy, "-n", "-p", "--configfile=fast.yaml", "results/metrics/fp.json")
    out = p.stdout + p.stderr
    assert "--batch-size 1000 --precision bf16 --compile default" in out
    assert '"compile": "default"' in out and '"precision": "bf16"' in out
    p = snakemake(repo_copy, "-n", "-p", "results/metrics/fp.json")
    out = p.stdout + p.stderr
    assert "--precision fp32 --out" in out
    assert "--batch-size" not in out  # the default's null: the verb picks by device


def test_the_sample_verbs_batch_defaults_by_device(tmp_path):
    """Without --batch-size the verb samples a CPU in batches of 32: its kept batches are named by
    those ranges (one state file per finished batch), and a bad size is one clear message."""
    from diffcomp.cli.sample import default_batch_size

    assert default_batch_size("cpu") == 32 and default_batch_size("cuda") == 250
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    base = [sys.executable, "-m", "diffcomp.cli", "sample", "--model", str(REPO / "resources/models/fmnist-ddpm"),
            "--sampler", json.dumps({"steps": 1, "skip": "uniform"}), "--start", "0", "--end", "40",
            "--device", "cpu", "--threads", "1"]
    p = subprocess.run(base + ["--out", str(tmp_path / "a.npz")], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "in batches of 32" in p.stderr
    p = subprocess.run(base + ["--batch-size", "0", "--out", str(tmp_path / "b.npz")], env=env, capture_output=True,
                       text=True)
    assert p.returncode != 0 and "--batch-size must be at least 1, got 0" in p.stderr


def test_values_inside_a_command_line_mapping_are_typed_as_in_a_config_file(repo_copy):
    """Snakemake reads --config 'evaluation={seed: 100000, compile: null}' as strings; the
    workflow types them (int, null) instead of refusing them."""
    from diffcomp.config import typed_cli_values

    assert typed_cli_values({"evaluation": {"seed": "100000", "compile": "null", "precision": "bf16"}, "name": "7"}) == \
        {"evaluation": {"seed": 100000, "compile": None, "precision": "bf16"}, "name": "7"}
    p = snakemake(repo_copy, "-n", "-p", "results/metrics/fp.json", "--config",
                  "evaluation={seed: 100000, compile: null, precision: bf16}")
    out = p.stdout + p.stderr
    assert re.search(r"--seed 100000 +--precision bf16 --out", out)


def test_the_distill_jobs_compute_as_the_config_says(repo_copy):
    """distillation.precision, compile and engine reach every distill job's command."""
    gpu = repo_copy / "gpu.yaml"
    raw = yaml.safe_load((repo_copy / "config/fmnist-distill-gpu.yaml").read_text())
    raw["distillation"].update(precision="tf32", compile="max-autotune", engine="eager")
    gpu.write_text(yaml.safe_dump(raw))
    p = snakemake(repo_copy, "-n", "-p", "--configfile=gpu.yaml", "results/distill/pd/steps8/provenance.json")
    assert "--precision tf32 --compile max-autotune --engine eager --out" in p.stdout + p.stderr
    p = snakemake(repo_copy, "-n", "-p", "results/distill/pd/steps8/provenance.json")
    assert "-clip-x0 --precision fp32 --engine auto --out" in p.stdout + p.stderr


def test_the_gpu_distillation_config_plans_table3(repo_copy):
    """Seventeen stages (PD 8-4-2-1, RDD and RDD + PD loss 4-2-1, the four ablations of PD's first
    stage, and our eps-then-v chain 4-2-1 from the eps ablation's student), the 22 variants of
    table 3 (the FP teacher at 1-16 steps), and the table's caption input: every student's
    teacher (the ablations' is the 16-step FP teacher)."""
    p = snakemake(repo_copy, "-n", "-p", "--configfile=config/fmnist-distill-gpu.yaml", "results/table3.csv")
    plan = planned_jobs(p)
    assert plan["distill"] == 17 and plan["evaluate"] == 22 and plan["table3"] == 1 and "quantize" not in plan
    out = p.stdout + p.stderr
    assert """--teachers '{"pd-s8": "fp-s16", "pd-s4": "pd-s8",""" in out
    for row in ("pd_eps", "pd_long", "pd_eps_long", "pd_clip"):
        assert f'"{row}-s8": "fp-s16"' in out
    assert '"pd_eps_v-s4": "pd_eps-s8"' in out and '"pd_eps_v-s1": "pd_eps_v-s2"' in out


def test_bad_config_stops_before_any_job(repo_copy):
    bad = repo_copy / "bad.yaml"
    bad.write_text((repo_copy / "config/default.yaml").read_text().replace("steps: 10", "steps: -3"))
    p = snakemake(repo_copy, "-n", "--configfile=bad.yaml", check=False)
    assert p.returncode != 0
    assert "invalid config: config key 'sampler.steps': -3 is less than the minimum of 1" in p.stdout + p.stderr
    assert not (repo_copy / "results").exists()


def test_a_config_file_replaces_the_default_instead_of_merging(repo_copy):
    p = snakemake(repo_copy, "-n", *MICRO, "results/table1.csv")
    assert planned_jobs(p)["quantize"] == 3  # linear x 2 + qdiffusion W4A8; none of the default's


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    """The micro DAG run once, locally; tests below work on copies of the finished directory."""
    if not (Path("/usr/share/datasets/fashion-mnist") / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    wd = make_copy(tmp_path_factory.mktemp("micro"))
    snakemake(wd, *MICRO, "results/table1.csv", "results/table3.csv")
    return wd


def finished_copy(micro_run: Path, tmp_path: Path) -> Path:
    return make_copy(tmp_path / "wd", src=micro_run, extra=("results", "logs", ".snakemake"))


@needs_fmnist
def test_micro_dag_end_to_end(micro_run):
    wd = micro_run
    df = pd.read_csv(wd / "results/table1.csv", index_col=0)
    assert list(df.index) == ["FP (W32A32)", "Linear Quant", "Q-Diffusion", "Linear + fixes"]
    assert list(df.columns) == ["W8A8 FID", "W8A8 sFID", "W8A8 IS", "W4A8 FID", "W4A8 sFID", "W4A8 IS"]
    assert df.drop(index=["Q-Diffusion", "Linear + fixes"]).notna().all().all() and (df.fillna(1) > 0).all().all()
    for row in ("Q-Diffusion", "Linear + fixes"):
        assert df.loc[row].isna().tolist() == [True] * 3 + [False] * 3  # only W4A8 was asked for
    # the corrected instance is the base's quantized model with its corrections
    from diffcomp.quant.wrap import read_quantized

    spec, _, meta, _ = read_quantized(wd / "results/quant/linear_fix-w4a8.safetensors")
    assert meta["method"] == "linear" and meta["corrections"]["bias_correction"] and spec.eps_correction
    diag = pd.read_csv(wd / "results/table1_diagnostics.csv", index_col=0)
    assert len(diag) == 4 and diag["max abs(gain - 1) (t>=100)"].notna().all()
    assert (wd / "results/figures/eps_vs_timestep.png").stat().st_size > 0
    for f in ["results/table1.md", "results/table1.tex", "results/figures/fid_vs_bits.png",
              "results/grids/fp.png", "results/grids/linear-w4a8.png", "logs/quantize/linear-w4a8.log",
              "results/benchmarks/quantize/qdiffusion-w4a8.tsv"]:
        assert (wd / f).stat().st_size > 0, f
    assert "quantized in" in (wd / "logs/quantize/linear-w4a8.log").read_text()
    rec = yaml.safe_load((wd / "results/metrics/fp.json").read_text())
    assert rec["protocol"]["n_samples"] == 32 and rec["protocol"]["feature_extractor"] == "fmnist-classifier"
    assert not list((wd / "results/state/samples").rglob("*.npz"))  # finished shards leave no state
    # nothing to do the second time
    assert planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv")) == {}


@needs_fmnist
def test_micro_distillation_table(micro_run):
    wd = micro_run
    df = pd.read_csv(wd / "results/table3.csv", index_col=0)
    assert list(df.index) == ["DDIM (FP teacher)", "PD", "RDD"]
    # 4 steps: the FP teacher of both chains' first stage, measured for the caption's comparison
    assert list(df.columns) == [f"{n} steps {m}" for n in (1, 2, 4) for m in ("FID", "sFID", "IS")]
    students = df.drop(columns=[c for c in df.columns if c.startswith("4 ")])
    assert students.notna().all().all() and (students > 0).all().all()
    assert df.loc["DDIM (FP teacher)"].notna().all() and df.loc[["PD", "RDD"], "4 steps FID"].isna().all()
    for name in ["pd", "rdd"]:
        for n in [1, 2]:
            prov = json.loads((wd / f"results/distill/{name}/steps{n}/provenance.json").read_text())
            assert prov["stats"]["student_steps"] == n and prov["stats"]["iterations"] == 4  # 2 x 2 for <= 2 steps
            assert prov["teacher"] == ("resources/models/fmnist-ddpm" if n == 2 else f"results/distill/{name}/steps2")
    rec = json.loads((wd / "results/metrics/rdd-s1.json").read_text())
    assert rec["protocol"]["sampler"]["steps"] == 1 and rec["protocol"]["sampler"]["skip"] == "trailing"
    md = (wd / "results/table3.md").read_text()
    assert "Distillation wall time per stage: pd-s2" in md and "than its own teacher" in md
    assert (wd / "results/figures/fid_vs_steps.png").stat().st_size > 0
    assert "iterations in" in (wd / "logs/distill/rdd/steps1.log").read_text()
    assert not list((wd / "results/state/distill").rglob("*.pt"))  # finished stages leave no state


def _expected_after_editing(method: str) -> dict[str, int]:
    """The jobs editing ``method``'s module plans in the micro DAG: its instances' quantize jobs,
    the corrections built on them, and their samples, metrics and diagnostics."""
    from diffcomp.config import load_config

    cfg = load_config(REPO / "tests/configs/micro.yaml", check_paths=False)
    q = sum(len(m.bits) for m in cfg.quantization.methods if m.method == method and not m.base)
    c = sum(len(m.bits) for m in cfg.quantization.methods if m.method == method and m.base)
    n = q + c
    if not n:
        return {}
    plan = {"quantize": q, "correct": c, "sample_shard": 2 * n, "gather": n, "evaluate": n, "diagnose": n, "table1": 1}
    return {k: v for k, v in plan.items() if v}


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def _module_file(wd: Path, module: str) -> Path:
    base = wd / "src" / Path(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _quant_methods():
    from diffcomp.methods import METHODS

    return METHODS.names()


def _distill_methods():
    from diffcomp.distill.methods import DISTILLERS

    return DISTILLERS.names()


@needs_fmnist
@pytest.mark.parametrize("method", _quant_methods())
def test_rerun_after_editing_one_quantization_method(micro_run, tmp_path, method):
    """(a) only that method's quantize/sample/gather/evaluate jobs and the table, for every method."""
    from diffcomp.methods import METHODS

    wd = finished_copy(micro_run, tmp_path)
    _edit(_module_file(wd, METHODS[method].module))
    plan = planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv"))
    assert plan == _expected_after_editing(method)


@needs_fmnist
@pytest.mark.parametrize("method", _distill_methods())
def test_rerun_after_editing_one_distillation_method(micro_run, tmp_path, method):
    """Only that chain's stages, samples, evaluations and table 3, for every method."""
    from diffcomp.distill.methods import DISTILLERS

    wd = finished_copy(micro_run, tmp_path)
    _edit(_module_file(wd, DISTILLERS[method].module))
    plan = planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv"))
    assert plan == {"distill": 2, "sample_shard": 4, "gather": 2, "evaluate": 2, "table3": 1}


THROWAWAY = '''"""A throwaway method for the workflow test: min-max PTQ with symmetric weights, calibrated
on the last sampling step only."""

from dataclasses import dataclass

from diffcomp.methods import quant_method


@dataclass(frozen=True)
class ThrowawayParams:
    batch_size: int = 16


@quant_method("throwaway", label="Throwaway", params=ThrowawayParams, contract={"batch_size": 8})
def recipe(unet, traj, bits, params, device="cpu"):
    from diffcomp.quant.calibrate import init_activations, init_weights
    from diffcomp.quant.spec import QuantizerConfig, QuantSpec
    from diffcomp.quant.wrap import quantize_model

    spec = QuantSpec(QuantizerConfig(bits.w, symmetric=True, per_channel=True), QuantizerConfig(bits.a))
    model = quantize_model(unet, spec).to(device)
    xs, ts = traj.xs[-1][: params.batch_size], traj.ts[-1].repeat(min(params.batch_size, traj.xs.shape[1]))
    init_weights(model)
    init_activations(model, [(xs.to(device), ts.to(device))], lambda m, b: m(*b).sample)
    return model.eval(), spec
'''


@needs_fmnist
def test_a_new_method_is_one_module_and_reruns_no_other_job(micro_run, tmp_path):
    """A method added as a single file (registered, configured, run on the micro DAG) plans only
    its own jobs and the table; editing it afterwards plans only its jobs again."""
    wd = finished_copy(micro_run, tmp_path)
    module = wd / "src/diffcomp/methods/throwaway.py"
    module.write_text(THROWAWAY)
    cfg = wd / "tests/configs/micro.yaml"
    raw = yaml.safe_load(cfg.read_text())
    raw["quantization"]["methods"]["throwaway"] = {"bits": [{"w": 4, "a": 8}]}
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    expected = {"quantize": 1, "sample_shard": 2, "gather": 1, "evaluate": 1, "diagnose": 1, "table1": 1}
    assert planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv")) == expected
    snakemake(wd, *MICRO, "results/table1.csv", "results/table3.csv")
    df = pd.read_csv(wd / "results/table1.csv", index_col=0)
    assert df.loc["Throwaway", "W4A8 FID"] > 0 and df.loc["Throwaway"].isna().sum() == 3  # W4A8 only
    old = pd.read_csv(micro_run / "results/table1.csv", index_col=0)
    pd.testing.assert_frame_equal(df.drop(index="Throwaway"), old)  # the other rows are the old ones
    assert planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv")) == {}
    _edit(module)
    assert planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv")) == expected


@needs_fmnist
def test_rerun_after_changing_one_method_config(micro_run, tmp_path):
    """(b) a parameter of Q-Diffusion reruns Q-Diffusion only."""
    wd = finished_copy(micro_run, tmp_path)
    cfg = wd / "tests/configs/micro.yaml"
    cfg.write_text(cfg.read_text().replace("iters_w: 2,", "iters_w: 3,"))
    plan = planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv"))
    assert plan == {"quantize": 1, "sample_shard": 2, "gather": 1, "evaluate": 1, "diagnose": 1, "table1": 1}


@needs_fmnist
def test_rerun_after_editing_the_metrics(micro_run, tmp_path):
    """(c) every evaluation and the tables; no training, calibration, quantization or sampling."""
    wd = finished_copy(micro_run, tmp_path)
    _edit(wd / "src/diffcomp/metrics/fidelity.py")
    plan = planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv"))
    assert plan == {"reference_stats": 1, "evaluate": 5, "table1": 1}


@needs_fmnist
def test_rerun_after_editing_rdd_losses(micro_run, tmp_path):
    """(e) RDD's relational losses: only RDD's stages, samples, evaluations and table 3."""
    wd = finished_copy(micro_run, tmp_path)
    _edit(wd / "src/diffcomp/distill/methods/rdd/relational.py")
    plan = planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv"))
    assert plan == {"distill": 2, "sample_shard": 4, "gather": 2, "evaluate": 2, "table3": 1}


LATENT = ["--configfile=tests/configs/micro-latent.yaml"]


def latent_copy(dst: Path) -> Path:
    """A workflow copy with the micro latent config's model: a tiny random LDM whose class is the
    UNet's cross-attention context (LDM-4 ImageNet's kind) and a KL autoencoder."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_latent import tiny_autoencoder, tiny_context_unet

    from diffcomp.models.pipeline import save_pipeline
    from diffcomp.models.unet import build_scheduler

    wd = make_copy(dst)
    save_pipeline(tiny_context_unet(), build_scheduler(), wd / "resources/models/tiny-ldm",
                  provenance={"what": "a tiny random LDM (test)"}, vae=tiny_autoencoder("kl"))
    return wd


@pytest.fixture(scope="module")
def micro_latent_run(tmp_path_factory):
    """The micro latent DAG run once, locally."""
    if not (Path("/usr/share/datasets/fashion-mnist") / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    wd = latent_copy(tmp_path_factory.mktemp("micro-latent"))
    snakemake(wd, *LATENT, "results/table1.csv")
    return wd


@needs_fmnist
def test_micro_latent_dag_end_to_end(micro_latent_run):
    """The whole table-1 DAG on a latent class-conditional model: calibration trajectories with
    labels, Linear, Q-Diffusion and both corrections on labelled inputs, guided sampling decoded
    through the autoencoder, metrics, diagnostics and the table."""
    import torch

    from test_latent import CLASSES

    from diffcomp.calib.trajectories import Trajectories

    wd = micro_latent_run
    table = pd.read_csv(wd / "results/table1.csv").set_index("Method")
    assert list(table.index) == ["FP (W32A32)", "Linear Quant", "Q-Diffusion", "Linear + fixes"]
    assert np.isfinite(table.loc["Q-Diffusion", "W4A8 FID"]) and np.isfinite(table.loc["Linear + fixes", "W4A8 FID"])
    traj = Trajectories.load(wd / "results/calib/trajectories.safetensors")
    assert traj.xs.shape[2:] == (3, 16, 16) and torch.equal(traj.labels, torch.arange(16) % CLASSES)
    assert traj.meta["null_label"] == CLASSES and traj.meta["sampler"]["guidance"] == 2.0
    assert np.load(wd / "results/samples/fp/samples.npz")["images"].shape == (32, 1, 32, 32)


@needs_fmnist
def test_rerun_after_editing_the_calibration_selector(micro_run, tmp_path):
    """A selector reaches a method through its config, not an import: its edits still rerun every
    method instance that calibrates with it, and nothing else."""
    wd = finished_copy(micro_run, tmp_path)
    _edit(wd / "src/diffcomp/calib/selectors/uniform.py")
    plan = planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv"))
    assert plan == {"quantize": 3, "correct": 1, "sample_shard": 8, "gather": 4, "evaluate": 4, "diagnose": 4, "table1": 1}


@needs_fmnist
def test_killed_sample_job_resumes_without_recomputing(micro_run, tmp_path):
    """(d) a sample job killed mid-way keeps its finished batches; the rerun reuses them and the
    shard equals an uninterrupted run's, bit for bit."""
    wd = finished_copy(micro_run, tmp_path)
    cfg = wd / "tests/configs/slow.yaml"
    raw = yaml.safe_load((wd / "tests/configs/micro.yaml").read_text())
    raw["sampler"]["steps"] = 20
    raw["evaluation"]["batch_size"] = 2
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    target = "results/samples/fp/shard-0.npz"
    state = wd / "results/state/samples/fp/shard-0"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile=tests/configs/slow.yaml", target]
    proc = subprocess.Popen(cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=snakemake_env())
    t0 = time.time()
    while len(list(state.glob("*/*.npz"))) < 2 and time.time() - t0 < 300 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(state.glob("*/*.npz")))
    assert 2 <= done < 8, f"the job was not killed mid-way ({done} of 8 batches kept)"
    assert not (wd / target).exists()
    snakemake(wd, "--configfile=tests/configs/slow.yaml", "--unlock")  # snakemake itself was killed
    snakemake(wd, "--configfile=tests/configs/slow.yaml", "--rerun-incomplete", target)
    log = (wd / "logs/sample/fp/shard-0.log").read_text()
    assert f"({done * 2} reused from an interrupted run)" in log
    # the same shard, uninterrupted
    ref = tmp_path / "ref.npz"
    env = {**os.environ, "PYTHONPATH": str(wd / "src")}
    subprocess.run([sys.executable, "-m", "diffcomp.cli", "sample", "--model", "resources/models/fmnist-ddpm",
                    "--sampler", json.dumps(raw["sampler"]),
                    "--start", "0", "--end", "16", "--seed", "0", "--batch-size", "2", "--threads", "1", "--out", str(ref),
                    "--device", "cpu"], cwd=wd, env=env, check=True, capture_output=True)
    assert np.array_equal(np.load(wd / target)["images"], np.load(ref)["images"])


# ----------------------------------------------------------------------------- issue 18: nothing silently wrong

ODD = "resources/models/fp $(touch PWNED) 'x'"  # a space, a command substitution and quotes


def _config_with(wd: Path, name: str, edit) -> str:
    raw = yaml.safe_load((wd / "tests/configs/micro.yaml").read_text())
    edit(raw)
    (wd / name).write_text(yaml.safe_dump(raw))
    return f"--configfile={name}"


@needs_fmnist
def test_a_model_path_with_a_space_and_a_command_substitution_is_one_argument(tmp_path):
    """Every path and string reaches the shell quoted: the printed commands keep the odd path as
    one argument, and running two rules that read the model works without running the command."""
    import shlex

    wd = make_copy(tmp_path / "wd")
    shutil.copytree(wd / "resources/models/fmnist-ddpm", wd / ODD)
    cfg = _config_with(wd, "odd.yaml", lambda r: r.update(model={"source": "shipped", "path": ODD}))
    p = snakemake(wd, "-n", "-p", cfg, "results/table1.csv", "results/table3.csv")
    commands = [line for line in p.stdout.splitlines() if "diffcomp.cli" in line]
    readers = [c for c in commands if "$(touch" in c]
    assert len(readers) >= 5  # trajectories, quantize, sample, distill ...
    for c in readers:
        words = shlex.split(c)
        assert ODD in words or any(w.startswith("--") and ODD in w for w in words), c
        assert not any(w.startswith("$(touch") or w == "PWNED)" for w in words), c
    snakemake(wd, cfg, "results/calib/trajectories.safetensors", "results/samples/fp/shard-0.npz")
    assert (wd / "results/samples/fp/shard-0.npz").exists()
    assert not list(wd.rglob("PWNED")) and not (REPO / "PWNED").exists()


@needs_fmnist
def test_a_damaged_shipped_model_or_a_repeated_key_stops_before_any_job(tmp_path):
    wd = make_copy(tmp_path / "wd")
    cfg = _config_with(wd, "dup.yaml", lambda r: None)
    (wd / "dup.yaml").write_text((wd / "dup.yaml").read_text() + "name: again\n")
    p = snakemake(wd, "-n", cfg, check=False)
    assert p.returncode != 0
    assert re.search(r"invalid config: \S*dup.yaml: line \d+: duplicate key 'name' \(first given on line \d+\)", p.stdout + p.stderr)
    weights = wd / "resources/models/fmnist-ddpm/unet/diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4096:-4080] = bytes(b ^ 0xA5 for b in data[-4096:-4080])
    weights.write_bytes(bytes(data))
    p = snakemake(wd, "-n", *MICRO, check=False)
    assert p.returncode != 0
    assert re.search(r"invalid config: config key 'model.path': \S*/resources/models/fmnist-ddpm/unet/"
                     r"diffusion_pytorch_model.safetensors does not match the sha256 recorded in \S*/resources/models/"
                     r"fmnist-ddpm/provenance.json \(\w+\.\.\. instead of \w+\.\.\.\): the file is damaged or was replaced",
                     p.stdout + p.stderr), p.stdout[-2000:]
    assert not (wd / "results").exists()


@needs_fmnist
def test_a_changed_weight_file_reruns_what_reads_the_model(micro_run, tmp_path):
    """The rules depend on the weight files, not on folders: a new weight file (here: the same bytes
    written again) reruns everything that reads the FP model, and nothing that does not."""
    wd = finished_copy(micro_run, tmp_path)
    weights = wd / "resources/models/fmnist-ddpm/unet/diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes())
    plan = planned_jobs(snakemake(wd, *MICRO, "-n", "results/table1.csv", "results/table3.csv"))
    assert plan["trajectories"] == 1 and plan["quantize"] == 3 and plan["distill"] == 4  # first stages and their students
    assert "dataset" not in plan and "reference_stats" not in plan


@needs_fmnist
def test_a_lost_or_damaged_metrics_file_is_rebuilt_or_named(micro_run, tmp_path):
    """The default target holds every variant's metrics and grid: a lost one is rebuilt by a plain
    rerun. A damaged one stops the table with one line naming it and the remedy, which works."""
    wd = finished_copy(micro_run, tmp_path)
    (wd / "results/metrics/linear-w8a8.json").unlink()
    (wd / "results/grids/fp.png").unlink()
    report_pages = {"samples_figure": 2, "calibration_counts": 1, "job_times": 1, "run_info": 1}  # the fixture built the tables only
    assert planned_jobs(snakemake(wd, *MICRO, "-n")) == {"gather": 1, "evaluate": 2, "diagnose": 4, "table1": 1,
                                                          **report_pages, "all": 1}  # diagnose reads the FP samples
    (wd / "results/grids/fp.png").write_bytes((micro_run / "results/grids/fp.png").read_bytes())
    shutil.copy2(micro_run / "results/metrics/linear-w8a8.json", wd / "results/metrics/linear-w8a8.json")
    metrics = wd / "results/metrics/pd-s1.json"
    metrics.write_text(metrics.read_text()[:40])
    p = snakemake(wd, *MICRO, "results/table3.csv", check=False)
    assert p.returncode != 0
    log = (wd / "logs/table3.log").read_text().strip().splitlines()
    assert re.fullmatch(r"diffcomp table3: results/metrics/pd-s1.json is damaged \(not JSON: .*\): delete it and rerun",
                        log[-1]), log
    metrics.unlink()
    snakemake(wd, *MICRO, "results/table3.csv")
    pd.testing.assert_frame_equal(pd.read_csv(wd / "results/table3.csv", index_col=0),
                                  pd.read_csv(micro_run / "results/table3.csv", index_col=0))


@needs_fmnist
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_micro_dag_on_a_real_slurm_cluster(micro_run, micro_latent_run, tmp_path):
    """The micro DAG and the micro latent DAG through the SLURM profile on a real one-node cluster:
    every heavy job submitted (GPU requests reaching SLURM), and both tables equal the local runs'."""
    wd = make_copy(tmp_path / "wd")
    latent = latent_copy(tmp_path / "latent")
    with slurm_cluster(tmp_path / "slurm") as partition:
        # --default-resources takes every value up to the next option: --jobs follows it. The plugin
        # checks job states every 40 s by default (and 10 s longer after each check that finds
        # none finished); the micro jobs take seconds, so the test checks every 3 s.
        slurm_args = ["--profile", "workflow/profiles/slurm", "--slurm-no-account", "--slurm-status-command", "squeue",
                      "--slurm-init-seconds-before-status-checks", "3",
                      "--default-resources", f"slurm_partition={partition}", "--jobs", "4"]
        t0 = time.time()
        p = snakemake(wd, *slurm_args, *MICRO, "results/table1.csv", slurm=True)
        wall = time.time() - t0
        q = snakemake(latent, *slurm_args, *LATENT, "results/table1.csv", slurm=True)
        assert len(re.findall(r"submitted with SLURM jobid (\d+)", q.stdout + q.stderr)) >= 10
        out = p.stdout + p.stderr
        ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
        assert len(ids) >= 15, out[-3000:]
        for rule in ("gather", "table1"):  # light jobs stay on the machine that runs Snakemake
            assert f"localrule {rule}:" in out, out[-3000:]
        states = {}
        for jid in ids:
            info = subprocess.run(["scontrol", "show", "job", jid], capture_output=True, text=True).stdout
            states[jid] = re.search(r"JobState=(\w+)", info).group(1)
            if "rule_sample_shard" in info or "sample_shard" in info:
                assert "gres:gpu:1" in info or "gres/gpu=1" in info, info  # the GPU request reached SLURM
        assert set(states.values()) == {"COMPLETED"}, states
    print(f"SLURM: {len(ids)} jobs in {wall:.0f} s")
    for here, there in ((micro_run, wd), (micro_latent_run, latent)):
        local = pd.read_csv(here / "results/table1.csv", index_col=0)
        remote = pd.read_csv(there / "results/table1.csv", index_col=0)
        pd.testing.assert_frame_equal(local, remote, rtol=1e-6)


def test_lint_and_format_are_clean(repo_copy):
    p = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                       env=snakemake_env())
    assert p.returncode == 0 and "Congratulations" in p.stdout + p.stderr, p.stdout[-3000:]
    snakefmt = Path(sys.executable).parent / "snakefmt"
    if not snakefmt.exists():
        pytest.skip("snakefmt is not installed (pip install -e '.[test]')")
    p = subprocess.run([str(snakefmt), "--check", "Snakefile", "workflow"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@needs_fmnist
def test_report_of_the_micro_run_opens_in_a_headless_browser(micro_run, tmp_path):
    """`snakemake --report` on the finished micro run (plus the report's own light jobs): the page
    loads in Chromium without console errors, shows every category, table and figure, and a
    table opens as a table with its caption and protocol. The screenshot stays in tmp_path."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (playwright)")
    wd = finished_copy(micro_run, tmp_path)
    extra = planned_jobs(snakemake(wd, *MICRO, "-n"))
    assert extra == {"samples_figure": 2, "calibration_counts": 1, "job_times": 1, "run_info": 1, "all": 1}  # nothing but the report's pages
    snakemake(wd, *MICRO)
    snakemake(wd, *MICRO, "--report", "results/report.html")
    report = wd / "results/report.html"
    errors = []
    with playwright.sync_playwright() as p:
        # Playwright starts it headless with a new, empty profile of its own
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS[1:])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri())
            page.get_by_text("Table 1 (post-training quantization)").first.wait_for(timeout=60_000)
            results = page.evaluate("Object.values(results).map(r => [r.name, r.mime_type, r.caption.length > 0])")
            names = {n: mime for n, mime, _ in results}
            assert all(has_caption for *_, has_caption in results), results
            for name in ["table1.html", "table3.html", "run_info.html"]:
                assert names.get(name) == "text/html", name
            for name in ["fid_vs_bits.png", "fid_vs_steps.png", "samples_table1.png", "samples_table3.png",
                         "job_times.png", "fp.png", "qdiffusion-w4a8.png", "rdd-s1.png", "eps_vs_timestep.png"]:
                assert names.get(name) == "image/png", name
            assert sorted(page.evaluate("Object.keys(categories)")) == [
                "Run (config, code version, job times)", "Table 1 (post-training quantization)",
                "Table 3 (few-step distillation)"]
            # open table 1 the way a reader does: category, subcategory, the eye button
            page.get_by_text("Table 1 (post-training quantization)").first.click()
            page.get_by_text("Table", exact=True).first.click()
            page.locator("tr", has_text="results/table1.html").locator("a").first.click()
            frame = next(f for f in page.frames if "table1.html" in f.url)
            frame.wait_for_selector("table caption")
            assert frame.inner_text("caption") == "Table 1: post-training quantization"
            assert frame.locator("tbody tr").count() == 4  # FP, Linear Quant, Q-Diffusion, Linear + fixes
            assert "samples per variant: 32" in frame.inner_text("p.protocol")
            page.screenshot(path=str(tmp_path / "report-table1.png"))
        finally:
            browser.close()
    assert not errors, errors
    assert (tmp_path / "report-table1.png").stat().st_size > 10_000
    info = (wd / "results/report/run_info.html").read_text()
    assert "source hash" in info and "name: micro" in info


@needs_fmnist
def test_an_export_of_a_workflow_model_gives_its_samples_bit_for_bit(micro_run, tmp_path):
    """The packed export of Q-Diffusion W4A8 (split shortcuts, quantized attention, LSQ steps),
    loaded with diffcomp.load_quantized, samples the workflow's own shard exactly (CPU)."""
    import torch

    wd = finished_copy(micro_run, tmp_path)
    snakemake(wd, *MICRO, "results/export/qdiffusion-w4a8.safetensors")
    sizes = json.loads((wd / "results/export/qdiffusion-w4a8.json").read_text())
    assert sizes["fp_bytes"] == (wd / "resources/models/fmnist-ddpm/unet/diffusion_pytorch_model.safetensors").stat().st_size
    assert sizes["export_bytes"] * 5 < sizes["fp_bytes"]  # W4: about an eighth, plus FP biases, norms, scales
    import diffcomp
    from diffcomp.data.fmnist import to_uint8
    from diffcomp.models.config import SamplerConfig
    from diffcomp.models.pipeline import load_pipeline
    from diffcomp.models.sampler import generate, unet_fn

    micro = yaml.safe_load((wd / "tests/configs/micro.yaml").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workflow's sample job ran (threads: 1 in the micro config)
    try:
        unet = diffcomp.load_quantized(wd / "results/export/qdiffusion-w4a8.safetensors")
        pipe = load_pipeline(wd / "resources/models/fmnist-ddpm")
        images = to_uint8(generate(unet_fn(unet), list(range(16)), (1, 32, 32), pipe.alphas_cumprod,
                                   SamplerConfig(**micro["sampler"]), micro["evaluation"]["seed"], "cpu"))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(images, np.load(wd / "results/samples/qdiffusion-w4a8/shard-0.npz")["images"])


def test_the_workflow_is_usable_as_a_snakemake_module(tmp_path):
    """Another workflow imports every rule with a prefix and plans the whole DAG in its own
    folder (the module finds its own sources, whatever the outer workflow's folder)."""
    outer = tmp_path / "outer"
    outer.mkdir()
    cfg = yaml.safe_load((REPO / "config/default.yaml").read_text())
    cfg["model"]["path"] = str(REPO / "resources/models/fmnist-ddpm")
    cfg["feature_net"]["path"] = str(REPO / "resources/models/fmnist-classifier")
    cfg["distillation"]["feature_net"]["path"] = str(REPO / cfg["distillation"]["feature_net"]["path"])
    (outer / "diffcomp.yaml").write_text(yaml.safe_dump(cfg))
    (outer / "Snakefile").write_text(f"""configfile: "diffcomp.yaml"


module diffcomp:
    snakefile:
        {str(REPO / "Snakefile")!r}
    config:
        config


use rule * from diffcomp as dc_*


rule summary:
    input:
        rules.dc_table1.output.csv,
    output:
        "summary.txt",
    shell:
        "head -n 2 {{input:q}} > {{output:q}}"
""")
    env = snakemake_env({k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-n", "summary", "dc_all"], cwd=outer,
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    plan = planned_jobs(p)
    assert plan["summary"] == 1 and plan["dc_table1"] == 1 and plan["dc_table2"] == 1 and plan["dc_table3"] == 1
    methods = cfg["quantization"]["methods"]
    n_bits = lambda m: len(m.get("bits", cfg["quantization"]["bits"]))  # noqa: E731
    corrected = sum(n_bits(m) if "bits" in m else n_bits(methods[m["base"]]) for m in methods.values() if "base" in m)
    assert plan["dc_quantize"] == sum(n_bits(m) for m in methods.values() if "base" not in m)
    assert plan["dc_correct"] == corrected and plan["dc_samples_figure"] == 3 and plan["dc_calibration_counts"] == 1
    assert plan["dc_run_info"] == 1


def test_the_latent_paper_configs_plan_their_downloads_conversion_and_protocol(repo_copy):
    """LDM-4 ImageNet and LSUN-Bedroom: the checkpoint fetched (by size, or pinned) and converted
    as a latent-diffusion checkpoint, the ADM reference batch fetched by URL, the papers' samplers."""
    p = snakemake(repo_copy, "-n", "-p", "--configfile=config/imagenet-ldm4.yaml", "results/table1.csv",
                  "results/table2.csv")
    plan, out = planned_jobs(p), p.stdout + p.stderr
    assert plan["fetch_checkpoint"] == plan["convert"] == plan["fetch_reference"] == plan["reference_stats"] == 1
    assert plan["quantize"] == 12 and plan["sample_shard"] == 13 * 10  # 13 variants x 50,000 / 5,000
    assert "--bytes 1827378153" in out and "--format ldm" in out and "--heads 1" in out
    assert "--pin --out resources/reference/VIRTUAL_imagenet256_labeled.npz" in out
    assert '"guidance": 3.0' in out and '"skip": "ldm"' in out and '"steps": 20' in out
    # the converted folder's autoencoder is declared before it exists: what reads the model lists
    # it on the first run and on every later one (a list that grew once it existed would rerun all)
    vae = "resources/checkpoints/cin256-v2/vae/diffusion_pytorch_model.safetensors"
    assert vae in _job_inputs(p, "quantize")["results/quant/qdiffusion-w4a8.safetensors"]
    assert re.search(rf"rule convert:\n(    .*\n)*?    output: [^\n]*{re.escape(vae)}", out)
    p = snakemake(repo_copy, "-n", "-p", "--configfile=config/lsun-bedroom-ldm4.yaml", "results/table1.csv")
    out = p.stdout + p.stderr
    assert "--member model.ckpt" in out and "--head-channels 32" in out and '"eta": 1.0' in out
    assert "VIRTUAL_lsun_bedroom256.npz" in out
    assert "--clip-model" not in out  # no CLIP score without evaluation.clip_score
    # LDM-8 LSUN-Church: 8 heads at every level (the fixed-heads model), DDIM 400 steps, eta 0
    place_hand_inputs(repo_copy)
    p = snakemake(repo_copy, "-n", "-p", "--configfile=config/lsun-church-ldm8.yaml", "results/table1.csv")
    out = p.stdout + p.stderr
    assert "lsun_churches.zip" in out and "--heads 8" in out and "--beta-end 0.0155" in out
    assert '"steps": 400' in out and '"eta": 0.0' in out
    # the reference statistics read the image folder themselves, a batch at a time
    assert "reference-stats --size 256 --folder resources/lsun/church_outdoor_train --feature-extractor" in out
    assert "image-folder" not in out and "reference-images.npz" not in out
    assert planned_jobs(p)["quantize"] == 6  # linear, Q-Diffusion, EDA-DM at W8A8 and W4A8
    # Stable Diffusion v1.4: the hub model downloaded with the COCO prompts, PLMS 50 steps with
    # guidance 7.5, 10,000 images, and the CLIP score of every variant with the model's prompts
    place_hand_inputs(repo_copy)
    p = snakemake(repo_copy, "-n", "-p", "--configfile=config/sd-v1-4.yaml", "results/table1.csv")
    plan, out = planned_jobs(p), p.stdout + p.stderr
    assert plan["download"] == plan["trajectories"] == plan["reference_stats"] == 1
    assert plan["quantize"] == 4 and plan["evaluate"] == 5 and plan["sample_shard"] == 5 * 10  # 10,000 / 1,000
    assert "reference-stats --size 512 --limit 10000 --folder resources/coco/val2014 --feature-extractor" in out
    assert "--hub-id CompVis/stable-diffusion-v1-4  --prompts resources/coco/prompts-val2014-seed0-n10000.txt" in out
    assert '"name": "plms"' in out and '"steps": 50' in out and '"guidance": 7.5' in out and '"skip": "ldm"' in out
    assert '"calibration": {"per_step": 128, "selector": "uniform", "steps": 25}' in out and '"sm_bits": 16' in out
    sd = "resources/hub/CompVis/stable-diffusion-v1-4"
    assert out.count(f"--clip-model resources/clip/clip-vit-large-patch14 --model {sd} --out") == 5
    inputs = _job_inputs(p, "evaluate")["results/metrics/qdiffusion-w4a8.json"]
    assert f"{sd}/prompts.txt" in inputs and "resources/clip/clip-vit-large-patch14/model.safetensors" in inputs
    bad = snakemake(repo_copy, "-n", "--config", "evaluation={clip_score: {model: resources/clip/clip-vit-large-patch14}}",
                    "--", "results/table1.csv", check=False)
    assert bad.returncode != 0 and "config key 'evaluation.clip_score.model'" in bad.stdout + bad.stderr


def test_coco_prompts_are_built_by_their_rule_from_the_captions_file(repo_copy):
    """The prompts file config/sd-v1-4.yaml names is built by rule coco_prompts from COCO's
    captions (placed by hand), its seed and count read from the file name."""
    from diffcomp.data.coco import read_captions, shuffled_prompts

    captions = repo_copy / "resources/coco/annotations/captions_val2014.json"
    captions.parent.mkdir(parents=True, exist_ok=True)
    anns = [{"image_id": i // 2, "id": 100 - i, "caption": f"A photo\nnumber {i}."} for i in range(12)]
    captions.write_text(json.dumps({"images": [], "annotations": anns}))
    snakemake(repo_copy, "resources/coco/prompts-val2014-seed7-n5.txt")
    lines = (repo_copy / "resources/coco/prompts-val2014-seed7-n5.txt").read_text().splitlines()
    assert lines == shuffled_prompts(read_captions(captions), 5, 7) and len(set(lines)) == 5
    assert all(line.startswith("A photo number ") for line in lines)


def test_a_downloaded_reference_batch_is_checked_against_its_record(tmp_path):
    """A reference batch fetched without a published checksum has its sha256 pinned; changed
    afterwards, reference-stats refuses it by name before reading it."""
    from diffcomp.cli import main

    src = tmp_path / "src.npz"
    np.savez(src, mu=np.zeros(4), sigma=np.eye(4), mu_s=np.zeros(4), sigma_s=np.eye(4))
    ref = tmp_path / "resources/reference/ref.npz"
    ref.parent.mkdir(parents=True)
    assert main(["fetch", "--url", src.as_uri(), "--pin", "--out", str(ref)]) == 0
    ref.write_bytes(ref.read_bytes() + b"\0")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    p = subprocess.run([sys.executable, "-m", "diffcomp.cli", "reference-stats", "--adm-npz", str(ref),
                        "--feature-extractor", "inception-v3-compat", "--out", str(tmp_path / "stats.npz")],
                       env=env, capture_output=True, text=True)
    assert p.returncode == 1 and f"{ref}: sha256" in p.stderr and "does not match its record" in p.stderr


def test_a_text_to_image_hub_model_is_downloaded_with_its_prompts(repo_copy, tmp_path):
    """model.prompts names the prompts of a hub text-to-image model: the download job takes the
    file and writes the text encoder, tokenizer and prompts into the folder, which every job
    reading the model lists (before the folder exists, so the list never changes)."""
    prompts = repo_copy / "resources/prompts.txt"
    prompts.write_text("a cat\nthe dog\n")
    p = snakemake(repo_copy, "-n", "-p", "--config", "model={source: hub, hub_id: owner/tiny-sd, prompts: "
                  "resources/prompts.txt}", "--", "results/calib/trajectories.safetensors")
    out = p.stdout + p.stderr
    assert "--hub-id owner/tiny-sd  --prompts resources/prompts.txt" in out
    inputs = _job_inputs(p, "trajectories")["results/calib/trajectories.safetensors"]
    for f in ("text_encoder/model.safetensors", "tokenizer/tokenizer.json", "prompts.txt", "vae/config.json"):
        assert f"resources/hub/owner/tiny-sd/{f}" in inputs
    bad = snakemake(repo_copy, "-n", "--config", "model={source: hub, hub_id: owner/tiny-sd, prompts: nowhere.txt}",
                    "--", "results/calib/trajectories.safetensors", check=False)
    assert bad.returncode != 0 and "config key 'model.prompts'" in bad.stdout + bad.stderr
