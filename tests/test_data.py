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
