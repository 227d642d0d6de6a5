"""The QAT loop, EfficientDM and MPQ-DM (OMQ, TRD) on the tiny model."""

import copy

import numpy as np
import pytest
import torch

from diffcomp.methods import METHODS
from diffcomp.typedconfig import build_dataclass
from diffcomp.variant import BitSetting


@pytest.fixture(scope="module")
def traj(tiny_unet):
    from diffcomp.calib.capture import capture
    from diffcomp.models.config import SamplerConfig
    from diffcomp.models.sampler import unet_fn
    from diffcomp.models.unet import build_scheduler

    return capture(unet_fn(tiny_unet), 8, (1, 32, 32), build_scheduler().alphas_cumprod,
                   SamplerConfig(steps=4, skip="uniform"), seed=0, batch_size=8)


def _params(name, **extra):
    entry = METHODS[name]
    return build_dataclass(entry.params, {**entry.contract, **extra}, name)


def test_kurtosis_is_scipys_non_excess_kurtosis():
    from scipy.stats import kurtosis as scipy_kurtosis

    from diffcomp.methods.mpqdm.omq import kurtosis

    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 5, 3, 3, generator=g) * torch.rand(12, 1, 1, 1, generator=g)
    w[3, 0, 1, 1] = 9.0  # one heavy outlier channel
    got = kurtosis(w).double().numpy()
    want = scipy_kurtosis(w.flatten(1).double().numpy(), axis=1, fisher=False)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert int(np.argmax(got)) == 3


def test_channel_bits_top_and_bottom_k_keep_the_mean_exactly():
    from diffcomp.methods.mpqdm.omq import candidates, channel_bits

    kurt = torch.tensor([5.0, 1.0, 9.0, 3.0, 2.0, 7.0, 4.0, 3.5, 6.0, 8.0, 2.5, 1.5])
    for k in candidates(12, 10, 5):
        bits = channel_bits(kurt, 3, k)
        assert int(bits.sum()) == 3 * 12
        top = torch.argsort(kurt, descending=True)
        assert (bits[top[:k]] == 4).all() and (bits[top[-k:]] == 2).all() if k else (bits == 3).all()
    assert candidates(64, 10, 5) == [0, 6, 12, 18, 24, 30] and candidates(12, 10, 1) == [0, 1]


def test_mpqdm_every_layer_averages_exactly_n_bits(tiny_unet, traj, tmp_path, wbits=2):
    """OMQ on every LoRA layer: widths N-1, N, N+1 whose mean is exactly N; some layer mixes."""
    from diffcomp.methods.mpqdm import build, omq_layers

    # an outlier channel in every layer, so the search has something to find
    fp = copy.deepcopy(tiny_unet)
    with torch.no_grad():
        for m in fp.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.weight.shape[0] >= 8:
                m.weight[0].view(-1)[0] *= 40
    p = _params("mpqdm", trd=False)
    model, spec, info = build(fp, traj, BitSetting(wbits, 4), p, "cpu")
    layers = omq_layers(model)
    assert layers and set(info["omq"]) == {n for n, _ in layers}
    for name, layer in layers:
        bits = layer.weight_quantizers[0].channel_bits
        assert int(bits.sum()) == wbits * bits.numel(), name
        assert set(bits.unique().tolist()) <= {wbits - 1, wbits, wbits + 1}
    assert any(v["k"] > 0 for v in info["omq"].values())
    # the saved model keeps the widths; table 2's figure reads them back
    from diffcomp.cli.table2 import channel_widths
    from diffcomp.report.figures import channel_bits_figure
    from diffcomp.quant.wrap import save_quantized

    save_quantized(model, spec, tmp_path / "mpqdm-w2a4.safetensors")
    widths = channel_widths([tmp_path / "mpqdm-w2a4.safetensors"])["mpqdm-w2a4"]
    assert set(widths) == {n for n, _ in layers} and all(float(np.mean(w)) == wbits for w in widths.values())
    channel_bits_figure({"mpqdm-w2a4": widths}, tmp_path / "bits.png")
    assert (tmp_path / "bits.png").stat().st_size > 0
    # the smoothing keeps the FP function: with quantization off the model is the FP model
    from diffcomp.quant.module import set_quant_state

    set_quant_state(model, False, False)
    x, t = traj.xs[1, :2], traj.ts[1].repeat(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t).sample, fp(x, t).sample, rtol=1e-4, atol=1e-5)


