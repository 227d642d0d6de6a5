"""Load and save diffusion pipelines as diffusers folders (``unet/`` + ``scheduler/``, for a
latent model ``vae/``: an ``AutoencoderKL`` or ``VQModel`` that only the final decode uses, and
for a text-to-image model ``text_encoder/`` (CLIP), ``tokenizer/`` and ``prompts.txt``, the
prompts its images are conditioned on, one per line).

The same loader serves the shipped default, a model trained by the ``train`` verb and a hub
snapshot (``from_pretrained`` / ``snapshot_download`` into resources/), so the hub path is
tested offline on a folder written by ``save_pretrained``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..io import damaged, missing
from ..provenance import sha256_file
from ..weights import (AUTOENCODER, PIPELINE, PROMPTS, PROVENANCE, TEXT_ENCODER, has_autoencoder, has_text_encoder,
                       verify_pipeline)

AUTOENCODERS = ("AutoencoderKL", "VQModel")
DENOISERS = ("UNet2DModel", "UNet2DConditionModel", "FixedHeadsUNet2DModel")


def denoiser_class(name: str) -> type:
    """The class of a denoiser folder's ``_class_name``: diffusers' own, or this package's
    ``FixedHeadsUNet2DModel`` (``models.heads_unet``)."""
    if name not in DENOISERS:
        raise ValueError(f"{name!r} is not a denoiser this workflow runs (expected one of {', '.join(DENOISERS)})")
    if name == "FixedHeadsUNet2DModel":
        from .heads_unet import FixedHeadsUNet2DModel

        return FixedHeadsUNet2DModel
    import diffusers

    return getattr(diffusers, name)


@dataclass
class TextConditioning:
    """A text-to-image model's CLIP text encoder, its tokenizer and the prompts (K) its images
    are conditioned on."""

    encoder: torch.nn.Module
    tokenizer: Any
    prompts: list[str]


@dataclass
class Pipeline:
    """A UNet and the noise schedule it was trained with; for a latent model also the autoencoder
    whose latent space the UNet denoises (the UNet is what gets quantized or distilled)."""

    unet: torch.nn.Module
    alphas_cumprod: torch.Tensor  # (T,), float64
    prediction_type: str = "epsilon"
    scheduler: Any = None  # the diffusers scheduler it was loaded with (to save a derived model)
    vae: torch.nn.Module | None = None
    text: TextConditioning | None = None

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """The shape of what the sampler denoises: the UNet's input (latents for a latent model)."""
        c = self.unet.config
        size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
        return (c.in_channels, size, size)

    def to(self, device: str | torch.device) -> "Pipeline":
        """Every network of the pipeline on ``device`` (the UNet, the autoencoder that decodes its
        samples, the text encoder its prompt hook calls); returns the pipeline."""
        self.unet.to(device)
        if self.vae is not None:
            self.vae.to(device)
        if self.text is not None:
            self.text.encoder.to(device)
        return self

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents to images in about [-1, 1]: divided by the autoencoder's ``scaling_factor`` (the
        factor its latents were scaled by for training), then decoded (a VQ model quantizes first)."""
        if self.vae is None:
            raise ValueError("this pipeline has no autoencoder: its samples are images already")
        z = z.to(next(self.vae.parameters()).dtype)
        return self.vae.decode(z / self.vae.config.scaling_factor).sample


def _subfolder(root: Path, name: str) -> str | None:
    """diffusers pipelines keep components in subfolders; older single-model repos keep them at the root."""
    return name if (root / name).is_dir() else None


def load_pipeline(path: str | Path, device: str | torch.device = "cpu", verify: bool = True,
                  prompts: list[str] | None = None) -> Pipeline:
    """Load a ``UNet2DModel`` + ``DDPMScheduler``/``DDIMScheduler`` folder written by ``save_pretrained``.

    The UNet's safetensors weights are checked against the sha256 in the folder's provenance.json
    first (``weights.verify``); only ``download_pipeline`` reads a fresh hub snapshot unchecked,
    to convert it and record its checksum. A text-to-image model's prompts come from its
    ``prompts.txt``, or from ``prompts`` (a hub snapshot, which has none)."""
    from diffusers import DDPMScheduler

    root = Path(path)
    if not root.is_dir():
        raise missing(root, "the model folder does not exist")
    if verify:
        verify_pipeline(root)
    text = _load_text(root, verify, prompts) if has_text_encoder(root) else None
    unet = _load_denoiser(root, verify, text is not None)
    sched_sub = _subfolder(root, "scheduler")
    sched_cfg = (root / sched_sub / "scheduler_config.json") if sched_sub else (root / "scheduler_config.json")
    if not sched_cfg.exists():
        raise missing(sched_cfg, "a model folder has scheduler_config.json in scheduler/ or at its root")
    scheduler = DDPMScheduler.from_pretrained(root, subfolder=sched_sub)
    from .parameterization import FROM_DIFFUSERS

    if scheduler.config.prediction_type not in FROM_DIFFUSERS:  # a typo would silently be read as eps
        raise damaged(sched_cfg, f"prediction_type {scheduler.config.prediction_type!r} is unknown",
                      f"set it to one of {sorted(FROM_DIFFUSERS)}")
    unet.eval().requires_grad_(False)
    if text is not None:
        from .conditioning import accept_prompts, tokenize_prompts

        text.encoder.eval().requires_grad_(False)
        accept_prompts(unet, text.encoder, tokenize_prompts(text.tokenizer, text.prompts))  # a UNet buffer
    vae = _load_autoencoder(root, verify) if has_autoencoder(root) else None
    if vae is not None:
        vae.eval().requires_grad_(False)
        if vae.config.latent_channels != unet.config.in_channels:
            raise damaged(root / AUTOENCODER.configs[0], f"latent_channels {vae.config.latent_channels} differs from the "
                          f"UNet's in_channels {unet.config.in_channels}")
    return Pipeline(
        unet=unet,
        alphas_cumprod=scheduler.alphas_cumprod.to(torch.float64),
        prediction_type=scheduler.config.prediction_type,
        scheduler=scheduler,
        vae=vae,
        text=text,
    ).to(device)


def _load_denoiser(root: Path, verify: bool, text: bool = False) -> torch.nn.Module:
    """The UNet: a ``UNet2DModel`` (unconditional or with a class embedding), a class-context
    ``UNet2DConditionModel`` (``models.conditioning``), which takes integer labels once loaded,
    or, with ``text`` (the folder has a text encoder), a text-conditioned one."""
    from ..io import read_json_object
    from .conditioning import CLASS_CONTEXT, accept_labels

    sub = _subfolder(root, "unet")
    cfg_path = root / sub / "config.json" if sub else root / "config.json"
    if not cfg_path.is_file():
        raise missing(cfg_path, "a model folder holds the UNet's config.json in unet/ or at its root")
    cfg = read_json_object(cfg_path, ("_class_name",), f"set _class_name to one of {', '.join(DENOISERS)}")
    name = cfg.get("_class_name", "UNet2DModel")
    if name not in DENOISERS:
        raise damaged(cfg_path, f"_class_name {name!r} is not a denoiser this workflow runs",
                      f"expected one of {', '.join(DENOISERS)}")
    if name == "UNet2DConditionModel" and cfg.get("encoder_hid_dim_type") != CLASS_CONTEXT and not text:
        raise damaged(cfg_path, "a UNet2DConditionModel is conditioned on a class (encoder_hid_dim_type "
                      f"{CLASS_CONTEXT!r}, encoder_hid_dim = classes + 1) or on text, which needs text_encoder/, "
                      "tokenizer/ and prompts.txt beside it")
    unet = denoiser_class(name).from_pretrained(root, subfolder=sub, use_safetensors=True if verify else None)
    try:
        return accept_labels(unet)
    except ValueError as e:
        raise damaged(cfg_path, str(e)) from None


def read_prompts(path: str | Path) -> list[str]:
    """Prompts, one per line (UTF-8; a trailing newline is fine); an empty file or an empty line
    is one ``FileError`` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise missing(path, "a text-to-image model folder holds its prompts there, one per line")
    lines = path.read_text(encoding="utf-8").splitlines()
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if not lines or empty:
        raise damaged(path, f"line {empty[0]} is empty" if empty else "it holds no prompt",
                      "one non-empty prompt per line (the empty prompt is the guidance's null condition)")
    return lines


