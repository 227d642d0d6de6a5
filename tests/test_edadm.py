"""EDA-DM: the TDAC selector's counts and scores, FBR's loss terms and QDrop, the method's settings."""

import pytest
import torch
import torch.nn.functional as F

from diffcomp.calib.selectors import SELECTORS, Calibration
from diffcomp.calib.selectors.density_diversity import DensityDiversityParams, allocate, scores
from diffcomp.calib.trajectories import Trajectories
from diffcomp.methods.edadm import EDADMParams, phase, spec_for
from diffcomp.quant.calibrate import init_activations, init_weights
from diffcomp.quant.module import quant_modules, set_quant_state
from diffcomp.quant.recon import ReconLoss, _dropping
from diffcomp.quant.wrap import quantize_model
from diffcomp.variant import BitSetting


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize("n", [1, 7, 64, 1024])
def test_counts_sum_to_n_and_are_deterministic(n):
    gen = torch.Generator().manual_seed(0)
    for S in (1, 3, 10, 100):
        for _ in range(20):
            w = torch.rand(S, generator=gen) * (torch.rand(S, generator=gen) < 0.8)
            c = allocate(w, n)
            assert int(c.sum()) == n and (c >= 0).all()
            assert torch.equal(c, allocate(w.clone(), n))
            assert not (c[w == 0] > 0).any() or w.sum() == 0 or n - int(torch.round(w / w.sum() * n).sum()) > 0


def test_rounding_repair_is_edadms():
    # shortfall: round(3 x 1/3 of 10) = 3+3+3 = 9 -> the largest count (the first of the ties) gets one
    assert allocate([1, 1, 1], 10).tolist() == [4, 3, 3]
    # excess: 0.5 rounds to even; 2.5 -> 2, 3.5 -> 4, 4.5 -> 4, 5.5 -> 6: 16 of 16 -> no repair
    assert allocate([2.5, 3.5, 4.5, 5.5], 16).tolist() == [2, 4, 4, 6]
    # excess of one (1.6 + 1.6 + 1.6 + 0.2 -> 2 + 2 + 2 + 0 = 6 > 5): taken from the last step with a count
    assert allocate([1.6, 1.6, 1.6, 0.2], 5).tolist() == [2, 2, 1, 0]
    assert allocate([0, 0, 0], 5).tolist() == [2, 2, 1]  # all zero: even (5/3 -> 2, 2, 2, one taken back)
    with pytest.raises(ValueError):
        allocate([1, -1], 4)


# ----------------------------------------------------------------------------- scores


def _brute(features, r, lam):
    S = len(features)
    D = torch.tensor([sum(1.0 for j in range(S) if j != i and float(((features[i] - features[j]) ** 2).mean()) <= r)
                      for i in range(S)], dtype=torch.float64)
    V = torch.tensor([sum(float((1 - F.cosine_similarity(features[i], features[j], dim=1, eps=1e-6)).sum())
                          for j in range(S) if j != i) for i in range(S)], dtype=torch.float64)
    norm = lambda x: (x - x.min()) / (x.max() - x.min())  # noqa: E731
    return norm(D), norm(V)


def test_dense_cluster_and_outliers_score_as_the_formulas_say():
    torch.manual_seed(0)
    base = torch.randn(16, 8, 4, 4)
    cluster = [base + 0.05 * torch.randn_like(base) for _ in range(5)]  # steps 0-4: near each other
    outliers = [base + 3.0 * torch.randn_like(base), -base + 0.1 * torch.randn_like(base)]  # steps 5, 6
    feats = cluster + outliers
    D, V, w = scores(feats, r=0.5, lam=1.2)
    bD, bV = _brute(feats, 0.5, 1.2)
    assert torch.allclose(D, bD) and torch.allclose(V, bV.double(), atol=1e-6)
    assert torch.allclose(w, D + 1.2 * V)
    assert D[:5].tolist() == [1.0] * 5 and D[5:].tolist() == [0.0, 0.0]  # dense: 4 neighbours; outliers none
    assert (V[5:] > V[:5].max()).all() and float(V[6]) == 1.0  # the anti-aligned step is the most diverse
    # lambda 0: density alone, every input on the cluster; large lambda: diversity dominates
    assert allocate(scores(feats, 0.5, 0.0)[2], 100)[5:].sum() == 0
    c = allocate(scores(feats, 0.5, 100.0)[2], 100)
    assert c[6] == c.max() and c[5] > c[:5].max()


# ----------------------------------------------------------------------------- the selector


@pytest.fixture(scope="module")
def traj():
    torch.manual_seed(1)
    return Trajectories(xs=torch.randn(4, 12, 1, 32, 32), ts=torch.tensor([750, 500, 250, 0]))


def test_selector_takes_each_input_from_its_own_trajectory(tiny_unet, traj):
    cal = Calibration.from_config({"selector": "density_diversity", "n": 10, "r": 0.3, "batch_size": 4}, "c")
    picked = cal.select(traj, seed=3, model=tiny_unet)
    xs, ts = picked.xs, picked.ts
    assert picked.labels is None and xs.shape == (10, 1, 32, 32) and ts.shape == (10,)
    steps = [int((traj.ts == t).nonzero()) for t in ts]
    for k in range(10):
        assert torch.equal(xs[k], traj.xs[steps[k], k])  # trajectory k at its assigned step
    again, other = cal.select(traj, seed=3, model=tiny_unet), cal.select(traj, seed=4, model=tiny_unet)
    assert torch.equal(again.xs, xs) and torch.equal(again.ts, ts)
    assert sorted(other.ts.tolist()) == sorted(ts.tolist())  # the seed permutes; the counts stay
    even = Calibration.from_config({"selector": "density_diversity", "n": 10, "weights": "even"}, "c")
    assert sorted(torch.bincount(torch.tensor([int((traj.ts == t).nonzero()) for t in even.select(traj, model=tiny_unet).ts])).tolist()) \
        == [2, 2, 3, 3]
    with pytest.raises(ValueError, match="needs the FP model"):
        cal.select(traj)
    with pytest.raises(ValueError, match="only 12 were captured"):
        Calibration.from_config({"selector": "density_diversity", "n": 13}, "c").select(traj, model=tiny_unet)
    assert SELECTORS["density_diversity"].needs_model and not SELECTORS["uniform"].needs_model


