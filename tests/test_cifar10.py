"""The papers' CIFAR-10 setting: config/cifar10.yaml plans the whole paper DAG (download,
convert, 50k samples in shards, every variant evaluated), and the paper's numbers join table 1."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from diffcomp.config import ConfigError, load_config
from diffcomp.config import read_yaml
from diffcomp.paper import paper_numbers
from diffcomp.report.tables import table1, with_paper_columns

NUMBERS = REPO / "resources" / "paper" / "numbers.yaml"


def load_paper_numbers(path, setting):
    return paper_numbers(read_yaml(path), path, setting)


def test_cifar10_config_is_the_papers_protocol():
    cfg = load_config(REPO / "config" / "cifar10.yaml", base_dir=REPO)
    assert (cfg.dataset.name, cfg.evaluation.reference, cfg.evaluation.n_samples) == ("cifar10", "train", 50_000)
    assert (cfg.sampler.steps, cfg.sampler.skip, cfg.sampler.eta, cfg.sampler.clip_x0) == (100, "quad", 0.0, False)
    assert cfg.model.source == "checkpoint" and cfg.model.checkpoint.md5 == "1fa350b952534ae442b1d5235cce5cd3"
    assert cfg.feature_net.name == "inception-v3-compat"
    q = cfg.method("qdiffusion").built
    assert (q.calibration.params.steps, q.calibration.params.per_step, q.iters_w, q.iters_a) == (20, 256, 20000, 5000)


def test_google_checkpoint_is_a_named_alternative():
    raw = yaml.safe_load((REPO / "config" / "cifar10.yaml").read_text())
    raw["model"] = {"source": "hub", "hub_id": "google/ddpm-cifar10-32"}
    from diffcomp.config import parse_config

    assert parse_config(raw, base_dir=REPO).model.hub_id == "google/ddpm-cifar10-32"
    raw["model"] = {"source": "checkpoint", "checkpoint": {"md5": None}}
    with pytest.raises(ConfigError, match="model.checkpoint.md5"):
        parse_config(raw, base_dir=REPO)


def test_paper_numbers_have_sources(tmp_path):
    p = load_paper_numbers(NUMBERS, "cifar10-ddim100")
    assert p.get("qdiffusion", "W4A8", "fid") == 4.93 and p.get("qdiffusion", "W8A8", "is") == 9.48
    assert p.get("linear", "W4A8", "fid") is None and all(p.sources)
    bad = yaml.safe_load(NUMBERS.read_text())
    del bad["settings"]["cifar10-ddim100"]["rows"]["qdiffusion"]["W4A8"]["source"]
    (tmp_path / "n.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"rows\.qdiffusion\.W4A8\.source: every number needs its source"):
        load_paper_numbers(tmp_path / "n.yaml", "cifar10-ddim100")


def test_table1_paper_column_group_with_empty_measured_cells():
    methods = [("linear", "Linear Quant"), ("qdiffusion", "Q-Diffusion"), ("qdiffusion_nosplit", "Q-Diffusion (no split)")]
    bits = ["W8A8", "W4A8"]
    df = with_paper_columns(table1({}, methods, bits), load_paper_numbers(NUMBERS, "cifar10-ddim100"), methods, bits)
    assert list(df.columns[:6]) == ["W8A8 FID", "W8A8 sFID", "W8A8 IS", "W8A8 FID (paper)", "W8A8 sFID (paper)",
                                    "W8A8 IS (paper)"]
    assert df.loc["Q-Diffusion", "W4A8 FID (paper)"] == 4.93 and df.loc["Q-Diffusion (no split)", "W4A8 FID (paper)"] == 188.11
    assert pd.isna(df.loc["Linear Quant", "W4A8 FID (paper)"]) and pd.isna(df.loc["Q-Diffusion (no split)", "W8A8 IS (paper)"])
    measured = [c for c in df.columns if not c.endswith("(paper)")]
    assert df[measured].isna().all().all()


def test_table1_verb_writes_the_paper_columns(tmp_path):
    from diffcomp.cli import main

    rec = {"variant": "qdiffusion-w4a8", "metrics": {"fid": 5.5, "sfid": 6.0, "is": 9.0},
           "protocol": {"n_samples": 50000, "sampler": {"name": "ddim", "steps": 100}}}
    (tmp_path / "m.json").write_text(json.dumps(rec))
    assert main(["table1", "--metrics", str(tmp_path / "m.json"), "--methods", '[["qdiffusion", "Q-Diffusion"]]',
                 "--bits", '["W4A8"]', "--out-stem", str(tmp_path / "t"), "--paper-numbers", str(NUMBERS),
                 "--paper-setting", "cifar10-ddim100"]) == 0
    df = pd.read_csv(tmp_path / "t.csv", index_col=0)
    assert df.loc["Q-Diffusion", "W4A8 FID"] == 5.5 and df.loc["Q-Diffusion", "W4A8 FID (paper)"] == 4.93
    md = (tmp_path / "t.md").read_text()
    assert "MoDiff" in md
    assert "nan" not in md.lower() and "| --" in md  # an empty paper cell (W4A8 sFID) reads as --


@pytest.mark.workflow
def test_dry_run_plans_the_whole_paper_dag(tmp_path):
    from test_workflow import make_copy, planned_jobs, snakemake

    wd = make_copy(tmp_path / "wf")
    p = snakemake(wd, "-n", "-p", "--configfile=config/cifar10.yaml", "results/table1.csv")
    plan = planned_jobs(p)
    cfg = load_config(REPO / "config" / "cifar10.yaml", base_dir=REPO)
    n_var = len(cfg.variants())
    assert plan["fetch_checkpoint"] == 1 and plan["convert"] == 1 and plan["dataset"] == 1
    assert plan["sample_shard"] == n_var * 10 and cfg.n_shards() == 10  # 50,000 samples in shards of 5,000
    assert plan["evaluate"] == n_var == 6 and plan["quantize"] == 5 and plan["table1"] == 1
    out = p.stdout + p.stderr
    assert "fetch --url 'https://heibox.uni-heidelberg.de/f/2e4f01e2d9ee49bab1d5/?dl=1' --md5 1fa350b9" in out
    assert "--feature-extractor inception-v3-compat" in out and "--paper-numbers resources/paper/numbers.yaml" in out
    assert "resources/checkpoints/ddpm-ema-cifar10/unet/diffusion_pytorch_model.safetensors" in out
    for v in cfg.variants():
        assert f"results/metrics/{v}.json" in out
    assert "results/samples/fp/shard-9.npz" in out and "results/samples/fp/shard-10.npz" not in out


def test_paper_size_testbed_is_the_cifar10_architecture_trained_here_with_the_papers_protocol(tmp_path):
    """config/fmnist-paperarch.yaml: Ho et al.'s CIFAR-10 UNet (35.7M parameters) with one input
    channel, trained by the train rule in bf16 under torch.compile, then the papers' sampler,
    calibration and iteration budgets."""
    from test_workflow import make_copy, planned_jobs, snakemake

    from diffcomp.models.unet import build_unet

    cfg = load_config(REPO / "config" / "fmnist-paperarch.yaml", base_dir=REPO)
    assert cfg.model.source == "train" and cfg.model.arch.channels == 1
    assert sum(p.numel() for p in build_unet(cfg.model.arch).parameters()) == 35_741_697
    assert (cfg.model.train.precision, cfg.model.train.compile) == ("bf16", "default")
    assert (cfg.sampler.steps, cfg.sampler.skip, cfg.sampler.clip_x0) == (100, "quad", False)
    q = cfg.method("qdiffusion").built
    assert (q.calibration.params.steps, q.calibration.params.per_step, q.iters_w, q.iters_a) == (20, 256, 20000, 5000)
    assert cfg.evaluation.n_samples == 5000 and (cfg.evaluation.precision, cfg.evaluation.compile) == ("bf16", "default")
    wd = make_copy(tmp_path / "wf")
    p = snakemake(wd, "-n", "-p", "--configfile=config/fmnist-paperarch.yaml", "results/table1.csv")
    assert planned_jobs(p)["train"] == 1
    out = p.stdout + p.stderr
    assert '"precision": "bf16"' in out and '"compile": "default"' in out and '"steps": 30000' in out
