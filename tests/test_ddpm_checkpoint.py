"""The paper's checkpoint path offline: a random diffusers UNet of the CIFAR-10 DDPM's layout
(reduced width) written in the original key layout by the inverse mapping, fetched from a file
URL with its checksum, converted by the verb, and compared with the original architecture's
forward pass."""

import hashlib
import json

import pytest
import torch

from diffcomp.cli import main
from diffcomp.models.ddpm_checkpoint import OriginalArch, to_original

import ddpm_original

# The CIFAR-10 DDPM's layout (ch_mult 1,2,2,2; 2 blocks; attention at 16x16) at ch 32 instead of 128.
ARCH = OriginalArch(in_channels=3, out_channels=3, ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_levels=(1,))


@pytest.fixture(scope="module")
def original_ckpt(tmp_path_factory):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**ARCH.unet_config(32))
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.05)
    sd = to_original(unet.state_dict(), len(ARCH.ch_mult))
    path = tmp_path_factory.mktemp("ckpt") / "model-790000.ckpt"
    torch.save(sd, path)
    return path, sd


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_original_layout_keys(original_ckpt):
    _, sd = original_ckpt
    # The released checkpoint's names (ddim Model), e.g. level 1 holds the 16x16 attention.
    for k in ("temb.dense.0.weight", "down.0.block.1.conv2.weight", "down.1.block.0.nin_shortcut.weight",
              "down.1.attn.1.proj_out.weight", "down.2.downsample.conv.weight", "mid.attn_1.q.weight",
              "up.1.attn.2.k.weight", "up.3.upsample.conv.weight", "up.0.block.2.nin_shortcut.weight", "norm_out.bias"):
        assert k in sd, k
    assert "down.3.downsample.conv.weight" not in sd and "up.0.upsample.conv.weight" not in sd
    assert "down.0.attn.0.q.weight" not in sd and "up.2.attn.0.q.weight" not in sd
    assert sd["mid.attn_1.q.weight"].shape == (64, 64, 1, 1)


def test_fetch_convert_matches_the_original_forward(original_ckpt, tmp_path):
    path, sd = original_ckpt
    ckpt = tmp_path / "ema_cifar10.ckpt"
    assert main(["fetch", "--url", path.as_uri(), "--md5", _md5(path), "--out", str(ckpt)]) == 0
    rec = json.loads((tmp_path / "ema_cifar10.ckpt.json").read_text())
    assert rec["md5"] == _md5(path) and rec["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    out = tmp_path / "model"
    assert main(["convert", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    from diffcomp.models.pipeline import load_pipeline

    pipe = load_pipeline(out)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["checkpoint"]["md5"] == rec["md5"] and prov["arch"]["ch_mult"] == [1, 2, 2, 2]
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    for t in (0, 517, 999):
        tt = torch.full((2,), t)
        with torch.no_grad():
            ref = ddpm_original.forward(sd, x, tt, ch=32, n_levels=4, n_blocks=2)
            got = pipe.unet(x, tt).sample
        assert ref.abs().mean() > 1e-2  # a non-trivial output
        torch.testing.assert_close(got, ref, atol=1e-6 * max(1.0, ref.abs().max().item()), rtol=0)
    assert torch.allclose(pipe.alphas_cumprod[-1], torch.tensor(4.0358e-05, dtype=torch.float64), rtol=1e-3)


def _error_lines(capsys):
    """The verb's error lines (the progress bar writes to stderr too)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("diffcomp ")]


def test_wrong_checksum_and_no_network_are_one_line(original_ckpt, tmp_path, capsys):
    path, _ = original_ckpt
    out = tmp_path / "x.ckpt"
    assert main(["fetch", "--url", path.as_uri(), "--md5", "0" * 32, "--out", str(out)]) == 1
    err = _error_lines(capsys)
    assert len(err) == 1 and "md5 is" in err[0] and "expected 000" in err[0]
    assert not out.exists() and not (tmp_path / "x.ckpt.json").exists()
    assert main(["fetch", "--url", "http://127.0.0.1:9/model.ckpt", "--md5", "0" * 32, "--out", str(out)]) == 1
    err = _error_lines(capsys)
    assert len(err) == 1 and "cannot download" in err[0] and "no network" in err[0]


def test_convert_refuses_a_changed_or_foreign_file(original_ckpt, tmp_path, capsys):
    path, sd = original_ckpt
    ckpt = tmp_path / "a.ckpt"
    assert main(["fetch", "--url", path.as_uri(), "--md5", _md5(path), "--out", str(ckpt)]) == 0
    ckpt.write_bytes(ckpt.read_bytes()[:-10])
    assert main(["convert", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m")]) == 1
    assert "does not match its record" in capsys.readouterr().err
    bad = tmp_path / "b.ckpt"
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "src.ckpt")
    assert main(["fetch", "--url", (tmp_path / "src.ckpt").as_uri(), "--md5", _md5(tmp_path / "src.ckpt"),
                 "--out", str(bad)]) == 0
    assert main(["convert", "--checkpoint", str(bad), "--out", str(tmp_path / "m")]) == 1
    assert "not a checkpoint of the DDPM Model" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_copy_downloaded_elsewhere_is_taken_in_with_the_same_check(original_ckpt, tmp_path):
    path, _ = original_ckpt
    url = "https://example.org/model-790000.ckpt"
    out = tmp_path / "c.ckpt"
    assert main(["fetch", "--from-file", str(path), "--url", url, "--md5", "1" * 32, "--out", str(out)]) == 1
    assert not out.exists()
    assert main(["fetch", "--from-file", str(path), "--url", url, "--md5", _md5(path), "--out", str(out)]) == 0
    rec = json.loads((tmp_path / "c.ckpt.json").read_text())
    assert rec["url"] == url and rec["md5"] == _md5(path) and out.read_bytes() == path.read_bytes()
