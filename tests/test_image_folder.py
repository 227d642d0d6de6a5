"""A folder of reference images as the uint8 array the FID reference is computed from: the ADM
evaluator's resize and centre crop, a file order independent of the file system, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffcomp.data.image_folder import center_crop, list_images, load_folder
from diffcomp.io import FileError


def test_the_centre_crop_keeps_the_middle_square_at_the_target_size():
    """A 300 x 100 image with a distinct left, middle and right third: the 64 x 64 result is
    the middle third (the crop is the centre square of the image scaled to a shorter side of 64)."""
    arr = np.zeros((100, 300, 3), dtype=np.uint8)
    arr[:, :100] = (255, 0, 0)
    arr[:, 100:200] = (0, 255, 0)
    arr[:, 200:] = (0, 0, 255)
    out = center_crop(Image.fromarray(arr), 64)
    assert out.shape == (3, 64, 64) and out.dtype == np.uint8
    assert (out[1, :, 4:60] > 250).all() and (out[0, :, 4:60] < 5).all() and (out[2, :, 4:60] < 5).all()


def test_a_large_image_is_box_halved_before_the_bicubic_resize():
    """Halving with a box filter averages 2 x 2 blocks: a 1-pixel checkerboard becomes flat grey
    (a single bicubic resize from 512 to 64 would alias it into a pattern)."""
    board = (np.indices((512, 512)).sum(0) % 2 * 255).astype(np.uint8)
    out = center_crop(Image.fromarray(np.stack([board] * 3, -1)), 64)
    assert abs(float(out.mean()) - 127.5) < 1.5 and out.std() < 1.5


def test_a_folder_loads_in_sorted_order_with_subfolders_and_skips_other_files(tmp_path):
    (tmp_path / "b").mkdir()
    for name, value in (("b/img.png", 30), ("a.jpg", 10), ("c.PNG", 50)):
        Image.new("RGB", (20, 30), (value, value, value)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.jpg", "b/img.png", "c.PNG"]
    images = load_folder(tmp_path, 16)
    assert images.shape == (3, 3, 16, 16) and images.dtype == np.uint8
    assert [int(round(float(im.mean()))) for im in images] == [10, 30, 50]
    assert load_folder(tmp_path, 16, limit=2).shape[0] == 2


def test_an_empty_folder_or_a_broken_image_is_one_clear_error(tmp_path):
    with pytest.raises(FileError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(FileError, match="is missing"):
        list_images(tmp_path / "absent")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(FileError, match="bad.png is damaged"):
        load_folder(tmp_path, 8)


def test_the_verb_writes_the_images_reference_stats_reads(tmp_path):
    from diffcomp.cli import main
    from diffcomp.io import load_npz

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["image-folder", "--folder", str(folder), "--size", "32", "--out", str(tmp_path / "ref.npz")]) == 0
    images = load_npz(tmp_path / "ref.npz", {"images": "uint8"})["images"]
    assert images.shape == (3, 3, 32, 32)
    with Image.open(folder / "1.png") as im:
        assert np.array_equal(images[1], center_crop(im, 32))
