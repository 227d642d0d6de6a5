"""Image grids as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_path


def make_grid(images_u8: np.ndarray, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) uint8 -> (rows*(H+pad)+pad, nrow*(W+pad)+pad, C) uint8 with a white border."""
    n, c, h, w = images_u8.shape
    rows = -(-n // nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y : y + h, x : x + w] = images_u8[i].transpose(1, 2, 0)
    return grid


def save_grid(images_u8: np.ndarray, path: str | Path, nrow: int = 8, scale: int = 2) -> None:
    from PIL import Image

    g = make_grid(images_u8, nrow=nrow)
    img = Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
