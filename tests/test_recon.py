"""AdaRound, split shortcut quantization, the attention processor and the reconstruction engine."""

import pytest
import torch
import torch.nn as nn

from diffcomp.calib.trajectories import Trajectories
from diffcomp.quant.adaround import AdaRoundQuantizer, BetaSchedule
from diffcomp.quant.attention import QuantAttnProcessor
from diffcomp.quant.calibrate import init_activations, init_weights
from diffcomp.quant.layer import QuantLayer
from diffcomp.quant.module import act_quantizers, quant_modules, set_quant_state
from diffcomp.quant.quantizer import UniformQuantizer
from diffcomp.quant.recon import Phase, ReconLoss, RoundingReg, capture, execution_order, find_units, lp_loss, reconstruct
from diffcomp.quant.spec import AttentionConfig, LayerConfig, QuantizerConfig, QuantSpec
from diffcomp.quant.wrap import concat_splits, load_quantized, quantize_model, save_quantized
from diffcomp.variant import BitSetting


def qlayer(module, w_bits, a_bits, split=0):
    return QuantLayer(module, LayerConfig(QuantizerConfig(w_bits, per_channel=True), QuantizerConfig(a_bits), split))


def spec(w_bits, a_bits, attention=False):
    act = QuantizerConfig(a_bits)
    return QuantSpec(QuantizerConfig(w_bits, per_channel=True), act,
                     attention=AttentionConfig(act, QuantizerConfig(8, unsigned=True)) if attention else None)


def weight_phase(iters, batch_size, lr, round_weight, **kw):
    return Phase(learn=("rounding",), iters=iters, batch_size=batch_size, lr=(("rounding", lr),),
                 rounding_reg=RoundingReg(round_weight), **kw)


def _wq(w, bits=4):
    q = UniformQuantizer(bits, channels=w.shape[0])
    q.init_minmax(w)
    return q


def test_adaround_starts_at_the_fp_weight_and_hard_equals_soft_once_converged():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    q = _wq(w)
    r = AdaRoundQuantizer(q, w)
    lo, hi = q.current_range()
    clipped = torch.max(torch.min(w, hi.view(-1, 1, 1, 1)), lo.view(-1, 1, 1, 1))
    assert torch.allclose(r(w), clipped, atol=1e-5)  # soft rounding reproduces the (grid-clipped) FP weight
    with torch.no_grad():
        r.alpha.copy_(torch.where(torch.rand_like(r.alpha) < 0.5, -12.0, 12.0))  # converged variables
    assert torch.equal(r(w), r.rounded(w, hard=True))
    assert r.regularizer(2.0) == 0
    # hard rounding is floor or ceil of every weight, on the grid
    s = q.scale.view(-1, 1, 1, 1)
    codes = r.rounded(w, hard=True) / s + q.zero_point.view(-1, 1, 1, 1)
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert ((r.rounded(w, hard=True) - w).abs() <= s + 1e-6).all()


def test_regulariser_and_beta_schedule():
    sched = BetaSchedule(iters=100)
    assert not sched.active(19) and sched.active(20)
    assert sched(0) == 20 and sched(20) == 20 and sched(100) == pytest.approx(2.0) and 2 < sched(60) < 20
    w = torch.randn(2, 5)
    r = AdaRoundQuantizer(_wq(w), w)
    with torch.no_grad():
        r.alpha.zero_()  # h = 0.5: the regulariser is at its maximum of 1 per weight
    assert r.regularizer(2.0).item() == pytest.approx(10.0)


