"""Latent-diffusion checkpoints into diffusers folders, offline: synthetic checkpoints in the real
key layout (written from random diffusers models by the inverse mapping) convert back exactly; the
legacy attention's per-head qkv order is checked against the attention formula computed by hand;
a missing or extra weight and a wrong schedule are refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from diffcomp.models.ldm_checkpoint import (CLASS_TABLE, LDMArch, LDMCheckpointError, convert, infer_arch,
                                            ldm_scheduler, to_ldm)

CONTEXT = LDMArch(in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2), num_res_blocks=2,
                  attn_levels=(1,), spatial_transformer=True, context_dim=16, scale_shift=False, class_rows=11,
                  label_emb_rows=None, vae_kind="vq", vae_channels=32, vae_mult=(1, 2), vae_res_blocks=1,
                  latent_channels=3, n_embed=24)
LEGACY = LDMArch(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                 attn_levels=(1, 2), spatial_transformer=False, context_dim=None, scale_shift=True, class_rows=None,
                 label_emb_rows=None, vae_kind="kl", vae_channels=32, vae_mult=(1, 2), vae_res_blocks=1,
                 latent_channels=4, n_embed=None)


def _random_models(arch: LDMArch, head_channels, heads):
    import diffusers

    torch.manual_seed(0)
    uname, ucfg = arch.unet_config(8, head_channels, heads)
    vname, vcfg = arch.vae_config(16, 1.0)
    unet, vae = getattr(diffusers, uname)(**ucfg).eval(), getattr(diffusers, vname)(**vcfg).eval()
    with torch.no_grad():
        for p in list(unet.parameters()) + list(vae.parameters()):
            p.normal_(0, 0.05)
        if arch.class_rows:
            unet.encoder_hid_proj.bias.zero_()
    return unet, vae


def _checkpoint(arch, head_channels=None, heads=None, ema=False):
    unet, vae = _random_models(arch, head_channels, heads)
    sd = to_ldm(unet.state_dict(), vae.state_dict(), arch, head_channels, heads)
    sched = ldm_scheduler(1000, 0.0015, 0.0195)
    sd["betas"] = sched.betas.clone()
    if ema:  # the sampler's weights are the EMA copy; the plain ones are stale
        for k in [k for k in sd if k.startswith("model.diffusion_model.")]:
            sd["model_ema." + k[len("model."):].replace(".", "")] = sd[k].clone()
            sd[k] = torch.zeros_like(sd[k])
    return unet, vae, sd, sched


@pytest.mark.parametrize("arch, head_channels, heads, ema", [(CONTEXT, None, 2, False), (LEGACY, 16, None, True)])
def test_a_synthetic_checkpoint_of_the_real_layout_converts_back_exactly(arch, head_channels, heads, ema):
    unet, vae, sd, sched = _checkpoint(arch, head_channels, heads, ema)
    # the layout of the latent-diffusion code
    assert sd["model.diffusion_model.input_blocks.0.0.weight"].shape == (32, arch.in_channels, 3, 3)
    assert "model.diffusion_model.input_blocks.1.0.in_layers.2.weight" in sd
    assert "model.diffusion_model.middle_block.2.out_layers.3.weight" in sd
    assert "first_stage_model.encoder.down.0.block.0.norm1.weight" in sd
    assert sd["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)
    if arch.spatial_transformer:
        assert sd[CLASS_TABLE].shape == (11, 16)
        assert "model.diffusion_model.output_blocks.2.2.conv.weight" in sd  # upsampler after the attention
        assert "first_stage_model.quantize.embedding.weight" in sd
    else:
        assert sd["model.diffusion_model.input_blocks.3.1.qkv.weight"].shape == (192, 64, 1)
        assert sd["model.diffusion_model.input_blocks.1.0.emb_layers.1.weight"].shape[0] == 64  # scale and shift
    assert infer_arch(sd) == arch
    got_unet, got_vae, got_arch = convert(sd, 8, 16, head_channels, heads, sched)
    assert got_arch == arch and type(got_unet) is type(unet) and type(got_vae) is type(vae)
    for mine, ref in ((got_unet, unet), (got_vae, vae)):
        theirs = ref.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in mine.state_dict().items())
    x, t = torch.randn(2, arch.in_channels, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        if arch.class_rows:  # the converted model takes labels: its context is the class table's row
            labels = torch.tensor([3, 10])
            ref_out = unet(x, t, torch.nn.functional.one_hot(labels, 11).float()[:, None]).sample
            assert torch.allclose(got_unet(x, t, labels).sample, ref_out, atol=1e-6)
            assert torch.allclose(sd[CLASS_TABLE][labels], unet.encoder_hid_proj(torch.eye(11)[labels]), atol=1e-6)


def test_legacy_attention_follows_the_per_head_qkv_formula():
    """An AttentionBlock's output computed by hand from the checkpoint's weights (norm, qkv as a
    1-d convolution whose rows are [q_h, k_h, v_h] per head, softmax(q k / sqrt(d)) v, proj_out,
    residual) equals the converted diffusers attention's."""
    heads_c = 16
    unet, vae, sd, sched = _checkpoint(LEGACY, head_channels=heads_c)
    got, _, _ = convert(sd, 8, 16, heads_c, None, sched)
    pre = "model.diffusion_model.input_blocks.3.1."  # level 1, channels 64: 4 heads of 16
    x = torch.randn(2, 64, 4, 4)
    h = torch.nn.functional.group_norm(x, 32, sd[pre + "norm.weight"], sd[pre + "norm.bias"], eps=1e-5)
    qkv = torch.nn.functional.conv1d(h.reshape(2, 64, 16), sd[pre + "qkv.weight"], sd[pre + "qkv.bias"])
    q, k, v = qkv.reshape(2 * 4, 3 * heads_c, 16).split(heads_c, dim=1)
    w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / heads_c**0.5, dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(2, 64, 16)
    ref = x + torch.nn.functional.conv1d(a, sd[pre + "proj_out.weight"], sd[pre + "proj_out.bias"]).reshape(2, 64, 4, 4)
    with torch.no_grad():
        out = got.down_blocks[1].attentions[0](x)
    assert torch.allclose(out, ref, atol=1e-5)


