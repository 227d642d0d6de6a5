"""The samples of several variants side by side, one row each, on the same seeds."""

from __future__ import annotations

import json
import logging

import numpy as np

from ..report.figures import same_seed_rows, samples_figure

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--samples", nargs="+", required=True, help="gather's samples.npz of each row, in order")
    p.add_argument("--labels", required=True, help="JSON list of row labels, one per samples file")
    p.add_argument("--n", type=int, default=8, help="images per row (image indices 0..n-1 of every variant)")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True, help="PNG")


def run(args) -> None:
    labels = json.loads(args.labels)
    if len(labels) != len(args.samples):
        raise SystemExit(f"{len(args.samples)} samples files but {len(labels)} labels")
    data = []
    for path in args.samples:
        with np.load(path) as d:
            data.append((d["images"], d["indices"]))
    try:
        rows = same_seed_rows(data, args.n)
    except ValueError as e:
        raise SystemExit(f"{args.out}: {e}")
    samples_figure(rows, labels, args.out, args.title)
    log.info("%d rows of %d images", rows.shape[0], rows.shape[1])
