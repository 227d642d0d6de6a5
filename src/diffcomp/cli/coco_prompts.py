"""Prompts of a text-to-image model from MS-COCO captions: shuffled with a seed, one per line."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--captions", required=True, help="COCO captions annotation JSON (captions_val2014.json)")
    p.add_argument("--sha256", default=None, help="its expected sha256 (the file is refused if it differs)")
    p.add_argument("--n", type=int, default=10_000, help="prompts to write (default 10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the numpy Generator that shuffles the captions")
    p.add_argument("--out", required=True, help="the prompts file (one per line)")


def run(args) -> None:
    from ..data.coco import coco_prompts
    from ..provenance import sha256_file

    if args.n < 1:
        raise SystemExit(f"diffcomp coco-prompts: --n must be at least 1, got {args.n}")
    prompts = coco_prompts(args.captions, args.out, n=args.n, seed=args.seed, sha256=args.sha256)
    # The captions' sha256 in the log: pass it as --sha256 to refuse any other file later.
    log.info("%d captions of %s (sha256 %s, seed %d) -> %s", len(prompts), args.captions,
             sha256_file(args.captions), args.seed, args.out)
