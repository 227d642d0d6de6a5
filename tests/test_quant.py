"""Contract tests of the quantization core (every method builds on these properties)."""

import re

import pytest
import torch
import torch.nn as nn

from diffcomp.io import FileError
from diffcomp.quant.calibrate import init_activations, init_weights
from diffcomp.quant.layer import QuantLayer
from diffcomp.quant.module import check_initialized, quant_modules
from diffcomp.quant.quantizer import UniformQuantizer, dequantize, fake_quant, minmax_params, quantize_int, qrange
from diffcomp.quant.spec import LayerConfig, QuantizerConfig, QuantSpec
from diffcomp.quant.wrap import load_quantized, quantize_model, save_quantized


def qlayer(module, w_bits, a_bits, split=0):
    """A layer with per-channel asymmetric weights and per-tensor asymmetric inputs."""
    return QuantLayer(module, LayerConfig(QuantizerConfig(w_bits, per_channel=True), QuantizerConfig(a_bits), split))


def spec(w_bits, a_bits, **kw):
    return QuantSpec(QuantizerConfig(w_bits, per_channel=True), QuantizerConfig(a_bits), **kw)


def test_qrange():
    assert qrange(8, symmetric=False) == (0, 255)
    assert qrange(4, symmetric=True) == (-8, 7)
    assert qrange(8, symmetric=True, unsigned=True) == (0, 255)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_fake_quant_equals_quantize_then_dequantize(symmetric, per_channel):
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3) * torch.linspace(0.1, 3, 6).view(6, 1, 1, 1) + 0.3
    q = UniformQuantizer(4, symmetric=symmetric, channels=6 if per_channel else None)
    q.init_minmax(w)
    shape = (6, 1, 1, 1) if per_channel else ()
    s, z = q.scale.view(shape), q.zero_point.view(shape)
    codes = quantize_int(w, s, z, q.qmin, q.qmax)
    assert torch.equal(codes, codes.round()) and codes.min() >= q.qmin and codes.max() <= q.qmax
    assert torch.allclose(q(w), dequantize(codes, s, z), atol=0, rtol=0)
    # at most 2^b distinct values per channel / tensor
    groups = q(w).view(6, -1) if per_channel else q(w).view(1, -1)
    assert max(len(g.unique()) for g in groups) <= 16


@pytest.mark.parametrize("per_channel", [False, True])
def test_inference_path_equals_the_differentiable_path_bit_for_bit(per_channel):
    torch.manual_seed(3)
    x = torch.randn(64, 8, 9, 9) * 3
    q = UniformQuantizer(5, channels=8 if per_channel else None, axis=1)
    q.init_minmax(x[:4])  # the rest of x exceeds the range: the clamp is exercised too
    with torch.no_grad():
        fused = q(x)
    slow = q(x.clone().requires_grad_(True)).detach()
    assert torch.equal(fused, slow)


def test_per_channel_scales_have_one_entry_per_output_channel():
    conv = nn.Conv2d(3, 5, 3)
    layer = qlayer(conv, 4, 8)
    assert layer.weight_quantizers[0].scale.shape == (5,)
    assert layer.input_quantizers[0].scale.shape == ()
    lin = qlayer(nn.Linear(7, 9), 8, 8)
    assert lin.weight_quantizers[0].scale.shape == (9,)
    init_weights(nn.Sequential(layer))
    w = conv.weight.detach()
    expected, _ = minmax_params(w.amin(dim=(1, 2, 3)), w.amax(dim=(1, 2, 3)), 4, False)
    assert torch.allclose(layer.weight_quantizers[0].scale, expected)


def test_minmax_grid_covers_the_range_and_zero_exactly():
    x = torch.tensor([-1.3, 0.0, 0.2, 2.7])
    q = UniformQuantizer(8)
    q.init_minmax(x)
    y = q(x)
    assert y[1] == 0.0  # zero is representable
    assert (y - x).abs().max() <= q.scale / 2 + 1e-6
    assert abs(y.min() - x.min()) <= q.scale / 2 + 1e-6 and abs(y.max() - x.max()) <= q.scale / 2 + 1e-6