# ----------------------------------------------------------------------------- FBR

UNIT = "down_blocks.0.resnets.0"


def _model(tiny_unet, bits=BitSetting(4, 8)):
    model = quantize_model(tiny_unet, spec_for(tiny_unet, bits, EDADMParams()))
    torch.manual_seed(0)
    batch = (torch.randn(8, 1, 32, 32), torch.randint(0, 1000, (8,)))
    run = lambda m, b: m(*b).sample  # noqa: E731
    init_weights(model, "minmax")
    set_quant_state(model, True, True)
    init_activations(model, [batch], run, "minmax", sequential=True)
    return model, batch, run


def _grads(tiny_unet, add_loss):
    from diffcomp.quant.recon import capture

    model, batch, run = _model(tiny_unet)
    loss_fn = phase(EDADMParams(add_loss=add_loss), BitSetting(4, 8)).loss
    unit = model.get_submodule(UNIT)
    layers = loss_fn.layer_names([n for n, m in quant_modules(unit) if n and m.allow_weights])
    (args, kwargs), _, _ = capture(model, UNIT, [batch], run, True, False)
    _, target, layer_target = capture(tiny_unet, UNIT, [batch], run, False, True, layers)
    got = {}
    hooks = [unit.get_submodule(k).register_forward_hook(lambda m, a, o, k=k: got.__setitem__(k, o)) for k in layers]
    steps = [p for n, p in unit.named_parameters() if n.endswith("scale") and p.requires_grad]
    out = unit(*args, **kwargs)
    for h in hooks:
        h.remove()
    loss = loss_fn(out, target, got, layer_target) if loss_fn.needs_layers else loss_fn(out, target)
    return layers, torch.autograd.grad(loss, steps)


def test_fbr_layer_terms_change_the_gradient_and_leave_out_the_last_layer(tiny_unet):
    _, g0 = _grads(tiny_unet, 0.0)  # add_loss 0: the block output alone
    layers, g8 = _grads(tiny_unet, 0.8)
    assert layers == ["conv1", "time_emb_proj"]  # conv2, the block's last quantized layer, is left out
    assert any(not torch.allclose(a, b) for a, b in zip(g0, g8))


def test_act_drop_p0_is_plain_quantization_and_p1_is_fp_activations(tiny_unet):
    model, batch, run = _model(tiny_unet)
    unit = model.get_submodule(UNIT)
    from diffcomp.quant.recon import capture

    (args, kwargs), _, _ = capture(model, UNIT, [batch], run, True, False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        plain = unit(*args, **kwargs)
        with _dropping(unit, 0.0, gen):
            assert torch.equal(unit(*args, **kwargs), plain)
        with _dropping(unit, 1.0, gen):
            all_fp = unit(*args, **kwargs)
        with _dropping(unit, 0.5, gen):
            half = unit(*args, **kwargs)
        set_quant_state(unit, True, False)
        assert torch.equal(all_fp, unit(*args, **kwargs))  # every activation kept FP
    assert not torch.equal(half, plain) and not torch.equal(half, all_fp)


def test_edadm_settings_are_the_papers(tiny_unet):
    p = EDADMParams()
    assert (p.calibration.params.r, p.calibration.params.lam, p.calibration.params.n) == (3.0, 1.2, 1024)
    fbr = phase(p, BitSetting(4, 8))
    assert fbr.learn == ("rounding", "act_steps") and set(fbr.cosine) == {"rounding", "act_steps"}
    assert dict(fbr.lr) == {"rounding": 0.5, "act_steps": 5e-4} and dict(phase(p, BitSetting(8, 8)).lr) == \
        {"rounding": 5e-2, "act_steps": 1e-3}
    assert fbr.rounding_reg is None and fbr.inputs == "qdrop" and fbr.qdrop_p == 0.5 and fbr.act_drop_p == 0.5
    assert fbr.iters == 5000 and fbr.batch_size == 32 and fbr.loss == ReconLoss(2.0, 0.8, 2.0, skip_last_layer=True)
    assert phase(EDADMParams(fbr=False), BitSetting(4, 8)).loss.layer_weight == 0
    model = quantize_model(tiny_unet, spec_for(tiny_unet, BitSetting(4, 6), p))
    layers = dict(quant_modules(model))
    assert layers["conv_in"].weight_quantizers[0].bits == 8 and layers["conv_out"].weight_quantizers[0].bits == 8
    assert not layers["conv_out"].allow_acts and layers["conv_in"].allow_acts
    assert layers[UNIT + ".conv1"].weight_quantizers[0].bits == 4


def test_the_counts_figure_is_written(tmp_path):
    from diffcomp.report.figures import calibration_counts_figure

    calibration_counts_figure([900, 500, 0], [("uniform", [2, 2, 2]), ("density_diversity", [1, 1, 4])], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
