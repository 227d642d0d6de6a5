"""Validate a config file and print its variants (exit 2 with one message on a bad config)."""

from __future__ import annotations

import sys

from ..config import ConfigError, load_config


def add_arguments(p) -> None:
    p.add_argument("config")


def run(args) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    print(f"{args.config}: ok; variants: {', '.join(cfg.variants() + cfg.distill_variants())}")
    return 0
