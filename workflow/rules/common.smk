# Helpers shared by the rules: resolved config sections, resources, paths.
import dataclasses
import shlex

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


wildcard_constraints:
    variant=r"fp|[a-z][a-z0-9_]*-w\d+a\d+",
    name=r"[a-z][a-z0-9_]*",
    w=r"\d+",
    a=r"\d+",
    i=r"\d+",


def protocol(w):
    return json.dumps({"sampler": dataclasses.asdict(CFG.sampler), "seed": CFG.evaluation.seed,
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
    return [] if w.variant == "fp" else [f"results/quant/{w.variant}.pt"]
