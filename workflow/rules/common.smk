# Helpers shared by the rules: resolved config sections, resources, paths, code hashes, the
# report's categories.
# Plug-ins (quantization and distillation methods) are looked up in their registries; no rule
# names a method, so a new method needs no change here.
import dataclasses
import os
import re
import shlex

from diffcomp.config import TRAINED_CLASSIFIER, TRAINED_RDD_CLASSIFIER
from diffcomp.distill.methods import DISTILLERS
from diffcomp.metrics.clip_score import FILES as CLIP_FILES
from diffcomp.weights import has_text_encoder
from diffcomp.methods import METHODS
from diffcomp.hashing import code_hash
from diffcomp.registry import modules_of
from diffcomp.variant import PATTERN as VARIANT_PATTERN
from diffcomp.weights import classifier_files, pipeline_files


def shq_json(obj):
    """A config dataclass (defaults filled in) as shell-quoted JSON for a verb; as a param it is
    also the rerun trigger when that section of the config changes."""
    return shlex.quote(json.dumps(dataclasses.asdict(obj), sort_keys=True))


def compute_args(section):
    """A config section's ``precision`` and ``compile`` as a verb's ``--precision`` / ``--compile``
    options (the sample and distill jobs)."""
    return f"--precision {section.precision}" + (
        f" --compile {section.compile}" if section.compile else ""
    )


def code(verb, *modules, skip=()):
    """The rerun trigger of a rule: a hash of the code its verb (and plug-ins) import."""
    return module_hash(f"diffcomp.cli.{verb}", *modules, skip=skip)


def res(key):
    """The config's ``resources.{key}`` (or ``resources.default``)."""
    return CFG.resource(key)


def job_resources(key):
    """What a job asks the executor for, from the config's ``resources.{key}``: memory, runtime
    (minutes, multiplied by the attempt number on retries) and GPUs. The one place where rules
    get their resources: ``resources: **job_resources(key)`` (threads: ``res(key).threads``).
    """
    r = res(key)
    return {
        "mem_mb": r.mem_mb,
        "runtime": lambda wc, attempt: r.runtime * attempt,
        "gpu": r.gpu,
    }


def fp_model_dir():
    src = CFG.model.source
    if src == "shipped":
        return CFG.model.path
    if src == "train":
        return "results/models/fp-trained"
    if src == "checkpoint":
        return f"resources/checkpoints/{CFG.model.checkpoint.name}"
    return f"resources/hub/{CFG.model.hub_id}"


def fp_model_parts():
    """(autoencoder, text encoder) of the FP model: read from a shipped folder; from the config for
    a folder a rule writes (its file list must be the same before and after it exists).
    """
    if CFG.model.source == "shipped":
        return None, None
    # a hub model with prompts is a text-to-image model (latent too)
    if CFG.model.source == "hub" and CFG.model.prompts:
        return True, True
    latent = CFG.model.source == "checkpoint" and CFG.model.checkpoint.format == "ldm"
    return latent, False


def fp_model_files():
    """What a job reading the FP model depends on: its weight file, configs and checksum record
    (files, not the folder, so a changed weight file reruns the job)."""
    return pipeline_files(fp_model_dir(), *fp_model_parts())


def model_files(folder):
    """The files of the FP model or of a distilled student (students have neither part)."""
    return (
        fp_model_files()
        if folder == fp_model_dir()
        else pipeline_files(folder, False, False)
    )


def feature_net_dir():
    if CFG.feature_net.source == "shipped":
        return CFG.feature_net.path
    return TRAINED_CLASSIFIER


def feature_net_files():
    """The feature network's files: the classifier folder's, or torch-fidelity's Inception
    weights file (none when torch-fidelity downloads its default weights)."""
    if CFG.feature_net.name == "inception-v3-compat":
        w = CFG.feature_net.weights_path
        return [w] if w else []
    return classifier_files(feature_net_dir())


