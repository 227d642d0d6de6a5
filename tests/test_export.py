"""Packed integer exports: codes packed as promised, the loaded model identical to the workflow's
quantized model (outputs and samples, bit for bit on CPU), usable in a diffusers pipeline."""

import json
import subprocess
import sys

import pytest
import torch

import diffcomp
from conftest import REPO
from diffcomp.quant.attention import QuantAttnProcessor
from diffcomp.quant.calibrate import init_activations, init_weights
from diffcomp.quant.export import export_quantized, load_export, pack_codes, read_export, unpack_codes
from diffcomp.quant.module import quant_modules
from diffcomp.quant.spec import AttentionConfig, QuantizerConfig, QuantSpec
from diffcomp.quant.wrap import load_quantized, quantize_model, save_quantized, with_split_shortcut


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8, 12])
@pytest.mark.parametrize("n", [1, 7, 64])
def test_pack_unpack_round_trip(bits, n):
    codes = torch.randint(0, 2**bits, (n,), generator=torch.Generator().manual_seed(bits))
    packed = pack_codes(codes, bits)
    assert torch.equal(unpack_codes(packed, bits, n), codes)
    if bits <= 4:
        assert packed.dtype == torch.uint8 and packed.numel() == -(-n // 2)  # two codes per byte
    elif bits <= 8:
        assert packed.dtype == torch.uint8 and packed.numel() == n


def test_pack_refuses_codes_outside_the_grid():
    with pytest.raises(ValueError, match="outside"):
        pack_codes(torch.tensor([0, 16]), 4)


def _qdiffusion_like(unet, w_bits=4, mixed=False):
    """Split shortcuts, symmetric learnable activations, quantized attention: every kind of
    quantizer state an export has to carry."""
    act = QuantizerConfig(8, symmetric=True, learnable=True)
    s = QuantSpec(QuantizerConfig(w_bits, per_channel=True, mixed=mixed), act,
                  attention=AttentionConfig(act, QuantizerConfig(8, unsigned=True)),
                  overrides=((r"^conv_out$", {"weight.bits": 8}),))
    s = with_split_shortcut(s, unet)
    model = quantize_model(unet, s)
    if mixed:
        for _, m in quant_modules(model):
            for q, _ in m.weight_parts():
                c = q.channel_bits.numel()
                if c % 2 == 0 and q.bits < 8:
                    q.set_channel_bits(torch.tensor([q.bits - 1, q.bits + 1] * (c // 2)))
    gen = torch.Generator().manual_seed(1)
    x, t = torch.randn(4, 1, 32, 32, generator=gen), torch.tensor([10, 300, 600, 999])
    init_weights(model)
    init_activations(model, [(x, t)], lambda m, b: m(*b).sample)
    return model.eval(), s, x, t


@pytest.mark.parametrize("mixed", [False, True])
def test_loaded_export_computes_exactly_what_the_quantized_model_computes(tiny_unet, tmp_path, mixed):
    model, s, x, t = _qdiffusion_like(tiny_unet, mixed=mixed)
    save_quantized(model, s, tmp_path / "q.safetensors")
    workflow_model = load_quantized(tiny_unet, tmp_path / "q.safetensors")
    info = export_quantized(workflow_model, s, dict(tiny_unet.config), tmp_path / "x.safetensors")
    loaded = diffcomp.load_quantized(tmp_path / "x.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(x, t).sample, workflow_model(x, t).sample)
    # activation quantizers and the quantized attention processor came back with their ranges
    procs = [m.processor for m in loaded.modules() if hasattr(m, "processor")]
    assert procs and all(isinstance(p, QuantAttnProcessor) for p in procs)
    ref = dict(quant_modules(workflow_model))
    for name, m in quant_modules(loaded):
        assert m.quant_state() == ref[name].quant_state()
        for (qn, q), (_, r) in zip(m.act_quantizers(), ref[name].act_quantizers()):
            assert torch.equal(q.scale, r.scale) and torch.equal(q.zero_point, r.zero_point), f"{name}.{qn}"
    # integer codes, not FP weights, are stored for every quantized weight
    header, tensors = read_export(tmp_path / "x.safetensors")
    assert info.parts == len(header["packed"]) and not any(k.endswith(".module.weight") for k in tensors
                                                             if k.rsplit(".module.weight")[0] in ref)
    widest = 5 if mixed else 4  # mixed 3/5-bit channels are stored at the widest channel's width
    four_bit = [p for p in header["packed"] if p.bits == widest]
    assert four_bit and all(tensors[p.key].dtype == torch.uint8 for p in four_bit)
    if not mixed:
        assert all(tensors[p.key].numel() == -(-torch.Size(p.shape).numel() // 2) for p in four_bit)
    fp_state = (tmp_path / "q.safetensors").stat().st_size
    assert info.bytes < (0.7 if mixed else 0.45) * fp_state  # the tiny model: scales and biases weigh a lot


def test_export_leaves_the_global_rng_alone(tiny_unet, tmp_path):
    model, s, _, _ = _qdiffusion_like(tiny_unet)
    export_quantized(model, s, dict(tiny_unet.config), tmp_path / "x.safetensors")
    torch.manual_seed(5)
    a = torch.rand(3)
    torch.manual_seed(5)
    load_export(tmp_path / "x.safetensors")
    assert torch.equal(torch.rand(3), a)


def test_export_gives_the_same_samples_in_diffcomps_sampler_and_a_diffusers_pipeline(tiny_unet, tmp_path):
    from diffusers import DDIMPipeline, DDIMScheduler

    from diffcomp.models.config import SamplerConfig
    from diffcomp.models.sampler import generate, unet_fn
    from diffcomp.models.unet import build_scheduler

    model, s, _, _ = _qdiffusion_like(tiny_unet)
    save_quantized(model, s, tmp_path / "q.safetensors")
    workflow_model = load_quantized(tiny_unet, tmp_path / "q.safetensors")
    export_quantized(workflow_model, s, dict(tiny_unet.config), tmp_path / "x.safetensors")
    loaded = diffcomp.load_quantized(tmp_path / "x.safetensors")
    sched = build_scheduler()
    cfg = SamplerConfig(steps=3, skip="uniform")
    a = [generate(unet_fn(m), [0, 1, 2], (1, 32, 32), sched.alphas_cumprod.double(), cfg, 0, "cpu")
         for m in (workflow_model, loaded)]
    assert torch.equal(*a)
    out = []
    for m in (workflow_model, loaded):
        pipe = DDIMPipeline(unet=m, scheduler=DDIMScheduler.from_config(sched.config))
        pipe.set_progress_bar_config(disable=True)
        out.append(pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                        output_type="np").images)
    assert out[0].shape == (2, 32, 32, 1) and (out[0] == out[1]).all()


def test_per_timestep_weights_are_refused_with_the_layer_named():
    from diffcomp.quant.export import _codes
    from diffcomp.quant.quantizer import UniformQuantizer
    from diffcomp.quant.timestep import StepContext, TimestepQuantizer

    q = TimestepQuantizer(lambda: UniformQuantizer(4, channels=8), (10, 999), StepContext())
    with pytest.raises(ValueError, match="conv_in: a TimestepQuantizer .* not exportable"):
        _codes(q, torch.randn(8, 3, 3, 3), "conv_in")


def test_a_damaged_export_is_one_error_naming_the_file(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="x.safetensors: not a readable diffcomp export"):
        diffcomp.load_quantized(bad)


def test_export_verb_writes_the_checkpoint_and_its_size_beside_the_fp_one(tiny_unet, tiny_pipeline_dir, tmp_path):
    model, s, _, _ = _qdiffusion_like(tiny_unet)
    save_quantized(model, s, tmp_path / "q.safetensors", meta={"method": "test", "bits": "W4A8"})
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "diffcomp.cli", "export", "--model", str(tiny_pipeline_dir),
                    "--quantized", str(tmp_path / "q.safetensors"), "--out", str(tmp_path / "x.safetensors"),
                    "--sizes", str(tmp_path / "x.json")], check=True, env=env, capture_output=True)
    sizes = json.loads((tmp_path / "x.json").read_text())
    fp = tiny_pipeline_dir / "unet/diffusion_pytorch_model.safetensors"
    assert sizes["fp_bytes"] == fp.stat().st_size
    assert sizes["export_bytes"] == (tmp_path / "x.safetensors").stat().st_size < fp.stat().st_size
    assert sizes["bits"] == "W4A8" and sizes["ratio"] > 1


def test_the_readme_lines_load_an_export_into_a_diffusers_pipeline(tiny_unet, tmp_path, monkeypatch):
    """The README's three lines, run as they are (on an export of the tiny model)."""
    import re
    import shutil

    text = (REPO / "README.md").read_text().split("## Quantized models outside the workflow", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) == 3
    model, s, _, _ = _qdiffusion_like(tiny_unet)
    (tmp_path / "results/export").mkdir(parents=True)
    export_quantized(model, s, dict(tiny_unet.config), tmp_path / "results/export/linear-w4a8.safetensors")
    shutil.copytree(REPO / "resources/models/fmnist-ddpm/scheduler", tmp_path / "resources/models/fmnist-ddpm/scheduler")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(code, scope)
    images = scope["images"]
    assert len(images) == 16 and images[0].size == (32, 32)
