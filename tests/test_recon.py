"""AdaRound, split shortcut quantization, the attention processor and the reconstruction engine."""

import pytest
import torch
import torch.nn as nn

from diffcomp.calib.trajectories import Trajectories
from diffcomp.variant import BitSetting
from diffcomp.quant.adaround import AdaRound, BetaSchedule
from diffcomp.quant.attention import QuantAttnProcessor
from diffcomp.quant.calibrate import act_quantizers, init_activations, init_weights, init_weights_minmax
from diffcomp.quant.layer import QuantLayer
from diffcomp.quant.quantizer import UniformQuantizer
from diffcomp.quant.recon import ReconConfig, capture, execution_order, find_units, lp_loss, reconstruct_weights
from diffcomp.quant.wrap import QuantSpec, concat_splits, load_quantized, quantize_model, save_quantized, set_quant_state


def _wq(w, bits=4):
    q = UniformQuantizer(bits, channels=w.shape[0])
    q.init_minmax(w)
    return q


def test_adaround_starts_at_the_fp_weight_and_hard_equals_soft_once_converged():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    q = _wq(w)
    r = AdaRound(w, q)
    lo, hi = q.current_range()
    clipped = torch.max(torch.min(w, hi.view(-1, 1, 1, 1)), lo.view(-1, 1, 1, 1))
    assert torch.allclose(r(w, q), clipped, atol=1e-5)  # soft rounding reproduces the (grid-clipped) FP weight
    with torch.no_grad():
        r.alpha.copy_(torch.where(torch.rand_like(r.alpha) < 0.5, -12.0, 12.0))  # converged variables
    assert torch.equal(r(w, q), r(w, q, hard=True))
    assert r.regularizer(2.0) == 0
    # hard rounding is floor or ceil of every weight, on the grid
    s = q.scale.view(-1, 1, 1, 1)
    codes = r(w, q, hard=True) / s + q.zero_point.view(-1, 1, 1, 1)
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert ((r(w, q, hard=True) - w).abs() <= s + 1e-6).all()


def test_regulariser_and_beta_schedule():
    sched = BetaSchedule(iters=100)
    assert not sched.active(19) and sched.active(20)
    assert sched(0) == 20 and sched(20) == 20 and sched(100) == pytest.approx(2.0) and 2 < sched(60) < 20
    w = torch.randn(2, 5)
    r = AdaRound(w, _wq(w))
    with torch.no_grad():
        r.alpha.zero_()  # h = 0.5: the regulariser is at its maximum of 1 per weight
    assert r.regularizer(2.0).item() == pytest.approx(10.0)


def test_baked_rounding_is_reproduced_by_nearest_rounding():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3)
    layer = QuantLayer(conv, 3, 8)
    init_weights_minmax(nn.Sequential(layer))
    layer.start_adaround()
    with torch.no_grad():
        for r in layer.rounding:
            r.alpha.normal_(0, 5)
        hard = torch.cat([r(conv.weight[:, sl], q, hard=True) for r, (q, sl) in zip(layer.rounding, layer.weight_parts())], 1)
    layer.bake_rounding()
    assert layer.rounding is None
    assert torch.allclose(layer.quantized_weight(), hard, atol=1e-6)


def test_split_layer_quantizes_the_two_halves_separately():
    torch.manual_seed(2)
    conv = nn.Conv2d(6, 4, 1)
    x = torch.cat([torch.randn(2, 4, 5, 5) * 0.1, torch.randn(2, 2, 5, 5) * 50], dim=1)  # skip has a far wider range
    plain, split = QuantLayer(conv, 4, 4), QuantLayer(conv, 4, 4, split=4)
    assert split.weight_quantizer.scale.shape == split.weight_quantizer_skip.scale.shape == (4,)
    for layer in (plain, split):
        init_weights(nn.Sequential(layer))
        init_activations(nn.Sequential(layer), [(x,)], lambda m, b: m(*b))
    ref = conv(x)
    err = {k: float((l(x) - ref).norm().detach() / ref.norm().detach()) for k, l in (("plain", plain), ("split", split))}
    assert err["split"] < err["plain"]
    assert split.input_quantizer.scale < split.input_quantizer_skip.scale
    with pytest.raises(ValueError, match="split"):
        QuantLayer(conv, 4, 4, split=6)


def test_concat_splits_of_a_diffusers_unet(tiny_unet, tiny_arch):
    splits = concat_splits(tiny_unet)
    up_resnets = sum(len(b.resnets) for b in tiny_unet.up_blocks)
    assert len(splits) == up_resnets  # every up resnet has a 1x1 shortcut on cat([h, skip])
    for name, c in splits.items():
        conv = tiny_unet.get_submodule(name)
        assert 0 < c < conv.in_channels
    # up block 0, resnet 0 receives the mid block output (the last level's channels)
    assert splits["up_blocks.0.resnets.0.conv_shortcut"] == tiny_arch.block_out_channels[-1]


