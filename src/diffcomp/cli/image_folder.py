"""A folder of reference images as a uint8 .npz (``images``), resized and centre-cropped as the
ADM evaluator's reference batches are (``data.image_folder``): the input of ``reference-stats
--images`` for a protocol whose reference is a folder of images (``evaluation.reference``)."""

from __future__ import annotations

import logging

from ..io import save_npz

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--folder", required=True, help="folder of images (jpg, png, webp; subfolders included)")
    p.add_argument("--size", type=int, required=True, help="side of the square images")
    p.add_argument("--limit", type=int, default=None, help="the first N images in sorted order (default: all)")
    p.add_argument("--out", required=True, help=".npz with uint8 'images' (N, 3, size, size)")


def run(args) -> None:
    from ..data.image_folder import load_folder

    if args.size < 1 or (args.limit is not None and args.limit < 1):
        raise SystemExit("diffcomp image-folder: --size and --limit must be positive")
    images = load_folder(args.folder, args.size, args.limit, progress=True)
    save_npz(args.out, images=images)
    log.info("%d images of %s at %d x %d -> %s", len(images), args.folder, args.size, args.size, args.out)
