import copy
from pathlib import Path

import pytest
import yaml

from conftest import place_hand_inputs
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
    # the FP teacher at every step count and as the 16-step teacher of PD's first stage
    assert cfg.distill_variants()[:5] == ["fp-s8", "fp-s4", "fp-s2", "fp-s1", "fp-s16"]
    rows = ("pd-s8", "pd-s4", "pd-s2", "pd-s1", "rdd-s4", "rdd-s2", "rdd-s1", "rdd_pd-s4", "rdd_pd-s2", "rdd_pd-s1")
    assert cfg.distill_variants()[5:] == list(rows) + [r.replace("-", "_eps-") for r in rows]
    pd = cfg.distill_method("pd")
    assert pd.teacher_of(8) == ("fp", 16) and pd.teacher_of(4) == ("pd", 8) and pd.teacher_of(1) == ("pd", 2)
    assert cfg.distill_method("rdd").params["memory_size"] == 20_000  # paper default filled in
    assert cfg.distillation.sampler(2).skip == "trailing" and cfg.distillation.sampler(2).steps == 2
    # the paper's protocol: both RDD chains continue from PD's 8-step student; "RDD" is the
    # released loss (no MSE term), "RDD + PD loss" adds PD's; the papers' rows have v students,
    # and the same three chains with eps students are labelled as such
    for suffix, label_end, pred in (("", "", "v"), ("_eps", ", eps students", "eps")):
        assert cfg.distill_method("pd" + suffix).label == "PD" + label_end
        for name, label, mse in [("rdd", "RDD", 0.0), ("rdd_pd", "RDD + PD loss", 1.0)]:
            m = cfg.distill_method(name + suffix)
            assert m.method == "rdd" and m.label == label + label_end and m.params["mse_weight"] == mse
            assert m.teacher_of(4) == ("pd" + suffix, 8) and m.teacher_of(2) == (name + suffix, 4)
            assert m.params["parameterization"] == pred == cfg.distill_method("pd" + suffix).params["parameterization"]
    teachers = cfg.distill_teachers()
    assert teachers["pd-s8"] == "fp-s16" and teachers["pd-s4"] == "pd-s8" and teachers["rdd-s4"] == "pd-s8"
    assert teachers["rdd_pd-s1"] == "rdd_pd-s2" and teachers["rdd_eps-s4"] == "pd_eps-s8" and len(teachers) == 20
    assert cfg.distillation.feature_net.name == "fmnist-resnet"


def test_rdd_feature_network_must_not_be_the_evaluation_network(tmp_path):
    """By folder or by the sha256 of its weights (a copy elsewhere is the same network)."""
    import shutil

    raw = copy.deepcopy(DEFAULT)
    raw["distillation"]["feature_net"] = {"name": "fmnist-classifier", "path": "resources/models/fmnist-classifier"}
    with pytest.raises(ConfigError) as e:
        parse_config(raw, base_dir=REPO, check_paths=True)
    msg = str(e.value)
    assert msg.startswith("config key 'distillation.feature_net.path': ") and "evaluation network" in msg
    copied = tmp_path / "copy"
    shutil.copytree(REPO / "resources/models/fmnist-classifier", copied)
    raw["distillation"]["feature_net"]["path"] = str(copied)
    with pytest.raises(ConfigError, match="^config key 'distillation.feature_net.path': .*same sha256"):
        parse_config(raw, base_dir=REPO, check_paths=True)
    # without an instance that trains in features, the network is not read
    for name in [n for n, m in raw["distillation"]["methods"].items() if m.get("method", n) == "rdd"]:
        del raw["distillation"]["methods"][name]
    parse_config(raw, base_dir=REPO, check_paths=True)


def test_a_trained_rdd_network_has_its_names_architecture_and_not_the_evaluation_recipe():
    raw = copy.deepcopy(DEFAULT)
    raw["distillation"]["feature_net"] = {"name": "fmnist-resnet", "source": "train"}
    cfg = parse_config(raw, base_dir=REPO, check_paths=True)  # nothing to verify before it is trained
    assert cfg.distillation.feature_net.train.arch == "resnet" and cfg.distillation.feature_net.train.seed == 1
    raw["distillation"]["feature_net"]["train"] = {"arch": "vgg"}
    with pytest.raises(ConfigError, match="^config key 'distillation.feature_net.train.arch': fmnist-resnet is a resnet"):
        parse_config(raw, check_paths=False)
    raw["distillation"]["feature_net"] = {"name": "fmnist-classifier", "source": "train", "train": {"arch": "vgg"}}
    raw["feature_net"]["source"] = "train"
    with pytest.raises(ConfigError, match="^config key 'distillation.feature_net.train': the recipe of feature_net.train"):
        parse_config(raw, check_paths=False)
    raw["distillation"]["feature_net"]["train"]["seed"] = 5
    parse_config(raw, check_paths=False)