def _load_text(root: Path, verify: bool, prompts: list[str] | None) -> TextConditioning:
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError:
        raise damaged(root / "text_encoder", "a text-to-image model needs the transformers package",
                      "pip install -e '.[text]'") from None
    encoder = CLIPTextModel.from_pretrained(root / "text_encoder", use_safetensors=True if verify else None)
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    return TextConditioning(encoder, tokenizer, list(prompts) if prompts is not None else read_prompts(root / PROMPTS.weights))


def _load_autoencoder(root: Path, verify: bool) -> torch.nn.Module:
    import diffusers

    from ..io import read_json_object

    cfg = root / AUTOENCODER.configs[0]
    if not cfg.is_file():
        raise missing(cfg, "a latent model's vae/ folder holds the autoencoder's config.json")
    name = read_json_object(cfg, ("_class_name",), f"set _class_name to one of {', '.join(AUTOENCODERS)}").get("_class_name")
    if name not in AUTOENCODERS:
        raise damaged(cfg, f"_class_name {name!r} is not an autoencoder this workflow decodes through",
                      f"expected one of {', '.join(AUTOENCODERS)}")
    return getattr(diffusers, name).from_pretrained(root, subfolder="vae", use_safetensors=True if verify else None)


def save_pipeline(unet, scheduler, path: str | Path, provenance: dict | None = None, vae=None,
                  text: TextConditioning | None = None) -> None:
    """Write ``model_index.json``, ``unet/``, ``scheduler/`` (a ``DDPMPipeline`` folder), for a
    latent model ``vae/``, for a text-to-image model ``text_encoder/``, ``tokenizer/`` and
    ``prompts.txt``, and ``provenance.json``: ``provenance`` plus the sha256 of the UNet's weights
    (``sha256_unet``), the autoencoder's (``sha256_vae``), the text encoder's
    (``sha256_text_encoder``) and the prompts' (``sha256_prompts``), which every later load checks."""
    from diffusers import DDPMPipeline

    path = Path(path)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)
    rec = {**(provenance or {}), PIPELINE.key: sha256_file(path / PIPELINE.weights)}
    components = {}  # model_index.json entries beside the DDPMPipeline's unet and scheduler
    if vae is not None:
        if type(vae).__name__ not in AUTOENCODERS:
            raise TypeError(f"the autoencoder must be one of {', '.join(AUTOENCODERS)}, got {type(vae).__name__}")
        vae.save_pretrained(path / "vae", safe_serialization=True)
        components["vae"] = ["diffusers", type(vae).__name__]
        rec[AUTOENCODER.key] = sha256_file(path / AUTOENCODER.weights)
    if text is not None:
        if any(not p.strip() or "\n" in p for p in text.prompts) or not text.prompts:
            raise ValueError("prompts must be non-empty single lines")
        text.encoder.save_pretrained(path / "text_encoder", safe_serialization=True)
        text.tokenizer.save_pretrained(path / "tokenizer")
        (path / PROMPTS.weights).write_text("\n".join(text.prompts) + "\n", encoding="utf-8")
        components.update(text_encoder=["transformers", type(text.encoder).__name__],
                          tokenizer=["transformers", type(text.tokenizer).__name__])
        rec[TEXT_ENCODER.key] = sha256_file(path / TEXT_ENCODER.weights)
        rec[PROMPTS.key] = sha256_file(path / PROMPTS.weights)
    if components:
        index = json.loads((path / "model_index.json").read_text())
        (path / "model_index.json").write_text(json.dumps({**index, **components}, indent=2, sort_keys=True) + "\n")
    (path / PROVENANCE).write_text(json.dumps(rec, indent=2, sort_keys=True, default=str) + "\n")


