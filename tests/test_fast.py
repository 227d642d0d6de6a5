"""The inference fast path: weights quantized once, per-timestep quantizers by index, and every
quantizer type under torch.compile with one graph for all sampling steps."""

import shutil

import pytest
import torch

from diffcomp.quant.calibrate import init_activations, init_weights
from diffcomp.quant.inference import frozen
from diffcomp.quant.module import quant_modules
from diffcomp.quant.quantizer import UniformQuantizer
from diffcomp.quant.spec import AttentionConfig, QuantizerConfig, QuantSpec
from diffcomp.quant.timestep import StepContext, TimestepQuantizer
from diffcomp.quant.wrap import quantize_model, with_split_shortcut

STEPS = (900, 500, 100)


def _every_kind(unet):
    """Per-channel W4 weights with mixed widths in one layer, per-timestep A8 inputs, quantized
    attention (q/k/v and an unsigned softmax grid), split shortcuts and a fitted eps correction."""
    act = QuantizerConfig(8, per_timestep=True)
    spec = QuantSpec(weight=QuantizerConfig(4, per_channel=True), act=act, timesteps=STEPS,
                     attention=AttentionConfig(act, QuantizerConfig(8, unsigned=True, per_timestep=True)),
                     overrides=((r"^down_blocks\.0\.resnets\.0\.conv2$", {"weight.mixed": True}),))
    spec = with_split_shortcut(spec, unet)
    model = quantize_model(unet, spec)
    init_weights(model)
    torch.manual_seed(0)
    batches = [(torch.randn(4, 1, 32, 32) * (1 + i), torch.full((4,), t)) for i, t in enumerate(STEPS)]
    init_activations(model, batches, lambda m, b: m(*b).sample)
    wq = dict(quant_modules(model))["down_blocks.0.resnets.0.conv2"].weight_quantizers[0]
    bits = torch.full((wq.channels,), 4, dtype=torch.int32)
    bits[0], bits[-1] = 6, 2
    wq.set_channel_bits(bits)
    init_weights(model)
    assert any(m.split for _, m in quant_modules(model) if hasattr(m, "split"))
    return model.eval()


@pytest.fixture(scope="module")
def every_kind(tiny_unet):
    return _every_kind(tiny_unet)


def test_frozen_model_computes_bit_for_bit_what_it_computed_before(every_kind):
    x = torch.randn(6, 1, 32, 32)
    keys = list(every_kind.state_dict())
    with torch.no_grad():
        for t in (torch.full((6,), 500), torch.tensor([900, 100, 500, 500, 900, 100])):  # one and mixed steps
            before = every_kind(x, t).sample
            with frozen(every_kind):
                assert all(m.frozen_weight is not None for _, m in quant_modules(every_kind) if hasattr(m, "frozen_weight"))
                inside = every_kind(x, t).sample
            assert torch.equal(inside, before)
            assert torch.equal(every_kind(x, t).sample, before)  # and back again on exit
    assert all(m.frozen_weight is None for _, m in quant_modules(every_kind) if hasattr(m, "frozen_weight"))
    assert list(every_kind.state_dict()) == keys  # the per-step grids are back in the module tree


def test_frozen_weights_are_quantized_once_not_at_every_forward(every_kind):
    calls = []
    parts = [q for _, m in quant_modules(every_kind) for q, _ in m.weight_parts()]
    handles = [q.register_forward_hook(lambda *a: calls.append(1)) for q in parts]
    x, t = torch.randn(2, 1, 32, 32), torch.full((2,), 100)
    try:
        with torch.no_grad():
            every_kind(x, t)
            assert len(calls) == len(parts)  # eager: every weight part at every forward
            with frozen(every_kind):
                assert len(calls) == 2 * len(parts)  # quantized once on entry
                every_kind(x, t)
                every_kind(x, t)
                assert len(calls) == 2 * len(parts)
    finally:
        for h in handles:
            h.remove()


def _three_step_quantizer():
    """A 4-bit per-timestep quantizer for timesteps 999, 500, 0 with ranges 8, 2, 0.5, and its context."""
    ctx = StepContext()
    q = TimestepQuantizer(lambda: UniformQuantizer(4), [999, 500, 0], ctx)
    for leaf, r in zip(q.leaves(), (8.0, 2.0, 0.5)):
        leaf.set_range(torch.tensor(-r), torch.tensor(r))
    return ctx, q


