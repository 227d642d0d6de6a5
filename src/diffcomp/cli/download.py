"""Snapshot a hub model (``from_pretrained`` layout) into resources/ (needs internet)."""

from __future__ import annotations

import logging

from ..io import atomic_path

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--hub-id", required=True)
    p.add_argument("--revision", default=None)
    p.add_argument("--prompts", default=None,
                   help="a text-to-image model: the prompts its images are conditioned on (one per line)")
    p.add_argument("--out", required=True)


def run(args) -> None:
    from ..models.pipeline import download_pipeline, read_prompts

    prompts = read_prompts(args.prompts) if args.prompts else None
    with atomic_path(args.out, suffix="") as tmp:
        download_pipeline(args.hub_id, tmp, revision=args.revision, prompts=prompts)
    log.info("downloaded %s -> %s", args.hub_id, args.out)
