"""Progressive distillation's target and RDD's relational losses: exact math on models whose
output is known, zero/positive/gradient properties, the memory queue, and a resumable stage."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcomp.sections import SamplerConfig
from diffcomp.distill.methods.pd import PDParams
from diffcomp.distill.methods.rdd import RDDParams
from diffcomp.distill.methods.rdd.relational import (
    MemoryRelationLoss,
    PixelMemory,
    anchor_relation_kl,
    feature_kl,
    pixel_relation_kl,
)
from diffcomp.distill.targets import pd_loss, pd_target, stage_times
from diffcomp.models.parameterization import coefficients
from diffcomp.models.sampler import ddim_sample, ddim_step, ddim_timesteps, unet_fn
from diffcomp.models.unet import build_scheduler

AC = build_scheduler().alphas_cumprod.to(torch.float64)
T = AC.shape[0]


def known_teacher(z, t):
    """A teacher whose output is a fixed, non-trivial function of (z, t)."""
    tt = t.to(z.dtype).view(-1, 1, 1, 1) / T
    return 0.7 * z + 0.3 * torch.sin(3 * z) * (1 - tt) + 0.05 * tt


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_one_student_step_on_the_pd_target_equals_two_teacher_steps(n):
    g = torch.Generator().manual_seed(n)
    B = 16
    k = torch.randint(1, n + 1, (B,), generator=g)
    k[0], k[-1] = 1, n  # the last step (to the clean image) and the first (from T - 1)
    t, t_mid, t_end = stage_times(T, n, k)
    z = torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64)
    x_target = pd_target(known_teacher, z, t, t_mid, t_end, AC)
    for b in range(B):
        a_t, a_m = float(AC[t[b]]), float(AC[t_mid[b]])
        a_e = float(AC[t_end[b]]) if t_end[b] >= 0 else 1.0
        zb = z[b : b + 1]
        z1, _ = ddim_step(zb, known_teacher(zb, t[b : b + 1]), a_t, a_m, 0.0, None, False)
        z2, _ = ddim_step(z1, known_teacher(z1, t_mid[b : b + 1]), a_m, a_e, 0.0, None, False)
        # one DDIM step t -> t_end whose x0 is the target (epsilon implied by z and x~)
        eps_student = (zb - a_t**0.5 * x_target[b : b + 1]) / (1 - a_t) ** 0.5
        one, x0 = ddim_step(zb, eps_student, a_t, a_e, 0.0, None, False)
        assert torch.allclose(one, z2, rtol=0, atol=1e-9), (n, b)
        assert torch.allclose(x0, x_target[b : b + 1], rtol=0, atol=1e-9)


def test_the_ideal_denoiser_of_a_point_mass_is_its_own_distilled_student():
    """For data = one image c and the exact denoiser eps(z, t) = (z - a_t c) / s_t, DDIM is exact,
    so the PD target is c and the student initialised from the teacher has zero PD loss."""
    c = torch.linspace(-1, 1, 64, dtype=torch.float64).view(1, 1, 8, 8)

    def ideal(z, t):
        a, s = coefficients(AC, t)
        return (z - a * c) / s

    k = torch.arange(1, 5)
    t, t_mid, t_end = stage_times(T, 4, k)
    a, s = coefficients(AC, t)
    z = a * c + s * torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_target = pd_target(ideal, z, t, t_mid, t_end, AC)
    assert torch.allclose(x_target, c.expand_as(x_target), atol=1e-6)
    loss, x0 = pd_loss(ideal(z, t), z, x_target, a, s)
    assert float(loss) < 1e-10
    wrong, _ = pd_loss(ideal(z, t) + 0.01, z, x_target, a, s)
    assert float(wrong) > 1e-4


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_stage_times_are_the_trailing_ddim_grids(n):
    k = torch.arange(1, n + 1)
    t, t_mid, t_end = stage_times(T, n, k)
    assert sorted(t.tolist(), reverse=True) == ddim_timesteps(T, n, "trailing")
    teacher = ddim_timesteps(T, 2 * n, "trailing") + [-1]
    assert sorted(t.tolist() + t_mid.tolist(), reverse=True) == teacher[:-1]
    assert (t_end == torch.tensor([teacher[2 * n - 2 * j + 2] for j in k.tolist()])).all()
    assert ddim_timesteps(T, n, "trailing")[0] == T - 1


@pytest.mark.parametrize("clip", [False, True])
def test_a_student_sampled_with_one_step_on_the_target_follows_the_teacher_with_two(clip):
    """The same statement through the real sampler: a 1-step 'student' that predicts the target's
    epsilon reproduces the teacher's 2-step DDIM sample, also with x0 clipped in the sampler and
    the target (the sampler re-derives eps from the clipped x0, as the target's steps do)."""
    z = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    cfg2 = SamplerConfig(steps=2, eta=0.0, skip="trailing", clip_x0=clip)
    teacher_out = ddim_sample(known_teacher, z, AC, cfg2)
    t, t_mid, t_end = stage_times(T, 1, torch.ones(4, dtype=torch.long))
    x_target = pd_target(known_teacher, z, t, t_mid, t_end, AC, clip_x0=clip)
    a, s = coefficients(AC, t)
    student_eps = (z - a * x_target) / s
    student_out = ddim_sample(lambda x, tt: student_eps, z, AC, SamplerConfig(steps=1, eta=0.0, skip="trailing", clip_x0=clip))
    assert torch.allclose(student_out, teacher_out, atol=1e-8)
    if clip:  # the clipping was exercised: without it the teacher lands elsewhere
        assert not torch.allclose(ddim_sample(known_teacher, z, AC, dataclasses.replace(cfg2, clip_x0=False)), teacher_out)


# ----------------------------------------------------------------------------- relational losses


def _maps(seed, shape=(4, 16, 3, 3)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _check_zero_positive_grad(loss_fn, a, b):
    assert abs(float(loss_fn(a.clone().requires_grad_(True), a).detach())) < 1e-5
    s = b.clone().requires_grad_(True)
    value = loss_fn(s, a)
    assert float(value.detach()) > 1e-4
    value.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and torch.isfinite(s.grad).all()


def test_feature_kl_zero_positive_and_differentiable():
    f, g = _maps(0, (8, 32)), _maps(1, (8, 32))
    _check_zero_positive_grad(lambda s, t: feature_kl(s, t, temperature=1.0), f, g)
    # with RCFD's temperature the teacher side is sharpened: zero when f_S = f_T / tau
    assert abs(float(feature_kl(f / 0.9, f, 0.9))) < 1e-5 and float(feature_kl(f, f, 0.9)) > 1e-5


def test_pixel_relation_kl_zero_positive_differentiable_and_cross_sample():
    a, b = _maps(2), _maps(3)
    _check_zero_positive_grad(pixel_relation_kl, a, b)
    # relations across samples count: rotating sample 1's channel vectors by an orthogonal Q keeps
    # every within-sample similarity and changes only the cross-sample ones
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(9)))
    c = a.clone()
    c[1] = torch.einsum("dc,chw->dhw", q, a[1])
    for i in range(2):
        assert float(pixel_relation_kl(c[i : i + 1], a[i : i + 1])) < 1e-5
    assert float(pixel_relation_kl(c, a)) > 1e-4