def test_split_layer_quantizes_the_two_halves_separately():
    torch.manual_seed(2)
    conv = nn.Conv2d(6, 4, 1)
    x = torch.cat([torch.randn(2, 4, 5, 5) * 0.1, torch.randn(2, 2, 5, 5) * 50], dim=1)  # skip has a far wider range
    plain, split = qlayer(conv, 4, 4), qlayer(conv, 4, 4, split=4)
    assert split.weight_quantizers[0].scale.shape == split.weight_quantizers[1].scale.shape == (4,)
    for layer in (plain, split):
        init_weights(nn.Sequential(layer))
        init_activations(nn.Sequential(layer), [(x,)], lambda m, b: m(*b))
    ref = conv(x)
    err = {k: float((l(x) - ref).norm().detach() / ref.norm().detach()) for k, l in (("plain", plain), ("split", split))}
    assert err["split"] < err["plain"]
    assert split.input_quantizers[0].scale < split.input_quantizers[1].scale
    with pytest.raises(ValueError, match="split"):
        qlayer(conv, 4, 4, split=6)


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
    model = quantize_model(tiny_unet, spec(8, 8, attention=True))
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
    model, batches, run = _setup(tiny_unet, spec(4, 8, attention=True))
    units = find_units(model)
    assert "conv_in" in units and "conv_out" in units
    assert any(u.endswith("attentions.0") for u in units) and any(".resnets." in u for u in units)
    assert not any(u.startswith("down_blocks.0.resnets.0.") for u in units)  # no layer inside a block
    order = execution_order(model, units, lambda m: run(m, batches[0]))
    assert order[0] == "time_embedding.linear_1" or order[0] == "conv_in"
    assert order[-1] == "conv_out"
    assert order.index("down_blocks.1.resnets.0") < order.index("down_blocks.1.attentions.0")
    set_quant_state(model, False, False)
    (args, kwargs), out, _ = capture(model, "down_blocks.1.attentions.0", batches, run, True, True)
    assert args[0].shape[0] == 16 and out.shape == args[0].shape


def test_weight_reconstruction_lowers_the_block_error_and_bakes(tiny_unet):
    model, batches, run = _setup(tiny_unet, spec(3, 8))
    init_weights(model)
    set_quant_state(model, True, False)
    unit = "down_blocks.0.resnets.0"
    before = _unit_err(model, tiny_unet, unit, batches, run)
    reconstruct(model, tiny_unet, batches, run, weight_phase(300, 8, 1e-2, 0.1), "cpu", [unit])
    after = _unit_err(model, tiny_unet, unit, batches, run)
    assert after < before  # on the objective it optimised: quantized-model inputs, FP targets
    assert not any(q.pending for _, m in quant_modules(model) for q, _ in m.weight_parts())


def _unit_err(model, fp, unit, batches, run):
    (args, kwargs), _, _ = capture(model, unit, batches, run, True, False)
    _, target, _ = capture(fp, unit, batches, run, False, True)
    with torch.no_grad():
        return float(lp_loss(model.get_submodule(unit)(*args, **kwargs), target, 2.0))


