"""Contract tests of the quantization core (every method builds on these properties)."""

import pytest
import torch
import torch.nn as nn

from diffcomp.quant.calibrate import init_acts_minmax, init_weights_minmax
from diffcomp.quant.layer import QuantLayer
from diffcomp.quant.quantizer import UniformQuantizer, dequantize, fake_quant, minmax_params, quantize_int, qrange
from diffcomp.quant.wrap import QuantSpec, check_initialized, load_quantized, quant_layers, quantize_model, save_quantized


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
    layer = QuantLayer(conv, w_bits=4, a_bits=8)
    assert layer.weight_quantizer.scale.shape == (5,)
    assert layer.input_quantizer.scale.shape == ()
    lin = QuantLayer(nn.Linear(7, 9), 8, 8)
    assert lin.weight_quantizer.scale.shape == (9,)
    init_weights_minmax(nn.Sequential(layer))
    w = conv.weight.detach()
    expected, _ = minmax_params(w.amin(dim=(1, 2, 3)), w.amax(dim=(1, 2, 3)), 4, False)
    assert torch.allclose(layer.weight_quantizer.scale, expected)


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
    layer = QuantLayer(conv, 8, 8)
    init_weights_minmax(nn.Sequential(layer))
    layer.input_quantizer.init_minmax(x)
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
        layer = QuantLayer(conv, bits, bits)
        init_weights_minmax(nn.Sequential(layer))
        layer.input_quantizer.init_minmax(x)
        errs.append(float((layer(x) - ref).pow(2).mean().detach()))
    assert errs == sorted(errs), errs


def test_switches_off_give_exactly_the_fp_layer():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    layer = QuantLayer(conv, 2, 2)
    init_weights_minmax(nn.Sequential(layer))
    layer.input_quantizer.set_range(torch.tensor(-1.0), torch.tensor(1.0))
    x = torch.randn(2, 4, 6, 6)
    layer.set_quant_state(False, False)
    assert torch.equal(layer(x), conv(x))
    layer.set_quant_state(True, True)
    assert not torch.equal(layer(x), conv(x))


def _calibrated(unet, spec):
    model = quantize_model(unet, spec)
    x, t = torch.randn(4, 1, 32, 32), torch.tensor([10, 300, 600, 999])
    init_weights_minmax(model)
    init_acts_minmax(model, [(x, t)], lambda m, b: m(*b).sample)
    return model, x, t


def test_wrapping_by_name_patterns_and_ordered_overrides(tiny_unet):
    spec = QuantSpec(w_bits=4, a_bits=8, exclude=(r"^time_embedding\.",),
                     overrides=((r"^conv_(in|out)$", {"w_bits": 8}), (r"^conv_out$", {"a_bits": 6})))
    model = quantize_model(tiny_unet, spec)
    names = dict(quant_layers(model))
    n_convlin = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in tiny_unet.modules())
    assert not any(n.startswith("time_embedding.") for n in names)
    assert len(names) == n_convlin - 2  # the two time-embedding linears stay FP
    assert names["conv_in"].weight_quantizer.bits == 8 and names["conv_in"].input_quantizer.bits == 8
    assert names["conv_out"].weight_quantizer.bits == 8 and names["conv_out"].input_quantizer.bits == 6
    assert names["down_blocks.0.resnets.0.conv1"].weight_quantizer.bits == 4
    # the original model is untouched
    assert not any(isinstance(m, QuantLayer) for m in tiny_unet.modules())


def test_uninitialised_quantizers_are_reported(tiny_unet):
    model = quantize_model(tiny_unet, QuantSpec(4, 8))
    with pytest.raises(RuntimeError, match="quantizers have no range"):
        check_initialized(model)


def test_quantized_model_state_round_trips_into_a_fresh_wrap(tiny_unet, tmp_path):
    spec = QuantSpec(w_bits=4, a_bits=8, overrides=((r"^conv_out$", {"quant_acts": False}),))
    model, x, t = _calibrated(tiny_unet, spec)
    model.get_submodule("conv_out").set_quant_state(True, True)  # the spec keeps its input FP
    assert model.get_submodule("conv_out").quant_acts is False
    with torch.no_grad():
        ref = model(x, t).sample
    save_quantized(model, spec, tmp_path / "q.pt", meta={"method": "test"})
    loaded = load_quantized(tiny_unet, tmp_path / "q.pt")
    with torch.no_grad():
        out = loaded(x, t).sample
    assert torch.equal(out, ref)
    assert not torch.isnan(out).any()
    assert loaded.get_submodule("conv_out").quant_acts is False
    # the state dict holds scales before any forward of the fresh model (buffers exist at construction)
    fresh = quantize_model(tiny_unet, spec)
    assert set(fresh.state_dict()) == set(model.state_dict())


def test_quantized_unet_output_degrades_with_bits(tiny_unet):
    errs = {}
    with torch.no_grad():
        for w, a in ((8, 8), (4, 8), (2, 4)):
            model, x, t = _calibrated(tiny_unet, QuantSpec(w, a))
            ref = tiny_unet(x, t).sample
            errs[(w, a)] = float((model(x, t).sample - ref).norm() / ref.norm())
    assert errs[(8, 8)] < 0.05
    assert errs[(8, 8)] < errs[(4, 8)] < errs[(2, 4)]