def test_anchor_relation_kl_zero_positive_and_differentiable():
    anchors = torch.nn.functional.normalize(_maps(4, (32, 16)), dim=1)
    _check_zero_positive_grad(lambda s, t: anchor_relation_kl(s, t, anchors), _maps(5), _maps(6))


def test_memory_relation_loss_trains_its_head_and_fills_its_queue():
    loss_mod = MemoryRelationLoss(16, size=50, update=20, anchors=10)
    before = loss_mod.memory.queue.clone()
    s = _maps(7).requires_grad_(True)
    value = loss_mod(s, _maps(8))
    value.backward()
    assert float(value.detach()) > 0 and s.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss_mod.head.parameters() if p.ndim == 4)
    changed = (loss_mod.memory.queue != before).any(dim=1)
    assert int(changed.sum()) == 20 and changed[:20].all()


def test_memory_queue_keeps_its_size_and_order():
    mem = PixelMemory(size=10, dim=3)
    items = torch.nn.functional.normalize(torch.randn(27, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    pushed = []
    for chunk in [items[:4], items[4:11], items[11:12], items[12:27]]:  # the last chunk is larger than the queue
        mem.enqueue(chunk)
        pushed.append(chunk)
        assert mem.queue.shape == (10, 3)
        expected = torch.cat(pushed)[-10:]
        if len(torch.cat(pushed)) >= 10:
            assert torch.allclose(mem.ordered(), expected, atol=1e-6)
        else:
            n = len(torch.cat(pushed))
            assert torch.allclose(mem.ordered()[-n:], expected, atol=1e-6)
    assert torch.allclose(mem.ordered()[-1], items[-1], atol=1e-6)


# ----------------------------------------------------------------------------- a stage


def _tiny_features():
    from diffcomp.distill.methods.rdd.features import ClassifierFeatures
    from diffcomp.metrics.classifier import FMNISTClassifier

    torch.manual_seed(0)
    return ClassifierFeatures(FMNISTClassifier(width=8))


def _data():
    return np.random.default_rng(0).integers(0, 256, (32, 1, 32, 32), dtype=np.uint8)


@pytest.mark.parametrize("method", ["pd", "rdd"])
def test_a_killed_stage_resumes_to_the_same_student(tiny_unet, tmp_path, method):
    from diffcomp.distill.stage import distill_stage

    common = dict(iters=5, batch_size=4, lr=1e-3, checkpoint_every=2, low_step_factor=1)
    params = PDParams(**common) if method == "pd" else RDDParams(**common, memory_size=64, memory_update=8,
                                                                   anchors=16, mse_weight=0.5)
    feats = _tiny_features() if method == "rdd" else None
    straight, stats = distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats)
    assert stats["iterations"] == 5 and all(np.isfinite(v) for v in stats["final_losses"].values())
    moved = [not torch.equal(a, b) for a, b in zip(straight.state_dict().values(), tiny_unet.state_dict().values())]
    assert any(moved)  # the student trained; the teacher object is untouched
    distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats, state_dir=tmp_path, stop_at=3)  # killed after 3
    assert (tmp_path / "stage_state.pt").exists()  # checkpoint of iteration 2
    torch.manual_seed(123)
    resumed, rstats = distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats, state_dir=tmp_path)
    assert rstats["resumed_from"] == 2
    # the start-of-stage diagnostics come back from the checkpoint; the later ones are the same
    assert rstats["diagnostics"] == stats["diagnostics"] and "start" in rstats["diagnostics"]["teacher_match"]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_copied_students_start_match_error_is_the_ddim_gap_between_n_and_2n_steps(tiny_unet):
    """At the start of a stage the student is its teacher (eps, no refit), so its teacher-match
    error is the pixel MSE between the teacher's own N- and 2N-step DDIM samples from the same
    noises; the gradient probe splits the top step (t = T - 1) from the rest, at the start and
    every ``probe_every`` iterations and the end."""
    from diffcomp.distill.stage import distill_stage
    from diffcomp.models.sampler import initial_noise

    params = PDParams(iters=3, batch_size=4, lr=1e-3, low_step_factor=1, parameterization="eps", match_noises=6,
                      probe_per_step=2, probe_every=2, seed=3)
    _, stats = distill_stage(tiny_unet, _data(), AC, 2, "pd", params)
    diag = stats["diagnostics"]
    x_T, _ = initial_noise(range(6), (1, 32, 32), 3)
    imgs = [ddim_sample(unet_fn(tiny_unet), x_T, AC, SamplerConfig("ddim", n, 0.0, "trailing", True)).clamp(-1, 1)
            for n in (2, 4)]
    gap = float((imgs[0] - imgs[1]).pow(2).mean())
    assert gap > 0
    start, end = diag["teacher_match"]["start"], diag["teacher_match"]["end"]
    assert start["mse"] == pytest.approx(gap, rel=1e-5) and (start["student_steps"], start["teacher_steps"]) == (2, 4)
    assert np.isfinite(end["mse"]) and end["mse"] != start["mse"]  # the student moved
    assert [g["iteration"] for g in diag["gradient"]] == [0, 2, 3]
    for g in diag["gradient"]:
        top, rest = g["top_step"], g["other_steps"]
        assert top["samples"] == rest["samples"] == 2
        assert top["loss"] > 0 and top["grad_norm"] > 0 and rest["loss"] > 0 and rest["grad_norm"] > 0
        assert g["top_share"] == pytest.approx(top["grad_norm"] / (top["grad_norm"] + rest["grad_norm"]))


