"""The wall time of every finished job (Snakemake's benchmark files) as a figure."""

from __future__ import annotations

import logging

from ..report.figures import job_times_figure, read_benchmarks

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--benchmarks", required=True, help="folder of benchmark .tsv files (results/benchmarks)")
    p.add_argument("--out", required=True, help="PNG")


def run(args) -> None:
    try:
        times = read_benchmarks(args.benchmarks)
    except ValueError as e:
        raise SystemExit(str(e))
    if not times:
        raise SystemExit(f"{args.benchmarks}: no benchmark files")
    job_times_figure(times, args.out)
    log.info("%d jobs, %.0f s in all", len(times), sum(t.seconds for t in times))