def _trd_grads(tiny_unet, traj, detach):
    from diffcomp.quant.lora_qat import add_lora
    from diffcomp.methods.mpqdm import build
    from diffcomp.methods.mpqdm.trd import TRD

    p = _params("mpqdm", omq=False)
    model, _, _ = build(tiny_unet, traj, BitSetting(4, 4), p, "cpu")
    add_lora(model, p)
    with torch.no_grad():  # B = 0 at init would stop the gradient of A; give B a value
        for name, prm in model.named_parameters():
            if name.endswith("lora_B"):
                prm.normal_(0, 0.01)
    lora = {n: prm for n, prm in model.named_parameters() if "lora_" in n}
    for prm in lora.values():
        prm.requires_grad_(True)
    term = TRD(100.0, 2, detach)
    term.attach(model, tiny_unet)
    term.begin()
    out = None
    for s in (0, 1):
        x, t = traj.xs[s, :2], traj.ts[s].repeat(2)
        with torch.no_grad():
            tiny_unet(x, t)
        model(x, t)
        out = term(s)
        assert (out is None) == (s == 0)
    term.detach_hooks()
    assert float(out.detach()) > 0
    if out.requires_grad:
        out.backward()
    return {n: (prm.grad if prm.grad is not None else torch.zeros_like(prm)) for n, prm in lora.items()}


def test_trd_trains_lora_and_the_detached_variant_trains_nothing(tiny_unet, traj):
    grads = _trd_grads(tiny_unet, traj, detach=False)
    assert sum(float(g.abs().sum()) for n, g in grads.items() if n.endswith("lora_A")) > 0
    assert sum(float(g.abs().sum()) for n, g in grads.items() if n.endswith("lora_B")) > 0
    detached = _trd_grads(tiny_unet, traj, detach=True)
    assert all(float(g.abs().sum()) == 0 for g in detached.values())