def test_the_gpu_distillation_config_has_the_papers_budget():
    cfg = load_config(REPO / "config/fmnist-distill-gpu.yaml", check_paths=True, base_dir=REPO)
    rows = {m.name: m for m in cfg.distillation.methods}
    for name in ("pd", "rdd", "rdd_pd"):  # the papers' rows
        p = rows[name].built
        assert (p.iters, p.low_step_factor, p.batch_size, p.lr, p.parameterization) == (10_000, 2, 128, 5e-5, "v")
        assert p.stage_iters(1) == p.stage_iters(2) == 20_000 and p.stage_iters(4) == 10_000
        assert name == "pd" or rows[name].teacher_of(4) == ("pd", 8)
    # the ablations of the first stage change one thing each and say so in their labels
    assert rows["pd_eps"].built.parameterization == "eps" and "ablation" in rows["pd_eps"].label
    assert rows["pd_long"].built.iters == 40_000 and "ablation" in rows["pd_long"].label
    longer = rows["pd_eps_long"].built
    assert (longer.iters, longer.parameterization) == (20_000, "eps") and "ablation" in rows["pd_eps_long"].label
    assert rows["pd_clip"].built.clip_teacher_x0 and not rows["pd"].built.clip_teacher_x0
    # ours: PD's recipe from the eps ablation's 8-step student, labelled as ours
    ours = rows["pd_eps_v"]
    assert ours.teacher_of(4) == ("pd_eps", 8) and ours.built == rows["pd"].built and "ours" in ours.label
    assert set(rows) == {"pd", "rdd", "rdd_pd", "pd_eps", "pd_long", "pd_eps_long", "pd_clip", "pd_eps_v"}
    assert cfg.resource("distill").gpu == 1 and cfg.evaluation.n_samples == 5000


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
    ("unknown method", lambda r: r["quantization"]["methods"].update(brecq={}), "'quantization.methods.brecq': unknown quantization method 'brecq' (known: "),
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
     "'quantization.methods.linear.calibration.selector': unknown calibration selector 'tdac' (known: density_diversity, uniform"),
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
    ("teacher without the needed steps", lambda r: r["distillation"]["methods"]["rdd"].update(steps=[8, 4, 2, 1]),
     "'distillation.methods.rdd': its 8-step student needs a 16-step teacher, which 'pd' does not produce"),
    ("distillation instance named fp", lambda r: r["distillation"]["methods"].update(fp={"method": "pd"}),
     "'distillation.methods.fp': 'fp' names the FP teacher"),
    ("zero distillation steps", lambda r: r["distillation"].update(steps=[4, 0]),
     "'distillation.steps[1]': 0 is less than the minimum of 1"),
    ("student beyond the schedule", lambda r: r["distillation"].update(steps=[512, 1]),
     "'distillation.steps': a 512-step student needs a 1024-step teacher"),
    ("unknown sampling precision", lambda r: r["evaluation"].update(precision="fp16"),
     "'evaluation.precision': 'fp16' is not one of ['fp32', 'tf32', 'bf16']"),
    ("compile as a boolean", lambda r: r["evaluation"].update(compile=True),
     "'evaluation.compile'"),
]