def feature_net_arg(input):
    """``--weights X`` for the metric verbs: the classifier folder or the Inception weights file."""
    if not input.net:
        return ""
    w = (
        input.net[0]
        if CFG.feature_net.name == "inception-v3-compat"
        else folder_of(input.net)
    )
    return f"--weights {shlex.quote(w)}"


def reference_is_npz():
    return CFG.evaluation.reference.endswith(".npz")


def reference_input():
    """A dataset split's images, a folder of images (read by reference_stats itself, a batch at
    a time), or an ADM reference batch (.npz; downloaded by fetch_reference when the config
    names a URL).
    """
    if reference_is_npz():
        return CFG.evaluation.reference_file
    if CFG.evaluation.reference_folder:
        return CFG.evaluation.reference_folder
    return f"results/data/{CFG.evaluation.reference}.npz"


def reference_source_args():
    """reference-stats' options naming its input's kind (and a folder's size and limit)."""
    ref = CFG.evaluation
    if reference_is_npz():
        return "--adm-npz"
    if ref.reference_folder:
        limit = f" --limit {ref.reference_limit}" if ref.reference_limit else ""
        return f"--size {ref.reference_size}{limit} --folder"
    return "--images"


def reference_output():
    ref = CFG.evaluation
    if reference_is_npz():
        stem = os.path.basename(ref.reference)[: -len(".npz")]
    elif ref.reference_folder:
        stem = (
            f"{os.path.basename(ref.reference_folder.rstrip('/'))}-{ref.reference_size}"
        )
    else:
        stem = ref.reference
    return f"results/reference/{CFG.feature_net.name}-{stem}.npz"


def folder_of(files):
    """The model folder of a list of model files (the folder holding provenance.json)."""
    return os.path.dirname(
        next(f for f in files if os.path.basename(f) == "provenance.json")
    )


def model_outputs(folder, autoencoder=False, text=False):
    """The files a rule writing a diffusion model folder declares (dependents read them)."""
    return pipeline_files(folder, autoencoder, text)


def shard_range(i):
    k, n = CFG.evaluation.shard_size, CFG.evaluation.n_samples
    return i * k, min((i + 1) * k, n)


def method_of(name):
    try:
        return CFG.method(name)
    except KeyError:
        raise WorkflowError(
            f"no quantization method instance named {name!r} in the config"
        )


def distill_of(name):
    try:
        return CFG.distill_method(name)
    except KeyError:
        raise WorkflowError(f"no distillation instance named {name!r} in the config")


def distill_teacher(w):
    """Stage N's teacher: the chain's own 2N-step student, the FP model, or another chain's."""
    src, n = distill_of(w.name).teacher_of(int(w.n))
    return fp_model_dir() if src == "fp" else student_dir(src, n)


def distill_teacher_files(w):
    return model_files(distill_teacher(w))


def distill_feature_net():
    """(name, folder) of RDD's network: shipped, or trained by rule train_classifier."""
    d = CFG.distillation.feature_net
    return d.name, (d.path if d.source == "shipped" else TRAINED_RDD_CLASSIFIER)


def classifier_recipe(folder):
    """The training recipe of a classifier rule train_classifier writes into ``folder``."""
    if folder == TRAINED_RDD_CLASSIFIER:
        return CFG.distillation.feature_net.train
    return CFG.feature_net.train


def distill_uses_features(w):
    return DISTILLERS[distill_of(w.name).method].uses_features


def distill_features_input(w):
    return (
        classifier_files(distill_feature_net()[1]) if distill_uses_features(w) else []
    )


def distill_features_args(w):
    """``--feature-net DIR --feature-net-name NAME`` (quoted) for methods that use one."""
    if not distill_uses_features(w):
        return ""
    name, path = distill_feature_net()
    return f"--feature-net {shlex.quote(path)} --feature-net-name {shlex.quote(name)}"


