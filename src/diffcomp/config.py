"""Typed, frozen configuration built from the validated YAML.

``parse_config(dict)`` validates a config against ``workflow/schemas/config.schema.json`` and
then against what the schema cannot say (paths that must exist, registered methods, each
method's parameters), and raises one ``ConfigError`` naming the key and the problem. Defaults
of every dataclass are the papers' values; the default YAML scales them down where it must.
This module imports no torch, so the Snakefile can validate before any job runs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.json"


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and the problem."""


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DatasetConfig:
    """Where the images come from. ``debian``: IDX files under ``root`` (offline);
    ``torchvision``: downloaded into ``root``."""

    name: str = "fashion-mnist"
    source: str = "debian"
    root: str = "/usr/share/datasets/fashion-mnist"
    image_size: int = 32


@dataclass(frozen=True)
class UNetArch:
    """Architecture of the default UNet, trained by the ``train`` rule.

    The CIFAR-10 DDPM (Ho et al. 2020; Q-Diffusion's model) has ch 128, ch_mult (1, 2, 2, 2),
    2 resnet blocks per level, attention at 16x16, dropout 0.1. The default keeps the block
    types and the attention resolution with three levels (32, 16, 8) and fewer channels
    (1.1M parameters; about 130 image-steps per second on 2 CPU cores).
    """

    sample_size: int = 32
    channels: int = 1
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_levels: tuple[int, ...] = (1,)
    attention_head_dim: int = 64
    norm_num_groups: int = 8
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """DDPM training (Ho et al.'s CIFAR-10 recipe: lr 2e-4, batch 128, warm-up 5000,
    grad clip 1, EMA 0.9999, random flips; 800k steps there, far fewer here)."""

    steps: int = 800_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup: int = 5000
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 2000


@dataclass(frozen=True)
class ModelConfig:
    """The full-precision model. ``shipped``: the folder ``path`` in the repository;
    ``train``: trained by the ``train`` rule; ``hub``: ``from_pretrained`` of ``hub_id``."""

    source: str = "shipped"
    path: str | None = "resources/models/fmnist-ddpm"
    hub_id: str | None = None
    revision: str | None = None
    arch: UNetArch = field(default_factory=UNetArch)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Adam with one-cycle LR, 12 epochs, batch 128, flips and 2-pixel shifts."""

    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


@dataclass(frozen=True)
class FeatureNetConfig:
    """The network metrics are measured in: ``fmnist-classifier`` (offline default, shipped
    or trained) or ``inception-v3-compat`` (the papers' protocol, torch-fidelity's weights)."""

    name: str = "fmnist-classifier"
    source: str = "shipped"
    path: str | None = "resources/models/fmnist-classifier"
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)


@dataclass(frozen=True)
class SamplerConfig:
    """DDIM. Defaults are Q-Diffusion's CIFAR-10 protocol: 100 steps, eta 0, quad skip."""

    name: str = "ddim"
    steps: int = 100
    eta: float = 0.0
    skip: str = "quad"
    clip_x0: bool = False


@dataclass(frozen=True)
class CalibrationConfig:
    """FP trajectories captured once; selectors pick from them. Q-Diffusion: 20 steps x 256."""

    n_trajectories: int = 256
    batch_size: int = 256
    seed: int = 1_000_000


@dataclass(frozen=True)
class ReconConfig:
    """Defaults are Q-Diffusion's (qdiff/block_recon.py and the CIFAR-10 README command):
    20k AdaRound iterations at batch 32, regulariser weight 0.01, beta 20 -> 2 after a 20%
    warm-up, Adam lr 1e-3 on the rounding variables, output loss L_2 with inputs from the
    quantized model; then 5k LSQ iterations at lr 4e-4 with cosine decay, L_2.4 loss, inputs from
    the FP model."""

    iters_w: int = 20000
    iters_a: int = 5000
    batch_size: int = 32
    round_weight: float = 0.01
    b_start: float = 20.0
    b_end: float = 2.0
    warmup: float = 0.2
    lr_w: float = 1e-3
    lr_a: float = 4e-4
    p_w: float = 2.0
    p_a: float = 2.4
    asym_w: bool = True
    asym_a: bool = False
    seed: int = 0


