import gzip
import struct

import numpy as np
import pytest
import torch

from conftest import needs_fmnist
from diffcomp.data.fmnist import DatasetError, load_split, pad_to, read_idx, to_model_range, to_uint8


def _write_idx(path, arr):
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_read_idx_round_trips_and_rejects_garbage(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "x.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad")


def test_pad_centres_images_with_zero_border():
    img = np.full((2, 28, 28), 7, dtype=np.uint8)
    out = pad_to(img, 32)
    assert out.shape == (2, 1, 32, 32)
    assert out[:, 0, 2:30, 2:30].min() == 7 and out.sum() == 7 * 2 * 28 * 28


def test_debian_layout_loads_from_any_root(tmp_path):
    rng = np.random.default_rng(1)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(4))
    x, y = load_split("test", "debian", tmp_path)
    assert x.shape == (4, 1, 32, 32) and y.tolist() == [0, 1, 2, 3]
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        load_split("train", "debian", tmp_path)


@needs_fmnist
def test_fashion_mnist_from_debian_package():
    x, y = load_split("test", "debian", "/usr/share/datasets/fashion-mnist")
    assert x.shape == (10000, 1, 32, 32) and x.dtype == np.uint8
    assert sorted(np.unique(y).tolist()) == list(range(10))
    assert x[:, :, :2].max() == 0  # padding rows


def test_uint8_float_conversion_round_trips():
    u = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    np.testing.assert_array_equal(to_uint8(to_model_range(u)), u)
    assert to_uint8(torch.tensor([[-3.0, 3.0]])).tolist() == [[0, 255]]


def _tiny_cifar(root, n=(3, 2)):
    """A synthetic copy of the cifar-10-batches-py folder (5 train batches, 1 test batch)."""
    from diffcomp.data.cifar10 import FOLDER, write_batch

    rng = np.random.default_rng(2)
    folder = root / FOLDER
    folder.mkdir(parents=True)
    sums, data = {}, {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        k = n[1] if name == "test_batch" else n[0]
        images, labels = rng.integers(0, 256, (k, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, k)
        sums[name] = write_batch(folder / name, images, labels)
        data[name] = (images, labels)
    return sums, data


def test_cifar10_pickle_batches_load_after_their_checksum(tmp_path):
    from diffcomp.data.cifar10 import load_split as load_cifar

    sums, data = _tiny_cifar(tmp_path)
    x, y = load_cifar("train", tmp_path, download=False, checksums=sums)
    assert x.shape == (15, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[3:6], data["data_batch_2"][0])
    np.testing.assert_array_equal(y[-3:], data["data_batch_5"][1])
    x, y = load_cifar("test", tmp_path, download=False, checksums=sums)
    np.testing.assert_array_equal(x, data["test_batch"][0])
    # torchvision's published checksums: the synthetic copy is refused before anything is unpickled.
    with pytest.raises(DatasetError, match="refusing to unpickle"):
        load_cifar("test", tmp_path, download=False)


def test_cifar10_loader_never_runs_a_planted_pickle(tmp_path):
    import hashlib
    import pickle

    from diffcomp.data.cifar10 import FOLDER, read_batch

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / FOLDER / "test_batch"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(DatasetError, match="refusing to load global io.open"):
        read_batch(path, md5)  # even with a matching checksum, only numpy arrays are built
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(DatasetError, match="not found"):
        read_batch(tmp_path / "nope", md5)