def test_straight_through_gradient():
    q = UniformQuantizer(4)
    q.set_range(torch.tensor(-1.0), torch.tensor(1.0))
    x = torch.tensor([-3.0, -0.33, 0.0, 0.41, 0.9, 5.0], requires_grad=True)
    q(x).sum().backward()
    # identity inside the range, zero where the clamp is active
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_eight_bit_layer_is_within_one_percent_of_fp():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, padding=1)
    x = torch.randn(8, 16, 12, 12)
    ref = conv(x)
    layer = qlayer(conv, 8, 8)
    init_weights(nn.Sequential(layer))
    layer.input_quantizers[0].init_minmax(x)
    out = layer(x)
    rel = (out - ref).norm() / ref.norm()
    assert rel < 1e-2, rel
    assert not torch.isnan(out).any()


def test_fewer_bits_never_give_a_lower_error_with_minmax_init():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(4, 8, 10, 10)
    ref = conv(x)
    errs = []
    for bits in (8, 6, 4, 3, 2):
        layer = qlayer(conv, bits, bits)
        init_weights(nn.Sequential(layer))
        layer.input_quantizers[0].init_minmax(x)
        errs.append(float((layer(x) - ref).pow(2).mean().detach()))
    assert errs == sorted(errs), errs


def test_switches_off_give_exactly_the_fp_layer():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    layer = qlayer(conv, 2, 2)
    init_weights(nn.Sequential(layer))
    layer.input_quantizers[0].set_range(torch.tensor(-1.0), torch.tensor(1.0))
    x = torch.randn(2, 4, 6, 6)
    layer.set_quant_state(False, False)
    assert torch.equal(layer(x), conv(x))
    layer.set_quant_state(True, True)
    assert not torch.equal(layer(x), conv(x))


def _calibrated(unet, spec):
    model = quantize_model(unet, spec)
    x, t = torch.randn(4, 1, 32, 32), torch.tensor([10, 300, 600, 999])
    init_weights(model)
    init_activations(model, [(x, t)], lambda m, b: m(*b).sample)
    return model, x, t


def test_wrapping_by_name_patterns_and_ordered_overrides(tiny_unet):
    s = spec(4, 8, exclude=(r"^time_embedding\.",),
             overrides=((r"^conv_(in|out)$", {"weight.bits": 8}), (r"^conv_out$", {"act.bits": 6})))
    model = quantize_model(tiny_unet, s)
    names = dict(quant_modules(model))
    n_convlin = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in tiny_unet.modules())
    assert not any(n.startswith("time_embedding.") for n in names)
    assert len(names) == n_convlin - 2  # the two time-embedding linears stay FP
    assert names["conv_in"].weight_quantizers[0].bits == 8 and names["conv_in"].input_quantizers[0].bits == 8
    assert names["conv_out"].weight_quantizers[0].bits == 8 and names["conv_out"].input_quantizers[0].bits == 6
    assert names["down_blocks.0.resnets.0.conv1"].weight_quantizers[0].bits == 4
    # the original model is untouched
    assert not any(isinstance(m, QuantLayer) for m in tiny_unet.modules())


def test_uninitialised_quantizers_are_reported(tiny_unet):
    model = quantize_model(tiny_unet, spec(4, 8))
    with pytest.raises(RuntimeError, match="quantizers have no range"):
        check_initialized(model)