def test_attention_processor_with_quantization_off_matches_diffusers(tiny_unet):
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([5, 500])
    model = quantize_model(tiny_unet, QuantSpec(8, 8, attention=True))
    procs = [m for m in model.modules() if isinstance(m, QuantAttnProcessor)]
    assert len(procs) == sum(1 for n, m in tiny_unet.named_modules() if type(m).__name__ == "Attention")
    set_quant_state(model, weights=False, acts=False)
    with torch.no_grad():
        assert torch.allclose(model(x, t).sample, tiny_unet(x, t).sample, atol=1e-5)
    names = [n for n, _ in act_quantizers(set_on(model))]
    assert any(n.endswith("processor.softmax_quantizer") for n in names)
    assert procs[0].softmax_quantizer.unsigned and procs[0].softmax_quantizer.qmin == 0


def set_on(model):
    set_quant_state(model, True, True)
    return model


def _setup(tiny_unet, spec):
    torch.manual_seed(0)
    model = quantize_model(tiny_unet, spec)
    batches = [(torch.randn(8, 1, 32, 32), torch.randint(0, 1000, (8,))) for _ in range(2)]
    run = lambda m, b: m(*b).sample  # noqa: E731
    return model, batches, run


def test_units_execution_order_and_capture(tiny_unet):
    model, batches, run = _setup(tiny_unet, QuantSpec(4, 8, attention=True))
    units = find_units(model)
    assert "conv_in" in units and "conv_out" in units
    assert any(u.endswith("attentions.0") for u in units) and any(".resnets." in u for u in units)
    assert not any(u.startswith("down_blocks.0.resnets.0.") for u in units)  # no layer inside a block
    order = execution_order(model, units, lambda m: run(m, batches[0]))
    assert order[0] == "time_embedding.linear_1" or order[0] == "conv_in"
    assert order[-1] == "conv_out"
    assert order.index("down_blocks.1.resnets.0") < order.index("down_blocks.1.attentions.0")
    set_quant_state(model, False, False)
    (args, kwargs), out = capture(model, "down_blocks.1.attentions.0", batches, run, True, True)
    assert args[0].shape[0] == 16 and out.shape == args[0].shape


def test_weight_reconstruction_lowers_the_block_error_and_bakes(tiny_unet):
    model, batches, run = _setup(tiny_unet, QuantSpec(3, 8))
    init_weights(model)
    set_quant_state(model, True, False)
    unit = "down_blocks.0.resnets.0"
    before = _unit_err(model, tiny_unet, unit, batches, run)
    cfg = ReconConfig(iters_w=300, batch_size=8, lr_w=1e-2, round_weight=0.1)
    reconstruct_weights(model, tiny_unet, batches, run, cfg, "cpu", [unit])
    after = _unit_err(model, tiny_unet, unit, batches, run)
    assert after < before  # on the objective it optimised: quantized-model inputs, FP targets
    assert all(m.rounding is None for m in model.modules() if isinstance(m, QuantLayer))


def _unit_err(model, fp, unit, batches, run):
    (args, kwargs), _ = capture(model, unit, batches, run, True, False)
    _, target = capture(fp, unit, batches, run, False, True)
    with torch.no_grad():
        return float(lp_loss(model.get_submodule(unit)(*args, **kwargs), target, 2.0))


def test_qdiffusion_recipe_runs_end_to_end_and_round_trips(tiny_unet, tmp_path):
    from diffcomp.methods.params import QDiffusionParams
    from diffcomp.methods.qdiffusion import recipe

    traj = Trajectories(xs=torch.randn(4, 8, 1, 32, 32), ts=torch.tensor([750, 500, 250, 0]))
    params = QDiffusionParams(calib_steps=2, calib_per_step=8, iters_w=5, iters_a=5, batch_size=8, a_init_samples=8)
    model, spec = recipe(tiny_unet, traj, BitSetting(4, 8), params)
    assert any("split" in c for _, c in spec.overrides)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([3, 900])
    with torch.no_grad():
        out = model(x, t).sample
    assert not torch.isnan(out).any()
    save_quantized(model, spec, tmp_path / "q.pt")
    loaded = load_quantized(tiny_unet, tmp_path / "q.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x, t).sample, out)
    split_layer = loaded.get_submodule("up_blocks.0.resnets.0.conv_shortcut")
    assert split_layer.split > 0 and isinstance(split_layer.input_quantizer_skip.scale, nn.Parameter)