def test_qdiffusion_recipe_runs_end_to_end_and_round_trips(tiny_unet, tmp_path):
    from diffcomp.calib.selectors import Calibration
    from diffcomp.calib.selectors.uniform import UniformParams
    from diffcomp.methods.qdiffusion import QDiffusionParams, recipe

    traj = Trajectories(xs=torch.randn(4, 8, 1, 32, 32), ts=torch.tensor([750, 500, 250, 0]))
    params = QDiffusionParams(calibration=Calibration("uniform", UniformParams(2, 8)), iters_w=5, iters_a=5,
                              batch_size=8, a_init_samples=8)
    model, spec, info = recipe(tiny_unet, traj, BitSetting(4, 8), params)
    assert info == {}
    assert any("split" in c for _, c in spec.overrides)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([3, 900])
    with torch.no_grad():
        out = model(x, t).sample
    assert not torch.isnan(out).any()
    save_quantized(model, spec, tmp_path / "q.safetensors")
    loaded = load_quantized(tiny_unet, tmp_path / "q.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(x, t).sample, out)
    split_layer = loaded.get_submodule("up_blocks.0.resnets.0.conv_shortcut")
    assert split_layer.split > 0 and isinstance(split_layer.input_quantizers[1].scale, nn.Parameter)


# ----------------------------------------------------------------------------- the configurable engine


def _lsq_setup(tiny_unet, act=None):
    act = act or QuantizerConfig(4, learnable=True)
    model = quantize_model(tiny_unet, QuantSpec(QuantizerConfig(4, per_channel=True), act,
                                                timesteps=(900, 100) if act.per_timestep else ()))
    torch.manual_seed(0)
    batches = [(torch.randn(8, 1, 32, 32), torch.full((8,), t)) for t in (900, 100)]
    run = lambda m, b: m(*b).sample  # noqa: E731
    init_weights(model)
    init_activations(model, batches, run)
    return model, batches, run


def _steps(model, unit):
    return [leaf.scale.detach().clone() for _, q in act_quantizers(model.get_submodule(unit)) for leaf in q.leaves()]


def _lsq(model, batches, run, tiny_unet, unit, **kw):
    phase = Phase(learn=("act_steps",), iters=kw.pop("iters", 5), batch_size=8, lr=(("act_steps", 1e-2),), **kw)
    reconstruct(model, tiny_unet, batches, run, phase, "cpu", [unit])
    return _steps(model, unit)


UNIT = "down_blocks.0.resnets.0"


def test_layer_terms_of_the_loss_change_what_is_learned(tiny_unet):
    runs = {}
    for w in (0.0, 0.8):
        model, batches, run = _lsq_setup(tiny_unet)
        runs[w] = _lsq(model, batches, run, tiny_unet, UNIT, loss=ReconLoss(2.0, layer_weight=w))
    assert any(not torch.equal(a, b) for a, b in zip(runs[0.0], runs[0.8]))


def test_layer_loss_sees_every_quantized_layer_of_the_unit(tiny_unet):
    model, batches, run = _lsq_setup(tiny_unet)
    layers = [n for n, m in quant_modules(model.get_submodule(UNIT)) if n]
    _, out, inner = capture(tiny_unet, UNIT, batches, run, False, True, layers)
    assert set(inner) == {"conv1", "conv2", "time_emb_proj"} and inner["conv1"].shape[0] == 16
    loss = ReconLoss(2.0, layer_weight=0.5)
    zero = {k: v.clone() for k, v in inner.items()}
    assert torch.equal(loss(out, out, inner, zero), torch.zeros(()))
    shifted = {k: v + 1 for k, v in inner.items()}
    expected = 0.5 * sum(lp_loss(shifted[k], inner[k], 2.0) for k in inner)
    assert torch.allclose(loss(out, out, shifted, inner), expected)


def test_qdrop_with_p0_equals_quantized_inputs_and_with_p1_fp_inputs(tiny_unet):
    results = {}
    for name, kw in {"quantized": dict(inputs="quantized"), "qdrop0": dict(inputs="qdrop", qdrop_p=0.0),
                     "fp": dict(inputs="fp"), "qdrop1": dict(inputs="qdrop", qdrop_p=1.0),
                     "qdrop.5": dict(inputs="qdrop", qdrop_p=0.5)}.items():
        model, batches, run = _lsq_setup(tiny_unet)
        set_quant_state(model, True, True)
        results[name] = _lsq(model, batches, run, tiny_unet, "down_blocks.1.resnets.0", **kw)
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(results[a], results[b]))  # noqa: E731
    assert same("quantized", "qdrop0") and same("fp", "qdrop1")
    assert not same("quantized", "fp") and not same("qdrop.5", "quantized") and not same("qdrop.5", "fp")