def distill_code(w):
    m = distill_of(w.name)
    return code("distill", DISTILLERS[m.method].module, *modules_of(m.built))


def variant_model(w):
    v = Variant.parse(w.variant)
    return student_dir(v.name, v.steps) if v.distilled else fp_model_dir()


def variant_model_files(w):
    return model_files(variant_model(w))


def variant_sampler(variant):
    """The sampler of a variant: the config's, or the distillation grid with N steps."""
    v = Variant.parse(variant)
    return CFG.distillation.sampler(v.steps) if v.kind == "steps" else CFG.sampler


def sample_code(w):
    """Sampling code; a quantized variant's also covers the quantization core that loads it."""
    quant = Variant.parse(w.variant).kind == "quant"
    return code("sample", skip=() if quant else ("diffcomp.quant",))


wildcard_constraints:
    variant=VARIANT_PATTERN,
    n=r"\d+",
    name=r"[a-z][a-z0-9_]*",
    w=r"\d+",
    a=r"\d+",
    i=r"\d+",
    table=r"table1|table2|table3",


def protocol(w):
    return json.dumps({"sampler": dataclasses.asdict(variant_sampler(w.variant)), "seed": CFG.evaluation.seed,
                       "reference": CFG.evaluation.reference,
                       "dataset": None if reference_is_npz() else CFG.dataset.name,
                       "precision": CFG.evaluation.precision, "compile": CFG.evaluation.compile,
                       "config": CFG.name}, sort_keys=True)  # fmt: skip


def correction_args(m):
    """The correct verb's flags of an instance with a base."""
    args = ["--bias-correction"] if m.bias_correction else []
    return " ".join(args + [f"--eps-correction {m.eps_correction}"])


def instances(corrected):
    """A wildcard pattern of the quantization instances with (or without) a base: each
    quantized model is made by exactly one of the rules quantize and correct."""
    names = [m.name for m in CFG.quantization.methods if bool(m.base) == corrected]
    return "|".join(names) if names else "(?!)"


def quant_code(w):
    m = method_of(w.name)
    return code("quantize", METHODS[m.method].module, *modules_of(m.built))


def table_methods(table):
    """The quantization instances that are rows of ``table`` (table1 or table2)."""
    return [m for m in CFG.quantization.methods if m.table == table]


def table1_bits(table="table1"):
    seen = []
    for m in table_methods(table):
        for b in m.bits:
            if b.label not in seen:
                seen.append(b.label)
    return seen


def quantized_input(w):
    v = Variant.parse(w.variant)
    return [quant_state_path(v)] if v.kind == "quant" else []


def table3_steps():
    """Table 3's columns: every step count of a distilled variant or an FP teacher."""
    return sorted({Variant.parse(v).steps for v in CFG.distill_variants()})


def per_variant_outputs():
    """Every variant's metrics JSON and sample grid: targets of the default rule, so a lost one
    is rebuilt (the tables alone would not notice)."""
    variants = CFG.variants() + (
        CFG.distill_variants() if CFG.distillation.methods else []
    )
    return [
        f"results/{d}/{v}.{ext}"
        for v in variants
        for d, ext in (("metrics", "json"), ("grids", "png"))
    ]


def students():
    """{variant: folder} of every distilled student."""
    return {
        str(v): student_dir(m.name, v.steps)
        for m in CFG.distillation.methods
        for v in m.variants()
    }


# ---- the report (snakemake --report): one category per paper table, one for the run (no colons
# in category names: Snakemake turns them into reStructuredText link targets)


REPORT_CATEGORY = {
    "table1": "Table 1 (post-training quantization)",
    "table2": "Table 2 (extremely low-bit QAT)",
    "table3": "Table 3 (few-step distillation)",
    "run": "Run (config, code version, job times)",
}


