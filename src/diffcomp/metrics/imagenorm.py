"""The input normalisation the Fashion-MNIST feature networks share."""

from __future__ import annotations

import torch


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 255]) images, 1 or 3 channels -> single-channel float in [-1, 1]."""
    x = x.float()
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    return x / 127.5 - 1.0
