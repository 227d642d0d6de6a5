import numpy as np
import pytest
import torch

from diffcomp.sections import SamplerConfig
from diffcomp.models.sampler import ddim_sample, ddim_step, ddim_timesteps, generate, initial_noise, unet_fn
from diffcomp.models.unet import build_scheduler


def test_uniform_and_quad_timesteps():
    assert ddim_timesteps(1000, 10, "uniform") == list(range(900, -1, -100))
    q = ddim_timesteps(1000, 100, "quad")
    assert len(q) == 100 and q[0] == 800 and q[-4:] == [0, 0, 0, 0]
    assert all(a >= b for a, b in zip(q, q[1:]))
    with pytest.raises(ValueError, match="steps must be"):
        ddim_timesteps(1000, 0)
    with pytest.raises(ValueError, match="unknown skip"):
        ddim_timesteps(1000, 10, "cubic")


def test_ddim_step_with_the_true_noise_recovers_x0_and_the_marginal():
    torch.manual_seed(0)
    x0, eps = torch.rand(3, 1, 4, 4) * 2 - 1, torch.randn(3, 1, 4, 4)
    a_t, a_prev = 0.3, 0.8
    x_t = a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps
    x_prev, x0_hat = ddim_step(x_t, eps, a_t, a_prev, eta=0.0, noise=None, clip_x0=False)
    assert torch.allclose(x0_hat, x0, atol=1e-6)
    assert torch.allclose(x_prev, a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps, atol=1e-6)
    # last step (a_prev = 1) returns x0 itself
    x_last, _ = ddim_step(x_t, eps, a_t, 1.0, eta=0.0, noise=None, clip_x0=False)
    assert torch.allclose(x_last, x0, atol=1e-6)


def test_sampling_with_an_oracle_model_returns_the_target_image():
    """A model that predicts the exact noise for a fixed x0 makes DDIM land on x0."""
    ac = build_scheduler().alphas_cumprod.double()
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1

    def oracle(x, t):
        a = ac[t].view(-1, 1, 1, 1).float()
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    x_T, _ = initial_noise([0, 1], (1, 8, 8), 0)
    out = ddim_sample(oracle, x_T, ac, SamplerConfig(steps=7, skip="uniform"))
    assert torch.allclose(out, x0, atol=1e-4)


def test_per_image_seeds_do_not_depend_on_the_batch(tiny_unet):
    ac = build_scheduler().alphas_cumprod
    cfg = SamplerConfig(steps=3, skip="uniform", eta=0.5)
    fn = unet_fn(tiny_unet)
    together = generate(fn, [0, 1, 2, 3], (1, 32, 32), ac, cfg, base_seed=5)
    apart = torch.cat([generate(fn, [i], (1, 32, 32), ac, cfg, base_seed=5) for i in (2, 3)])
    assert torch.allclose(together[2:], apart, atol=1e-5)
    other_seed = generate(fn, [2, 3], (1, 32, 32), ac, cfg, base_seed=6)
    assert not torch.allclose(other_seed, apart, atol=1e-2)
    assert together.min() >= -1 and together.max() <= 1


# ----------------------------------------------------------------------------- wiring (issue 18)


def test_every_image_draws_its_noise_from_its_own_seed():
    """Image i of a batch gets exactly the noise of a generator seeded base + i: the images of one
    batch differ, and shifting the index by k is the same as shifting the base seed by k."""
    x, gens = initial_noise([0, 1, 2], (1, 4, 4), base_seed=7)
    for i in range(3):
        assert torch.equal(x[i], torch.randn((1, 4, 4), generator=torch.Generator().manual_seed(7 + i)))
    assert not torch.equal(x[0], x[1]) and not torch.equal(x[1], x[2])
    shifted, _ = initial_noise([5], (1, 4, 4), base_seed=2)
    assert torch.equal(shifted[0], initial_noise([0], (1, 4, 4), base_seed=7)[0][0])
    # the later noise of eta > 0 comes from the same per-image generators, in order
    fresh = torch.Generator().manual_seed(8)
    torch.randn((1, 4, 4), generator=fresh)
    assert torch.equal(torch.randn((1, 4, 4), generator=gens[1]), torch.randn((1, 4, 4), generator=fresh))


