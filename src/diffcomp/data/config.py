"""The dataset section of the config (torch-free; read by the data verbs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetConfig:
    """Where the images come from. ``debian``: IDX files under ``root`` (offline);
    ``torchvision``: downloaded into ``root``."""

    name: str = "fashion-mnist"
    source: str = "debian"
    root: str = "/usr/share/datasets/fashion-mnist"
    image_size: int = 32