def test_joint_phase_learns_rounding_and_steps_with_their_own_optimisers(tiny_unet):
    model, batches, run = _lsq_setup(tiny_unet)
    before = _steps(model, UNIT)
    w_before = model.get_submodule(UNIT + ".conv1").quantized_weight().detach().clone()
    phase = Phase(learn=("rounding", "act_steps"), iters=30, batch_size=8, lr=(("rounding", 5e-2), ("act_steps", 1e-2)),
                  cosine=("rounding", "act_steps"), inputs="qdrop", qdrop_p=0.5, loss=ReconLoss(2.0, layer_weight=0.8))
    reconstruct(model, tiny_unet, batches, run, phase, "cpu", [UNIT])
    assert any(not torch.equal(a, b) for a, b in zip(before, _steps(model, UNIT)))
    layer = model.get_submodule(UNIT + ".conv1")
    assert not any(q.pending for q in layer.weight_quantizers)  # baked
    assert not torch.equal(layer.quantized_weight(), w_before)  # some roundings flipped
    with pytest.raises(ValueError, match="learning rate per learned group"):
        Phase(learn=("rounding", "act_steps"), iters=1, batch_size=1, lr=(("rounding", 1e-3),))


def test_per_timestep_steps_are_reconstructed_with_each_samples_timestep(tiny_unet):
    model, batches, run = _lsq_setup(tiny_unet, QuantizerConfig(4, learnable=True, per_timestep=True))
    before = _steps(model, UNIT)
    after = _lsq(model, batches, run, tiny_unet, UNIT, iters=10)
    assert len(before) == 2 * 3  # two timesteps for each of the unit's three input quantizers
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # every timestep's step size learned


def test_split_criterion_keeps_a_split_only_where_both_errors_drop(tiny_unet):
    from diffcomp.calib.selectors import Calibration
    from diffcomp.calib.selectors.uniform import UniformParams
    from diffcomp.methods.qdiffusion import QDiffusionParams, recipe

    torch.manual_seed(3)
    traj = Trajectories(xs=torch.randn(4, 8, 1, 32, 32), ts=torch.tensor([750, 500, 250, 0]))
    params = QDiffusionParams(calibration=Calibration("uniform", UniformParams(2, 8)), iters_w=1, iters_a=1,
                              batch_size=8, a_init_samples=8, split_check=True)
    model, spec, info = recipe(tiny_unet, traj, BitSetting(3, 6), params)
    numbers = info["split_criterion"]
    assert set(numbers) == set(concat_splits(tiny_unet))
    kept = {p.strip("^$").replace("\\", "") for p, c in spec.overrides if "split" in c}
    for name, n in numbers.items():
        both = n["split"]["layer"] < n["no_split"]["layer"] and n["split"]["eps"] < n["no_split"]["eps"]
        assert n["kept"] == both and (name in kept) == both
        assert (model.get_submodule(name).split > 0) == both


# ----------------------------------------------------------------------------- wiring (issue 18)


def _unit_inputs_during_optimisation(tiny_unet, inputs):
    """The unit inputs the engine trains on (recorded while gradients are on, i.e. not while it
    captures), and the unit's inputs in the quantized and in the FP model."""
    model, batches, run = _setup(tiny_unet, spec(2, 8))
    init_weights(model)
    set_quant_state(model, True, False)  # 2-bit weights upstream: the two models feed the unit differently
    unit = "down_blocks.1.resnets.0"
    (q_args, _), _, _ = capture(model, unit, batches, run, True, False)
    (fp_args, _), _, _ = capture(tiny_unet, unit, batches, run, True, False)
    seen = []
    hook = model.get_submodule(unit).register_forward_pre_hook(
        lambda m, args: seen.append(args[0].detach().clone()) if torch.is_grad_enabled() else None)
    try:
        reconstruct(model, tiny_unet, batches, run, weight_phase(3, 4, 1e-3, 0.01, inputs=inputs), "cpu", [unit])
    finally:
        hook.remove()
    return torch.cat(seen), q_args[0], fp_args[0]


