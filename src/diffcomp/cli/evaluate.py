"""FID, sFID, IS, KID and precision/recall of one variant's samples; one JSON with the protocol."""

from __future__ import annotations

import json
import logging

from ..io import load_npz, write_json
from ._common import pick_device, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--samples", required=True)
    p.add_argument("--reference", required=True, help="reference statistics .npz")
    p.add_argument("--feature-extractor", default="fmnist-classifier")
    p.add_argument("--weights", default=None)
    p.add_argument("--variant", required=True)
    p.add_argument("--protocol", default="{}", help="JSON recorded with the numbers (sampler, seeds, ...)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..metrics.fidelity import compare, make_extractor

    set_threads(args.threads)
    data = load_npz(args.samples, {"images": "uint8", "indices": None})
    ref = load_npz(args.reference, {"n": None, "fid_mu": None, "fid_sigma": None, "fid_features": None},
                   optional=("sfid_mu", "sfid_sigma"))
    ext = make_extractor(args.feature_extractor, args.weights)
    metrics = compare(data["images"], ref, ext, pick_device(args.device))
    protocol = json.loads(args.protocol)
    protocol.update(feature_extractor=args.feature_extractor, n_samples=int(len(data["images"])),
                    n_reference=int(ref["n"]), sample_indices=[int(data["indices"][0]), int(data["indices"][-1]) + 1])
    write_json(args.out, {"variant": args.variant, "metrics": metrics, "protocol": protocol})
    log.info("%s: %s", args.variant, {k: round(v, 4) for k, v in metrics.items() if v is not None})
