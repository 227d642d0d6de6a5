"""Config of the feature classifier's training (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Adam with one-cycle LR, 12 epochs, batch 128, flips and 2-pixel shifts."""

    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
