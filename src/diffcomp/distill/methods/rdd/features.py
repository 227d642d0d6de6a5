"""Frozen feature networks for RDD's losses: images in [-1, 1] -> (feature map, pooled vector).

The network is an input of the distillation, never a global; the default is the Fashion-MNIST
classifier the offline metrics use (its last 8x8 map, 128 channels, and its pooled vector).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn


class ClassifierFeatures(nn.Module):
    """The Fashion-MNIST classifier's last feature map and its global average pool, differentiable
    in the input (the network's weights are frozen, batch norm in eval mode)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    @property
    def channels(self) -> int:
        return self.net.fc.in_features

    def train(self, mode: bool = True) -> "ClassifierFeatures":
        return super().train(False)  # frozen: batch norm always uses its running statistics

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The classifier's own input normalisation maps uint8 to [-1, 1]; x is already there.
        fmap = self.net.stage3(self.net.stage2(self.net.stage1(x)))
        return fmap, fmap.mean(dim=(2, 3))


def load_feature_net(name: str, path: str | Path) -> ClassifierFeatures:
    """The feature network ``name`` from its weights folder."""
    if name == "fmnist-classifier":
        from ....metrics.classifier import load_classifier

        return ClassifierFeatures(load_classifier(path))
    raise ValueError(f"no distillation feature network named {name!r} (known: fmnist-classifier)")
