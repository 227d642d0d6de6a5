"""Fashion-MNIST: read from Debian's package (offline) or through torchvision (online).

Images are padded from 28x28 to 32x32 with background (zero) pixels so the UNet's three
resolutions (32, 16, 8) divide evenly, and stored as uint8 arrays of shape (N, 1, 32, 32).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetError(RuntimeError):
    """The dataset cannot be found or read."""


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): magic, dims as big-endian int32, then uint8 data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: expected {int(np.prod(dims))} values, found {arr.size}")
    return arr.reshape(tuple(int(d) for d in dims))


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (N, H, W) images symmetrically to (N, 1, size, size)."""
    n, h, w = images.shape
    if h > size or w > size:
        raise ValueError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, 1, size, size), dtype=np.uint8)
    out[:, 0, top : top + h, left : left + w] = images
    return out


def load_split(split: str, source: str, root: str | Path, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N,1,S,S), labels int64 (N,)) for ``split`` in {"train", "test"}.

    ``source="debian"`` reads the IDX files under ``root`` (Debian's dataset-fashion-mnist);
    ``source="torchvision"`` downloads into ``root`` through torchvision (needs internet once).
    """
    if split not in _FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_FILES)}")
    root = Path(root)
    if source == "debian":
        img_name, lab_name = _FILES[split]
        img_path, lab_path = root / img_name, root / lab_name
        for p in (img_path, lab_path):
            if not p.exists():
                raise DatasetError(
                    f"{p} not found: install Debian's package 'dataset-fashion-mnist' "
                    "(apt-get install dataset-fashion-mnist) or set dataset.source: torchvision"
                )
        images, labels = read_idx(img_path), read_idx(lab_path)
    elif source == "torchvision":
        from torchvision.datasets import FashionMNIST

        ds = FashionMNIST(str(root), train=(split == "train"), download=True)
        images, labels = ds.data.numpy(), ds.targets.numpy()
    else:
        raise ValueError(f"unknown dataset source {source!r}; expected 'debian' or 'torchvision'")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return pad_to(images, image_size), labels.astype(np.int64)


def to_model_range(images_u8: np.ndarray):
    """uint8 [0, 255] -> float tensor in [-1, 1] (the diffusion model's data range)."""
    import torch

    return torch.from_numpy(images_u8).float().div(127.5).sub(1.0)


def to_uint8(x) -> np.ndarray:
    """Float tensor in [-1, 1] -> uint8 array, rounding to the nearest level."""
    import torch

    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