def test_each_timestep_uses_its_own_activation_parameters_in_any_call_order(tiny_unet, traj):
    from diffcomp.quant.lora_qat import init_ranges, spec_for
    from diffcomp.quant.module import act_quantizers
    from diffcomp.quant.wrap import quantize_model

    p = _params("efficientdm")
    ts = traj.ts.tolist()
    model = quantize_model(tiny_unet, spec_for(BitSetting(8, 4), ts, p))
    init_ranges(model, traj, p, "cpu")
    x = traj.xs[2, :2]

    def run(order):
        with torch.no_grad():
            return {t: model(x, torch.full((2,), t)).sample for t in order}

    ref = run(ts)
    for order in (ts[::-1], [ts[2], ts[0], ts[3], ts[1], ts[2]]):
        got = run(order)
        for t in order:
            assert torch.equal(got[t], ref[t])
    # a batch of mixed timesteps: each sample as in its own call
    with torch.no_grad():
        mixed = model(x, torch.tensor([ts[3], ts[0]])).sample
    torch.testing.assert_close(mixed[0], ref[ts[3]][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mixed[1], ref[ts[0]][1], rtol=1e-5, atol=1e-6)
    # changing one step's parameters changes that step's output only
    with torch.no_grad():
        for _, q in act_quantizers(model):
            q.for_timestep(ts[1]).scale.mul_(3.0)
    got = run(ts)
    assert not torch.equal(got[ts[1]], ref[ts[1]])
    assert all(torch.equal(got[t], ref[t]) for t in ts if t != ts[1])


def test_a_killed_qat_job_resumes_to_bit_identical_parameters(tiny_unet, traj, tmp_path, name="mpqdm"):
    """Stopped in epoch 2 (state kept after epoch 1), then restarted: the parameters are bit for bit
    those of an uninterrupted run; the restart resumed from the state, not from scratch. MPQ-DM
    (OMQ and TRD on EfficientDM's training) exercises every part of the loop."""
    import importlib

    from diffcomp.quant.lora_qat import train

    p = _params(name, epochs=2, batch_size=2, checkpoint_every=1)
    mod = importlib.import_module(METHODS[name].module)
    bits = BitSetting(4, 4)

    base, _, _ = mod.build(tiny_unet, traj, bits, p, "cpu")  # OMQ and ranges once; each run on a copy

    def prepared():
        return copy.deepcopy(base), mod.terms(p)

    full, terms = prepared()
    train(full, tiny_unet, traj, p, "cpu", terms)
    S = traj.xs.shape[0]
    killed, terms = prepared()
    stats = train(killed, tiny_unet, traj, p, "cpu", terms, state_dir=tmp_path, stop_at=S + 1)
    assert stats["stopped"] and (tmp_path / "qat_state.pt").exists()
    resumed, terms = prepared()
    stats = train(resumed, tiny_unet, traj, p, "cpu", terms, state_dir=tmp_path)
    assert stats["resumed_from_step"] == S and stats["steps"] == 2 * S
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], killed.state_dict()[k]) for k in a if "weight" in k)


def test_qat_of_a_guided_model_matches_the_guided_predictions():
    """Under guidance the QAT loop feeds both models each input with its label and again with the
    null label, and its loss compares the guided predictions eps_u + s (eps_c - eps_u) (as the
    released EfficientDM and MPQ-DM code does), not the two halves."""
    from types import SimpleNamespace

    from diffcomp.calib.trajectories import Trajectories
    from diffcomp.quant.qat import ParamGroup, QATSchedule, train_qat

    S, N, K, scale = 3, 6, 10, 3.0
    traj = Trajectories(xs=torch.randn(S, N, 1, 2, 2), ts=torch.tensor([900, 500, 100]),
                        labels=torch.arange(N) % 4, meta={"sampler": {"guidance": scale}, "null_label": K})
    seen = []

    class Net(torch.nn.Module):
        def __init__(self, w, u):  # w x, plus u for the null label
            super().__init__()
            self.w, self.u = torch.nn.Parameter(torch.tensor(w)), torch.nn.Parameter(torch.tensor(u))

        def forward(self, x, t, labels):
            seen.append((self, t.clone(), labels.clone()))
            return SimpleNamespace(sample=self.w * x + self.u * (labels == K).float().view(-1, 1, 1, 1))

    model, fp = Net(1.0, 0.0), Net(2.0, 1.0)
    # with a zero learning rate the reported loss is the guided one: per pixel
    # ((w_fp - w) x + (1 - s)(u_fp - u))^2 = (x + 1 - s)^2; the two halves' loss would differ
    stats = train_qat(model, fp, traj, [ParamGroup("w", (model.w, model.u), 0.0)], QATSchedule(1, 4, 0, 0.0, 100))
    calls = [(t, labels) for m, t, labels in seen if m is model]
    assert len(calls) == S
    for k, (t, labels) in enumerate(calls):
        assert len(labels) == 8 and (labels[1::2] == K).all() and (labels[0::2] < 4).all()
        assert (t == traj.ts[k]).all()
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(0))[:4]
    for s, t in enumerate(traj.ts.tolist()):
        x = traj.xs[s, idx]
        want = float((x + 1 - scale).pow(2).sum() / 4)
        assert stats["mse_per_sample_by_timestep"][t] == pytest.approx(want, rel=1e-5)
