"""Read the dataset (Fashion-MNIST: Debian's files or torchvision's download, padded to 32x32;
CIFAR-10: torchvision's download, checksum-verified), write npz splits."""

from __future__ import annotations

import logging
from pathlib import Path

from ..data.config import DatasetConfig
from ..io import save_npz, write_json
from ._common import section

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--cfg", required=True, help="dataset section as JSON")
    p.add_argument("--out-dir", required=True)


def load(cfg: DatasetConfig, split: str):
    if cfg.name == "cifar10":
        from ..data.cifar10 import load_split as load_cifar

        return load_cifar(split, cfg.root)
    from ..data.fmnist import load_split

    return load_split(split, cfg.source, cfg.root, cfg.image_size)


def run(args) -> None:
    cfg = section(DatasetConfig, args.cfg, "dataset")
    out = Path(args.out_dir)
    counts = {}
    for split in ("train", "test"):
        images, labels = load(cfg, split)
        save_npz(out / f"{split}.npz", images=images, labels=labels)
        counts[split] = int(images.shape[0])
        log.info("%s: %d images %s", split, images.shape[0], images.shape[1:])
    write_json(out / "info.json", {"dataset": cfg.name, "source": cfg.source, "counts": counts, "image_size": cfg.image_size})
