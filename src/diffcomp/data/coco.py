"""MS-COCO captions as the prompts of a text-to-image model (torch-free).

The Stable Diffusion protocol of the quantization papers conditions its evaluation images on
captions drawn at random from COCO's val2014 annotations (``captions_val2014.json``: ``{"images":
[...], "annotations": [{"image_id", "id", "caption"}, ...]}``). This module turns that file into
a prompts file of this workflow (one prompt per line, ``models.pipeline.read_prompts``):

* the file is parsed as JSON (never unpickled) and checked against a sha256 when one is given,
  so a different annotation release cannot silently change every prompt;
* a caption may hold newlines, tabs or runs of spaces: each becomes one space, since a prompt is
  one line of the prompts file (a newline inside a caption would split it into two prompts and
  shift every later image's prompt);
* the captions are ordered by annotation id before they are shuffled, so the prompts depend on
  the annotations and the seed alone, not on the order the file lists them in.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import FileError, damaged, read_json_object, write_text
from ..provenance import sha256_file

REMEDY = "use COCO's captions annotation file (annotations/captions_val2014.json of annotations_trainval2014.zip)"


def normalise(caption: str) -> str:
    """``caption`` on one line: every run of whitespace (newlines included) one space, trimmed."""
    return " ".join(caption.split())


def check_sha256(path: str | os.PathLike, sha256: str | None) -> str:
    """The file's sha256; a ``FileError`` naming the file when ``sha256`` is given and differs."""
    actual = sha256_file(path)
    if sha256 is not None and actual != sha256.lower():
        raise FileError(f"{path}: sha256 {actual} differs from the expected {sha256.lower()}: "
                        "it is another file than the one asked for; download it again")
    return actual


def read_captions(path: str | os.PathLike, sha256: str | None = None) -> list[str]:
    """The normalised captions of a COCO captions annotation file, ordered by annotation id.

    A malformed file (no ``annotations`` list, an entry without an integer ``id`` or a string
    ``caption``, a caption that is only whitespace, a repeated id) is one ``FileError`` naming
    the file and the entry."""
    if not Path(path).is_file():
        raise FileError(f"{path} is missing: {REMEDY}")
    check_sha256(path, sha256)
    annotations = read_json_object(path, ("annotations",), REMEDY)["annotations"]
    if not isinstance(annotations, list):
        raise damaged(path, f"'annotations' is a {type(annotations).__name__}, not a list", REMEDY)
    by_id: dict[int, str] = {}
    for i, entry in enumerate(annotations):
        where = f"annotations[{i}]"
        if not isinstance(entry, dict):
            raise damaged(path, f"{where} is a {type(entry).__name__}, not an object", REMEDY)
        ann_id, caption = entry.get("id"), entry.get("caption")
        if not isinstance(ann_id, int) or isinstance(ann_id, bool):
            raise damaged(path, f"{where} has no integer 'id'", REMEDY)
        if not isinstance(caption, str):
            raise damaged(path, f"{where} (id {ann_id}): 'caption' is {type(caption).__name__}, not a string", REMEDY)
        if not caption.strip():
            raise damaged(path, f"{where} (id {ann_id}): 'caption' is empty", REMEDY)
        if ann_id in by_id:
            raise damaged(path, f"{where}: id {ann_id} is repeated", REMEDY)
        by_id[ann_id] = normalise(caption)
    return [by_id[k] for k in sorted(by_id)]


def shuffled_prompts(captions: list[str], n: int, seed: int) -> list[str]:
    """``n`` of ``captions`` in the order of a permutation drawn by ``numpy.random.default_rng(seed)``
    (the first ``n`` of the shuffled list: distinct captions, none twice)."""
    if n < 1:
        raise ValueError(f"the number of prompts must be at least 1, got {n}")
    if n > len(captions):
        raise ValueError(f"{n} prompts asked for, but there are only {len(captions)} captions")
    order = np.random.default_rng(seed).permutation(len(captions))[:n]
    return [captions[int(i)] for i in order]


def write_prompts(path: str | os.PathLike, prompts: list[str]) -> None:
    """The prompts, one per line, written atomically (``io.write_text``)."""
    if not prompts or any(not p or p != normalise(p) for p in prompts):
        raise ValueError("prompts must be non-empty single lines without surrounding whitespace")
    write_text(path, "\n".join(prompts) + "\n")


def coco_prompts(captions_path: str | os.PathLike, out: str | os.PathLike, n: int = 10_000, seed: int = 0,
                 sha256: str | None = None) -> list[str]:
    """Write ``n`` shuffled captions of ``captions_path`` to ``out``; returns them."""
    captions = read_captions(captions_path, sha256)
    try:
        prompts = shuffled_prompts(captions, n, seed)
    except ValueError as e:
        raise FileError(f"{captions_path}: {e}") from None
    write_prompts(out, prompts)
    return prompts
