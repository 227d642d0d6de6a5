import copy
from pathlib import Path

import pytest
import yaml

from diffcomp.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config" / "default.yaml").read_text())


def test_default_config_parses_with_paper_defaults_filled_in():
    cfg = parse_config(DEFAULT, check_paths=False)
    assert cfg.variants()[:4] == ["fp", "linear-w4a8", "linear-w3a8", "linear-w4a6"]
    assert "qdiffusion_nosplit-w4a8" in cfg.variants() and cfg.method("qdiffusion_nosplit").params["split"] is False
    assert cfg.sampler.steps == 10 and cfg.sampler.eta == 0.0 and cfg.sampler.clip_x0 is False
    lin = cfg.method("linear")
    assert lin.method == "linear" and lin.label == "Linear Quant"
    assert lin.params["calibration"] == {"selector": "uniform", "steps": 10, "per_step": 64}
    assert lin.params["batch_size"] == 256  # default filled in
    assert cfg.n_shards() == 1
    # frozen: a config cannot be changed after validation
    with pytest.raises(Exception):
        cfg.sampler.steps = 3


def test_distillation_chains_and_their_teachers():
    cfg = parse_config(DEFAULT, check_paths=False)
    assert cfg.distill_variants()[:4] == ["fp-s8", "fp-s4", "fp-s2", "fp-s1"]
    assert cfg.distill_variants()[4:] == ["pd-s8", "pd-s4", "pd-s2", "pd-s1", "rdd-s8", "rdd-s4", "rdd-s2", "rdd-s1"]
    pd = cfg.distill_method("pd")
    assert pd.teacher_of(8) == ("fp", 16) and pd.teacher_of(4) == ("pd", 8) and pd.teacher_of(1) == ("pd", 2)
    assert cfg.distill_method("rdd").params["memory_size"] == 20_000  # paper default filled in
    assert cfg.distillation.sampler(2).skip == "trailing" and cfg.distillation.sampler(2).steps == 2
    # the paper's protocol: RDD continues from PD's 8-step student
    raw = copy.deepcopy(DEFAULT)
    raw["distillation"]["methods"]["rdd"].update(teacher="pd", steps=[4, 2, 1])
    rdd = parse_config(raw, check_paths=False).distill_method("rdd")
    assert rdd.teacher_of(4) == ("pd", 8) and rdd.teacher_of(2) == ("rdd", 4)


def test_method_instances_share_a_recipe_with_their_own_label_and_bits():
    raw = copy.deepcopy(DEFAULT)
    raw["quantization"]["methods"]["linear_w8"] = {"method": "linear", "label": "Linear (W8 only)", "bits": [{"w": 8, "a": 8}],
                                                   "calibration": {"selector": "uniform", "steps": 10, "per_step": 64}}
    cfg = parse_config(raw, check_paths=False)
    assert cfg.variants()[-1] == "linear_w8-w8a8" and cfg.variants().count("linear_w8-w8a8") == 1
    assert cfg.method("linear_w8").label == "Linear (W8 only)"


def _bad(mutate):
    raw = copy.deepcopy(DEFAULT)
    mutate(raw)
    return raw