def test_quantized_model_state_round_trips_into_a_fresh_wrap(tiny_unet, tmp_path):
    s = spec(4, 8, overrides=((r"^conv_out$", {"act": None}),))
    model, x, t = _calibrated(tiny_unet, s)
    model.get_submodule("conv_out").set_quant_state(True, True)  # the spec keeps its input FP
    assert model.get_submodule("conv_out").quant_acts is False
    with torch.no_grad():
        ref = model(x, t).sample
    save_quantized(model, s, tmp_path / "q.safetensors", meta={"method": "test"})
    loaded = load_quantized(tiny_unet, tmp_path / "q.safetensors")
    with torch.no_grad():
        out = loaded(x, t).sample
    assert torch.equal(out, ref)
    assert not torch.isnan(out).any()
    assert loaded.get_submodule("conv_out").quant_acts is False
    # the state dict holds scales before any forward of the fresh model (buffers exist at construction)
    fresh = quantize_model(tiny_unet, s)
    assert set(fresh.state_dict()) == set(model.state_dict())


def test_quantized_unet_output_degrades_with_bits(tiny_unet):
    errs = {}
    with torch.no_grad():
        for w, a in ((8, 8), (4, 8), (2, 4)):
            model, x, t = _calibrated(tiny_unet, spec(w, a))
            ref = tiny_unet(x, t).sample
            errs[(w, a)] = float((model(x, t).sample - ref).norm() / ref.norm())
    assert errs[(8, 8)] < 0.05
    assert errs[(8, 8)] < errs[(4, 8)] < errs[(2, 4)]


# ----------------------------------------------------------------------------- core v2 quantizers


def test_mixed_bit_widths_keep_the_layer_average_and_give_each_channel_its_grid():
    torch.manual_seed(4)
    w = torch.randn(6, 3, 3, 3)
    q = UniformQuantizer(4, channels=6, mixed=True)
    with pytest.raises(ValueError, match="mean width"):
        q.set_channel_bits(torch.tensor([5, 5, 4, 4, 4, 4]))  # mean 4.33
    bits = torch.tensor([5, 3, 4, 4, 5, 3])
    q.set_channel_bits(bits)
    assert float(q.channel_bits.float().mean()) == 4.0
    q.init_minmax(w)
    y = q(w)
    for c in range(6):  # channel c uses at most 2^b_c levels and matches a plain b_c-bit quantizer
        ref = UniformQuantizer(int(bits[c]), channels=1)
        ref.init_minmax(w[c : c + 1])
        assert len(y[c].unique()) <= 2 ** int(bits[c])
        assert torch.equal(y[c : c + 1], ref(w[c : c + 1]))
    # the same through the differentiable path, and after a state round trip
    assert torch.equal(q(w.clone().requires_grad_(True)).detach(), y)
    fresh = UniformQuantizer(4, channels=6, mixed=True)
    fresh.load_state_dict(q.state_dict())
    assert torch.equal(fresh(w), y)


def test_per_timestep_quantizer_uses_the_parameters_of_the_timestep_the_unet_receives():
    from diffcomp.quant.timestep import StepContext, TimestepQuantizer

    ctx = StepContext()
    q = TimestepQuantizer(lambda: UniformQuantizer(4), [999, 500, 0], ctx)
    for leaf, r in zip(q.leaves(), (8.0, 2.0, 0.5)):
        leaf.set_range(torch.tensor(-r), torch.tensor(r))
    x = torch.linspace(-3, 3, 50).repeat(3, 1)
    outs = {}
    for t in (0, 999, 500, 0):  # any call order
        ctx.set(torch.tensor([t] * 3))
        outs.setdefault(t, q(x))
        assert torch.equal(q(x), q.for_timestep(t)(x))
    assert not torch.equal(outs[0], outs[999])
    ctx.set(torch.tensor([500, 0, 999]))  # a batch of mixed timesteps: per sample
    mixed = q(x)
    for row, t in enumerate((500, 0, 999)):
        assert torch.equal(mixed[row], outs[t][row])
    ctx.set(torch.tensor([7, 7, 7]))
    with pytest.raises(KeyError, match="timestep 7"):
        q(x)
    ctx.set(None)
    with pytest.raises(RuntimeError, match="no timestep context"):
        q(x)