def download_pipeline(repo_id: str, path: str | Path, revision: str | None = None,
                      prompts: list[str] | None = None) -> Path:
    """Snapshot a hub repository (needs internet), load it (``.bin`` weights through diffusers'
    ``weights_only`` loader) and convert it into a folder of this workflow's layout at ``path``:
    safetensors weights whose sha256 is recorded in provenance.json (with the sha256 of every
    downloaded file), like every other model folder."""
    import tempfile

    from huggingface_hub import snapshot_download

    with tempfile.TemporaryDirectory(prefix=".snapshot-", dir=Path(path).parent) as tmp:
        snap = Path(snapshot_download(repo_id=repo_id, revision=revision, local_dir=tmp,
                                      allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.md"]))
        convert_snapshot(snap, path, {"what": f"hub model {repo_id} converted to safetensors by `diffcomp download`",
                                      "hub_id": repo_id, "revision": revision}, prompts)
    return Path(path)


def convert_snapshot(snapshot: str | Path, path: str | Path, provenance: dict, prompts: list[str] | None = None) -> None:
    """A model folder without a checksum record (a fresh hub snapshot, either layout) written as a
    folder of this workflow's layout, with the sha256 of every source file and of the new weights.
    A text-to-image model gets ``prompts`` (its images' conditions) as its prompts.txt."""
    snap = Path(snapshot)
    if has_text_encoder(snap) and prompts is None:
        raise ValueError(f"{snap} is a text-to-image model: give the prompts its images are conditioned on")
    pipe = load_pipeline(snap, verify=False, prompts=prompts)  # fails here, not three rules later, if it is no UNet pipeline
    sources = {str(f.relative_to(snap)): sha256_file(f) for f in sorted(snap.rglob("*"))
               if f.is_file() and ".cache" not in f.parts}
    save_pipeline(pipe.unet, pipe.scheduler, path, provenance={**provenance, "source_sha256": sources}, vae=pipe.vae,
                  text=pipe.text)