def test_a_one_step_students_probe_has_no_other_steps(tiny_unet):
    from diffcomp.distill.stage import distill_stage

    params = PDParams(iters=1, batch_size=4, lr=1e-3, low_step_factor=1, parameterization="eps", match_noises=2,
                      probe_per_step=2)
    _, stats = distill_stage(tiny_unet, _data(), AC, 1, "pd", params)
    g = stats["diagnostics"]["gradient"][0]
    assert g["other_steps"] is None and g["top_share"] is None and g["top_step"]["samples"] == 2


@pytest.mark.parametrize("method", ["pd", "rdd"])
def test_diagnostics_change_nothing_the_stage_trains(tiny_unet, method):
    """Probes and teacher-match samples leave the student, the objective's state (RDD's queue)
    and the data order alone: the same student with and without them."""
    from diffcomp.distill.stage import distill_stage

    common = dict(iters=3, batch_size=4, lr=1e-3, low_step_factor=1, parameterization="eps")
    extra = dict(memory_size=64, memory_update=8, anchors=16) if method == "rdd" else {}
    cls = PDParams if method == "pd" else RDDParams
    feats = _tiny_features() if method == "rdd" else None
    plain, s0 = distill_stage(tiny_unet, _data(), AC, 2, method, cls(**common, **extra, probe_per_step=0, match_noises=0),
                              features=feats)
    probed, s1 = distill_stage(tiny_unet, _data(), AC, 2, method,
                               cls(**common, **extra, probe_per_step=2, probe_every=1, match_noises=2), features=feats)
    assert s0["diagnostics"] == {"gradient": [], "teacher_match": {}} and len(s1["diagnostics"]["gradient"]) == 4
    for (k, a), b in zip(plain.state_dict().items(), probed.state_dict().values()):
        assert torch.equal(a, b), k


