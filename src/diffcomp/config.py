"""The workflow config: validated against the schema, then built into the typed ``Config``.

``parse_config(dict)`` validates a config against ``config.schema.json`` (shipped inside the
package) and then against what the schema cannot say (paths that must exist, registered plug-ins
and their parameters, chains of teachers), and raises one ``ConfigError`` naming the key and the
problem. Sections are in ``sections``, the generic machinery in ``typedconfig``; a method's
parameters are validated against the dataclass it registered. Imports no torch, so the
Snakefile validates before any job runs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .sections import (
    CalibrationConfig, Config, DatasetConfig, DistillationConfig, DistillMethodConfig, EvaluationConfig,
    FeatureNetConfig, MethodConfig, ModelConfig, PaperConfig, QuantizationConfig, ResourceSpec, SamplerConfig,
)  # fmt: skip
from .io import FileError
from .provenance import sha256_file
from .typedconfig import ConfigError, build_dataclass, key, to_plain
from .variant import BitSetting
from .weights import CLASSIFIER, pipeline_kind, verify

__all__ = ["ConfigError", "parse_config", "load_config", "read_yaml", "schema"]

TABLES = ("table1", "table2")  # tables a quantization instance can be a row of
MAX_SHARDS = 10_000  # shard jobs per variant: more makes a DAG Snakemake cannot plan in memory
FP_LABELS = ("FP (W32A32)", "DDIM (FP teacher)")  # the tables' own rows (report.tables)


def schema() -> dict:
    """The config's JSON schema (package data, so a wheel install validates too)."""
    return json.loads(resources.files(__package__).joinpath("config.schema.json").read_text())


