"""Feature statistics of the real reference images (a cached target of its own): from a dataset
split's images, or from a reference batch in the ADM evaluator's npz format."""

from __future__ import annotations

import logging

import numpy as np

from ..io import load_npz, save_npz
from ..provenance import sha256_file
from ._common import pick_device, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--images", default=None, help=".npz with uint8 'images' (a dataset split)")
    p.add_argument("--adm-npz", default=None, help="an ADM reference batch (mu, sigma, mu_s, sigma_s[, arr_0])")
    p.add_argument("--feature-extractor", default="fmnist-classifier")
    p.add_argument("--weights", default=None, help="feature network folder or weights file")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..metrics.fidelity import adm_reference, make_extractor, reference_statistics

    from ..fetch import record_path, verify_fetched

    if bool(args.images) == bool(args.adm_npz):
        raise SystemExit("diffcomp reference-stats: give exactly one of --images and --adm-npz")
    if args.adm_npz and record_path(args.adm_npz).exists():  # a downloaded batch: checked against its record
        verify_fetched(args.adm_npz)
    set_threads(args.threads)
    ext = make_extractor(args.feature_extractor, args.weights)
    if args.adm_npz:
        try:
            stats = adm_reference(args.adm_npz, ext, pick_device(args.device))
        except ValueError as e:
            raise SystemExit(f"diffcomp reference-stats: {e}") from None
        src = args.adm_npz
    else:
        images = load_npz(args.images, {"images": "uint8"})["images"]
        stats = reference_statistics(images, ext, pick_device(args.device))
        src = args.images
    stats.update(source_path=np.array(str(src)), source_sha256=np.array(sha256_file(src)))
    save_npz(args.out, **stats)
    log.info("reference statistics of %s (%s, %d images, %s)", src, stats["source"], int(stats["n"]), args.feature_extractor)