# ----------------------------------------------------------------------------- RDD's feature network


RDD_NET = Path(__file__).resolve().parents[1] / "resources/models/fmnist-resnet"
EVAL_NET = RDD_NET.parent / "fmnist-classifier"


def test_the_shipped_rdd_network_verifies_and_is_not_the_evaluation_network():
    import json as _json

    from diffcomp.metrics.classifier import load_classifier
    from diffcomp.metrics.resnet_classifier import FMNISTResNet
    from diffcomp.provenance import sha256_file
    from diffcomp.weights import CLASSIFIER, verify

    weights = verify(RDD_NET, CLASSIFIER)  # raises unless the file matches its recorded sha256
    prov = _json.loads((RDD_NET / "provenance.json").read_text())
    assert prov["sha256"] == sha256_file(weights) != sha256_file(EVAL_NET / "model.safetensors")
    assert prov["config"]["arch"] == "resnet" and prov["config"]["seed"] != 0 and prov["test_accuracy"] > 0.85
    assert isinstance(load_classifier(RDD_NET), FMNISTResNet)


def test_rdd_reads_the_resnet_before_its_last_relu_and_the_classifier_after():
    """The pre-ReLU map takes both signs (cosine relations between its pixels can be negative);
    the pooled vector is the one the network's head reads, the mean of the map after its ReLU.
    The metrics' classifier's map (after ReLU) is never negative."""
    from diffcomp.distill.methods.rdd.features import load_feature_net

    x = torch.from_numpy(_data()[:8]).float().div(127.5).sub(1)
    fmap, vec = load_feature_net("fmnist-resnet", RDD_NET)(x)
    assert fmap.shape == (8, 64, 8, 8) and (fmap < 0).float().mean() > 0.05 and (fmap > 0).float().mean() > 0.05
    assert torch.allclose(vec, fmap.clamp(min=0).mean(dim=(2, 3)))
    cos = torch.nn.functional.normalize(fmap.flatten(2), dim=1)
    assert (torch.einsum("bci,bcj->bij", cos, cos) < 0).any()
    vgg_map, _ = load_feature_net("fmnist-classifier", EVAL_NET)(x)
    assert (vgg_map >= 0).all()
    with pytest.raises(ValueError, match="'fmnist-resnet' is a resnet network, but .* holds a FMNISTClassifier"):
        load_feature_net("fmnist-resnet", EVAL_NET)


# ----------------------------------------------------------------------------- wiring (issue 18)


class _RecordingEps(torch.nn.Module):
    """An epsilon model eps = w z (w a parameter, so a student can train) that records its inputs."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.1))
        self.calls = []

    def forward(self, z, t):
        from types import SimpleNamespace

        self.calls.append((z.detach().clone(), t.detach().clone()))
        return SimpleNamespace(sample=self.w * z)


def test_a_stage_noises_its_data_as_a_t_x0_plus_s_t_eps():
    """Every image is the same constant c, so the noise the stage drew is recoverable from the
    teacher's first input z of each iteration: (z - a_t c) / s_t must be standard normal noise."""
    from diffcomp.distill.stage import distill_stage

    c = 191
    images = np.full((16, 1, 32, 32), c, dtype=np.uint8)
    teacher = _RecordingEps()
    distill_stage(teacher, images, AC, 2, "pd", PDParams(iters=2, low_step_factor=1, batch_size=8, lr=1e-3,
                                                        parameterization="eps", probe_per_step=0, match_noises=0))
    firsts = teacher.calls[0::2]  # pd_target calls the teacher at t, then at t_mid
    assert len(firsts) == 2
    x0 = c / 127.5 - 1
    for z, t in firsts:
        assert set(t.tolist()) <= {499, 999}  # the 2-step student's start points on the trailing grid
        a, s = coefficients(AC, t)
        eps = ((z.double() - a * x0) / s).flatten(1)
        assert (eps.mean(1).abs() < 0.15).all() and ((eps.std(1) - 1).abs() < 0.15).all(), (eps.mean(1), eps.std(1))


