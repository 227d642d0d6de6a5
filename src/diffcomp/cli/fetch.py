"""Download a file from its URL (or take in a copy downloaded elsewhere) and check its checksum."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--url", required=True)
    p.add_argument("--md5", default=None, help="expected md5 (the checkpoint's published checksum)")
    p.add_argument("--sha256", default=None, help="expected sha256 (instead of --md5)")
    p.add_argument("--bytes", type=int, default=None,
                   help="no published checksum: the expected size; the sha256 is pinned at download")
    p.add_argument("--pin", action="store_true",
                   help="no published checksum nor size: the sha256 is pinned at download (a warning names it)")
    p.add_argument("--from-file", default=None, help="a copy downloaded on another machine, checked the same way")
    p.add_argument("--out", required=True, help="the file; its record (url, md5, sha256) goes to OUT.json")


def run(args) -> None:
    from ..fetch import Expected, adopt, fetch

    given = [k for k in ("md5", "sha256", "bytes", "pin") if getattr(args, k)]
    if len(given) != 1:
        raise SystemExit("diffcomp fetch: give exactly one of --md5, --sha256, --bytes and --pin")
    expected = Expected(given[0], "" if given[0] == "pin" else str(getattr(args, given[0])))
    rec = adopt(args.from_file, args.out, args.url, expected) if args.from_file else fetch(args.url, args.out, expected)
    log.info("%s -> %s (%d bytes, md5 %s, sha256 %s)", rec["url"], args.out, rec["bytes"], rec["md5"], rec["sha256"])
