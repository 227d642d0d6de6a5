"""Config of the feature classifier's training (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

ARCHITECTURES = ("vgg", "resnet")
# The classifiers a distillation method can train in, by name, and their architectures.
FEATURE_NETWORKS = {"fmnist-resnet": "resnet", "fmnist-classifier": "vgg"}


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Adam with one-cycle LR, 12 epochs, batch 128, flips and 2-pixel shifts. ``arch``: ``vgg``
    (``classifier.FMNISTClassifier``, the metrics' network) or ``resnet``
    (``resnet_classifier.FMNISTResNet``, RDD's independent network)."""

    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    arch: str = "vgg"

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