def _pixel_relation_by_hand(map_s, map_t, tau):
    """RDD's cross-sample pixel relation KL with explicit loops (float64)."""
    def unit_pixels(m):
        v = m.double().flatten(2).transpose(1, 2)  # (B, HW, C)
        return v / v.norm(dim=2, keepdim=True)

    ps, pt = unit_pixels(map_s), unit_pixels(map_t)
    B, P, _ = ps.shape
    total, rows = 0.0, 0
    for b in range(B):
        for d in range(B):
            for i in range(P):
                ls = torch.stack([ps[b, i] @ ps[d, j] for j in range(P)]) / tau
                lt = torch.stack([pt[b, i] @ pt[d, j] for j in range(P)]) / tau
                p_t = torch.softmax(lt, 0)
                total += float((p_t * (torch.log_softmax(lt, 0) - torch.log_softmax(ls, 0))).sum())
                rows += 1
    return total / rows


@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_pixel_relation_kl_equals_the_hand_computed_value_at_its_temperature(tau):
    s, t = _maps(11, (2, 3, 2, 2)), _maps(12, (2, 3, 2, 2))
    assert float(pixel_relation_kl(s, t, tau)) == pytest.approx(_pixel_relation_by_hand(s, t, tau), rel=1e-4)
    assert float(pixel_relation_kl(s, t, tau)) != pytest.approx(float(pixel_relation_kl(s, t, 2 * tau)), rel=1e-3)


def _rdd_case(**kw):
    from diffcomp.distill.methods.rdd.objective import RDDObjective

    feats = _tiny_features()
    params = RDDParams(memory_size=64, memory_update=8, anchors=16, mse_weight=1.0, **kw)
    objective = RDDObjective(params, feats, feats.channels)
    g = torch.Generator().manual_seed(3)
    z, x_target = torch.randn(2, 1, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    eps_s = torch.randn(2, 1, 32, 32, generator=g)
    a, s = coefficients(AC, torch.tensor([300, 700]))
    return objective, feats, (eps_s, z, x_target, a, s)


def test_rdd_objective_passes_each_temperature_to_its_loss():
    import copy

    kw = dict(temperature=0.5, intra_temperature=0.3, contrast_temperature=0.2, kd_temperature=2.0)
    objective, feats, args = _rdd_case(**kw)
    memory = copy.deepcopy(objective.memory)  # the same queue and generator state
    _, parts = objective(*args)
    eps_s, z, x_target, a, s = args
    _, x0_s = pd_loss(eps_s, z, x_target, a, s)
    map_t, vec_t = feats(x_target)
    map_s, vec_s = feats(x0_s)
    assert torch.allclose(parts["feature"], feature_kl(vec_s, vec_t, 0.5))
    assert torch.allclose(parts["intra"], pixel_relation_kl(map_s, map_t, 0.3))
    assert torch.allclose(parts["memory"], memory(map_s, map_t))
    assert (memory.contrast_temperature, memory.kd_temperature) == (0.2, 2.0)
    for k, default in (("feature", feature_kl(vec_s, vec_t, 0.9)), ("intra", pixel_relation_kl(map_s, map_t, 1.0))):
        assert not torch.allclose(parts[k], default), k  # the temperature matters on this case


def test_the_memory_queue_is_fed_with_teacher_pixels():
    loss_mod = MemoryRelationLoss(16, size=50, update=6, anchors=10, seed=1)
    map_s, map_t = _maps(20), _maps(21)
    before = loss_mod.memory.queue.clone()
    loss_mod(map_s, map_t)
    new = loss_mod.memory.queue[(loss_mod.memory.queue != before).any(dim=1)]
    teacher = torch.nn.functional.normalize(map_t.flatten(2).transpose(1, 2).reshape(-1, 16), dim=1)
    student = torch.nn.functional.normalize(map_s.flatten(2).transpose(1, 2).reshape(-1, 16), dim=1)
    assert len(new) == 6
    for row in new:
        assert (teacher - row).abs().amax(1).min() < 1e-6
        assert (student - row).abs().amax(1).min() > 1e-3


def test_rdd_objective_enqueues_the_targets_features():
    objective, feats, args = _rdd_case()
    before = objective.memory.memory.queue.clone()
    objective(*args)
    queue = objective.memory.memory.queue
    new = queue[(queue != before).any(dim=1)]
    map_t, _ = feats(args[2])
    teacher = torch.nn.functional.normalize(map_t.flatten(2).transpose(1, 2).reshape(-1, map_t.shape[1]), dim=1)
    assert len(new) == 8 and all((teacher - row).abs().amax(1).min() < 1e-5 for row in new)


# ----------------------------------------------------------------------------- parameterisation (issue 13)


@pytest.mark.parametrize("kind", ["eps", "x", "v"])
def test_each_parameterisation_converts_back_to_the_same_eps_and_x0(kind):
    from diffcomp.models.parameterization import from_eps_x0, to_eps, to_x0

    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 250, 500, 999])
    a, s = coefficients(AC, t)
    x0 = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    z = a * x0 + s * eps
    out = from_eps_x0(eps, x0, a, s, kind)
    assert torch.allclose(to_eps(out, z, a, s, kind), eps, atol=1e-8)
    assert torch.allclose(to_x0(out, z, a, s, kind), x0, atol=1e-8)
    if kind == "v":  # v = a eps - s x0 is bounded where eps -> x0 divides by a: |v| <= |eps| + |x0|
        assert (out.abs() <= eps.abs() + x0.abs() + 1e-12).all()


