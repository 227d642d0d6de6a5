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
