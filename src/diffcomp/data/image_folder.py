"""A folder of reference images (COCO val2014, an export of LSUN-Church's training set) as one
uint8 array: the real images a text-to-image or LSUN protocol measures FID against.

Each image is resized and centre-cropped to ``size`` x ``size`` the way the ADM evaluator's
reference batches and the guided-diffusion data loader do it (``center_crop``): halved with a box
filter while its shorter side is at least twice ``size``, then resized with bicubic so that the
shorter side is ``size``, then cropped to the centre square. Files are read in sorted order of
their path relative to the folder (subfolders included), so the array, and the statistics
computed from it, do not depend on the order the file system lists them in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def load_folder(folder: str | Path, size: int, limit: int | None = None, progress: bool = False) -> np.ndarray:
    """The first ``limit`` (None: all) images of ``folder`` in sorted order, as uint8
    (N, 3, size, size). An unreadable file is one error naming it."""
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm

    files = list_images(folder)[:limit]
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, f in enumerate(tqdm(files, desc="reference images", mininterval=10, disable=not progress)):
        try:
            with Image.open(f) as im:
                out[i] = center_crop(im, size)
        except (UnidentifiedImageError, OSError) as e:
            raise damaged(f, f"not a readable image ({e})", "remove it from the folder or replace it") from None
    return out
