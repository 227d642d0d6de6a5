"""Concatenate a variant's shards in index order into one samples file, plus a grid PNG."""

from __future__ import annotations

import logging

import numpy as np

from ..io import damaged, load_npz, save_npz
from ..report.grid import save_grid

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--grid", default=None)
    p.add_argument("--grid-size", type=int, default=64)


def run(args) -> None:
    parts = [load_npz(s, {"images": "uint8", "indices": None}) for s in args.shards]
    for s, d in zip(args.shards, parts):
        if len(d["images"]) != len(d["indices"]) or not len(d["indices"]):
            raise damaged(s, f"{len(d['images'])} images for {len(d['indices'])} indices")
    parts.sort(key=lambda d: int(d["indices"][0]))
    images = np.concatenate([d["images"] for d in parts])
    indices = np.concatenate([d["indices"] for d in parts])
    if not np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
        raise SystemExit("shards do not cover a contiguous index range")
    save_npz(args.out, images=images, indices=indices)
    if args.grid:
        save_grid(images[: args.grid_size], args.grid, nrow=8)
    log.info("gathered %d images from %d shards", len(images), len(parts))
