"""Model folders, their weight files and the checksums recorded beside them (torch-free).

Every model the workflow uses is a folder whose ``provenance.json`` records the sha256 of its
weights: a diffusion pipeline (shipped, trained, distilled, downloaded and converted; key
``sha256_unet``, ``sha256_vae`` for the autoencoder of a latent model in ``vae/``, and for a
text-to-image model ``sha256_text_encoder`` for its CLIP text encoder in ``text_encoder/`` and
``sha256_prompts`` for ``prompts.txt``, the prompts its images are conditioned on) or the
feature classifier (key ``sha256``). ``verify`` checks the weights
against that record before anything is loaded, and the rules depend on ``files(folder)`` (the
weight file, its config, the record) rather than on the folder, so a changed file reruns what
depends on it. The Snakefile, the config checks and the loaders share these definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .io import FileError, damaged, missing, read_json_object
from .provenance import sha256_file

PROVENANCE = "provenance.json"
UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
CLASSIFIER_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class Kind:
    """A kind of model folder: its weight file and config files (relative to the folder) and the
    provenance key holding the weights' sha256."""

    name: str
    weights: str
    configs: tuple[str, ...]
    key: str


PIPELINE = Kind("diffusion model", f"unet/{UNET_WEIGHTS}", ("unet/config.json", "scheduler/scheduler_config.json"),
                "sha256_unet")
# A single-model hub layout (google/ddpm-cifar10-32): the UNet and the scheduler config at the root.
FLAT_PIPELINE = Kind("diffusion model", UNET_WEIGHTS, ("config.json", "scheduler_config.json"), "sha256_unet")
CLASSIFIER = Kind("feature network", CLASSIFIER_WEIGHTS, (), "sha256")
# A latent model's autoencoder (VQ or KL), beside the UNet of a PIPELINE folder.
AUTOENCODER = Kind("autoencoder", f"vae/{UNET_WEIGHTS}", ("vae/config.json",), "sha256_vae")
# A text-to-image model's text encoder with its tokenizer's files (as save_pretrained writes them)
# and the prompts its images are conditioned on (one per line; image i gets prompt i mod K).
TEXT_ENCODER = Kind("text encoder", "text_encoder/model.safetensors",
                    ("text_encoder/config.json", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"),
                    "sha256_text_encoder")
PROMPTS = Kind("prompts", "prompts.txt", (), "sha256_prompts")


def pipeline_kind(folder: str | Path) -> Kind:
    """The layout of a diffusion model folder (folders still to be written get ``unet/``)."""
    root = Path(folder)
    return FLAT_PIPELINE if root.is_dir() and not (root / "unet").is_dir() else PIPELINE


def files(folder: str | Path, kind: Kind) -> list[str]:
    """What a job reading the model depends on: weights, configs and the checksum record."""
    return [str(Path(folder) / f) for f in (kind.weights, *kind.configs, PROVENANCE)]


def has_autoencoder(folder: str | Path) -> bool:
    return (Path(folder) / "vae").is_dir()


def has_text_encoder(folder: str | Path) -> bool:
    return (Path(folder) / "text_encoder").is_dir()


def pipeline_files(folder: str | Path, autoencoder: bool | None = None, text: bool | None = None) -> list[str]:
    """A diffusion model folder's files: the UNet's, a latent model's autoencoder's and a
    text-to-image model's text encoder, tokenizer and prompts (one record). ``autoencoder`` and
    ``text`` say which parts the folder has; None reads it from the folder, which a folder that
    a rule is still to write cannot tell (its list must not change once it exists)."""
    autoencoder = has_autoencoder(folder) if autoencoder is None else autoencoder
    text = has_text_encoder(folder) if text is None else text
    out = files(folder, pipeline_kind(folder))
    if autoencoder:
        out[-1:-1] = files(folder, AUTOENCODER)[:-1]  # its weights and config; the record is the same file
    if text:
        out[-1:-1] = files(folder, TEXT_ENCODER)[:-1] + files(folder, PROMPTS)[:-1]
    return out


def classifier_files(folder: str | Path) -> list[str]:
    return files(folder, CLASSIFIER)


def record(folder: str | Path, kind: Kind) -> str:
    """The sha256 of the weights recorded in the folder's provenance.json."""
    prov = Path(folder) / PROVENANCE
    remedy = f"restore it, or record the sha256 of {Path(folder) / kind.weights} under {kind.key!r}"
    if not prov.is_file():
        raise missing(prov, f"every model folder records the sha256 of its weights there ({remedy})")
    value = read_json_object(prov, (kind.key,), remedy).get(kind.key)
    if not isinstance(value, str) or len(value) != 64:
        raise damaged(prov, f"{kind.key!r} is not a sha256", remedy)
    return value


def verify(folder: str | Path, kind: Kind) -> Path:
    """Check the folder's weights against the sha256 its provenance.json records; returns the
    weight file. A missing, changed or damaged file is one ``FileError`` naming it."""
    weights = Path(folder) / kind.weights
    expected = record(folder, kind)
    if not weights.is_file():
        raise missing(weights, f"the {kind.name} in {folder} has no weights")
    actual = sha256_file(weights)
    if actual != expected:
        raise FileError(f"{weights} does not match the sha256 recorded in {Path(folder) / PROVENANCE} "
                        f"({actual[:12]}... instead of {expected[:12]}...): the file is damaged or was replaced; "
                        "restore it (git checkout, or delete it and rerun for a generated model)")
    return weights


def verify_pipeline(folder: str | Path) -> Path:
    """Check the UNet's weights (and a latent model's autoencoder's); returns the UNet's file."""
    if has_autoencoder(folder):
        verify(folder, AUTOENCODER)
    if has_text_encoder(folder):
        verify(folder, TEXT_ENCODER)
        verify(folder, PROMPTS)
    return verify(folder, pipeline_kind(folder))


def verify_classifier(folder: str | Path) -> Path:
    return verify(folder, CLASSIFIER)