class _AsV(torch.nn.Module):
    """An epsilon UNet re-expressed as a v model (v = a eps - s x0) on schedule ``ac``."""

    def __init__(self, unet, ac):
        super().__init__()
        self.unet, self.ac = unet, ac

    def forward(self, z, t):
        from types import SimpleNamespace

        from diffcomp.models.parameterization import from_eps_x0, to_x0

        eps = self.unet(z, t).sample.double()
        a, s = coefficients(self.ac, t.reshape(-1).expand(z.shape[0]))
        return SimpleNamespace(sample=from_eps_x0(eps, to_x0(eps, z.double(), a, s, "eps"), a, s, "v").float())


def test_sampling_a_v_model_gives_the_images_of_the_eps_model_it_re_expresses(tiny_unet):
    from diffcomp.models.config import SamplerConfig
    from diffcomp.models.sampler import generate, unet_fn

    cfg = SamplerConfig(name="ddim", steps=4, eta=0.0, skip="uniform", clip_x0=False)
    eps_images = generate(unet_fn(tiny_unet), [0, 1, 2], (1, 32, 32), AC, cfg, 0, "cpu")
    v_images = generate(unet_fn(_AsV(tiny_unet, AC), None, "v_prediction", AC), [0, 1, 2], (1, 32, 32), AC, cfg, 0, "cpu")
    assert (v_images - eps_images).abs().max() < 2e-3
    with pytest.raises(ValueError, match="alphas_cumprod"):
        unet_fn(tiny_unet, None, "v_prediction")
    with pytest.raises(ValueError, match="unknown prediction type"):
        unet_fn(tiny_unet, None, "score")


def test_refitting_the_output_layer_lowers_the_error_to_the_teachers_v(tiny_unet):
    import copy

    from diffcomp.distill.reparam import refit_output

    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, 1000, (24,), generator=g)
    a, s = coefficients(AC, t)
    z = (a * (torch.rand(24, 1, 32, 32, generator=g, dtype=torch.float64) * 2 - 1)
         + s * torch.randn(24, 1, 32, 32, generator=g, dtype=torch.float64)).float()
    student = copy.deepcopy(tiny_unet)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    info = refit_output(student, unet_fn(tiny_unet), z, t, AC, "v", batch_size=8)
    assert info["rel_err_after"] < info["rel_err_before"]
    assert info["rel_err_after"] <= 0.999 * info["rel_err_before"]
    changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"conv_out.weight", "conv_out.bias"}
    # a second fit on the same data changes nothing: the first was the least-squares optimum
    again = refit_output(student, unet_fn(tiny_unet), z, t, AC, "v", batch_size=8)
    assert again["rel_err_before"] == pytest.approx(info["rel_err_after"], rel=1e-4)


