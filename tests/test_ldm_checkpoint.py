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
# LSUN-Church's LDM-8 in miniature: levels change resolution through resnets (resblock_updown),
# a fixed number of heads whose width changes across levels (2 heads of 32 at level 1, of 64 in
# the middle), a level without attention that downsamples (0) and one that upsamples (2)
CHURCH = LDMArch(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1,
                 attn_levels=(1,), spatial_transformer=False, context_dim=None, scale_shift=True, class_rows=None,
                 label_emb_rows=None, vae_kind="kl", vae_channels=32, vae_mult=(1, 2), vae_res_blocks=1,
                 latent_channels=4, n_embed=None, resblock_updown=True)


def _random_models(arch: LDMArch, head_channels, heads):
    import diffusers

    from diffcomp.models.pipeline import denoiser_class

    torch.manual_seed(0)
    uname, ucfg = arch.unet_config(8, head_channels, heads)
    vname, vcfg = arch.vae_config(16, 1.0)
    unet, vae = denoiser_class(uname)(**ucfg).eval(), getattr(diffusers, vname)(**vcfg).eval()
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


@pytest.mark.parametrize("arch, head_channels, heads, ema",
                         [(CONTEXT, None, 2, False), (LEGACY, 16, None, True), (CHURCH, None, 2, False)])
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
    elif arch.resblock_updown:  # the level's last input block is a resnet that pools, not a convolution
        assert "model.diffusion_model.input_blocks.2.0.in_layers.2.weight" in sd
        assert "model.diffusion_model.output_blocks.1.1.in_layers.2.weight" in sd  # level 2's upsampling resnet
        assert "model.diffusion_model.output_blocks.3.2.in_layers.2.weight" in sd  # level 1's, after its attention
        assert not any(".op." in k or k.endswith("conv.weight") and "output_blocks" in k for k in sd)
    else:
        assert sd["model.diffusion_model.input_blocks.3.1.qkv.weight"].shape == (192, 64, 1)
    if not arch.spatial_transformer:  # every AttentionBlock has its group norm, the middle one too
        assert "model.diffusion_model.middle_block.1.norm.weight" in sd
        assert sd["model.diffusion_model.input_blocks.1.0.emb_layers.1.weight"].shape[0] == 64  # scale and shift
    assert infer_arch(sd) == arch
    got_unet, got_vae, got_arch = convert(sd, 8, 16, head_channels, heads, sched)
    assert got_arch == arch and type(got_unet) is type(unet) and type(got_vae) is type(vae)
    for mine, ref in ((got_unet, unet), (got_vae, vae)):
        theirs = ref.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in mine.state_dict().items())
    x, t = torch.randn(2, arch.in_channels, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        if not arch.class_rows:
            assert torch.equal(got_unet(x, t).sample, unet(x, t).sample)
        if arch.class_rows:  # the converted model takes labels: its context is the class table's row
            labels = torch.tensor([3, 10])
            ref_out = unet(x, t, torch.nn.functional.one_hot(labels, 11).float()[:, None]).sample
            assert torch.allclose(got_unet(x, t, labels).sample, ref_out, atol=1e-6)
            assert torch.allclose(sd[CLASS_TABLE][labels], unet.encoder_hid_proj(torch.eye(11)[labels]), atol=1e-6)


def _attention_by_hand(sd, pre: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    """An AttentionBlock's output from the checkpoint's weights: norm, qkv as a 1-d convolution
    whose rows are [q_h, k_h, v_h] per head, softmax(q k / sqrt(d)) v, proj_out, residual."""
    b, c, hh, ww = x.shape
    d = c // heads
    h = torch.nn.functional.group_norm(x, 32, sd[pre + "norm.weight"], sd[pre + "norm.bias"], eps=1e-5)
    qkv = torch.nn.functional.conv1d(h.reshape(b, c, hh * ww), sd[pre + "qkv.weight"], sd[pre + "qkv.bias"])
    q, k, v = qkv.reshape(b * heads, 3 * d, hh * ww).split(d, dim=1)
    w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / d**0.5, dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, hh * ww)
    return x + torch.nn.functional.conv1d(a, sd[pre + "proj_out.weight"], sd[pre + "proj_out.bias"]).reshape(x.shape)


def test_legacy_attention_follows_the_per_head_qkv_formula():
    """The converted diffusers attention equals the checkpoint's AttentionBlock computed by hand."""
    heads_c = 16
    unet, vae, sd, sched = _checkpoint(LEGACY, head_channels=heads_c)
    got, _, _ = convert(sd, 8, 16, heads_c, None, sched)
    x = torch.randn(2, 64, 4, 4)  # level 1, channels 64: 4 heads of 16
    with torch.no_grad():
        out = got.down_blocks[1].attentions[0](x)
    assert torch.allclose(out, _attention_by_hand(sd, "model.diffusion_model.input_blocks.3.1.", x, 4), atol=1e-5)


def test_a_fixed_number_of_heads_of_changing_width_is_the_checkpoints_attention():
    """LDM-8 Church's kind: 2 heads everywhere, of 32 channels at level 1 and of 64 in the middle
    block; each converted layer equals the hand-computed AttentionBlock with its own head width,
    not the single width a UNet2DModel would give all of them."""
    from diffcomp.models.heads_unet import FixedHeadsUNet2DModel

    unet, vae, sd, sched = _checkpoint(CHURCH, heads=2)
    got, _, _ = convert(sd, 8, 16, None, 2, sched)
    assert type(got) is FixedHeadsUNet2DModel and got.config.attention_heads == 2
    for layer, pre, c in ((got.down_blocks[1].attentions[0], "input_blocks.3.1.", 64),
                          (got.mid_block.attentions[0], "middle_block.1.", 128)):
        x = torch.randn(2, c, 4, 4)
        with torch.no_grad():
            out = layer(x)
        ref = _attention_by_hand(sd, "model.diffusion_model." + pre, x, 2)
        assert torch.allclose(out, ref, atol=1e-5)
        assert not torch.allclose(out, _attention_by_hand(sd, "model.diffusion_model." + pre, x, 1), atol=1e-3)


def test_a_fixed_heads_model_saves_and_loads_with_its_heads(tmp_path):
    """save_pretrained writes attention_heads and the class name; the workflow's loader maps the
    name back to the fixed-heads class, so the reloaded model computes the same outputs."""
    from diffcomp.models.pipeline import denoiser_class

    unet, _ = _random_models(CHURCH, None, 2)
    unet.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["_class_name"] == "FixedHeadsUNet2DModel" and cfg["attention_heads"] == 2
    back = denoiser_class(cfg["_class_name"]).from_pretrained(tmp_path).eval()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(back(x, t).sample, unet(x, t).sample)
    with pytest.raises(ValueError, match="do not split into 3 heads"):
        denoiser_class("FixedHeadsUNet2DModel")(**{**CHURCH.unet_config(8, None, 2)[1], "attention_heads": 3})
    with pytest.raises(ValueError, match="not a denoiser"):
        denoiser_class("UNet3DConditionModel")


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
    # 8 heads of 4 channels (level 0) and of 8 (levels 1, 2): the fixed-heads model; one width: UNet2DModel
    assert dataclasses.replace(LEGACY, attn_levels=(0, 1)).unet_config(8, None, 8)[0] == "FixedHeadsUNet2DModel"
    assert LEGACY.unet_config(8, None, 4)[0] == "UNet2DModel"
    with pytest.raises(LDMCheckpointError, match="resblock_updown"):
        dataclasses.replace(CONTEXT, resblock_updown=True).unet_config(8, None, 2)


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


def test_the_quantized_attention_of_a_fixed_heads_model_uses_each_layers_heads():
    """Q-Diffusion's attention quantization swaps in its own processor; with quantization off it
    must compute what the fixed-heads model computes (heads of 32 and 64 channels), so the
    quantized model is the converted one up to its quantizers."""
    from diffcomp.quant.module import set_quant_state
    from diffcomp.quant.spec import AttentionConfig, QuantizerConfig, QuantSpec
    from diffcomp.quant.wrap import quantize_model

    unet, _ = _random_models(CHURCH, None, 2)
    with torch.no_grad():  # sharp attention (random small weights give near-uniform weights whatever the heads)
        for proj in (unet.mid_block.attentions[0].to_q, unet.mid_block.attentions[0].to_k):
            proj.weight.mul_(20)
    spec = QuantSpec(QuantizerConfig(4, per_channel=True), QuantizerConfig(8),
                     attention=AttentionConfig(QuantizerConfig(8), QuantizerConfig(8)))
    q = quantize_model(unet, spec)
    set_quant_state(q, False, False)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.allclose(q(x, t).sample, unet(x, t).sample, atol=1e-5)
        # the middle block's attention alone (2 heads of 64): the same change as the FP layer's, and
        # a clearly different one from the same layer split into 1 head
        h = torch.randn(2, 128, 2, 2)
        layer_q, layer = q.mid_block.attentions[0], unet.mid_block.attentions[0]
        change_q, change = layer_q(h) - h, layer(h) - h
        assert torch.allclose(change_q, change, atol=1e-6)
        layer.heads, layer.scale = 1, layer.inner_dim ** -0.5
        assert (layer(h) - h - change).abs().max() > 0.05 * change.abs().max()
