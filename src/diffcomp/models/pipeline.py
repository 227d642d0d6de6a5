"""Load and save diffusion pipelines as diffusers folders (``unet/`` + ``scheduler/``).

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


@dataclass
class Pipeline:
    """A UNet and the noise schedule it was trained with."""

    unet: torch.nn.Module
    alphas_cumprod: torch.Tensor  # (T,), float64
    prediction_type: str = "epsilon"
    scheduler: Any = None  # the diffusers scheduler it was loaded with (to save a derived model)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])


def _subfolder(root: Path, name: str) -> str | None:
    """diffusers pipelines keep components in subfolders; older single-model repos keep them at the root."""
    return name if (root / name).is_dir() else None


def load_pipeline(path: str | Path, device: str | torch.device = "cpu") -> Pipeline:
    """Load a ``UNet2DModel`` + ``DDPMScheduler``/``DDIMScheduler`` folder written by ``save_pretrained``."""
    from diffusers import DDPMScheduler, UNet2DModel

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder {root} does not exist")
    unet = UNet2DModel.from_pretrained(root, subfolder=_subfolder(root, "unet"))
    sched_sub = _subfolder(root, "scheduler")
    sched_cfg = (root / sched_sub / "scheduler_config.json") if sched_sub else (root / "scheduler_config.json")
    if not sched_cfg.exists():
        raise FileNotFoundError(f"{root}: no scheduler_config.json (expected in scheduler/ or at the root)")
    scheduler = DDPMScheduler.from_pretrained(root, subfolder=sched_sub)
    unet.eval().requires_grad_(False).to(device)
    return Pipeline(
        unet=unet,
        alphas_cumprod=scheduler.alphas_cumprod.to(torch.float64),
        prediction_type=scheduler.config.prediction_type,
        scheduler=scheduler,
    )


def save_pipeline(unet, scheduler, path: str | Path, provenance: dict | None = None) -> None:
    """Write ``model_index.json``, ``unet/`` and ``scheduler/`` (a ``DDPMPipeline`` folder)."""
    from diffusers import DDPMPipeline

    path = Path(path)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)
    if provenance is not None:
        (path / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")


def download_pipeline(repo_id: str, path: str | Path, revision: str | None = None) -> Path:
    """Snapshot a hub repository into ``path`` (needs internet) and check that it loads."""
    from huggingface_hub import snapshot_download

    out = Path(
        snapshot_download(
            repo_id=repo_id,
            revision=revision,
            local_dir=str(path),
            allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.md"],
        )
    )
    load_pipeline(out)  # fail here, not three rules later, if the snapshot is not a UNet pipeline
    return out