def test_a_v_student_trains_from_an_eps_teacher_and_its_folder_says_so(tiny_pipeline_dir, tmp_path):
    """Through the verb: the saved student predicts v (its scheduler says v_prediction), its own
    output layer was refitted, and a second stage from it (teacher v, student v) needs no refit."""
    import json as _json

    from diffcomp.cli import main
    from diffcomp.io import save_npz
    from diffcomp.models.pipeline import load_pipeline

    save_npz(tmp_path / "train.npz", images=_data())
    params = _json.dumps({"iters": 2, "batch_size": 4, "lr": 1e-4, "low_step_factor": 1, "parameterization": "v",
                          "refit_samples": 8, "match_noises": 4, "probe_per_step": 2})
    out = tmp_path / "s2"
    main(["distill", "--teacher", str(tiny_pipeline_dir), "--steps", "2", "--method", "pd", "--params", params,
          "--data", str(tmp_path / "train.npz"), "--out", str(out), "--device", "cpu"])
    student = load_pipeline(out)
    assert student.prediction_type == "v_prediction"
    prov = _json.loads((out / "provenance.json").read_text())
    stats = prov["stats"]
    assert stats["prediction"] == "v" and stats["teacher_prediction"] == "eps"
    assert stats["refit_output"]["rel_err_after"] < stats["refit_output"]["rel_err_before"]
    diag = stats["diagnostics"]  # the stage's diagnostics reach the student's provenance
    assert set(diag["teacher_match"]) == {"start", "end"} and diag["teacher_match"]["start"]["mse"] > 0
    assert diag["teacher_match"]["start"]["clip_x0"] is True  # the verb's default, as the grid samples
    assert [g["iteration"] for g in diag["gradient"]] == [0, 2] and 0 < diag["gradient"][0]["top_share"] < 1
    main(["distill", "--teacher", str(out), "--steps", "1", "--method", "pd", "--params", params,
          "--data", str(tmp_path / "train.npz"), "--out", str(tmp_path / "s1"), "--device", "cpu"])
    stats1 = _json.loads((tmp_path / "s1" / "provenance.json").read_text())["stats"]
    assert stats1["teacher_prediction"] == "v" and stats1["refit_output"] is None


def test_quantize_refuses_a_model_that_does_not_predict_noise(tiny_pipeline_dir, tmp_path):
    import shutil

    from diffcomp.cli import main

    folder = tmp_path / "v-model"
    shutil.copytree(tiny_pipeline_dir, folder)
    cfg_path = folder / "scheduler" / "scheduler_config.json"
    import json as _json

    cfg = _json.loads(cfg_path.read_text())
    cfg["prediction_type"] = "v_prediction"
    cfg_path.write_text(_json.dumps(cfg))
    with pytest.raises(SystemExit, match="noise-predicting"):
        main(["quantize", "--model", str(folder), "--trajectories", str(tmp_path / "none.safetensors"),
              "--method", "linear", "--bits", "w8a8", "--out", str(tmp_path / "q.safetensors"), "--device", "cpu"])


def test_a_stage_under_bf16_autocast_trains_the_same_student_to_rounding(tiny_unet):
    """``autocast``: the teacher's and the student's forwards in bf16, the loss in fp32; the first
    loss equals fp32's to bf16 rounding, and the student is an fp32 model."""
    from diffcomp.distill.stage import distill_stage

    params = PDParams(iters=1, batch_size=4, lr=1e-3, low_step_factor=1, parameterization="v", match_noises=0,
                      probe_per_step=0, refit_output=False)
    losses = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        student, stats = distill_stage(tiny_unet, _data(), AC, 2, "pd", params, autocast=dtype)
        losses[name] = stats["final_losses"]["loss"]
        assert all(p.dtype == torch.float32 for p in student.parameters())
    assert losses["bf16"] != losses["fp32"] and losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