@pytest.mark.parametrize("inputs", ["quantized", "fp"])
def test_the_engine_trains_a_unit_on_the_inputs_its_phase_names(tiny_unet, inputs):
    seen, q_in, fp_in = _unit_inputs_during_optimisation(tiny_unet, inputs)
    assert seen.shape[0] == 3 * 4 and not torch.allclose(q_in, fp_in, atol=1e-3)
    expected, other = (q_in, fp_in) if inputs == "quantized" else (fp_in, q_in)
    for row in seen:
        assert any(torch.equal(row, e) for e in expected)
        assert not any(torch.equal(row, o) for o in other)


def test_qdiffusion_phases_are_the_papers():
    """AdaRound on inputs from the quantized model with the regulariser; then LSQ of the step sizes
    on FP inputs with cosine decay and no regulariser (``asym_w``/``asym_a`` flip the inputs)."""
    from diffcomp.methods.qdiffusion import QDiffusionParams, phases

    p = QDiffusionParams()
    w, a = phases(p)
    assert (w.learn, w.inputs, w.iters, w.batch_size, dict(w.lr), w.cosine) == (("rounding",), "quantized", 20000, 32, {"rounding": 1e-3}, ())
    assert w.rounding_reg == RoundingReg(0.01, 20.0, 2.0, 0.2) and w.loss == ReconLoss(2.0)
    assert (a.learn, a.inputs, a.iters, dict(a.lr), a.cosine, a.rounding_reg) == (("act_steps",), "fp", 5000, {"act_steps": 4e-4}, ("act_steps",), None)
    assert a.loss == ReconLoss(2.4)
    w, a = phases(QDiffusionParams(asym_w=False, asym_a=True))
    assert (w.inputs, a.inputs) == ("fp", "quantized")


class _AlphaRecorder:
    """A reconstruction loss of zero (no gradient of its own) that records every rounding variable
    of the unit before each iteration's step, so only the regulariser can move them."""

    needs_layers = False

    def __init__(self, unit):
        self.unit, self.alphas = unit, []

    def __call__(self, out, target, *rest):
        self.alphas.append(torch.cat([q.alpha.detach().flatten().clone() for _, m in quant_modules(self.unit)
                                      for q, _ in m.weight_parts()]))
        return (out * 0).sum()


def test_the_rounding_regulariser_is_off_during_warm_up_and_on_after_it(tiny_unet):
    model, batches, run = _setup(tiny_unet, spec(4, 8))
    init_weights(model)
    set_quant_state(model, True, False)
    recorder = _AlphaRecorder(model.get_submodule(UNIT))
    phase = Phase(learn=("rounding",), iters=6, batch_size=4, lr=(("rounding", 0.1),), loss=recorder,
                  rounding_reg=RoundingReg(1.0, 20.0, 2.0, warmup=0.5))
    reconstruct(model, tiny_unet, batches, run, phase, "cpu", [UNIT])
    a = recorder.alphas  # a[k]: before the step of iteration k; the regulariser is on from iteration 3
    assert len(a) == 6
    assert all(torch.equal(a[k], a[0]) for k in (1, 2, 3))  # warm-up: nothing moves them
    assert not torch.equal(a[4], a[3]) and not torch.equal(a[5], a[4])  # after it: the regulariser does


def test_qdiffusion_learns_every_activation_step_size(tiny_unet):
    """Q-Diffusion's activation phase trains the LSQ step size of every activation quantizer of a
    unit (inputs of the resnet's layers; q, k, v and softmax in attention): each one moves."""
    from diffcomp.methods.qdiffusion import QDiffusionParams, phases, spec_for

    p = QDiffusionParams(iters_a=3, batch_size=8, lr_a=1e-2)
    model, batches, run = _setup(tiny_unet, spec_for(tiny_unet, BitSetting(4, 8), p))
    init_weights(model)
    set_quant_state(model, True, True)
    init_activations(model, batches, run)
    units = [UNIT, "down_blocks.1.attentions.0"]
    leaves = [leaf for u in units for _, q in act_quantizers(model.get_submodule(u)) for leaf in q.leaves()]
    assert len(leaves) >= 3 + 4 and all(isinstance(leaf.scale, nn.Parameter) for leaf in leaves)
    before = [leaf.scale.detach().clone() for leaf in leaves]
    reconstruct(model, tiny_unet, batches, run, phases(p)[1], "cpu", units)
    moved = [not torch.equal(b, leaf.scale.detach()) for b, leaf in zip(before, leaves)]
    assert all(moved), moved


