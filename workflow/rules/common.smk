# Helpers shared by the rules: resolved config sections, resources, paths.
import dataclasses
import re
import shlex

from diffcomp.distill import DISTILLERS
from diffcomp.methods import METHODS


def shq_json(obj):
    """A config dataclass (defaults filled in) as shell-quoted JSON for a verb; as a param it is
    also the rerun trigger when that section of the config changes."""
    return shlex.quote(json.dumps(dataclasses.asdict(obj), sort_keys=True))


def res(rule_name):
    return CFG.resource(rule_name)


def fp_model_dir():
    src = CFG.model.source
    if src == "shipped":
        return CFG.model.path
    if src == "train":
        return "results/models/fp-trained"
    return f"resources/hub/{CFG.model.hub_id}"


def feature_net_dir():
    if CFG.feature_net.source == "shipped":
        return CFG.feature_net.path
    return "results/models/feature-net"


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
    return fp_model_dir() if src == "fp" else f"results/distill/{src}/steps{n}"


def distill_feature_net():
    d = CFG.distillation.feature_net
    if d is None:
        return CFG.feature_net.name, feature_net_dir()
    return d.name, d.path


def distill_features_input(w):
    uses = DISTILLERS[distill_of(w.name).method].uses_features
    return [distill_feature_net()[1]] if uses else []


def distill_code(w):
    return code_hash(*DISTILLERS[distill_of(w.name).method].sources, "models/pipeline.py",
                     "cli/distill.py")  # fmt: skip


def split_variant(variant):
    """('fp' | method instance | distillation instance, kind 'fp' | 'quant' | 'distill', steps)."""
    m = re.fullmatch(r"(.+)-s(\d+)", variant)
    if m:
        return m.group(1), "distill", int(m.group(2))
    return variant.split("-")[0], ("fp" if variant == "fp" else "quant"), None


def variant_model(w):
    name, kind, n = split_variant(w.variant)
    if kind == "distill" and name != "fp":
        return f"results/distill/{name}/steps{n}"
    return fp_model_dir()


def variant_sampler(variant):
    """The sampler of a variant: the config's, or the distillation grid with N steps."""
    name, kind, n = split_variant(variant)
    return CFG.distillation.sampler(n) if kind == "distill" else CFG.sampler


wildcard_constraints:
    variant=r"fp|[a-z][a-z0-9_]*-w\d+a\d+|[a-z][a-z0-9_]*-s\d+",
    n=r"\d+",
    name=r"[a-z][a-z0-9_]*",
    w=r"\d+",
    a=r"\d+",
    i=r"\d+",


def protocol(w):
    return json.dumps({"sampler": dataclasses.asdict(variant_sampler(w.variant)), "seed": CFG.evaluation.seed,
                       "reference": CFG.evaluation.reference, "dataset": CFG.dataset.name,
                       "config": CFG.name}, sort_keys=True)  # fmt: skip


def quant_code(w):
    m = method_of(w.name)
    return code_hash("quant/*.py", "calib/*.py", "methods/__init__.py", "methods/params.py",
                     METHODS[m.method].source, "cli/quantize.py")  # fmt: skip


def table1_bits():
    seen = []
    for m in CFG.quantization.methods:
        for b in m.bits:
            if b.label not in seen:
                seen.append(b.label)
    return seen


def quantized_input(w):
    return (
        [f"results/quant/{w.variant}.pt"]
        if split_variant(w.variant)[1] == "quant"
        else []
    )


def table3_steps():
    d = CFG.distillation
    return sorted(set(d.steps).union(*[m.steps for m in d.methods]))
