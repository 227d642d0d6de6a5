"""The Fashion-MNIST classifier whose features the offline default measures FID/sFID/IS/KID in.

It is trained once and shipped with the repository so that every user measures in the same
features: a metric must not change with the machine. Three outputs, as torch-fidelity expects:
``pool`` (128-d global average pool, for FID/KID/precision-recall), ``spatial`` (the first 4
channels of the 8x8 mid-level map, 256-d, for sFID, like ADM's mixed_6 slice) and ``logits``
(10 classes, for IS).

A second architecture (``resnet_classifier.FMNISTResNet``, ``arch: resnet``) is trained by the
same code; the weights file names its architecture in its safetensors header, so a folder loads
as what it holds (a file without that entry is the VGG network).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..weights import CLASSIFIER, PROVENANCE, verify_classifier
from .config import ClassifierTrainConfig
from .imagenorm import normalize_images
from .resnet_classifier import FMNISTResNet

log = logging.getLogger(__name__)

SPATIAL_CHANNELS = 4


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FMNISTClassifier(nn.Module):
    """A small VGG-style CNN for 32x32 single-channel images in uint8 or [0, 1]."""

    def __init__(self, width: int = 32, num_classes: int = 10):
        super().__init__()
        w = width
        self.stage1 = nn.Sequential(_block(1, w), _block(w, w), nn.MaxPool2d(2))  # 16x16
        self.stage2 = nn.Sequential(_block(w, 2 * w), _block(2 * w, 2 * w), nn.MaxPool2d(2))  # 8x8
        self.stage3 = nn.Sequential(_block(2 * w, 4 * w), _block(4 * w, 4 * w))  # 8x8
        self.fc = nn.Linear(4 * w, num_classes)
        self.dropout = nn.Dropout(0.3)

    normalize = staticmethod(normalize_images)

    def features(self, x_u8: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.stage2(self.stage1(self.normalize(x_u8)))
        spatial = h[:, :SPATIAL_CHANNELS].flatten(1)
        pooled = self.stage3(h).mean(dim=(2, 3))
        return {"pool": pooled, "spatial": spatial, "logits": self.fc(pooled)}

    def forward(self, x_u8: torch.Tensor) -> torch.Tensor:
        h = self.stage3(self.stage2(self.stage1(self.normalize(x_u8)))).mean(dim=(2, 3))
        return self.fc(self.dropout(h))


ARCH_KEY = "architecture"


def build_classifier(arch: str = "vgg") -> nn.Module:
    """An untrained classifier of architecture ``arch`` (``vgg`` or ``resnet``)."""
    if arch == "vgg":
        return FMNISTClassifier()
    if arch == "resnet":
        return FMNISTResNet()
    raise ValueError(f"no classifier architecture {arch!r} (known: vgg, resnet)")


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None].to(x.device), x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def accuracy(model: nn.Module, images_u8: np.ndarray, labels: np.ndarray, device="cpu", batch=1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images_u8), batch):
            x = torch.from_numpy(images_u8[i : i + batch]).to(device)
            pred = model(x).argmax(1).cpu().numpy()
            correct += int((pred == labels[i : i + batch]).sum())
    return correct / len(images_u8)


def train_classifier(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                     cfg: ClassifierTrainConfig = ClassifierTrainConfig(), device="cpu") -> tuple[nn.Module, dict]:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_classifier(cfg.arch).to(device)
    x_all = torch.from_numpy(train[0]).float().to(device)
    y_all = torch.from_numpy(train[1]).to(device)
    steps_per_epoch = len(x_all) // cfg.batch_size
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    t0 = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(x_all), generator=gen).to(device)
        for s in tqdm(range(steps_per_epoch), desc=f"classifier epoch {epoch + 1}", mininterval=5):
            idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            loss = F.cross_entropy(model(_augment(x_all[idx], gen)), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log.info("epoch %d: loss %.4f", epoch + 1, loss.item())
    model = model.cpu().eval()
    acc = accuracy(model, *test)
    log.info("test accuracy %.4f", acc)
    return model, {"test_accuracy": acc, "seconds": time.time() - t0, "config": asdict(cfg)}


def save_classifier(model: nn.Module, path: str | Path, provenance: dict | None = None) -> None:
    """``model.safetensors`` (its architecture in the header) and ``provenance.json``
    (``provenance`` plus the weights' sha256, which every later load checks)."""
    import json

    from safetensors.torch import save_file

    from ..provenance import sha256_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arch = "resnet" if isinstance(model, FMNISTResNet) else "vgg"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / CLASSIFIER.weights),
              metadata={ARCH_KEY: arch})
    rec = {**(provenance or {}), CLASSIFIER.key: sha256_file(path / CLASSIFIER.weights)}
    (path / PROVENANCE).write_text(json.dumps(rec, indent=2, sort_keys=True, default=str) + "\n")


def load_classifier(path: str | Path) -> nn.Module:
    """The classifier in folder ``path`` (the architecture its weights file names), its weights
    checked against the recorded sha256 first."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights = verify_classifier(path)
    with safe_open(str(weights), "pt") as f:
        arch = (f.metadata() or {}).get(ARCH_KEY, "vgg")
    model = build_classifier(arch)
    model.load_state_dict(load_file(str(weights)))
    return model.eval().requires_grad_(False)
