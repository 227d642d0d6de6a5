"""Download a file from its URL (or take in a copy downloaded elsewhere) and check its checksum."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--url", required=True)
    p.add_argument("--md5", default=None, help="expected md5 (the checkpoint's published checksum)")
    p.add_argument("--sha256", default=None, help="expected sha256 (instead of --md5)")
    p.add_argument("--from-file", default=None, help="a copy downloaded on another machine, checked the same way")
    p.add_argument("--out", required=True, help="the file; its record (url, md5, sha256) goes to OUT.json")


def run(args) -> None:
    from ..fetch import Expected, adopt, fetch

    if bool(args.md5) == bool(args.sha256):
        raise SystemExit("diffcomp fetch: give exactly one of --md5 and --sha256")
    expected = Expected("md5", args.md5) if args.md5 else Expected("sha256", args.sha256)
    rec = adopt(args.from_file, args.out, args.url, expected) if args.from_file else fetch(args.url, args.out, expected)
    log.info("%s -> %s (%d bytes, md5 %s, sha256 %s)", rec["url"], args.out, rec["bytes"], rec["md5"], rec["sha256"])