@pytest.mark.parametrize("what,mutate,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_rejected_with_a_message_naming_key_and_problem(what, mutate, message):
    with pytest.raises(ConfigError) as e:
        parse_config(_bad(mutate), base_dir=REPO, check_paths=True)
    assert message in str(e.value), str(e.value)


def test_every_shipped_config_validates(tmp_path):
    """Every config against the repository; those whose user places files by hand (Stable
    Diffusion's COCO prompts, reference and CLIP; LSUN-Church's reference) against stand-ins."""
    files = sorted((REPO / "config").glob("*.yaml"))
    assert files
    place_hand_inputs(tmp_path)
    for f in files:
        load_config(f, check_paths=True, base_dir=tmp_path if f.name in ("sd-v1-4.yaml", "lsun-church-ldm8.yaml") else REPO)
    with pytest.raises(ConfigError, match="prompts"):
        load_config(REPO / "config/sd-v1-4.yaml", check_paths=True, base_dir=tmp_path / "empty")
    with pytest.raises(ConfigError, match="church_outdoor_train is not a folder"):
        load_config(REPO / "config/lsun-church-ldm8.yaml", check_paths=True, base_dir=tmp_path / "empty")


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


# ----------------------------------------------------------------------------- semantic checks (issue 18)


def _methods(r):
    return r["quantization"]["methods"]


BAD_VALUES = [
    ("zero method batch size", lambda r: _methods(r)["linear"].update(batch_size=0),
     "config key 'quantization.methods.linear.batch_size': 0 is less than the minimum of 1"),
    ("zero calibration steps", lambda r: _methods(r)["linear"]["calibration"].update(steps=0),
     "config key 'quantization.methods.linear.calibration.steps': 0 is less than the minimum of 1"),
    ("negative iterations", lambda r: _methods(r)["qdiffusion"].update(iters_w=-5),
     "config key 'quantization.methods.qdiffusion.iters_w': -5 is less than the minimum of 1"),
    ("zero learning rate", lambda r: _methods(r)["qdiffusion"].update(lr_a=0.0),
     "config key 'quantization.methods.qdiffusion.lr_a': 0.0 is less than or equal to the minimum of 0"),
    ("warm-up above one", lambda r: _methods(r)["qdiffusion"].update(warmup=1.5),
     "config key 'quantization.methods.qdiffusion.warmup': 1.5 is greater than the maximum of 1"),
    ("negative distillation lr", lambda r: r["distillation"]["methods"]["pd"].update(lr=-1e-5),
     "config key 'distillation.methods.pd.lr': -1e-05 is less than or equal to the minimum of 0"),
    ("zero distillation iterations", lambda r: r["distillation"]["methods"]["rdd"].update(iters=0),
     "config key 'distillation.methods.rdd.iters': 0 is less than the minimum of 1"),
    ("zero distillation batch", lambda r: r["distillation"]["methods"]["pd"].update(batch_size=0),
     "config key 'distillation.methods.pd.batch_size': 0 is less than the minimum of 1"),
    ("zero temperature", lambda r: r["distillation"]["methods"]["rdd"].update(intra_temperature=0),
     "config key 'distillation.methods.rdd.intra_temperature': 0.0 is less than or equal to the minimum of 0"),
    ("more anchors than memory", lambda r: r["distillation"]["methods"]["rdd"].update(anchors=50, memory_size=40),
     "config key 'distillation.methods.rdd': anchors (50) must not exceed memory_size (40)"),
    ("nan eta", lambda r: r["sampler"].update(eta=float("nan")), "config key 'sampler.eta': nan is not a finite number"),
    ("infinite lr", lambda r: r["distillation"]["methods"]["pd"].update(lr=float("inf")),
     "config key 'distillation.methods.pd.lr': inf is not a finite number"),
    ("nan method weight", lambda r: r["distillation"]["methods"]["rdd"].update(mse_weight=float("nan")),
     "config key 'distillation.methods.rdd.mse_weight': nan is not a finite number"),
    ("a trillion samples", lambda r: r["evaluation"].update(n_samples=10**12),
     "config key 'evaluation.n_samples': 1000000000000 is greater than the maximum of 1000000"),
    ("too many shards", lambda r: r["evaluation"].update(n_samples=1_000_000, shard_size=10),
     "config key 'evaluation.shard_size': 1000000 samples in shards of 10 are 100000 sample jobs per variant, "
     "more than 10000; raise shard_size"),
    ("label with a newline", lambda r: _methods(r)["linear"].update(label="Linear\n| fake | row |"),
     "config key 'quantization.methods.linear.label': 'Linear\\n| fake | row |' is not a one-line label"),
    ("two methods, one label", lambda r: _methods(r)["qdiffusion_nosplit"].update(label="Q-Diffusion"),
     "config key 'quantization.methods.qdiffusion_nosplit.label': 'Q-Diffusion' is already the label of "
     "quantization.methods.qdiffusion"),
    ("two instances with their method's label", lambda r: _methods(r)["qdiffusion_nosplit"].pop("label"),
     "config key 'quantization.methods.qdiffusion_nosplit.label': 'Q-Diffusion' is already the label of"),
    ("the FP row's label", lambda r: _methods(r)["linear"].update(label="FP (W32A32)"),
     "'FP (W32A32)' is already the label of the FP row"),
    ("two chains, one label", lambda r: r["distillation"]["methods"]["rdd"].update(label="PD"),
     "config key 'distillation.methods.rdd.label': 'PD' is already the label of distillation.methods.pd"),
    ("repeated distillation steps", lambda r: r["distillation"].update(steps=[4, 2, 2]),
     "config key 'distillation.steps': repeated step count"),
    ("repeated chain steps", lambda r: r["distillation"]["methods"]["rdd"].update(steps=[2, 1, 1]),
     "config key 'distillation.methods.rdd.steps': repeated step count"),
    ("repeated bit setting", lambda r: _methods(r)["linear"].update(bits=[{"w": 4, "a": 8}, {"w": 4, "a": 8}]),
     "config key 'quantization.methods.linear.bits': repeated bit setting"),
    ("sampler beyond the schedule", lambda r: r["sampler"].update(steps=1001), "config key 'sampler.steps': 1001 is more than"),
    ("chain that is its own teacher", lambda r: r["distillation"]["methods"]["rdd"].update(teacher="rdd"),
     "config key 'distillation.methods.rdd.teacher': a chain cannot be its own first teacher"),
    ("shipped feature net without path", lambda r: r["feature_net"].update(path=None),
     "config key 'feature_net.path': required when feature_net.source is 'shipped'"),
]


@pytest.mark.parametrize("what,mutate,message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_semantic_checks_refuse_values_no_job_could_use(what, mutate, message):
    with pytest.raises(ConfigError) as e:
        parse_config(_bad(mutate), base_dir=REPO, check_paths=False)
    assert message in str(e.value), str(e.value)
    assert "\n" not in str(e.value).replace("\\n", "")


YAML_FILES = [
    ("duplicate key", "name: a\nsampler: {steps: 10}\nname: b\n", "c.yaml: line 3: duplicate key 'name' (first given on line 1)"),
    ("nested duplicate key", "name: a\nsampler:\n  steps: 10\n  eta: 0.0\n  steps: 20\n",
     "c.yaml: line 5: duplicate key 'steps' (first given on line 3)"),
    ("syntax error", "name: a\nsampler: {steps: 10\nevaluation: {}\n", "c.yaml:3:11: not valid YAML:"),
    ("tab indentation", "name: a\nsampler:\n\tsteps: 10\n", "c.yaml:3:1: not valid YAML:"),
    ("empty file", "", "c.yaml: the config file is empty"),
    ("only a comment", "# nothing\n", "c.yaml: the config file is empty"),
    ("a list", "- name: a\n", "c.yaml: the config must be a mapping at the top level, not a list"),
]


@pytest.mark.parametrize("what,text,message", YAML_FILES, ids=[y[0] for y in YAML_FILES])
def test_yaml_problems_name_the_file_and_line(tmp_path, what, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{tmp_path}/{message}" in str(e.value), str(e.value)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}/nope.yaml: no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_a_changed_shipped_model_fails_the_config_check(tmp_path):
    import shutil

    raw = copy.deepcopy(DEFAULT)
    for key_, src in (("model", "resources/models/fmnist-ddpm"), ("feature_net", "resources/models/fmnist-classifier")):
        dst = tmp_path / key_
        shutil.copytree(REPO / src, dst)
        raw[key_]["path"] = str(dst)
    parse_config(raw, base_dir=REPO)  # intact copies pass
    weights = tmp_path / "model/unet/diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4096:-4080] = bytes(b ^ 0x55 for b in data[-4096:-4080])
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=f"config key 'model.path': {weights} does not match the sha256 recorded in "
                                          f"{tmp_path}/model/provenance.json"):
        parse_config(raw, base_dir=REPO)
    (tmp_path / "feature_net/provenance.json").unlink()
    raw["model"]["path"] = "resources/models/fmnist-ddpm"
    with pytest.raises(ConfigError, match=f"config key 'feature_net.path': {tmp_path}/feature_net/provenance.json is missing"):
        parse_config(raw, base_dir=REPO)


def test_docs_pass_config_files_with_an_equals_sign():
    """``--configfile X target`` reads the target as a second config file: every command in the
    docs and profiles writes ``--configfile=X``."""
    import re

    for f in [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "workflow/profiles").glob("*/config.yaml")]:
        for line in f.read_text().splitlines():
            assert not re.search(r"--configfiles?\s+[\w./<>-]+\.ya?ml", line), f"{f.name}: {line}"


def test_distillation_defaults_fill_every_instance_unless_it_sets_its_own():
    raw = copy.deepcopy(DEFAULT)
    d = raw["distillation"]
    assert d["defaults"]["iters"] == 60  # the default config states its budget once
    d["defaults"] = {"iters": 7, "batch_size": 5, "lr": 3.0e-4}
    d["methods"] = {"pd": None, "rdd": {"teacher": "pd", "steps": [4, 2, 1], "iters": 9}}
    cfg = parse_config(raw, check_paths=False)
    pd, rdd = cfg.distill_method("pd").built, cfg.distill_method("rdd").built
    assert (pd.iters, pd.batch_size, pd.lr) == (7, 5, 3.0e-4)
    assert (rdd.iters, rdd.batch_size, rdd.lr) == (9, 5, 3.0e-4)  # its own iters win
    assert pd.low_step_factor == 2 and pd.parameterization == "v"  # keys in neither: the paper's defaults
    # an RDD-only parameter cannot be PD's default too: the message names the defaults' key
    d["defaults"] = {"mse_weight": 0.5}
    with pytest.raises(ConfigError, match=r"'distillation.defaults.mse_weight': not a parameter of 'pd' \(instance 'pd'\)"):
        parse_config(raw, check_paths=False)
    d["defaults"] = {"iters": 0}  # checked as the instance's own value would be
    with pytest.raises(ConfigError, match=r"distillation.methods.pd.iters"):
        parse_config(raw, check_paths=False)
