"""Download one file from a URL and check it against a known checksum (torch-free).

The file is streamed to a temporary name beside its destination while its md5 and sha256 are
computed, and renamed onto the destination only when the expected checksum matches; a record
(``{file}.json``: URL, md5, sha256, size) is written beside it, which later jobs check before
they read the file. No network, an HTTP error or a wrong checksum is one ``FetchError`` line.

Some files have no published checksum (the latent-diffusion checkpoints, the ADM reference
batches). For those the expected value is their size in bytes where it is known (``bytes``) or
nothing (``pin``): the download is then checked only by its size, its sha256 is pinned in the
record (every later read checks it, so the file cannot change after download), the record says
``"pinned_at_download": true`` and a warning names the sha256 to write into the config.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .io import FileError, atomic_path, read_json_object, write_json
from .provenance import sha256_file

log = logging.getLogger(__name__)
HASHES = ("md5", "sha256")
PINNED = ("bytes", "pin")  # no published checksum: the size (or nothing) checked, the sha256 pinned


class FetchError(FileError):
    """A download that could not be made or did not match its checksum."""


@dataclass(frozen=True)
class Expected:
    """The checksum a download must have: ``algo`` (md5 or sha256) and its hex digest."""

    algo: str
    digest: str = ""

    def __post_init__(self):
        if self.algo not in HASHES + PINNED:
            raise ValueError(f"unknown checksum {self.algo!r}; expected one of {HASHES + PINNED}")

    @property
    def pinned(self) -> bool:
        return self.algo in PINNED

    def describe(self) -> str:
        if self.algo == "pin":
            return "no published checksum"
        if self.algo == "bytes":
            return f"size {self.digest} bytes (no published checksum)"
        return f"{self.algo} {self.digest}"


def record_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.json")


def fetch(url: str, dest: str | os.PathLike, expected: Expected, timeout: float = 60.0,
          progress: bool = True) -> dict:
    """Stream ``url`` into ``dest``; refuse it unless its ``expected`` checksum matches. Returns
    the record written to ``{dest}.json`` (url, md5, sha256, bytes)."""
    dest = Path(dest)
    hashes = {a: hashlib.new(a) for a in HASHES}
    size = 0
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:  # noqa: S310 (a configured URL)
                total = int(r.headers.get("content-length") or 0) or None
                bar = _bar(total, dest.name, progress)
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    f.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
                bar.close()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise FetchError(f"cannot download {url} ({type(e).__name__}: {reason}): no network or the URL is gone; "
                             f"on a machine with internet, download it to {dest} and check its "
                             f"{expected.describe()}, then write the record with `diffcomp fetch --from-file`") from None
        if expected.algo == "pin":
            got, want = "", ""
        elif expected.algo == "bytes":
            got, want = str(size), str(int(expected.digest))
        else:
            got, want = hashes[expected.algo].hexdigest(), expected.digest.lower()
        if got != want:
            raise FetchError(f"{url}: {expected.algo} is {got}, expected {expected.digest} ({size} bytes): a wrong "
                             "or damaged file (an error page, a changed upload); nothing was kept")
    rec = {"url": url, "bytes": size, **{a: h.hexdigest() for a, h in hashes.items()}}
    if expected.pinned:
        rec["pinned_at_download"] = True
        log.warning("%s has no published checksum (%s): its sha256 %s is now pinned in %s; write it into the config "
                    "(sha256) to refuse any other file on a fresh download", url, expected.describe(), rec["sha256"],
                    record_path(dest))
    write_json(record_path(dest), rec)
    return rec


def adopt(src: str | os.PathLike, dest: str | os.PathLike, url: str, expected: Expected) -> dict:
    """A file downloaded by hand (on a machine with internet) taken in as ``dest`` after the same
    checksum check ``fetch`` makes; the record names the URL it came from."""
    rec = fetch(Path(src).resolve().as_uri(), dest, expected, progress=False)
    rec = {**rec, "url": url, "copied_from": str(src)}
    write_json(record_path(dest), rec)
    return rec


def verify_fetched(path: str | os.PathLike) -> dict:
    """Check a fetched file against the sha256 of its record (before reading it); returns the record."""
    path = Path(path)
    remedy = "delete it and its .json record and rerun the download"
    rec = read_json_object(record_path(path), ("url", "sha256", "md5"), remedy)
    if not path.is_file():
        raise FileError(f"{path}: missing ({remedy})")
    got = sha256_file(path)
    if got != rec["sha256"]:
        raise FileError(f"{path}: sha256 {got[:12]}... does not match its record {record_path(path)} "
                        f"({str(rec['sha256'])[:12]}...): the file changed after download; {remedy}")
    return rec


def _bar(total: int | None, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not enabled, mininterval=2.0)