def variant_category(w):
    v = Variant.parse(w.variant)
    if v.kind == "steps":
        return REPORT_CATEGORY["table3"]
    if v.kind == "quant" and method_of(v.name).table == "table2":
        return REPORT_CATEGORY["table2"]
    return REPORT_CATEGORY["table1"]


def sample_rows(table):
    """[(variant, row label)] of a table's samples figure: FP, then every method at every bit
    setting (table 1); per step count, the FP teacher then every student (table 3)."""
    if table in ("table1", "table2"):
        return [("fp", "FP (W32A32)")] + [
            (str(v), f"{m.label} {v.bits.label}")
            for m in table_methods(table)
            for v in m.variants()
        ]
    made = set(CFG.distill_variants())
    rows = []
    for n in sorted(table3_steps(), reverse=True):
        for name, label in [("fp", "DDIM (FP teacher)")] + [
            (m.name, m.label) for m in CFG.distillation.methods
        ]:
            v = str(Variant(name, steps=n))
            if v in made:
                rows.append((v, f"{label}, {n} step{'s' if n > 1 else ''}"))
    return rows


def sample_figure_input(w):
    return [f"results/samples/{v}/samples.npz" for v, _ in sample_rows(w.table)]


def tables():
    return (
        ["table1"]
        + (["table2"] if table_methods("table2") else [])
        + (["table3"] if CFG.distillation.methods else [])
    )


def table2_models():
    """Quantized models of the table-2 instances: the bits-per-channel figure shows those with
    per-channel mixed bit widths."""
    return [quant_state_path(v) for m in table_methods("table2") for v in m.variants()]


def calibrations_in_use():
    """Each distinct calibration (selector and parameters) of the quantization instances, with
    the labels of the instances that use it (a method's parameters may hold a ``calibration``).
    """
    seen = {}
    for m in CFG.quantization.methods:
        cal = getattr(m.built, "calibration", None)
        if m.base or cal is None:
            continue
        key = json.dumps(cal.to_config(), sort_keys=True)
        seen.setdefault(key, {"calibration": cal.to_config(), "instances": []})[
            "instances"
        ].append(m.label)
    return list(seen.values())


def calibration_modules():
    """The selector modules of the calibrations in use (chosen by name, so hashed explicitly)."""
    mods = []
    for m in CFG.quantization.methods:
        cal = getattr(m.built, "calibration", None)
        if not m.base and cal is not None:
            mods += [x for x in cal.code_modules() if x not in mods]
    return sorted(mods)


def report_targets():
    """Everything the report shows besides the tables' own outputs."""
    calib = ["results/figures/calibration_counts.png"] if calibrations_in_use() else []
    return (
        [f"results/figures/samples_{t}.png" for t in tables()]
        + calib
        + ["results/figures/job_times.png", "results/report/run_info.html"]
    )


# The CLIP score of a text-to-image model's samples (evaluation.clip_score.model): the evaluate
# job reads the CLIP model folder and the FP model's prompts (the prompts the samples had).
def clip_score_model():
    """evaluation.clip_score.model; refused for a model without prompts (nothing to score)."""
    m = CFG.evaluation.clip_score.model
    text = fp_model_parts()[1]
    if m and not (text if text is not None else has_text_encoder(fp_model_dir())):
        raise WorkflowError(
            "invalid config: config key 'evaluation.clip_score.model': the CLIP score needs a "
            "text-to-image model (model.source: hub with model.prompts, or a folder with prompts.txt)"
        )
    return m


def clip_score_files():
    """{clip: the CLIP folder's files, model: the FP model's} (empty without a CLIP score)."""
    m = clip_score_model()
    if not m:
        return {"clip": [], "model": []}
    return {"clip": [os.path.join(m, f) for f in CLIP_FILES], "model": fp_model_files()}


def clip_score_args(input):
    if not input.clip:
        return ""
    folder = os.path.dirname(input.clip[0])
    return f"--clip-model {shlex.quote(folder)} --model {shlex.quote(folder_of(input.model))}"