def test_per_timestep_activations_in_a_wrapped_unet_follow_the_timestep_argument(tiny_unet, tmp_path):
    from diffcomp.quant.module import act_quantizers

    act = QuantizerConfig(8, per_timestep=True)
    s = QuantSpec(QuantizerConfig(8, per_channel=True), act, timesteps=(900, 100))
    model = quantize_model(tiny_unet, s)
    x = torch.randn(2, 1, 32, 32)
    init_weights(model)
    init_activations(model, [(x, torch.tensor([900, 900])), (x * 0.1, torch.tensor([100, 100]))],
                     lambda m, b: m(*b).sample)
    q = dict(act_quantizers(model))["conv_in.input"]
    hi900, hi100 = (float(leaf.current_range()[1]) for leaf in q.leaves())
    assert hi100 < hi900  # each timestep got the range of its own inputs
    with torch.no_grad():
        out900 = model(x, 900).sample
        assert torch.equal(model(x, torch.tensor([900, 900])).sample, out900)
        assert not torch.equal(model(x, 100).sample, out900)
    save_quantized(model, s, tmp_path / "q.safetensors")
    with torch.no_grad():
        assert torch.equal(load_quantized(tiny_unet, tmp_path / "q.safetensors")(x, 900).sample, out900)


def test_lora_adapter_is_merged_before_weight_quantization():
    from diffcomp.quant.adapters import LoRA

    torch.manual_seed(5)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    layer = qlayer(conv, 4, 8)
    lora = LoRA(tuple(conv.weight.shape), rank=2)
    layer.weight_adapters.append(lora)
    assert torch.equal(layer.adapted_weight(), conv.weight)  # B starts at zero
    with torch.no_grad():
        lora.lora_B.normal_()
    delta = torch.einsum("or,rikl->oikl", lora.lora_B, lora.lora_A)  # a rank-2 product per kernel position
    assert torch.allclose(layer.adapted_weight(), conv.weight + delta, atol=1e-6)
    init_weights(nn.Sequential(layer))
    q = layer.weight_quantizers[0]
    assert torch.equal(layer.quantized_weight(), q(conv.weight + lora.delta()))
    x = torch.randn(2, 4, 5, 5)
    layer.input_quantizers[0].init_minmax(x)
    layer(x).sum().backward()  # gradients reach the adapter through the straight-through quantizer
    assert lora.lora_A.grad is not None and lora.lora_A.grad.abs().sum() > 0


def test_adaround_is_swapped_in_and_baked_back_out():
    from diffcomp.quant.adaround import AdaRoundQuantizer

    torch.manual_seed(6)
    conv = nn.Conv2d(6, 4, 1)
    layer = qlayer(conv, 3, 8, split=4)
    init_weights(nn.Sequential(layer))
    bases = list(layer.weight_quantizers)
    layer.swap_weight_quantizers(lambda q, w: AdaRoundQuantizer(q, w))
    assert all(q.pending for q in layer.weight_quantizers)
    with torch.no_grad():
        for q in layer.weight_quantizers:
            q.alpha.normal_(0, 5)
        hard = torch.cat([q.rounded(conv.weight[:, sl], hard=True) for q, sl in zip(layer.weight_quantizers, layer.slices)], 1)
    layer.bake_weights()
    assert list(layer.weight_quantizers) == bases  # the plain grid quantizers are back
    assert torch.allclose(layer.quantized_weight(), hard, atol=1e-6)


def test_spec_overrides_and_their_errors():
    s = spec(4, 8, overrides=((r"^a$", {"weight.bits": 8, "split": 3}), (r"^b$", {"act": None}),
                              (r"^c$", {"weight": {"bits": 6, "symmetric": True}})))
    assert s.layer_config("a").weight.bits == 8 and s.layer_config("a").split == 3
    assert s.layer_config("b").act is None and s.layer_config("x").act.bits == 8
    assert s.layer_config("c").weight == QuantizerConfig(6, symmetric=True)
    assert QuantSpec.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown override key"):
        spec(4, 8, overrides=((".*", {"w_bits": 8}),)).layer_config("a")
    with pytest.raises(ValueError, match="not quantized"):
        spec(4, 8, overrides=((".*", {"act": None}), (".*", {"act.bits": 6}))).layer_config("a")
    with pytest.raises(ValueError, match="per_channel"):
        QuantizerConfig(4, mixed=True)


