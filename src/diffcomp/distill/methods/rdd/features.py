"""Frozen feature networks for RDD's losses: images in [-1, 1] -> (feature map, pooled vector).

The network is an input of the distillation, never a global, and is named in the config
(``distillation.feature_net``):

* ``fmnist-resnet`` (the default): a Fashion-MNIST pre-activation ResNet of another
  architecture and seed than the metrics' classifier. As RDD's released code reads its
  DenseNet's final batch norm before the ReLU, the map is the final batch norm's output (8x8,
  64 channels, both signs); the pooled vector is the network's own (the mean of that map after
  its ReLU, what its linear head reads).
* ``fmnist-classifier``: the VGG-style classifier the offline metrics use (its last 8x8 map,
  128 channels, after ReLU, and its pooled vector). Training in the features one measures in
  favours the method, so the config check refuses this network when it is the evaluation one.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Frozen(nn.Module):
    """A frozen network (batch norm always on its running statistics), differentiable in the input."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    @property
    def channels(self) -> int:
        return self.net.fc.in_features

    def train(self, mode: bool = True):
        return super().train(False)


class ClassifierFeatures(_Frozen):
    """The VGG-style classifier's last feature map (after ReLU) and its global average pool."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The classifier's own input normalisation maps uint8 to [-1, 1]; x is already there.
        fmap = self.net.stage3(self.net.stage2(self.net.stage1(x)))
        return fmap, fmap.mean(dim=(2, 3))


class PreReLUFeatures(_Frozen):
    """The ResNet's final batch norm output before its ReLU, and the pooled vector its head reads."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net.final_map(x)
        return fmap, F.relu(fmap).mean(dim=(2, 3))


READERS = {"fmnist-resnet": PreReLUFeatures, "fmnist-classifier": ClassifierFeatures}


def load_feature_net(name: str, path: str | Path) -> nn.Module:
    """The feature network ``name`` from its weights folder (checked against its sha256 record)."""
    from ....metrics.classifier import FMNISTClassifier, load_classifier
    from ....metrics.config import FEATURE_NETWORKS
    from ....metrics.resnet_classifier import FMNISTResNet

    if name not in READERS:
        raise ValueError(f"no distillation feature network named {name!r} (known: {', '.join(READERS)})")
    arch, wrap = FEATURE_NETWORKS[name], READERS[name]
    net = load_classifier(path)
    expected = FMNISTResNet if arch == "resnet" else FMNISTClassifier
    if not isinstance(net, expected):
        raise ValueError(f"feature network {name!r} is a {arch} network, but {path} holds a {type(net).__name__}")
    return wrap(net)
