"""Feature statistics of the real reference images (a cached target of its own)."""

from __future__ import annotations

import logging

from ..io import load_npz, save_npz
from ._common import pick_device, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--images", required=True, help=".npz with uint8 'images'")
    p.add_argument("--feature-extractor", default="fmnist-classifier")
    p.add_argument("--weights", default=None, help="feature network folder")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..metrics.fidelity import make_extractor, reference_statistics

    set_threads(args.threads)
    images = load_npz(args.images, {"images": "uint8"})["images"]
    ext = make_extractor(args.feature_extractor, args.weights)
    stats = reference_statistics(images, ext, pick_device(args.device))
    save_npz(args.out, **stats)
    log.info("reference statistics of %d images (%s)", len(images), args.feature_extractor)
