"""CIFAR-10 in the python-pickle format (``cifar-10-batches-py``), read without trusting pickle.

The format IS pickle: each batch file is a pickled dict ``{b"data": uint8 (N, 3072),
b"labels": [int]}``. Unpickling runs whatever a file says, so a batch is read only after its md5
matches the checksum torchvision publishes for it (``torchvision.datasets.CIFAR10.train_list`` /
``test_list``; a test passes its own), and then with an unpickler that builds nothing but
dicts, lists, bytes, numbers and numpy uint8 arrays (any other global is refused). torchvision
downloads the archive into ``root`` (checking the archive's md5) when the folder is missing.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Mapping

import numpy as np

from .fmnist import DatasetError

FOLDER = "cifar-10-batches-py"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def known_md5() -> dict[str, str]:
    """torchvision's md5 of every batch file of the official archive."""
    from torchvision.datasets import CIFAR10

    return {name: md5 for name, md5 in (*CIFAR10.train_list, *CIFAR10.test_list)}


class _ArraysOnly(pickle.Unpickler):
    """Builds only numpy arrays (and the plain containers pickle needs no global for)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path, md5: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64) of one batch file, after its md5 check."""
    if not path.is_file():
        raise DatasetError(f"{path} not found: set dataset.root to a folder holding {FOLDER}/ (torchvision "
                           "downloads it there with dataset.source: torchvision)")
    raw = path.read_bytes()
    got = hashlib.md5(raw).hexdigest()
    if got != md5:
        raise DatasetError(f"{path}: md5 {got} is not the published {md5}; refusing to unpickle it "
                           "(a damaged or foreign file: delete the folder and let torchvision download it again)")
    try:
        d = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()  # as torchvision: the files are Python 2 pickles
        d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}
        data, labels = d["data"], d["labels"]
        images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(labels, dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, ValueError, TypeError, EOFError, AttributeError) as e:
        raise DatasetError(f"{path}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if len(images) != len(labels):
        raise DatasetError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


def load_split(split: str, root: str | Path, download: bool = True,
               checksums: Mapping[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels) of ``train`` (50,000) or ``test`` (10,000) under
    ``root/cifar-10-batches-py``; torchvision downloads it first when ``download`` and the folder
    is missing. ``checksums``: md5 per batch file (default torchvision's)."""
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
    folder = Path(root) / FOLDER
    if download and not folder.is_dir():
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)  # checks the archive's md5, extracts
    sums = dict(checksums) if checksums is not None else known_md5()
    parts = [read_batch(folder / name, sums[name]) for name in _SPLITS[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> str:
    """A batch file in the official format (tests build a tiny synthetic copy); returns its md5."""
    blob = pickle.dumps({b"batch_label": b"synthetic", b"labels": [int(x) for x in labels],
                         b"data": np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.uint8),
                         b"filenames": [b"x.png"] * len(images)}, protocol=2)
    path.write_bytes(blob)
    return hashlib.md5(blob).hexdigest()
