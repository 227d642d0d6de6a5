"""FID, sFID, IS, KID and precision/recall of one variant's samples; one JSON with the protocol.

With ``--clip-model`` (a text-to-image model's samples) also their CLIP score: each image with
the prompt it was sampled with, read from the FP model folder's prompts.txt (checked against the
sha256 its provenance.json records) and mapped to image indices as the sample verb maps them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..io import load_npz, write_json
from ..provenance import sha256_file
from ._common import pick_device, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--samples", required=True)
    p.add_argument("--reference", required=True, help="reference statistics .npz")
    p.add_argument("--feature-extractor", default="fmnist-classifier")
    p.add_argument("--weights", default=None, help="feature network folder or weights file")
    p.add_argument("--variant", required=True)
    p.add_argument("--protocol", default="{}", help="JSON recorded with the numbers (sampler, seeds, ...)")
    p.add_argument("--clip-model", default=None, help="CLIP model folder: also report the samples' CLIP score")
    p.add_argument("--model", default=None, help="with --clip-model: the text-to-image FP model folder (its prompts)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def weights_sha256(weights: str | None) -> str | None:
    """The sha256 of the feature network's weights: a weights file's own, a model folder's
    recorded (and checked) one; None when torch-fidelity downloads its default weights."""
    if weights is None:
        return None
    if Path(weights).is_dir():
        from ..weights import CLASSIFIER, record

        return record(weights, CLASSIFIER)
    return sha256_file(weights)


def versions() -> dict[str, str]:
    import numpy
    import torch
    import torch_fidelity

    return {"torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__, "numpy": numpy.__version__}


def clip_score(images, indices, clip_model: str, model: str, device: str) -> tuple[dict, dict]:
    """(metrics, protocol entry) of the CLIP score of ``images`` (with their sample ``indices``)
    and the prompts of the text-to-image model folder ``model``."""
    from ..metrics.clip_score import WEIGHTS, clip_scores, load_clip, prompts_of, summary
    from ..models.pipeline import read_prompts
    from ..weights import PROMPTS, verify

    prompts_file = verify(model, PROMPTS)
    prompts = read_prompts(prompts_file)
    clip = load_clip(clip_model, device)
    metrics = summary(clip_scores(images, prompts_of(indices, prompts), clip))
    return metrics, {"model": clip_model, "weights_sha256": sha256_file(Path(clip_model) / WEIGHTS),
                     "prompts": str(prompts_file), "prompts_sha256": sha256_file(prompts_file),
                     "n_prompts": len(prompts), "max_length": clip.max_length}


def run(args) -> None:
    from ..metrics.fidelity import compare, make_extractor

    if bool(args.clip_model) != bool(args.model):
        raise SystemExit("diffcomp evaluate: --clip-model and --model go together (the CLIP model and the "
                         "text-to-image model whose prompts the samples were generated with)")
    set_threads(args.threads)
    data = load_npz(args.samples, {"images": "uint8", "indices": None})
    ref = load_npz(args.reference, {"n": None, "fid_mu": None, "fid_sigma": None},
                   optional=("sfid_mu", "sfid_sigma", "fid_features", "source", "source_path", "source_sha256"))
    ext = make_extractor(args.feature_extractor, args.weights)
    metrics = compare(data["images"], ref, ext, pick_device(args.device))
    protocol = json.loads(args.protocol)
    layers = ext.layers()
    protocol.update(
        feature_extractor=args.feature_extractor, extractor={"torch_fidelity_name": ext.name, "layers": layers,
                                                             "weights": args.weights,
                                                             "weights_sha256": weights_sha256(args.weights)},
        n_samples=int(len(data["images"])), n_reference=int(ref["n"]),
        reference_stats={"path": args.reference, "sha256": sha256_file(args.reference),
                         "source": str(ref["source"]) if "source" in ref else "images",
                         "source_path": str(ref["source_path"]) if "source_path" in ref else None,
                         "source_sha256": str(ref["source_sha256"]) if "source_sha256" in ref else None},
        versions=versions(), sample_indices=[int(data["indices"][0]), int(data["indices"][-1]) + 1])
    if args.clip_model:
        clip_metrics, protocol["clip_score"] = clip_score(data["images"], data["indices"], args.clip_model, args.model,
                                                          pick_device(args.device))
        metrics.update(clip_metrics)
    write_json(args.out, {"variant": args.variant, "metrics": metrics, "protocol": protocol})
    log.info("%s: %s", args.variant, {k: round(v, 4) for k, v in metrics.items() if v is not None})