def test_images_of_one_batch_differ_and_each_equals_its_own_single_image_run(tiny_unet):
    ac = build_scheduler().alphas_cumprod
    cfg = SamplerConfig(steps=2, skip="uniform", eta=1.0)
    fn = unet_fn(tiny_unet)
    batch = generate(fn, [0, 1, 2], (1, 32, 32), ac, cfg, base_seed=3)
    assert all(not torch.allclose(batch[i], batch[j], atol=1e-2) for i, j in ((0, 1), (1, 2), (0, 2)))
    for i in range(3):
        assert torch.allclose(batch[i], generate(fn, [0], (1, 32, 32), ac, cfg, base_seed=3 + i)[0], atol=1e-5)


def test_ddim_step_clips_x0_exactly_when_asked():
    """Two pixels by hand: x_t = (2, -0.2), eps = 0, a_t = 0.25 give x0 = x_t / 0.5 = (4, -0.4);
    clipping makes it (1, -0.4) and re-derives eps = (x_t - 0.5 x0) / sqrt(0.75) = (1.5 / sqrt(0.75), 0),
    so x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps = (0.8 + 0.6 sqrt(3), -0.32): the clipped
    pixel stays on the line from its x0 through x_t; the unclipped one is as without clipping."""
    x = torch.tensor([[2.0, -0.2]])
    eps = torch.zeros_like(x)
    x_prev, x0 = ddim_step(x, eps, 0.25, 0.64, 0.0, None, clip_x0=True)
    assert torch.allclose(x0, torch.tensor([[1.0, -0.4]]))
    assert torch.allclose(x_prev, torch.tensor([[0.8 + 0.6 * 3**0.5, -0.32]]))
    x_prev, x0 = ddim_step(x, eps, 0.25, 0.64, 0.0, None, clip_x0=False)
    assert torch.allclose(x0, torch.tensor([[4.0, -0.4]])) and torch.allclose(x_prev, torch.tensor([[3.2, -0.32]]))


@pytest.mark.parametrize("clip", [True, False])
def test_the_sampler_passes_its_clip_setting_to_every_step(clip):
    """A model predicting zero noise from x_T = (3, -3, 0.5): the last step returns x0 = x / sqrt(a),
    clipped to [-1, 1] only with clip_x0."""
    ac = build_scheduler().alphas_cumprod.double()
    x_T = torch.tensor([[[[3.0, -3.0, 0.5]]]], dtype=torch.float64)
    out = ddim_sample(lambda x, t: torch.zeros_like(x), x_T, ac, SamplerConfig(steps=1, skip="uniform", clip_x0=clip))
    t = ddim_timesteps(1000, 1, "uniform")[0]
    x0 = x_T / ac[t].sqrt()
    assert torch.allclose(out, x0.clamp(-1, 1) if clip else x0)


def _toy_eps(x, t):
    """A smooth deterministic eps model (differs per timestep), for comparing samplers."""
    tt = t.float().view(-1, 1, 1, 1) / 1000
    return torch.tanh(0.7 * x + tt) - 0.3 * tt


def _scheduler_loop(sched, x, steps, model):
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = sched.step(model(x, torch.full((x.shape[0],), int(t))), t, x).prev_sample
    return x