def test_split_points_of_the_tiny_unet_by_hand_and_from_its_data(tiny_unet):
    """The tiny UNet (channels 8, 16, 16; 2 resnets per up block) concatenates [h, skip] with these
    h widths (skips popped from the down path: 16, 16 | 16, 8 | 8, 8); and in a forward pass the
    channels after each split point are exactly a skip tensor of the down path."""
    splits = concat_splits(tiny_unet)
    assert splits == {"up_blocks.0.resnets.0.conv_shortcut": 16, "up_blocks.0.resnets.1.conv_shortcut": 16,
                      "up_blocks.1.resnets.0.conv_shortcut": 16, "up_blocks.1.resnets.1.conv_shortcut": 16,
                      "up_blocks.2.resnets.0.conv_shortcut": 16, "up_blocks.2.resnets.1.conv_shortcut": 8}
    skips, inputs, handles = [], {}, []
    sources = [tiny_unet.conv_in] + [m for b in tiny_unet.down_blocks
                                     for m in [*b.resnets, *(getattr(b, "attentions", None) or []), *(b.downsamplers or [])]]
    handles += [m.register_forward_hook(lambda m, a, o: skips.append((o[0] if isinstance(o, tuple) else o).detach()))
                for m in sources]
    for name in splits:
        block = tiny_unet.get_submodule(name.rsplit(".", 1)[0])
        handles.append(block.register_forward_pre_hook(lambda m, a, name=name: inputs.__setitem__(name, a[0].detach())))
    try:
        with torch.no_grad():
            tiny_unet(torch.randn(1, 1, 32, 32), torch.tensor([10]))
    finally:
        for h in handles:
            h.remove()
    for name, c in splits.items():
        skip = inputs[name][:, c:]
        assert any(s.shape == skip.shape and torch.equal(s, skip) for s in skips), name


def _engine_run(tiny_unet, engine, device="cpu", act=None, capture_batch=512, **phase_kw):
    model, batches, run = _lsq_setup(tiny_unet, act)
    model.to(device)
    tiny = tiny_unet.to(device)
    batches = [(x.to(device), t.to(device)) for x, t in batches]
    phase = Phase(**{"learn": ("rounding", "act_steps"), "iters": 25, "batch_size": 8,
                     "lr": (("rounding", 5e-2), ("act_steps", 1e-2)), "cosine": ("rounding", "act_steps"),
                     "inputs": "qdrop", "qdrop_p": 0.5, "act_drop_p": 0.3, "loss": ReconLoss(2.0, layer_weight=0.8),
                     "rounding_reg": RoundingReg(0.01, warmup=0.2), **phase_kw})
    curves = {}
    reconstruct(model, tiny, batches, run, phase, device, [UNIT], engine=engine, curves=curves, capture_batch=capture_batch)
    tiny_unet.to("cpu")
    weight = model.get_submodule(UNIT + ".conv1").quantized_weight().detach().cpu()
    return torch.tensor(curves[UNIT]), [s.cpu() for s in _steps(model, UNIT)], weight