@pytest.mark.parametrize("method", ["pd", "rdd"])
def test_a_stage_resumed_mid_chunk_schedule_trains_the_student_of_one_straight_run(tiny_unet, tmp_path, method):
    """The loop draws its inputs a chunk at a time (here 4 iterations, one log interval) and
    checkpoints every 6: the run killed after 13 resumes from 12 with chunks cut elsewhere, and the
    data order, learning rates and the objective's draws are still those of the straight run."""
    from diffcomp.distill.stage import distill_stage

    common = dict(iters=40, batch_size=2, lr=1e-3, checkpoint_every=6, low_step_factor=1, probe_per_step=0,
                  match_noises=0, refit_output=False)
    params = PDParams(**common) if method == "pd" else RDDParams(**common, memory_size=32, memory_update=4,
                                                                   anchors=8)
    feats = _tiny_features() if method == "rdd" else None
    straight, stats = distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats)
    distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats, state_dir=tmp_path, stop_at=13)
    resumed, rstats = distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats, state_dir=tmp_path)
    assert rstats["resumed_from"] == 12 and rstats["iterations"] == 40
    assert rstats["final_losses"] == pytest.approx(stats["final_losses"], rel=1e-6)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_stage_learning_rate_is_torchs_cosine_annealing():
    from diffcomp.distill.stage import cosine_lr

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=5e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=37)
    for i in range(37):
        assert cosine_lr(5e-5, 37, i) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-18), i
        opt.step()
        sched.step()


def test_the_graph_engine_is_cuda_and_fp32_only():
    from diffcomp.distill.stage import pick_engine

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_engine("auto", cpu, None) == "eager" and pick_engine("auto", cuda, torch.bfloat16) == "eager"
    assert pick_engine("auto", cuda, None) == "graph"
    for dev, dtype in ((cpu, None), (cuda, torch.bfloat16)):
        with pytest.raises(ValueError, match="graph engine"):
            pick_engine("graph", dev, dtype)
    with pytest.raises(ValueError, match="engine must be"):
        pick_engine("fast", cpu, None)


def test_rdds_drawn_ahead_inputs_are_the_ones_it_draws_itself():
    """The stage draws the objective's random inputs ahead (so a captured step reads them from the
    device); passing them back gives the loss and the queue of the objective that drew in place."""
    from diffcomp.distill.methods.rdd.objective import RDDObjective

    params = RDDParams(memory_size=32, memory_update=4, anchors=8)
    feats = _tiny_features()
    own, ahead = RDDObjective(params, feats, feats.channels), RDDObjective(params, feats, feats.channels)
    ahead.load_state_dict(own.state_dict())
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 1, 32, 32, generator=g)
    eps = torch.randn(3, 1, 32, 32, generator=g)
    target = torch.randn(3, 1, 32, 32, generator=g).clamp(-1, 1)
    t = torch.tensor([999, 499, 10])
    a, s = coefficients(AC, t)
    picks = ahead.draw(2, 3, (1, 32, 32), "cpu")["pick"]
    assert picks.shape == (2, 4)
    for i in range(2):
        l_own, p_own = own(eps, z, target, a, s)
        l_ahead, p_ahead = ahead(eps, z, target, a, s, draws={"pick": picks[i]})
        assert torch.equal(l_own, l_ahead) and all(torch.equal(p_own[k], p_ahead[k]) for k in p_own)
    assert torch.equal(own.memory.memory.queue, ahead.memory.memory.queue)
    assert int(own.memory.memory.ptr) == int(ahead.memory.memory.ptr) == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["pd", "rdd"])
def test_the_graph_engine_trains_the_eager_engines_student(tiny_unet, tmp_path, method):
    """One CUDA graph per stage replayed: the same inputs, learning rates and optimiser as the eager
    loop, so the same student to kernel rounding; a stage killed under one engine resumes under
    the other."""
    from diffcomp.distill.stage import distill_stage
    from diffcomp.models.sampler import set_precision

    set_precision("fp32", "cuda")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False  # the same kernels both ways
    common = dict(iters=30, batch_size=4, lr=1e-3, checkpoint_every=9, low_step_factor=1, probe_per_step=2,
                  probe_every=10, match_noises=4)
    params = PDParams(**common) if method == "pd" else RDDParams(**common, memory_size=32, memory_update=4,
                                                                   anchors=8)
    feats = _tiny_features() if method == "rdd" else None
    out = {}
    for engine in ("eager", "graph"):
        out[engine] = distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats, device="cuda",
                                    engine=engine)
    for (k, a), b in zip(out["eager"][0].state_dict().items(), out["graph"][0].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    assert out["graph"][1]["final_losses"] == pytest.approx(out["eager"][1]["final_losses"], rel=1e-3)
    distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats, device="cuda", engine="graph",
                  state_dir=tmp_path, stop_at=20)
    resumed, rstats = distill_stage(tiny_unet, _data(), AC, 2, method, params, features=feats, device="cuda",
                                    engine="eager", state_dir=tmp_path)
    assert rstats["resumed_from"] == 18
    for (k, a), b in zip(out["eager"][0].state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