@dataclass(frozen=True)
class BitSetting:
    """Weight and activation bit-widths."""

    w: int
    a: int

    @property
    def label(self) -> str:
        return f"W{self.w}A{self.a}"

    @property
    def tag(self) -> str:
        return f"w{self.w}a{self.a}"


@dataclass(frozen=True)
class MethodConfig:
    """One entry of the quantization grid: an instance ``name`` (used in variant names) of a
    registered ``method``, its table label, bit settings and parameters (validated against the
    method's parameter dataclass, with its defaults filled in)."""

    name: str
    method: str
    label: str
    bits: tuple[BitSetting, ...]
    params: Mapping[str, Any]

    def params_json(self) -> str:
        return json.dumps(dict(self.params), sort_keys=True)


@dataclass(frozen=True)
class QuantizationConfig:
    bits: tuple[BitSetting, ...] = (BitSetting(8, 8), BitSetting(4, 8))
    methods: tuple[MethodConfig, ...] = ()


@dataclass(frozen=True)
class DistillMethodConfig:
    """One distillation chain: an instance ``name`` (variants ``{name}-s{N}``) of a registered
    ``method`` (pd, rdd), its table label, the student step counts it produces, and where its
    first stage's teacher comes from: ``fp`` (the FP model sampled with 2N steps) or another
    instance's 2N-step student. Stage N's teacher is this chain's own 2N-step student when 2N
    is among its ``steps``."""

    name: str
    method: str
    label: str
    teacher: str
    steps: tuple[int, ...]
    params: Mapping[str, Any]

    def params_json(self) -> str:
        return json.dumps(dict(self.params), sort_keys=True)

    def teacher_of(self, n: int) -> tuple[str, int]:
        """(source, steps) of stage n's teacher: ('fp', 2n) or (instance name, 2n)."""
        return (self.name if 2 * n in self.steps else self.teacher), 2 * n


@dataclass(frozen=True)
class DistillFeatureNet:
    """The frozen network of RDD's losses (a shipped weights folder)."""

    name: str = "fmnist-classifier"
    path: str = "resources/models/fmnist-classifier"


@dataclass(frozen=True)
class DistillationConfig:
    """The distillation grid. Students and the FP teacher row of table 3 are sampled with DDIM
    (eta 0) on the ``trailing`` grid (PD's: the first step starts at T - 1, every stage halves
    the steps), x0 clipped to [-1, 1] as in RDD's ``ddim_eval.py``. ``feature_net``: RDD's frozen
    network; None uses the metrics' ``feature_net`` (the paper trains a separate classifier)."""

    steps: tuple[int, ...] = (8, 4, 2, 1)
    skip: str = "trailing"
    clip_x0: bool = True
    feature_net: DistillFeatureNet | None = None
    methods: tuple[DistillMethodConfig, ...] = ()

    def sampler(self, steps: int) -> SamplerConfig:
        return SamplerConfig(name="ddim", steps=steps, eta=0.0, skip=self.skip, clip_x0=self.clip_x0)


@dataclass(frozen=True)
class EvaluationConfig:
    """Samples per variant, shards (seeds are ``seed + image index``), and the reference split."""

    n_samples: int = 50_000
    shard_size: int = 1000
    seed: int = 0
    batch_size: int = 250
    reference: str = "test"


@dataclass(frozen=True)
class ResourceSpec:
    """What one job of a rule asks for (threads, memory, minutes, GPUs)."""

    threads: int = 1
    mem_mb: int = 4000
    runtime: int = 60
    gpu: int = 0