@pytest.mark.parametrize("act", [None, QuantizerConfig(4, learnable=True, per_timestep=True)], ids=["tensor", "per_timestep"])
def test_the_resident_engine_learns_what_the_eager_loop_learns(tiny_unet, act):
    """Same mini-batches, QDrop masks, temperatures and cosine learning rates, taken from tables on
    the device instead of the host: the loss curve and the learned state agree (float rounding of
    the closed-form cosine aside)."""
    eager = _engine_run(tiny_unet, "eager", act=act)
    resident = _engine_run(tiny_unet, "resident", act=act)
    assert len(eager[0]) == len(resident[0]) == 25
    assert torch.allclose(eager[0], resident[0], rtol=1e-4, atol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(eager[1], resident[1]))
    assert (eager[2] != resident[2]).float().mean() < 0.01  # at most a rounding flipped at a tie
    with pytest.raises(ValueError, match="needs a CUDA device"):
        _engine_run(tiny_unet, "graph", act=act)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_the_graph_engine_learns_what_the_eager_loop_learns_on_the_gpu(tiny_unet):
    """Without random masks (quantized inputs, no activation drop) both engines see the same
    mini-batches, temperatures and learning rates: the curves agree step by step (the capturable
    Adam's float rounding aside). With QDrop the graph engine draws its masks from a device
    generator, the eager loop from the host's: the curves agree in level only."""
    exact = {"inputs": "quantized", "act_drop_p": 0.0, "iters": 60}
    eager = _engine_run(tiny_unet, "eager", "cuda", **exact)
    graph = _engine_run(tiny_unet, "graph", "cuda", **exact)
    assert torch.allclose(eager[0][:3], graph[0][:3], rtol=1e-4)  # the warm-up steps before capture
    assert torch.allclose(eager[0], graph[0], rtol=1e-2)
    eager = _engine_run(tiny_unet, "eager", "cuda", iters=60)
    graph = _engine_run(tiny_unet, "graph", "cuda", iters=60)
    assert abs(float(eager[0][-20:].mean() / graph[0][-20:].mean()) - 1) < 0.2


def test_merged_calibration_batches_keep_every_sample_its_timestep_and_order():
    from diffcomp.quant.recon import merge_batches

    xs = [torch.randn(n, 1, 4, 4) for n in (3, 3, 2, 4)]
    batches = [(xs[0], torch.tensor(7)), (xs[1], torch.tensor([5, 5, 6])), (xs[2], torch.tensor([9])), (xs[3], torch.tensor(1))]
    merged = merge_batches(batches, 8)
    assert [b[0].shape[0] for b in merged] == [8, 4]  # at most 8 samples, consecutive batches only
    assert torch.equal(torch.cat([b[0] for b in merged]), torch.cat(xs))
    assert merged[0][1].tolist() == [7, 7, 7, 5, 5, 6, 9, 9]
    assert merged[1] is batches[3]  # a batch joined with none is passed as it is
    assert merge_batches(batches, 1) == batches
    # a third element that is neither per-sample nor the same object: left as it is
    odd = [(xs[0], torch.tensor(7), "a"), (xs[1], torch.tensor(7), "b")]
    assert merge_batches(odd, 8) == odd


def test_the_device_engines_capture_in_merged_batches_what_the_per_batch_capture_gives(tiny_unet):
    """A unit's inputs and targets captured in one merged forward equal those of the calibration
    batches one by one, per-timestep quantizers included (each sample keeps its step's grid)."""
    from diffcomp.quant.recon import capture, merge_batches

    act = QuantizerConfig(4, learnable=True, per_timestep=True)
    model, batches, run = _lsq_setup(tiny_unet, act)
    set_quant_state(model, True, True)
    merged = merge_batches(batches, 512)
    assert len(batches) == 2 and len(merged) == 1
    (a1, k1), _, _ = capture(model, UNIT, batches, run, True, False)
    (a2, k2), _, _ = capture(model, UNIT, merged, run, True, False, keep="cpu")
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a1, a2) if isinstance(x, torch.Tensor))
    _, o1, _ = capture(model, UNIT, batches, run, False, True)
    _, o2, _ = capture(model, UNIT, merged, run, False, True)
    assert torch.allclose(o1, o2, atol=1e-5)
