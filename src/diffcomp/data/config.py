"""The dataset section of the config (torch-free; read by the data verbs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetConfig:
    """Where the images come from. ``fashion-mnist``: ``debian`` (IDX files under ``root``,
    offline) or ``torchvision`` (downloaded into ``root``); ``cifar10``: ``torchvision`` only
    (downloaded into ``root`` unless ``root/cifar-10-batches-py`` is there; every batch file's
    md5 is checked before it is read)."""

    name: str = "fashion-mnist"
    source: str = "debian"
    root: str = "/usr/share/datasets/fashion-mnist"
    image_size: int = 32