@dataclass(frozen=True)
class Config:
    name: str
    dataset: DatasetConfig
    model: ModelConfig
    feature_net: FeatureNetConfig
    sampler: SamplerConfig
    calibration: CalibrationConfig
    quantization: QuantizationConfig
    evaluation: EvaluationConfig
    resources: Mapping[str, ResourceSpec]
    device: str = "auto"
    distillation: DistillationConfig = field(default_factory=DistillationConfig)

    # ---- derived names used by the workflow
    def variants(self) -> list[str]:
        """``fp`` then ``{method}-w{W}a{A}`` for every method and bit setting."""
        out = ["fp"]
        for m in self.quantization.methods:
            out += [f"{m.name}-{b.tag}" for b in m.bits]
        return out

    def distill_variants(self) -> list[str]:
        """``fp-s{N}`` (the FP teacher with N steps) for every step count, then ``{name}-s{N}``."""
        d = self.distillation
        out = [f"fp-s{n}" for n in d.steps] if d.methods else []
        for m in d.methods:
            out += [f"{m.name}-s{n}" for n in m.steps]
        return out

    def distill_method(self, name: str) -> DistillMethodConfig:
        for m in self.distillation.methods:
            if m.name == name:
                return m
        raise KeyError(name)

    def method(self, name: str) -> MethodConfig:
        for m in self.quantization.methods:
            if m.name == name:
                return m
        raise KeyError(name)

    def resource(self, rule: str) -> ResourceSpec:
        return self.resources.get(rule, self.resources.get("default", ResourceSpec()))

    def n_shards(self) -> int:
        return -(-self.evaluation.n_samples // self.evaluation.shard_size)


# ----------------------------------------------------------------------------- building


def _key(path: typing.Iterable[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def build_dataclass(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build frozen dataclass ``cls`` from a mapping; unknown keys and wrong types are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{where or '<top level>'}': expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            raise ConfigError(f"config key '{where + '.' if where else ''}{k}': unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"config key '{where or '<top level>'}': {e}") from None


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{where}': expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{where}': expected a mapping, got {value!r}")
        vt = args[1] if args else Any
        return types.MappingProxyType({k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()})
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"config key '{where}': expected {tp.__name__}, got {value!r}")
    return value


def _schema_check(raw: Mapping[str, Any]) -> None:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    err = jsonschema.exceptions.best_match(errors)
    where = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        prefix = f"{where}." if err.absolute_path else ""
        raise ConfigError(f"config key '{prefix}{extra[0]}': unknown key (known: {', '.join(sorted(err.schema.get('properties', {})))})")
    if err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        prefix = f"{where}." if err.absolute_path else ""
        raise ConfigError(f"config key '{prefix}{missing[0] if missing else '?'}': required key is missing")
    raise ConfigError(f"config key '{where}': {err.message}")


def _resolve(path: str | None, base: Path) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else base / p


def parse_config(raw: Mapping[str, Any], base_dir: str | Path | None = None, check_paths: bool = True) -> Config:
    """Validate ``raw`` (the YAML as a dict) and build the typed ``Config``.

    ``base_dir`` resolves relative paths (the workflow directory); ``check_paths`` checks that
    the dataset and shipped model folders exist.
    """
    from .methods import METHODS

    _schema_check(raw)
    base = Path(base_dir) if base_dir is not None else REPO_ROOT
    data = dict(raw)
    quant_raw = data.pop("quantization", {}) or {}
    global_bits = tuple(BitSetting(**b) for b in quant_raw.get("bits", [{"w": 8, "a": 8}, {"w": 4, "a": 8}]))
    methods = []
    for name, mraw in (quant_raw.get("methods") or {}).items():
        mraw = dict(mraw or {})
        bits = tuple(BitSetting(**b) for b in mraw.pop("bits")) if "bits" in mraw else global_bits
        method, label, params = _instance(name, mraw, METHODS, "quantization.methods", "method")
        methods.append(MethodConfig(name=name, method=method, label=label, bits=bits, params=params))
    distillation = _parse_distillation(data.pop("distillation", {}) or {})
    resources = {k: build_dataclass(ResourceSpec, v, f"resources.{k}") for k, v in (data.pop("resources", {}) or {}).items()}
    sections = {
        "dataset": DatasetConfig, "model": ModelConfig, "feature_net": FeatureNetConfig, "sampler": SamplerConfig,
        "calibration": CalibrationConfig, "evaluation": EvaluationConfig,
    }  # fmt: skip
    built = {k: build_dataclass(cls, data.pop(k, {}) or {}, k) for k, cls in sections.items()}
    cfg = Config(
        name=data.pop("name"),
        device=data.pop("device", "auto"),
        quantization=QuantizationConfig(bits=global_bits, methods=tuple(methods)),
        resources=types.MappingProxyType(resources),
        distillation=distillation,
        **built,
    )
    if data:
        raise ConfigError(f"config key '{sorted(data)[0]}': unknown key")
    _semantic_checks(cfg, base, check_paths)
    return cfg


def _instance(name: str, mraw: dict, registry: Mapping[str, Any], section: str,
              kind: str) -> tuple[str, str, Mapping[str, Any]]:
    """(method, label, parameters with defaults filled in) of the instance ``name`` of a registry
    entry (``method:`` defaults to the instance name); ``mraw`` holds only those keys and the
    method's parameters."""
    where = f"{section}.{name}"
    method = mraw.pop("method", name)
    if method not in registry:
        key = where + (".method" if method != name else "")
        raise ConfigError(f"config key '{key}': unknown {kind} {method!r} (known: {', '.join(sorted(registry))})")
    label = mraw.pop("label", registry[method].label)
    built = build_dataclass(registry[method].params, mraw, where)
    return method, label, types.MappingProxyType(dataclasses.asdict(built))


def _parse_distillation(raw: Mapping[str, Any]) -> DistillationConfig:
    from .distill import DISTILLERS

    raw = dict(raw)
    methods_raw = raw.pop("methods", {}) or {}
    base = build_dataclass(DistillationConfig, raw, "distillation")
    methods = []
    for name, mraw in methods_raw.items():
        mraw = dict(mraw or {})
        teacher = mraw.pop("teacher", "fp")
        steps = tuple(mraw.pop("steps")) if "steps" in mraw else base.steps
        method, label, params = _instance(name, mraw, DISTILLERS, "distillation.methods", "distillation method")
        methods.append(DistillMethodConfig(name=name, method=method, label=label, teacher=teacher, steps=steps,
                                           params=params))
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


def _semantic_checks(cfg: Config, base: Path, check_paths: bool) -> None:
    _check_distillation(cfg)
    ev = cfg.evaluation
    if ev.shard_size > ev.n_samples:
        raise ConfigError(f"config key 'evaluation.shard_size': {ev.shard_size} is larger than evaluation.n_samples ({ev.n_samples})")
    if cfg.model.source == "hub" and not cfg.model.hub_id:
        raise ConfigError("config key 'model.hub_id': required when model.source is 'hub'")
    if cfg.model.source == "shipped" and not cfg.model.path:
        raise ConfigError("config key 'model.path': required when model.source is 'shipped'")
    if cfg.feature_net.name == "fmnist-classifier" and cfg.feature_net.source == "shipped" and not cfg.feature_net.path:
        raise ConfigError("config key 'feature_net.path': required when feature_net.source is 'shipped'")
    if cfg.sampler.steps > 1000:
        raise ConfigError(f"config key 'sampler.steps': {cfg.sampler.steps} is more than the model's 1000 training timesteps")
    for m in cfg.quantization.methods:
        tags = [b.tag for b in m.bits]
        if len(set(tags)) != len(tags):
            raise ConfigError(f"config key 'quantization.methods.{m.name}.bits': repeated bit setting")
        steps, per_step = m.params.get("calib_steps"), m.params.get("calib_per_step")
        if steps is not None and steps > cfg.sampler.steps:
            raise ConfigError(f"config key 'quantization.methods.{m.name}.calib_steps': {steps} is more than sampler.steps ({cfg.sampler.steps})")
        if per_step is not None and per_step > cfg.calibration.n_trajectories:
            raise ConfigError(f"config key 'quantization.methods.{m.name}.calib_per_step': {per_step} is more than calibration.n_trajectories ({cfg.calibration.n_trajectories})")
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
    if cfg.feature_net.name == "fmnist-classifier" and cfg.feature_net.source == "shipped":
        p = _resolve(cfg.feature_net.path, base)
        if not (p / "model.safetensors").is_file():
            raise ConfigError(f"config key 'feature_net.path': {p} holds no model.safetensors")
    if cfg.distillation.feature_net is not None:
        p = _resolve(cfg.distillation.feature_net.path, base)
        if not (p / "model.safetensors").is_file():
            raise ConfigError(f"config key 'distillation.feature_net.path': {p} holds no model.safetensors")


def load_config(path: str | Path, check_paths: bool = True) -> Config:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping at the top level")
    return parse_config(raw, base_dir=REPO_ROOT, check_paths=check_paths)