BAD = [
    ("unknown top-level key", lambda r: r.update(samplr={}), "'samplr': unknown key"),
    ("unknown nested key", lambda r: r["sampler"].update(stpes=3), "'sampler.stpes': unknown key"),
    ("wrong type", lambda r: r["sampler"].update(steps="ten"), "'sampler.steps': 'ten' is not of type 'integer'"),
    ("unknown method", lambda r: r["quantization"]["methods"].update(brecq={}), "'quantization.methods.brecq': unknown quantization method 'brecq' (known: linear, qdiffusion"),
    ("bits above 8", lambda r: r["quantization"].update(bits=[{"w": 9, "a": 8}]), "'quantization.bits[0].w': 9 is greater than the maximum of 8"),
    ("bits below 2", lambda r: r["quantization"].update(bits=[{"w": 4, "a": 1}]), "'quantization.bits[0].a': 1 is less than the minimum of 2"),
    ("negative sample count", lambda r: r["evaluation"].update(n_samples=-5), "'evaluation.n_samples': -5 is less than the minimum of 1"),
    ("missing dataset path", lambda r: r["dataset"].update(root="/nonexistent/fmnist"), "'dataset.root': /nonexistent/fmnist does not exist"),
    ("unknown dataset source", lambda r: r["dataset"].update(source="kaggle"), "'dataset.source': 'kaggle' is not one of"),
    ("missing name", lambda r: r.pop("name"), "'name': required key is missing"),
    ("hub without id", lambda r: r["model"].update(source="hub", path=None), "'model.hub_id': required when model.source is 'hub'"),
    ("shard larger than count", lambda r: r["evaluation"].update(shard_size=5000), "'evaluation.shard_size': 5000 is larger than"),
    ("unknown method parameter", lambda r: r["quantization"]["methods"]["linear"].update(iters=5), "'quantization.methods.linear.iters': unknown key"),
    ("calibration steps beyond sampler", lambda r: r["quantization"]["methods"]["linear"]["calibration"].update(steps=50),
     "'quantization.methods.linear.calibration.steps': 50 is more than sampler.steps"),
    ("calibration samples beyond trajectories", lambda r: r["quantization"]["methods"]["linear"]["calibration"].update(per_step=65),
     "'quantization.methods.linear.calibration.per_step': 65 is more than calibration.n_trajectories (64)"),
    ("unknown selector", lambda r: r["quantization"]["methods"]["linear"]["calibration"].update(selector="tdac"),
     "'quantization.methods.linear.calibration.selector': unknown calibration selector 'tdac' (known: uniform"),
    ("unknown selector parameter", lambda r: r["quantization"]["methods"]["linear"]["calibration"].update(stpes=3),
     "'quantization.methods.linear.calibration.stpes': unknown key"),
    ("corrections without a base", lambda r: r["quantization"]["methods"]["linear"].update(bias_correction=True),
     "'quantization.methods.linear.bias_correction': corrections apply to another instance's quantized model"),
    ("unknown base", lambda r: r["quantization"]["methods"]["qdiffusion_bc"].update(base="qdiff"),
     "'quantization.methods.qdiffusion_bc.base': 'qdiff' is not another quantization instance"),
    ("base without a correction", lambda r: r["quantization"]["methods"]["qdiffusion_bc"].update(bias_correction=False),
     "'quantization.methods.qdiffusion_bc': an instance with a base applies bias_correction and/or eps_correction"),
    ("method parameters on a corrected instance", lambda r: r["quantization"]["methods"]["qdiffusion_bc"].update(iters_w=3),
     "'quantization.methods.qdiffusion_bc.iters_w': an instance with a base inherits its method and parameters"),
    ("bits a base does not quantize", lambda r: r["quantization"]["methods"]["linear_bc"].update(bits=[{"w": 8, "a": 8}]),
     "'quantization.methods.linear_bc.bits': W8A8 is not among the bits of its base 'linear'"),
    ("a base of a base", lambda r: r["quantization"]["methods"].update(again={"base": "qdiffusion_bc", "bias_correction": True}),
     "'quantization.methods.again.base': 'qdiffusion_bc' has a base itself"),
    ("bad method parameter value", lambda r: r["quantization"]["methods"]["qdiffusion"].update(w_init="minmax"),
     "'quantization.methods.qdiffusion': w_init must be 'max' or 'mse'"),
    ("bad skip type", lambda r: r["sampler"].update(skip="cubic"), "'sampler.skip': 'cubic' is not one of"),
    ("missing model folder", lambda r: r["model"].update(path="resources/models/nope"), "'model.path':"),
    ("bad method instance name", lambda r: r["quantization"]["methods"].update({"Bad-Name": {}}), "'quantization.methods'"),
    ("unknown resource rule", lambda r: r["resources"].update(smaple={"threads": 1}), "'resources'"),
    ("unknown distillation method", lambda r: r["distillation"]["methods"].update(consistency={}),
     "'distillation.methods.consistency': unknown distillation method 'consistency'"),
    ("unknown distillation parameter", lambda r: r["distillation"]["methods"]["rdd"].update(temprature=1.0),
     "'distillation.methods.rdd.temprature': unknown key"),
    ("unknown distillation teacher", lambda r: r["distillation"]["methods"]["rdd"].update(teacher="pdd"),
     "'distillation.methods.rdd.teacher': 'pdd' is neither 'fp' nor a distillation instance"),
    ("teacher without the needed steps", lambda r: r["distillation"]["methods"]["rdd"].update(teacher="pd"),
     "'distillation.methods.rdd': its 8-step student needs a 16-step teacher, which 'pd' does not produce"),
    ("distillation instance named fp", lambda r: r["distillation"]["methods"].update(fp={"method": "pd"}),
     "'distillation.methods.fp': 'fp' names the FP teacher"),
    ("zero distillation steps", lambda r: r["distillation"].update(steps=[4, 0]),
     "'distillation.steps[1]': 0 is less than the minimum of 1"),
    ("student beyond the schedule", lambda r: r["distillation"].update(steps=[512, 1]),
     "'distillation.steps': a 512-step student needs a 1024-step teacher"),
]


@pytest.mark.parametrize("what,mutate,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_rejected_with_a_message_naming_key_and_problem(what, mutate, message):
    with pytest.raises(ConfigError) as e:
        parse_config(_bad(mutate), base_dir=REPO, check_paths=True)
    assert message in str(e.value), str(e.value)


def test_every_shipped_config_validates():
    files = sorted((REPO / "config").glob("*.yaml"))
    assert files
    for f in files:
        load_config(f, check_paths=True, base_dir=REPO)


def test_bad_yaml_is_a_config_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_the_schema_ships_inside_the_package_and_validation_imports_no_torch(tmp_path):
    """A wheel install validates too (the schema is package data), and the Snakefile's validation
    (every registry discovered) never imports torch."""
    import subprocess
    import sys

    code = ("import sys; from diffcomp.config import load_config, schema; "
            f"load_config({str(REPO / 'config/default.yaml')!r}, base_dir={str(REPO)!r}); "
            "assert schema()['title']; assert 'torch' not in sys.modules, 'torch imported'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]


def test_a_corrected_instance_inherits_its_base():
    cfg = parse_config(DEFAULT, check_paths=False)
    bc, q = cfg.method("qdiffusion_bc"), cfg.method("qdiffusion")
    assert bc.base == "qdiffusion" and bc.method == "qdiffusion" and bc.params == q.params and bc.bits == q.bits
    assert bc.bias_correction and bc.eps_correction == "none" and "(ours)" in bc.label
    assert cfg.method("qdiffusion_eps").eps_correction == "pixel"
    assert "qdiffusion_bc-w3a8" in cfg.variants() and "linear_bc-w3a8" not in cfg.variants()


def test_method_instances_keep_their_built_parameters():
    cfg = parse_config(DEFAULT, check_paths=False)
    q = cfg.method("qdiffusion")
    assert q.built.calibration.params.per_step == 16 and q.built.iters_w == 80
    assert dict(q.params)["calibration"] == {"selector": "uniform", "steps": 10, "per_step": 16}