def test_a_checkpoint_that_does_not_match_is_one_clear_error():
    unet, vae, sd, sched = _checkpoint(CONTEXT, heads=2)
    missing = dict(sd)
    del missing["model.diffusion_model.middle_block.1.proj_in.weight"]
    with pytest.raises(LDMCheckpointError, match="middle_block.1.proj_in.weight"):
        convert(missing, 8, 16, None, 2, sched)
    extra = {**sd, "model.diffusion_model.middle_block.1.extra.weight": torch.zeros(1)}
    with pytest.raises(LDMCheckpointError, match="no diffusers counterpart"):
        convert(extra, 8, 16, None, 2, sched)
    with pytest.raises(LDMCheckpointError, match="betas differ"):
        convert(sd, 8, 16, None, 2, ldm_scheduler(1000, 0.0015, 0.0155))
    with pytest.raises(LDMCheckpointError, match="not a latent-diffusion checkpoint"):
        infer_arch({"conv_in.weight": torch.zeros(1)})
    with pytest.raises(LDMCheckpointError, match="exactly one of head_channels and heads"):
        CONTEXT.unet_config(8, None, None)
    with pytest.raises(LDMCheckpointError, match="one head width"):
        # 8 heads of 4 channels (level 0) and of 8 (levels 1, 2): not one diffusers UNet2DModel
        dataclasses.replace(LEGACY, attn_levels=(0, 1)).unet_config(8, None, 8)


def test_the_convert_verb_writes_a_latent_model_folder_the_workflow_loads(tmp_path):
    """`diffcomp convert --format ldm` on a fetched checkpoint (its record beside it): a folder with
    the UNet, scheduler and autoencoder, checksums recorded, that samples with guidance."""
    import hashlib
    import os
    import subprocess
    import sys
    import zipfile

    from conftest import REPO
    from diffcomp.cli import main
    from diffcomp.models.conditioning import num_classes
    from diffcomp.models.pipeline import load_pipeline

    unet, vae, sd, _ = _checkpoint(CONTEXT, heads=2)
    raw = tmp_path / "model.ckpt"
    torch.save({"state_dict": sd, "global_step": 5}, raw)
    archive = tmp_path / "tiny-cin.zip"  # the download is an archive holding model.ckpt (as the LSUN ones)
    with zipfile.ZipFile(archive, "w") as z:
        z.write(raw, "model.ckpt")
    ckpt = tmp_path / "tiny-cin.ckpt"
    # no published checksum: checked by its size, its sha256 pinned in the record
    assert main(["fetch", "--url", archive.as_uri(), "--bytes", str(archive.stat().st_size + 1), "--out", str(ckpt)]) == 1
    assert main(["fetch", "--url", archive.as_uri(), "--bytes", str(archive.stat().st_size), "--out", str(ckpt)]) == 0
    rec = json.loads((tmp_path / "tiny-cin.ckpt.json").read_text())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert rec["sha256"] == digest and rec["pinned_at_download"] is True
    assert main(["fetch", "--url", archive.as_uri(), "--pin", "--out", str(tmp_path / "pinned.zip")]) == 0
    assert json.loads((tmp_path / "pinned.zip.json").read_text())["sha256"] == digest
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [sys.executable, "-m", "diffcomp.cli", "convert", "--checkpoint", str(ckpt), "--format", "ldm",
            "--sample-size", "8", "--image-size", "16", "--heads", "2", "--beta-start", "0.0015", "--beta-end", "0.0195",
            "--out", str(out)]
    p = subprocess.run(args + ["--member", "other.ckpt"], env=env, capture_output=True, text=True)
    assert p.returncode == 1 and "the archive has no 'other.ckpt'" in p.stderr
    p = subprocess.run(args + ["--member", "model.ckpt"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    pipe = load_pipeline(out)
    assert num_classes(pipe.unet) == 10 and type(pipe.vae).__name__ == "VQModel"
    assert torch.allclose(pipe.alphas_cumprod, ldm_scheduler(1000, 0.0015, 0.0195).alphas_cumprod.double())
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["checkpoint"]["sha256"] == digest and prov["arch"]["spatial_transformer"] is True