def test_gather_path_uses_each_samples_step_like_the_split_path():
    ctx, q = _three_step_quantizer()
    x = torch.linspace(-3, 3, 50).repeat(6, 1)
    ctx.set(torch.tensor([500, 0, 999]))
    split = q(x)  # 6 rows for 3 samples: heads folded into the batch, sample-major
    q.gather = True
    assert torch.equal(q(x), split)
    for row, t in enumerate((500, 500, 0, 0, 999, 999)):
        assert torch.equal(split[row], q.for_timestep(t)(x[row]))
    ctx.set(torch.tensor([7, 7, 7]))
    with pytest.raises(KeyError, match=r"timestep \[7\] has no quantization parameters"):
        q(x)


def test_per_timestep_quantizer_under_compile_uses_the_right_steps_parameters():
    ctx, q = _three_step_quantizer()
    q.gather = True
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def f(x, t):
        with ctx.using(t):
            return q(x)

    torch.compiler.reset()
    cf = torch.compile(f, backend=backend, fullgraph=True, dynamic=False)
    x = torch.linspace(-3, 3, 50).repeat(2, 1)
    for t in (999, 0, 500, 0):
        tt = torch.full((2,), t)
        assert torch.equal(cf(x, tt), q.for_timestep(t)(x))
    assert len(graphs) == 1


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_every_quantizer_type_compiles_without_graph_breaks_or_recompiles_across_steps(every_kind, device):
    """fullgraph=True fails on any graph break; no graph compiled after the first call means no
    recompile for the other timesteps. On CUDA too: the eager path's checks there call into the
    CUDA runtime (is a graph being captured?), which a traced graph must never reach."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    every_kind.to(device)
    try:
        x = torch.randn(2, 1, 32, 32, device=device)
        calls = [(x, torch.full((2,), t, device=device)) for t in STEPS + STEPS[::-1]]
        with frozen(every_kind), torch.no_grad():
            torch.compiler.reset()
            cm = torch.compile(every_kind, backend=backend, fullgraph=True, dynamic=False)
            outs = [cm(*calls[0]).sample]
            n_first = len(graphs)
            outs += [cm(*c).sample for c in calls[1:]]
            eager = [every_kind(*c).sample for c in calls]
        assert n_first >= 1 and len(graphs) == n_first
        for a, b in zip(outs, eager):
            assert torch.equal(a, b)
    finally:
        every_kind.to("cpu")  # the fixture is shared by the module's other tests


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler")
def test_inductor_compiled_fake_quant_agrees_with_eager_within_quantization_noise(every_kind):
    """Compiled kernels may round x / scale differently at a tie or fuse differently: the outputs
    agree far inside one quantization step's effect (the W4A8 model's distance from FP)."""
    layer = dict(quant_modules(every_kind))["down_blocks.0.resnets.0.conv1"]
    x = torch.randn(4, layer.weight.shape[1], 32, 32)
    with torch.no_grad():
        eager = layer(x)
        torch.compiler.reset()
        compiled = torch.compile(layer, dynamic=False)(x)
        layer.set_quant_state(False, False)
        fp = layer(x)
        layer.set_quant_state(True, True)
    noise = (eager - fp).pow(2).mean()
    assert (compiled - eager).pow(2).mean() < 1e-3 * noise


def test_a_model_with_per_timestep_weights_is_refused_by_name(tiny_unet):
    spec = QuantSpec(weight=QuantizerConfig(4, per_channel=True, per_timestep=True), act=None, timesteps=STEPS)
    model = quantize_model(tiny_unet, spec)
    with pytest.raises(ValueError, match="conv_in: per-timestep weight quantizers cannot be frozen"):
        with frozen(model):
            pass


def test_frozen_checks_the_timesteps_it_will_see_before_any_compiled_call(every_kind):
    """A compiled graph cannot raise for a timestep without parameters, so frozen checks the
    sampler's timesteps up front, naming them."""
    with frozen(every_kind, timesteps=STEPS):
        pass
    with pytest.raises(KeyError, match=r"timestep \[7\] has no quantization parameters"):
        with frozen(every_kind, timesteps=STEPS + (7,)):
            pass
    assert all(m.frozen_weight is None for _, m in quant_modules(every_kind) if hasattr(m, "frozen_weight"))