def test_a_damaged_quantized_model_is_one_error_naming_the_file(tiny_unet, tmp_path):
    model, x, t = _calibrated(tiny_unet, spec(4, 8))
    path = tmp_path / "q.safetensors"
    save_quantized(model, spec(4, 8), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(FileError, match=f"^{re.escape(str(path))} is damaged \\(not a readable quantized model: .*\\): delete it and rerun$"):
        load_quantized(tiny_unet, path)
    pickle = tmp_path / "evil.safetensors"
    pickle.write_bytes(b"\x80\x04\x95not a safetensors file")
    with pytest.raises(FileError, match="not a readable quantized model"):
        load_quantized(tiny_unet, pickle)
    save_quantized(model, spec(4, 8), path)
    data = bytearray(path.read_bytes())
    data[-100:-84] = bytes(b ^ 0xFF for b in data[-100:-84])  # 16 bytes of a tensor flipped: safetensors cannot tell
    path.write_bytes(bytes(data))
    with pytest.raises(FileError, match="its tensors do not match the sha256 in its header"):
        load_quantized(tiny_unet, path)


# ----------------------------------------------------------------------------- wiring (issue 18)


def test_per_channel_mse_search_gives_each_channel_its_own_range():
    """Per-channel L_p range search equals the per-tensor search run on each channel alone; the
    channels here need different shrink factors (one has an outlier), so one error summed over all
    channels would give a different answer."""
    torch.manual_seed(0)
    w = torch.randn(3, 200)
    w[0, 0] = 12.0  # channel 0: clip the outlier
    w[2] = torch.linspace(-1, 1, 200)  # channel 2: uniform, keep the full range
    q = UniformQuantizer(3, channels=3)
    q.init_mse(w)
    shrink = []
    for c in range(3):
        alone = UniformQuantizer(3)
        alone.init_mse(w[c : c + 1])
        assert torch.allclose(q.scale[c], alone.scale, rtol=1e-5) and torch.equal(q.zero_point[c], alone.zero_point)
        shrink.append(float(q.scale[c] / ((w[c].max() - w[c].min()) / 7)))
    assert shrink[0] < 0.8 and shrink[2] > 0.95, shrink


def test_running_statistics_follow_an_ema_with_momentum_095():
    """Two batches by hand: ranges [-1, 1] then [-3, 3] give 0.95 * 1 + 0.05 * 3 = 1.1 (not 2.9)."""
    from diffcomp.quant.calibrate import Observer

    obs = Observer("running")
    obs.update(torch.tensor([[-1.0, 0.5, 1.0]]), (0, 1))
    obs.update(torch.tensor([[-3.0, 0.0, 3.0]]), (0, 1))
    assert float(obs.lo) == pytest.approx(-1.1) and float(obs.hi) == pytest.approx(1.1)
    layer = QuantLayer(nn.Linear(3, 2), LayerConfig(QuantizerConfig(8, per_channel=True), QuantizerConfig(8, symmetric=True)))
    batches = [(torch.tensor([[-1.0, 0.5, 1.0]]),), (torch.tensor([[-3.0, 0.0, 3.0]]),)]
    init_activations(nn.Sequential(layer), batches, lambda m, b: m(*b), "running")
    assert float(layer.input_quantizers[0].scale) == pytest.approx(1.1 / 127)
    init_activations(nn.Sequential(layer), batches, lambda m, b: m(*b), "minmax")
    assert float(layer.input_quantizers[0].scale) == pytest.approx(3.0 / 127)
