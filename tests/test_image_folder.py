"""A folder of reference images as the FID reference is computed from it: the ADM evaluator's
resize and centre crop, a file order independent of the file system, read one image at a time
into the feature extractor, a digest of what was read, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffcomp.data.image_folder import ImageFiles, center_crop, list_images
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
    images = ImageFiles(tmp_path, 16)
    assert len(images) == 3 and images[0].shape == (3, 16, 16) and images[0].dtype == torch.uint8
    assert [int(round(float(images[i].float().mean()))) for i in range(3)] == [10, 30, 50]
    assert len(ImageFiles(tmp_path, 16, limit=2)) == 2


def test_an_empty_folder_or_a_broken_image_is_one_clear_error(tmp_path):
    with pytest.raises(FileError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(FileError, match="is missing"):
        list_images(tmp_path / "absent")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(FileError, match="bad.png is damaged"):
        ImageFiles(tmp_path, 8)[0]
    with pytest.raises(ValueError, match="positive"):
        ImageFiles(tmp_path, 0)


def _folder(path, n=5):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):  # different sizes and aspect ratios, one in a subfolder
        arr = rng.integers(0, 256, (30 + 7 * i, 50 - 3 * i, 3), dtype=np.uint8)
        (path / "sub").mkdir(exist_ok=True)
        Image.fromarray(arr).save(path / ("sub" if i == 2 else "") / f"{i}.png")
    return path


def test_reference_stats_of_a_folder_equal_those_of_its_images_as_one_array(tmp_path):
    """The folder streamed through the extractor gives the statistics of the same images stacked
    into one array; the recorded digest names what was read, not where it lay."""
    from diffcomp.cli import main
    from diffcomp.metrics.inception import random_weights

    weights = tmp_path / "weights-inception-random.pth"
    random_weights(str(weights), seed=0)
    folder = _folder(tmp_path / "imgs")
    common = ["--feature-extractor", "inception-v3-compat", "--weights", str(weights), "--device", "cpu"]
    assert main(["reference-stats", "--folder", str(folder), "--size", "32", "--out", str(tmp_path / "a.npz"),
                 *common]) == 0
    files = ImageFiles(folder, 32)
    np.savez(tmp_path / "stacked.npz", images=np.stack([files[i].numpy() for i in range(len(files))]))
    assert main(["reference-stats", "--images", str(tmp_path / "stacked.npz"), "--out", str(tmp_path / "b.npz"),
                 *common]) == 0
    a, b = dict(np.load(tmp_path / "a.npz")), dict(np.load(tmp_path / "b.npz"))
    assert int(a["n"]) == 5
    for key in ("fid_mu", "fid_sigma", "sfid_mu", "sfid_sigma", "fid_features"):
        np.testing.assert_array_equal(a[key], b[key])
    assert str(a["source_path"]) == str(folder) and str(a["source_sha256"]) == files.digest()
    # the digest: the same for a copy elsewhere, different when one byte of one image changes
    import shutil

    shutil.copytree(folder, tmp_path / "copy")
    assert ImageFiles(tmp_path / "copy", 32).digest() == files.digest()
    raw = bytearray((tmp_path / "copy" / "4.png").read_bytes())
    raw[-20] ^= 1
    (tmp_path / "copy" / "4.png").write_bytes(bytes(raw))
    assert ImageFiles(tmp_path / "copy", 32).digest() != files.digest()
    assert main(["reference-stats", "--folder", str(folder), "--size", "32", "--limit", "3",
                 "--out", str(tmp_path / "c.npz"), *common]) == 0
    assert int(np.load(tmp_path / "c.npz")["n"]) == 3


def test_reference_stats_refuses_a_folder_without_a_size_and_a_size_without_a_folder(tmp_path):
    from diffcomp.cli import main

    folder = _folder(tmp_path / "imgs", 1)
    with pytest.raises(SystemExit, match="--folder needs a positive --size"):
        main(["reference-stats", "--folder", str(folder), "--out", str(tmp_path / "r.npz")])
    with pytest.raises(SystemExit, match="--size and --limit go with --folder"):
        main(["reference-stats", "--images", "x.npz", "--size", "32", "--out", str(tmp_path / "r.npz")])
    with pytest.raises(SystemExit, match="exactly one of"):
        main(["reference-stats", "--images", "x.npz", "--folder", str(folder), "--out", str(tmp_path / "r.npz")])
