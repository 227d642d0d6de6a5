"""``diffcomp <verb>``: one thin verb per workflow rule. Each verb parses a few paths and a JSON
config section, calls the library, and writes its outputs atomically.

A verb is a module of this package (``prepare_data.py`` is ``diffcomp prepare-data``) with
``add_arguments(parser)`` and ``run(args)``; this file lists none of them, so adding a verb
changes no other rule's code hash.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from ..io import FileError
from ..typedconfig import ConfigError


def verbs() -> dict[str, str]:
    """``{verb: module name}`` of every verb module (names not starting with ``_``)."""
    return {m.name.replace("_", "-"): m.name for m in pkgutil.iter_modules(__path__)
            if not m.name.startswith("_") and not m.ispkg}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    known = verbs()
    parser = argparse.ArgumentParser(prog="diffcomp", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", help=", ".join(sorted(known)))
    # Only the chosen verb's module is imported (verbs import torch lazily, inside run()).
    chosen = [a for a in argv if a in known][:1] or sorted(known)
    modules = {}
    for verb in chosen:
        module = importlib.import_module(f"{__name__}.{known[verb]}")
        module.add_arguments(sub.add_parser(verb, help=(module.__doc__ or "").strip().splitlines()[0]))
        modules[verb] = module
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(modules[args.verb].run(args) or 0)
    except (FileError, ConfigError) as e:  # a bad input file or setting: one line, no traceback
        print(f"diffcomp {args.verb}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
