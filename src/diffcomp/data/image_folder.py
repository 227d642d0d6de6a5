"""A folder of reference images (COCO val2014, an export of LSUN-Church's training set) read one
image at a time: the real images a text-to-image or LSUN protocol measures FID against, streamed
into the feature extractor so that no array of the whole folder is ever held (LSUN-Church's
126,227 images at 256 x 256 would be 25 GB).

Each image is resized and centre-cropped to ``size`` x ``size`` the way the ADM evaluator's
reference batches and the guided-diffusion data loader do it (``center_crop``): halved with a box
filter while its shorter side is at least twice ``size``, then resized with bicubic so that the
shorter side is ``size``, then cropped to the centre square. Files are read in sorted order of
their path relative to the folder (subfolders included), so the array, and the statistics
computed from it, do not depend on the order the file system lists them in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import FileError, damaged, missing

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def list_images(folder: str | Path) -> list[Path]:
    """The image files under ``folder`` (by suffix, any case), sorted by relative path."""
    root = Path(folder)
    if not root.is_dir():
        raise missing(root, "a folder of reference images (jpg, png, webp)")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise FileError(f"{root}: no images (files ending in {', '.join(SUFFIXES)})")
    return files


def center_crop(image, size: int) -> np.ndarray:
    """A PIL image as uint8 (3, size, size): box-halved while its shorter side is >= 2 size,
    bicubic to a shorter side of ``size``, centre square."""
    from PIL import Image

    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[top:top + size, left:left + size].transpose(2, 0, 1))


class ImageFiles(Dataset):
    """The first ``limit`` (None: all) images of ``folder`` in sorted order (``list_images``), each
    read when asked for as a uint8 tensor (3, size, size) (``center_crop``). An unreadable file is
    one error naming it."""

    def __init__(self, folder: str | Path, size: int, limit: int | None = None):
        if size < 1 or (limit is not None and limit < 1):
            raise ValueError(f"size and limit must be positive, got {size} and {limit}")
        self.root = Path(folder)
        self.files = list_images(folder)[:limit]
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        f = self.files[i]
        try:
            with Image.open(f) as im:
                return torch.from_numpy(center_crop(im, self.size))
        except (UnidentifiedImageError, OSError) as e:
            raise damaged(f, f"not a readable image ({e})", "remove it from the folder or replace it") from None

    def digest(self) -> str:
        """sha256 of the images read, in order: each file's path relative to the folder and the
        sha256 of its bytes (what the statistics were computed from, independent of where the
        folder lies and of file times)."""
        h = hashlib.sha256()
        for f in self.files:
            fh = hashlib.sha256()
            with open(f, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    fh.update(block)
            h.update(f"{f.relative_to(self.root).as_posix()}\0{fh.hexdigest()}\n".encode())
        return h.hexdigest()
