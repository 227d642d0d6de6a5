"""Feature statistics of the real reference images (a cached target of its own): from a dataset
split's images, a reference batch in the ADM evaluator's npz format, or a folder of images
resized and centre-cropped as the ADM evaluator's reference batches are (read a batch at a time,
never the whole folder at once)."""

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
    p.add_argument("--folder", default=None, help="a folder of images (jpg, png, webp; subfolders included)")
    p.add_argument("--size", type=int, default=None, help="with --folder: the side images are resized and cropped to")
    p.add_argument("--limit", type=int, default=None, help="with --folder: the first N images in sorted order")
    p.add_argument("--feature-extractor", default="fmnist-classifier")
    p.add_argument("--weights", default=None, help="feature network folder or weights file")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..metrics.fidelity import adm_reference, make_extractor, reference_statistics

    from ..fetch import record_path, verify_fetched

    sources = [x for x in (args.images, args.adm_npz, args.folder) if x]
    if len(sources) != 1:
        raise SystemExit("diffcomp reference-stats: give exactly one of --images, --adm-npz and --folder")
    if (args.size is not None or args.limit is not None) and not args.folder:
        raise SystemExit("diffcomp reference-stats: --size and --limit go with --folder")
    if args.folder and (args.size is None or args.size < 1 or (args.limit is not None and args.limit < 1)):
        raise SystemExit("diffcomp reference-stats: --folder needs a positive --size (and a positive --limit, if any)")
    if args.adm_npz and record_path(args.adm_npz).exists():  # a downloaded batch: checked against its record
        verify_fetched(args.adm_npz)
    set_threads(args.threads)
    ext = make_extractor(args.feature_extractor, args.weights)
    if args.adm_npz:
        try:
            stats = adm_reference(args.adm_npz, ext, pick_device(args.device))
        except ValueError as e:
            raise SystemExit(f"diffcomp reference-stats: {e}") from None
        src, digest = args.adm_npz, sha256_file(args.adm_npz)
    elif args.folder:
        from ..data.image_folder import ImageFiles

        files = ImageFiles(args.folder, args.size, args.limit)
        log.info("%d images of %s at %d x %d", len(files), args.folder, args.size, args.size)
        stats = reference_statistics(files, ext, pick_device(args.device))
        src, digest = args.folder, files.digest()
    else:
        images = load_npz(args.images, {"images": "uint8"})["images"]
        stats = reference_statistics(images, ext, pick_device(args.device))
        src, digest = args.images, sha256_file(args.images)
    stats.update(source_path=np.array(str(src)), source_sha256=np.array(digest))
    save_npz(args.out, **stats)
    log.info("reference statistics of %s (%s, %d images, %s)", src, stats["source"], int(stats["n"]), args.feature_extractor)