def _schema_check(raw: Mapping[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    err = jsonschema.exceptions.best_match(errors)
    where = key(err.absolute_path)
    prefix = f"{where}." if err.absolute_path else ""
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        raise ConfigError(f"config key '{prefix}{extra[0]}': unknown key (known: {', '.join(sorted(err.schema.get('properties', {})))})")
    if err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        raise ConfigError(f"config key '{prefix}{missing[0] if missing else '?'}': required key is missing")
    raise ConfigError(f"config key '{where}': {err.message}")


# Where rule ``train_classifier`` writes the metrics' classifier (``feature_net.source: train``)
# and RDD's (``distillation.feature_net.source: train``).
TRAINED_CLASSIFIER = "results/models/feature-net"
TRAINED_RDD_CLASSIFIER = "results/models/rdd-feature-net"


def _resolve(path: str | None, base: Path) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else base / p


def default_base_dir() -> Path:
    """Where relative paths of a config resolve: the current directory (the workflow's)."""
    return Path.cwd()


def parse_config(raw: Mapping[str, Any], base_dir: str | Path | None = None, check_paths: bool = True) -> Config:
    """Validate ``raw`` (the YAML as a dict) and build the typed ``Config``.

    ``base_dir`` resolves relative paths (the workflow directory; default the current one);
    ``check_paths`` checks that the dataset and shipped model folders exist.
    """
    from .distill.methods import DISTILLERS
    from .methods import METHODS

    _schema_check(raw)
    base = Path(base_dir) if base_dir is not None else default_base_dir()
    data = dict(raw)
    quant_raw = data.pop("quantization", {}) or {}
    global_bits = tuple(BitSetting(**b) for b in quant_raw.get("bits", [{"w": 8, "a": 8}, {"w": 4, "a": 8}]))
    methods = _parse_methods(quant_raw.get("methods") or {}, global_bits, METHODS)
    distillation = _parse_distillation(data.pop("distillation", {}) or {}, DISTILLERS)
    paper_raw = data.pop("paper", None)
    paper = build_dataclass(PaperConfig, paper_raw, "paper") if paper_raw is not None else None
    resources_ = {k: build_dataclass(ResourceSpec, v, f"resources.{k}") for k, v in (data.pop("resources", {}) or {}).items()}
    sections = {
        "dataset": DatasetConfig, "model": ModelConfig, "feature_net": FeatureNetConfig, "sampler": SamplerConfig,
        "calibration": CalibrationConfig, "evaluation": EvaluationConfig,
    }  # fmt: skip
    built = {k: build_dataclass(cls, data.pop(k, {}) or {}, k) for k, cls in sections.items()}
    cfg = Config(
        name=data.pop("name"),
        device=data.pop("device", "auto"),
        quantization=QuantizationConfig(bits=global_bits, methods=tuple(methods)),
        resources=types.MappingProxyType(resources_),
        distillation=distillation,
        paper=paper,
        **built,
    )
    if data:
        raise ConfigError(f"config key '{sorted(data)[0]}': unknown key")
    _semantic_checks(cfg, base, check_paths)
    return cfg


def _parse_methods(raw: Mapping[str, Any], global_bits: tuple[BitSetting, ...], registry) -> list[MethodConfig]:
    """Method instances; one with a ``base`` takes its method, label default and parameters from
    that instance (its own keys: label, bits, the corrections)."""
    built: dict[str, MethodConfig] = {}
    for name, mraw in raw.items():
        where = f"quantization.methods.{name}"
        mraw = dict(mraw or {})
        fixes = {k: mraw.pop(k) for k in ("bias_correction", "eps_correction") if k in mraw}
        table = mraw.pop("table", None)
        if table not in (None, *TABLES):
            raise ConfigError(f"config key '{where}.table': {table!r} is not one of {', '.join(TABLES)}")
        base = mraw.pop("base", None)
        if base is None:
            if fixes:
                raise ConfigError(f"config key '{where}.{sorted(fixes)[0]}': corrections apply to another instance's "
                                  "quantized model: give this instance a base")
            bits = tuple(BitSetting(**b) for b in mraw.pop("bits")) if "bits" in mraw else global_bits
            built[name] = MethodConfig(**_instance(name, mraw, registry, "quantization.methods"), bits=bits,
                                       table=table or "table1")
            continue
        if base not in raw or base == name:
            raise ConfigError(f"config key '{where}.base': {base!r} is not another quantization instance "
                              f"(known: {', '.join(n for n in raw if n != name)})")
        if raw[base] and "base" in (raw[base] or {}):
            raise ConfigError(f"config key '{where}.base': {base!r} has a base itself; name an instance that quantizes")
        if not fixes.get("bias_correction") and fixes.get("eps_correction", "none") == "none":
            raise ConfigError(f"config key '{where}': an instance with a base applies bias_correction and/or eps_correction")
        extra = sorted(set(mraw) - {"label", "bits"})  # table: popped above
        if extra:
            raise ConfigError(f"config key '{where}.{extra[0]}': an instance with a base inherits its method and "
                              "parameters (its own keys: label, bits, bias_correction, eps_correction)")
        if base not in built:  # bases are parsed first
            b = dict(raw[base] or {})
            b_bits = tuple(BitSetting(**x) for x in b.pop("bits")) if "bits" in b else global_bits
            for k in ("bias_correction", "eps_correction"):
                b.pop(k, None)
            b_table = b.pop("table", None) or "table1"
            built[base] = MethodConfig(**_instance(base, b, registry, "quantization.methods"), bits=b_bits,
                                       table=b_table)
        parent = built[base]
        bits = tuple(BitSetting(**x) for x in mraw["bits"]) if "bits" in mraw else parent.bits
        missing = [b.label for b in bits if b not in parent.bits]
        if missing:
            raise ConfigError(f"config key '{where}.bits': {missing[0]} is not among the bits of its base {base!r}")
        label = mraw.get("label", f"{parent.label} + corrections")
        built[name] = MethodConfig(name=name, method=parent.method, label=label, params=parent.params, built=parent.built,
                                   bits=bits, base=base, table=table or parent.table, **fixes)
    return [built[n] for n in raw]


def _instance(name: str, mraw: dict, registry, section: str) -> dict[str, Any]:
    """The fields of an ``Instance`` for entry ``name`` of ``section``: the registered method
    (``method:`` defaults to the instance name), its label and its parameters with defaults filled
    in; ``mraw`` holds only those keys and the method's parameters."""
    where = f"{section}.{name}"
    method = mraw.pop("method", name)
    if method not in registry:
        k = where + (".method" if method != name else "")
        raise ConfigError(f"config key '{k}': unknown {registry.kind} {method!r} (known: {', '.join(registry.names())})")
    entry = registry[method]
    label = mraw.pop("label", entry.label)
    built = build_dataclass(entry.params, mraw, where)
    return {"name": name, "method": method, "label": label, "params": types.MappingProxyType(to_plain(built)),
            "built": built}


def typed_cli_values(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake's ``--config key={a: 1, b: null}`` reads the mapping with YAML's base loader, so
    every value inside it is a string ('1', 'null'). The same values typed as YAML reads them in a
    config file (int, float, bool, null; other strings stay strings); top-level values, which
    Snakemake already types, are left as they are."""
    import yaml

    def typed(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: typed(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [typed(x) for x in v]
        if isinstance(v, str):
            try:
                y = yaml.safe_load(v)
            except yaml.YAMLError:
                return v
            return y if y is None or isinstance(y, (bool, int, float)) else v
        return v

    return {k: typed(v) if isinstance(v, (Mapping, list, tuple)) else v for k, v in overrides.items()}


def _parse_distillation(raw: Mapping[str, Any], registry) -> DistillationConfig:
    """The distillation section; ``defaults`` holds parameters every instance takes unless it
    sets them itself (each must be a parameter of every instance's method)."""
    raw = dict(raw)
    methods_raw = raw.pop("methods", {}) or {}
    defaults = dict(raw.pop("defaults", {}) or {})
    base = build_dataclass(DistillationConfig, raw, "distillation")
    methods = []
    for name, mraw in methods_raw.items():
        mraw = dict(mraw or {})
        method = mraw.get("method", name)
        if defaults and method in registry:
            fields = {f.name for f in dataclasses.fields(registry[method].params)}
            unknown = sorted(set(defaults) - fields)
            if unknown:
                raise ConfigError(f"config key 'distillation.defaults.{unknown[0]}': not a parameter of {method!r} "
                                  f"(instance {name!r}), so it cannot be every instance's default")
            mraw = {**{k: v for k, v in defaults.items() if k not in mraw}, **mraw}
        teacher = mraw.pop("teacher", "fp")
        steps = tuple(mraw.pop("steps")) if "steps" in mraw else base.steps
        methods.append(DistillMethodConfig(**_instance(name, mraw, registry, "distillation.methods"),
                                           teacher=teacher, steps=steps))
    return dataclasses.replace(base, methods=tuple(methods))


def _check_distillation(cfg: Config) -> None:
    d = cfg.distillation
    for where, steps in [("distillation.steps", d.steps)] + [(f"distillation.methods.{m.name}.steps", m.steps) for m in d.methods]:
        if len(set(steps)) != len(steps):
            raise ConfigError(f"config key '{where}': repeated step count")
        for n in steps:
            if 2 * n > 1000:
                raise ConfigError(f"config key '{where}': a {n}-step student needs a {2 * n}-step teacher, more than the model's 1000 timesteps")
    names = {m.name for m in d.methods}
    for m in d.methods:
        where = f"distillation.methods.{m.name}"
        if m.name == "fp":
            raise ConfigError(f"config key '{where}': 'fp' names the FP teacher; choose another instance name")
        if m.teacher != "fp" and m.teacher not in names:
            raise ConfigError(f"config key '{where}.teacher': {m.teacher!r} is neither 'fp' nor a distillation instance ({', '.join(sorted(names))})")
        if m.teacher == m.name:
            raise ConfigError(f"config key '{where}.teacher': a chain cannot be its own first teacher")
        for n in m.steps:
            src, tn = m.teacher_of(n)
            if src != "fp" and tn not in cfg.distill_method(src).steps:
                raise ConfigError(f"config key '{where}': its {n}-step student needs a {tn}-step teacher, which "
                                  f"{src!r} does not produce (its steps: {list(cfg.distill_method(src).steps)})")
    # No cycle check is needed: a teacher always has twice the steps of its student, and every
    # chain's step list is finite, so following teachers ends at the FP model.


def _check_labels(cfg: Config) -> None:
    """Labels name table rows: one line each, and distinct within a table (and from its FP row)."""
    groups = [("quantization.methods", [m for m in cfg.quantization.methods if m.table == t]) for t in TABLES]
    for section, methods in groups + [("distillation.methods", cfg.distillation.methods)]:
        seen = {label: "the FP row" for label in FP_LABELS}
        for m in methods:
            where = f"config key '{section}.{m.name}.label'"
            if not m.label.strip() or any(not c.isprintable() for c in m.label):
                raise ConfigError(f"{where}: {m.label!r} is not a one-line label (it names a table row; "
                                  "no newlines, tabs or other control characters)")
            if m.label in seen:
                raise ConfigError(f"{where}: {m.label!r} is already the label of {seen[m.label]}; "
                                  "give every instance its own label (labels name the table rows)")
            seen[m.label] = f"{section}.{m.name}"


def _check_params(cfg: Config, where: str, params: Any) -> None:
    """Checks a parameter value makes against the rest of the config: every field value that has
    ``check_against(cfg, where)`` (e.g. a calibration choice against the sampler's steps)."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if hasattr(value, "check_against"):
            value.check_against(cfg, f"{where}.{f.name}")


def _semantic_checks(cfg: Config, base: Path, check_paths: bool) -> None:
    _check_distillation(cfg)
    _check_rdd_recipe(cfg)
    _check_labels(cfg)
    ev = cfg.evaluation
    if ev.shard_size > ev.n_samples:
        raise ConfigError(f"config key 'evaluation.shard_size': {ev.shard_size} is larger than evaluation.n_samples ({ev.n_samples})")
    if cfg.n_shards() > MAX_SHARDS:
        raise ConfigError(f"config key 'evaluation.shard_size': {ev.n_samples} samples in shards of {ev.shard_size} "
                          f"are {cfg.n_shards()} sample jobs per variant, more than {MAX_SHARDS}; raise shard_size")
    if cfg.model.source == "hub" and not cfg.model.hub_id:
        raise ConfigError("config key 'model.hub_id': required when model.source is 'hub'")
    if cfg.model.prompts and cfg.model.source != "hub":
        raise ConfigError("config key 'model.prompts': only a hub text-to-image model takes its prompts from the "
                          "config (a shipped or converted folder holds its own prompts.txt)")
    ds = cfg.dataset
    if ds.name == "cifar10" and (ds.source != "torchvision" or ds.image_size != 32):
        raise ConfigError("config key 'dataset.source': cifar10 is read through torchvision (source: torchvision, "
                          "image_size: 32) into its own root")
    ck = cfg.model.checkpoint
    if cfg.model.source == "checkpoint":
        given = [k for k in ("md5", "sha256", "bytes", "pin") if getattr(ck, k)]
        if len(given) != 1:
            raise ConfigError("config key 'model.checkpoint.md5': give exactly one of md5 and sha256 (the download is "
                              "checked against it) or, for a file without a published checksum, bytes or pin: true "
                              f"(its sha256 pinned at download); got {given or 'none'}")
        if ck.format == "ldm" and (ck.heads is None) == (ck.head_channels is None):
            raise ConfigError("config key 'model.checkpoint.heads': a latent-diffusion checkpoint needs exactly one of "
                              "heads and head_channels (its config's num_heads / num_head_channels)")
    if cfg.model.source == "shipped" and not cfg.model.path:
        raise ConfigError("config key 'model.path': required when model.source is 'shipped'")
    if cfg.feature_net.name == "fmnist-classifier" and cfg.feature_net.source == "shipped" and not cfg.feature_net.path:
        raise ConfigError("config key 'feature_net.path': required when feature_net.source is 'shipped'")
    if cfg.sampler.steps > 1000:
        raise ConfigError(f"config key 'sampler.steps': {cfg.sampler.steps} is more than the model's 1000 training timesteps")
    if cfg.sampler.name == "plms" and cfg.sampler.eta != 0:
        raise ConfigError(f"config key 'sampler.eta': the plms sampler is deterministic (eta 0), got {cfg.sampler.eta}")
    for m in cfg.quantization.methods:
        tags = [b.tag for b in m.bits]
        if len(set(tags)) != len(tags):
            raise ConfigError(f"config key 'quantization.methods.{m.name}.bits': repeated bit setting")
        _check_params(cfg, f"quantization.methods.{m.name}", m.built)
    for m in cfg.distillation.methods:
        _check_params(cfg, f"distillation.methods.{m.name}", m.built)
    if not check_paths:
        return
    if cfg.dataset.source == "debian":
        root = _resolve(cfg.dataset.root, base)
        if not root.is_dir():
            raise ConfigError(
                f"config key 'dataset.root': {root} does not exist (install Debian's package "
                "dataset-fashion-mnist, or set dataset.source: torchvision to download it)"
            )
    if cfg.model.source == "shipped":
        p = _resolve(cfg.model.path, base)
        if not (p / "unet").is_dir() and not (p / "config.json").is_file():
            raise ConfigError(f"config key 'model.path': {p} is not a diffusers model folder")
        _verify("model.path", p, pipeline_kind(p))
    if cfg.feature_net.name == "fmnist-classifier" and cfg.feature_net.source == "shipped":
        p = _resolve(cfg.feature_net.path, base)
        if not (p / CLASSIFIER.weights).is_file():
            raise ConfigError(f"config key 'feature_net.path': {p} holds no {CLASSIFIER.weights}")
        _verify("feature_net.path", p, CLASSIFIER)
    if cfg.paper is not None:
        from .paper import paper_numbers

        path = _resolve(cfg.paper.numbers, base)
        paper_numbers(read_yaml(path), path, cfg.paper.setting)  # one error naming the key
    w = cfg.feature_net.weights_path
    if cfg.feature_net.name == "inception-v3-compat" and w and not _resolve(w, base).is_file():
        raise ConfigError(f"config key 'feature_net.weights_path': {_resolve(w, base)} does not exist (torch-fidelity's "
                          "weights-inception-2015-12-05-6726825d.pth; null lets torch-fidelity download it)")
    if cfg.model.prompts and not _resolve(cfg.model.prompts, base).is_file():
        raise ConfigError(f"config key 'model.prompts': {_resolve(cfg.model.prompts, base)} does not exist (a text "
                          "file of prompts, one per line)")
    ref = cfg.evaluation.reference
    if cfg.evaluation.reference_folder and not _resolve(ref, base).is_dir():
        raise ConfigError(f"config key 'evaluation.reference': {_resolve(ref, base)} is not a folder (a folder of "
                          "reference images, jpg / png / webp)")
    if ref.endswith(".npz") and not cfg.evaluation.reference_url and not _resolve(ref, base).is_file():
        raise ConfigError(f"config key 'evaluation.reference': {_resolve(ref, base)} does not exist (an ADM reference "
                          "batch .npz, or train / test)")
    if _uses_features(cfg) and cfg.distillation.feature_net.source == "shipped":
        p = _resolve(cfg.distillation.feature_net.path, base)
        if not (p / CLASSIFIER.weights).is_file():
            raise ConfigError(f"config key 'distillation.feature_net.path': {p} holds no {CLASSIFIER.weights}")
        _verify("distillation.feature_net.path", p, CLASSIFIER)
        _check_independent(cfg, p, base)


def _check_rdd_recipe(cfg: Config) -> None:
    """A trained RDD network: the architecture its name reads, and not the evaluation network's
    recipe (the same recipe trains the same network)."""
    from .metrics.config import FEATURE_NETWORKS

    d = cfg.distillation.feature_net
    if d.source != "train" or not _uses_features(cfg):
        return
    if d.train.arch != FEATURE_NETWORKS[d.name]:
        raise ConfigError(f"config key 'distillation.feature_net.train.arch': {d.name} is a {FEATURE_NETWORKS[d.name]} "
                          f"network, not {d.train.arch}")
    if cfg.feature_net.name == "fmnist-classifier" and cfg.feature_net.source == "train" and d.train == cfg.feature_net.train:
        raise ConfigError("config key 'distillation.feature_net.train': the recipe of feature_net.train, which trains "
                          "the evaluation network; RDD would be trained in the features the metrics measure in. "
                          "Use another seed or architecture")


def _uses_features(cfg: Config) -> bool:
    """Whether a distillation instance trains in a frozen feature network (RDD)."""
    from .distill.methods import DISTILLERS

    return any(DISTILLERS[m.method].uses_features for m in cfg.distillation.methods)


def _check_independent(cfg: Config, rdd_net: Path, base: Path) -> None:
    """Refuse a distillation feature network that is the evaluation network: the same folder, or
    a weights file with the same sha256. A student trained in the features the metrics measure in
    is scored by its own training loss."""
    if cfg.feature_net.name != "fmnist-classifier":
        return
    eval_net = _resolve(cfg.feature_net.path, base) if cfg.feature_net.source == "shipped" else base / TRAINED_CLASSIFIER
    same = rdd_net.resolve() == eval_net.resolve()
    if not same and (eval_net / CLASSIFIER.weights).is_file():
        same = sha256_file(rdd_net / CLASSIFIER.weights) == sha256_file(eval_net / CLASSIFIER.weights)
    if same:
        raise ConfigError(
            f"config key 'distillation.feature_net.path': {rdd_net} holds the evaluation network's weights "
            f"(feature_net: {eval_net}, same sha256); RDD would be trained in the features the metrics measure in. "
            "Use an independent network, e.g. resources/models/fmnist-resnet")


def _verify(key_: str, folder: Path, kind) -> None:
    """A shipped model's weights against the sha256 its provenance.json records (before any job)."""
    try:
        verify(folder, kind)
    except FileError as e:
        raise ConfigError(f"config key '{key_}': {e}") from None


def _strict_loader():
    """PyYAML's safe loader that refuses a key repeated in one mapping (PyYAML keeps the last)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            k = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(k, (str, int, float, bool)) and k in first:
                raise ConfigError(f"line {line}: duplicate key {k!r} (first given on line {first[k]}); "
                                  "YAML would silently keep the last one")
            first.setdefault(k, line)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def read_yaml(path: str | Path) -> dict:
    """The mapping in YAML file ``path``. A missing or empty file, a syntax error (with its line
    and column) or a repeated key is one ``ConfigError`` naming the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config ({e})") from None
    try:
        raw = yaml.load(text, Loader=_strict_loader())
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {' '.join(filter(None, [e.context, e.problem]))}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty (a config is a mapping with at least 'name')")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping at the top level, not a {type(raw).__name__}")
    return raw


def load_config(path: str | Path, check_paths: bool = True, base_dir: str | Path | None = None) -> Config:
    """Read (``read_yaml``) and parse a YAML config; relative paths resolve against ``base_dir``
    (default: the current directory, where Snakemake runs the workflow)."""
    return parse_config(read_yaml(path), base_dir=base_dir, check_paths=check_paths)