@pytest.mark.parametrize("steps", [1, 2, 4, 20])
def test_plms_on_the_ldm_grid_equals_diffusers_pndm_without_runge_kutta(steps):
    """PLMS (Heun first step, then Adams-Bashforth of order 2, 3, 4) on the latent-diffusion grid
    (range(0, T, T/steps) + 1, ending at alphas_cumprod[0]) is diffusers' PNDM scheduler with
    skip_prk_steps, steps_offset 1 and set_alpha_to_one off, the latent-diffusion convention."""
    from diffusers import PNDMScheduler

    base = build_scheduler()
    sched = PNDMScheduler.from_config(base.config, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
                                      timestep_spacing="leading")
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _scheduler_loop(sched, x_T.clone(), steps, _toy_eps)
    ours = ddim_sample(_toy_eps, x_T.clone(), base.alphas_cumprod, SamplerConfig("plms", steps, 0.0, "ldm"))
    assert torch.allclose(ours, ref.to(ours.dtype), atol=1e-5), (ours - ref).abs().max()
    if steps > 1:  # and it is not DDIM: the multistep eps changes the result (one step from t = 1 barely moves)
        ddim = ddim_sample(_toy_eps, x_T.clone(), base.alphas_cumprod, SamplerConfig("ddim", steps, 0.0, "ldm"))
        assert (ddim - ours).abs().max() > 1e-3


def test_ddim_on_the_ldm_grid_equals_diffusers_ddim_with_the_ldm_settings():
    from diffusers import DDIMScheduler

    base = build_scheduler()
    assert ddim_timesteps(1000, 20, "ldm") == list(range(951, 0, -50))
    sched = DDIMScheduler.from_config(base.config, steps_offset=1, set_alpha_to_one=False, timestep_spacing="leading",
                                      clip_sample=False)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = _scheduler_loop(sched, x_T.clone(), 20, _toy_eps)
    ours = ddim_sample(_toy_eps, x_T.clone(), base.alphas_cumprod, SamplerConfig("ddim", 20, 0.0, "ldm"))
    assert torch.allclose(ours, ref.to(ours.dtype), atol=1e-5)
    # the last step ends at alphas_cumprod[0], not at the clean image: one step from t = 1 differs
    uniform = ddim_sample(_toy_eps, x_T.clone(), base.alphas_cumprod, SamplerConfig("ddim", 20, 0.0, "uniform"))
    assert (uniform - ours).abs().max() > 1e-3


def test_plms_records_one_input_per_step_and_refuses_eta():
    base = build_scheduler()
    seen = []
    x_T = torch.randn(2, 1, 4, 4)
    ddim_sample(_toy_eps, x_T, base.alphas_cumprod, SamplerConfig("plms", 5, 0.0, "ldm"),
                record=lambda i, x, t: seen.append((i, int(t[0]))))
    assert seen == list(enumerate(ddim_timesteps(1000, 5, "ldm")))
    with pytest.raises(ValueError, match="eta must be 0"):
        ddim_sample(_toy_eps, x_T, base.alphas_cumprod, SamplerConfig("plms", 5, 1.0, "ldm"))
    with pytest.raises(ValueError, match="unknown sampler"):
        ddim_sample(_toy_eps, x_T, base.alphas_cumprod, SamplerConfig("euler", 5))


def test_ddim_with_eta_one_adds_each_image_own_noise_at_every_step_but_the_clean_last():
    """eta 1 (LSUN-Bedroom's sampler): noise from each image's own generator; with the uniform grid
    the last step adds none, so two runs with the same seeds agree and differ from eta 0."""
    base = build_scheduler()
    cfg = SamplerConfig("ddim", 10, 1.0, "uniform")
    x_T, gens = initial_noise([0, 1], (1, 4, 4), 7)
    a = ddim_sample(_toy_eps, x_T, base.alphas_cumprod, cfg, generators=gens)
    x_T2, gens2 = initial_noise([0, 1], (1, 4, 4), 7)
    assert torch.equal(a, ddim_sample(_toy_eps, x_T2, base.alphas_cumprod, cfg, generators=gens2))
    assert (a - ddim_sample(_toy_eps, x_T, base.alphas_cumprod, SamplerConfig("ddim", 10, 0.0, "uniform"))).abs().max() > 1e-2
    with pytest.raises(ValueError, match="per-image generators"):
        ddim_sample(_toy_eps, x_T, base.alphas_cumprod, cfg)
