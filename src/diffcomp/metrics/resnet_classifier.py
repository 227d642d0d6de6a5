"""A second Fashion-MNIST classifier architecture: a small pre-activation ResNet.

It exists so that a method that trains in a classifier's features (RDD) can use a network other
than the one the metrics measure in: another architecture, trained from another seed. Like
DenseNet (RDD's CIFAR-10 network) it ends in a batch norm and a ReLU before the global pool, so
its last feature map before that ReLU (``final_map``) takes both signs. The outputs of
``features`` are those of ``classifier.FMNISTClassifier`` (pool, spatial, logits), so either
network can serve the metrics.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .imagenorm import normalize_images

SPATIAL_CHANNELS = 4


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice, plus the input (through a strided 1x1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x))
        out = self.conv1(h)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(h if not isinstance(self.shortcut, nn.Identity) else x)


class FMNISTResNet(nn.Module):
    """Stem conv (32x32), pre-activation blocks at 16x16 and 8x8 (twice), final BN, ReLU, global
    average pool, linear; for 32x32 single-channel images in uint8 or [0, 255]."""

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        w = width
        self.stem = nn.Conv2d(1, w, 3, padding=1, bias=False)  # 32x32
        self.layer1 = PreActBlock(w, 2 * w, stride=2)  # 16x16
        self.layer2 = PreActBlock(2 * w, 4 * w, stride=2)  # 8x8
        self.layer3 = PreActBlock(4 * w, 4 * w)  # 8x8
        self.bn = nn.BatchNorm2d(4 * w)
        self.fc = nn.Linear(4 * w, num_classes)
        self.dropout = nn.Dropout(0.3)

    @property
    def channels(self) -> int:
        return self.fc.in_features

    normalize = staticmethod(normalize_images)

    def final_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before its ReLU (the final batch norm's output, 8x8) of images
        already in [-1, 1]."""
        return self.bn(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def features(self, x_u8: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.layer2(self.layer1(self.stem(self.normalize(x_u8))))
        spatial = h[:, :SPATIAL_CHANNELS].flatten(1)
        pooled = F.relu(self.bn(self.layer3(h))).mean(dim=(2, 3))
        return {"pool": pooled, "spatial": spatial, "logits": self.fc(pooled)}

    def forward(self, x_u8: torch.Tensor) -> torch.Tensor:
        pooled = F.relu(self.final_map(self.normalize(x_u8))).mean(dim=(2, 3))
        return self.fc(self.dropout(pooled))
