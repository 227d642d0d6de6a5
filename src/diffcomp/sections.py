"""The workflow's config sections: typed, frozen dataclasses whose defaults are the papers' values
(the default YAML scales them down where it must), composed into ``Config``. Sections that library
code reads live beside it (``models.config``, ``calib.config``, ...), so a rule's code hash covers
only the sections it reads; method parameters live in each method's module. Imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .calib.config import CalibrationConfig
from .data.config import DatasetConfig
from .metrics.config import ClassifierTrainConfig
from .models.config import SamplerConfig, TrainConfig, UNetArch
from .paper import PaperConfig
from .variant import BitSetting, Variant

__all__ = [
    "CalibrationConfig", "CheckpointConfig", "ClassifierTrainConfig", "ClipScoreConfig", "Config", "DatasetConfig", "DistillationConfig", "DistillFeatureNet",
    "DistillMethodConfig", "EvaluationConfig", "FeatureNetConfig", "Instance", "MethodConfig", "ModelConfig", "PaperConfig",
    "QuantizationConfig", "ResourceSpec", "SamplerConfig", "TrainConfig", "UNetArch",
]


@dataclass(frozen=True)
class CheckpointConfig:
    """An original checkpoint fetched from ``url`` and converted into
    ``resources/checkpoints/{name}/``. ``format``: ``ddpm`` (the DDIM code's ``Model`` layout,
    the linear beta schedule given here) or ``ldm`` (a latent-diffusion checkpoint: denoiser,
    first stage, class embedding; the latent-diffusion schedule, linear in the betas' square
    root, from ``beta_start`` to ``beta_end``). The download is checked against ``md5`` or
    ``sha256``; a file without a published checksum gives its ``bytes`` (or ``pin: true``) and
    has its sha256 pinned at download (``diffcomp.fetch``). ``member``: the checkpoint's name
    inside a .zip download. For ``ldm``: ``sample_size`` is the latent size, ``image_size`` the
    autoencoder's, ``heads`` or ``head_channels`` the attention heads (num_heads /
    num_head_channels of the checkpoint's config), ``scaling_factor`` the latents' scale (null:
    the checkpoint's own, else 1). Defaults: the EMA CIFAR-10 model of Ho et al. that the
    Q-Diffusion and EDA-DM code download (``ema_diffusion_cifar10_model/model-790000.ckpt``)."""

    name: str = "ddpm-ema-cifar10"
    url: str = "https://heibox.uni-heidelberg.de/f/2e4f01e2d9ee49bab1d5/?dl=1"
    md5: str | None = "1fa350b952534ae442b1d5235cce5cd3"
    sha256: str | None = None
    bytes: int | None = None
    pin: bool = False
    format: str = "ddpm"
    member: str | None = None
    sample_size: int = 32
    image_size: int = 256
    heads: int | None = None
    head_channels: int | None = None
    scaling_factor: float | None = None
    beta_start: float = 1e-4
    beta_end: float = 0.02
    timesteps: int = 1000

    def fetch_args(self) -> list[str]:
        """The ``diffcomp fetch`` flag of the expected checksum (or size, or pin)."""
        if self.md5:
            return ["--md5", self.md5]
        if self.sha256:
            return ["--sha256", self.sha256]
        return ["--bytes", str(self.bytes)] if self.bytes else ["--pin"]

    def convert_args(self) -> list[str]:
        """The ``diffcomp convert`` flags of this checkpoint (without --checkpoint and --out)."""
        args = ["--format", self.format, "--sample-size", str(self.sample_size), "--beta-start", str(self.beta_start),
                "--beta-end", str(self.beta_end), "--timesteps", str(self.timesteps)]
        if self.member:
            args += ["--member", self.member]
        if self.format == "ldm":
            args += ["--image-size", str(self.image_size)]
            args += ["--heads", str(self.heads)] if self.heads else ["--head-channels", str(self.head_channels)]
            if self.scaling_factor is not None:
                args += ["--scaling-factor", str(self.scaling_factor)]
        return args


@dataclass(frozen=True)
class ModelConfig:
    """The full-precision model. ``shipped``: the folder ``path`` in the repository;
    ``train``: trained by the ``train`` rule; ``hub``: ``from_pretrained`` of ``hub_id``;
    ``checkpoint``: an original checkpoint fetched and converted (rules ``fetch_checkpoint``,
    ``convert``)."""

    source: str = "shipped"
    path: str | None = "resources/models/fmnist-ddpm"
    hub_id: str | None = None
    revision: str | None = None
    prompts: str | None = None  # a text-to-image hub model: its images' prompts, one per line
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    arch: UNetArch = field(default_factory=UNetArch)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class FeatureNetConfig:
    """The network metrics are measured in: ``fmnist-classifier`` (offline default, shipped
    or trained) or ``inception-v3-compat`` (the papers' protocol: torch-fidelity's Inception,
    its weights from ``weights_path``, or downloaded by torch-fidelity when that is null)."""

    name: str = "fmnist-classifier"
    source: str = "shipped"
    path: str | None = "resources/models/fmnist-classifier"
    weights_path: str | None = None
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)


@dataclass(frozen=True)
class Instance:
    """A configured instance of a registered plug-in: its ``name`` (used in variant names), the
    registered ``method`` it runs, its table label, and its parameters (the method's parameter
    dataclass with the defaults filled in: ``built``; as plain data: ``params``)."""

    name: str
    method: str
    label: str
    params: Mapping[str, Any]
    built: Any = field(default=None, compare=False, repr=False)

    def params_json(self) -> str:
        return json.dumps(dict(self.params), sort_keys=True)


@dataclass(frozen=True)
class MethodConfig(Instance):
    """One entry of the quantization grid: an instance of a quantization method and its bit
    settings. An instance with a ``base`` is the base instance's quantized model with corrections
    applied afterwards (any method's): ``bias_correction`` (each quantized layer's mean output made
    the FP layer's, ``quant.bias_correction``) and/or ``eps_correction`` (a per-timestep gain and
    bias of the noise prediction, per ``channel`` or per ``pixel``, ``quant.correction``), both
    fitted on the base's calibration trajectories; it inherits the base's method and parameters.
    ``table``: the table whose rows it belongs to (``table1``, or ``table2``: extremely low bits,
    QAT)."""

    bits: tuple[BitSetting, ...] = ()
    base: str | None = None
    table: str = "table1"
    bias_correction: bool = False
    eps_correction: str = "none"

    @property
    def corrections(self) -> dict[str, Any]:
        return {"bias_correction": self.bias_correction, "eps_correction": self.eps_correction}

    def variants(self) -> list[Variant]:
        return [Variant(self.name, bits=b) for b in self.bits]


@dataclass(frozen=True)
class QuantizationConfig:
    bits: tuple[BitSetting, ...] = (BitSetting(8, 8), BitSetting(4, 8))
    methods: tuple[MethodConfig, ...] = ()


@dataclass(frozen=True)
class DistillMethodConfig(Instance):
    """One distillation chain: an instance of a distillation method (variants ``{name}-s{N}``),
    the student step counts it produces, and where its first stage's teacher comes from: ``fp``
    (the FP model sampled with 2N steps) or another instance's 2N-step student. Stage N's teacher
    is this chain's own 2N-step student when 2N is among its ``steps``."""

    teacher: str = "fp"
    steps: tuple[int, ...] = ()

    def teacher_of(self, n: int) -> tuple[str, int]:
        """(source, steps) of stage n's teacher: ('fp', 2n) or (instance name, 2n)."""
        return (self.name if 2 * n in self.steps else self.teacher), 2 * n

    def variants(self) -> list[Variant]:
        return [Variant(self.name, steps=n) for n in self.steps]


def _rdd_net_recipe() -> ClassifierTrainConfig:
    return ClassifierTrainConfig(epochs=4, seed=1, arch="resnet")


@dataclass(frozen=True)
class DistillFeatureNet:
    """The frozen network of RDD's losses: by default a second Fashion-MNIST classifier of
    another architecture and seed than the metrics' one (the paper trains its own DenseNet-201),
    ``shipped`` in ``path`` or trained by rule ``train_classifier`` (``source: train``) with the
    recipe ``train`` (the shipped one's: ResNet, seed 1, 4 epochs); ``name`` is a network of
    ``distill.methods.rdd.features``."""

    name: str = "fmnist-resnet"
    source: str = "shipped"
    path: str = "resources/models/fmnist-resnet"
    train: ClassifierTrainConfig = field(default_factory=_rdd_net_recipe)


@dataclass(frozen=True)
class DistillationConfig:
    """The distillation grid. Students and the FP teacher row of table 3 are sampled with DDIM
    (eta 0) on the ``trailing`` grid (PD's: the first step starts at T - 1, every stage halves
    the steps), x0 clipped to [-1, 1] as in RDD's ``ddim_eval.py``. ``feature_net``: RDD's frozen
    network, never the metrics' one (the config check refuses the same weights).

    How the distill jobs compute: ``precision`` ``fp32`` (exact: TF32 off; the default, because
    the PD target of an epsilon teacher divides by sqrt(alphas_cumprod[t]), which multiplies the
    teacher's error at the noisiest steps), ``tf32`` or ``bf16`` (the teacher and the student
    under autocast; the targets, losses and optimiser in fp32), and ``compile`` a torch.compile
    mode for the teacher and the student, or null. ``engine``: ``auto`` (``graph`` on CUDA in
    fp32/tf32, else ``eager``), ``eager`` (every iteration launched from the host) or ``graph``
    (one iteration captured as a CUDA graph and replayed; the same student to kernel rounding)."""

    steps: tuple[int, ...] = (8, 4, 2, 1)
    skip: str = "trailing"
    clip_x0: bool = True
    feature_net: DistillFeatureNet = field(default_factory=DistillFeatureNet)
    methods: tuple[DistillMethodConfig, ...] = ()
    precision: str = "fp32"
    compile: str | None = None
    engine: str = "auto"

    def __post_init__(self):
        from .models.config import check_compute

        check_compute(self.precision, self.compile)
        if self.engine not in ("auto", "eager", "graph"):
            raise ValueError(f"distillation.engine must be auto, eager or graph, got {self.engine!r}")
        if self.engine == "graph" and self.precision == "bf16":
            raise ValueError("distillation.engine graph runs fp32 or tf32 only (bf16 autocast does not survive a capture)")

    def sampler(self, steps: int) -> SamplerConfig:
        return SamplerConfig(name="ddim", steps=steps, eta=0.0, skip=self.skip, clip_x0=self.clip_x0)


@dataclass(frozen=True)
class ClipScoreConfig:
    """The CLIP score of a text-to-image model's samples (``metrics.clip_score``): ``model`` a
    local CLIP model folder (``save_pretrained`` layout with its processor and tokenizer, e.g.
    openai/clip-vit-large-patch14, the Stable Diffusion protocol's), read offline; null: no CLIP
    score (the default: class-conditional and unconditional models have no prompts to score)."""

    model: str | None = None


@dataclass(frozen=True)
class EvaluationConfig:
    """Samples per variant, shards (seeds are ``seed + image index``), and the reference: a
    dataset split (``train`` or ``test``) or an ``.npz`` in the ADM evaluator's reference-batch
    format (``mu``, ``sigma``, ``mu_s``, ``sigma_s``; images ``arr_0`` optional): a path, or an
    ``https://`` URL that the ``fetch_reference`` rule downloads into ``resources/reference/``,
    checked against ``reference_sha256`` (null: no published checksum, its sha256 pinned at
    download); or a folder of images (a path ending in ``/``: COCO val2014, an export of
    LSUN-Church's training set), resized and centre-cropped to ``reference_size`` as the ADM
    evaluator's reference batches are (``data.image_folder``; ``reference_limit``: the first N
    images in sorted order, null: all).

    How the sample jobs compute: ``precision`` ``fp32`` (exact: TF32 off), ``tf32`` or ``bf16``
    (autocast; quantized weights are stored in bf16 once), ``compile`` a ``torch.compile`` mode
    (``default``, ``max-autotune``, ``max-autotune-no-cudagraphs``, ``reduce-overhead`` for CUDA
    graphs) or null for eager, and ``batch_size`` images per batch (null: by device, see
    ``cli.sample.default_batch_size``; samples depend on it in the last bits). The GPU fast path is
    ``precision: bf16, compile: default``; images then differ from fp32's by bf16 rounding.

    ``clip_score``: for a text-to-image model, the evaluate jobs also report the samples' CLIP
    score with their prompts (``ClipScoreConfig``)."""

    n_samples: int = 50_000
    shard_size: int = 1000
    seed: int = 0
    batch_size: int | None = None
    reference: str = "test"
    reference_sha256: str | None = None
    reference_size: int = 256
    reference_limit: int | None = None
    precision: str = "fp32"
    compile: str | None = None
    clip_score: ClipScoreConfig = field(default_factory=ClipScoreConfig)

    def __post_init__(self):
        from .models.config import check_compute

        check_compute(self.precision, self.compile)

    @property
    def reference_url(self) -> str | None:
        """The reference batch's URL when it is downloaded (else None)."""
        return self.reference if self.reference.startswith(("https://", "http://", "file://")) else None

    @property
    def reference_folder(self) -> str | None:
        """The folder of reference images, when the reference is one (a path ending in /)."""
        return self.reference if self.reference.endswith("/") and not self.reference_url else None

    @property
    def reference_file(self) -> str:
        """Where the reference batch is read: the path given, or where a URL is downloaded to."""
        if self.reference_url:
            return "resources/reference/" + self.reference_url.rstrip("/").rsplit("/", 1)[-1]
        return self.reference


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
    paper: PaperConfig | None = None

    # ---- derived names used by the workflow
    def variants(self, table: str | None = None) -> list[str]:
        """``fp`` then ``{method}-w{W}a{A}`` for every method (of ``table``, or all) and bit setting."""
        return ["fp"] + [str(v) for m in self.quantization.methods if table in (None, m.table) for v in m.variants()]

    def distill_variants(self) -> list[str]:
        """``fp-s{N}`` (the FP teacher with N steps) for every step count and every 2N-step FP
        teacher of a first stage, then ``{name}-s{N}``."""
        d = self.distillation
        if not d.methods:
            return []
        fp_steps = list(d.steps) + sorted({2 * n for m in d.methods for n in m.steps
                                           if m.teacher_of(n)[0] == "fp"} - set(d.steps))
        out = [Variant("fp", steps=n) for n in fp_steps]
        return [str(v) for v in out + [v for m in d.methods for v in m.variants()]]

    def distill_teachers(self) -> dict[str, str]:
        """{student variant: its teacher's variant} for every distillation stage."""
        return {str(Variant(m.name, steps=n)): str(Variant(*m.teacher_of(n)[:1], steps=2 * n))
                for m in self.distillation.methods for n in m.steps}

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
