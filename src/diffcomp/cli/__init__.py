"""``diffcomp <verb>``: one thin verb per workflow rule. Each verb parses a few paths and a JSON
config section, calls the library, and writes its outputs atomically."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

VERBS = {
    "prepare-data": "data",
    "train": "train",
    "train-classifier": "train_classifier",
    "download": "download",
    "reference-stats": "reference",
    "trajectories": "trajectories",
    "quantize": "quantize",
    "distill": "distill",
    "sample": "sample",
    "gather": "gather",
    "evaluate": "evaluate",
    "table1": "table1",
    "table3": "table3",
    "check-config": "check_config",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="diffcomp", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", help=", ".join(VERBS))
    # Only the chosen verb's module is imported (verbs import torch lazily, inside run()).
    chosen = [a for a in argv if a in VERBS][:1] or list(VERBS)
    modules = {}
    for verb in chosen:
        module = importlib.import_module(f"{__name__}.{VERBS[verb]}")
        module.add_arguments(sub.add_parser(verb, help=(module.__doc__ or "").strip().splitlines()[0]))
        modules[verb] = module
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return int(modules[args.verb].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
