"""DDIM and PLMS sampling with per-image seeds, as plain functions.

Every image ``i`` draws all its noise from its own generator seeded ``base_seed + i``, so an
image does not depend on the batch it was drawn in, the shard count or the machine's RNG state.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .config import PRECISIONS, SamplerConfig

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("ddim", "plms")
SKIPS = ("uniform", "quad", "trailing", "ldm")


def ddim_timesteps(num_train_timesteps: int, steps: int, skip: str = "uniform") -> list[int]:
    """The model timesteps visited by DDIM, noisiest first.

    ``uniform``: ``range(0, T, T // steps)``; ``quad``: ``(linspace(0, sqrt(0.8 T), steps))**2``
    (the two skip types of the DDIM code that Q-Diffusion uses); ``trailing``:
    ``round(k T / steps) - 1`` for k = steps..1, the grid of progressive distillation (its first
    step starts at the noisiest timestep T - 1, and the grid for N steps is every other point of
    the grid for 2N steps, so a student's step spans exactly two of its teacher's); ``ldm``:
    ``range(0, T, T // steps) + 1``, the latent-diffusion samplers' grid (its last step goes to
    ``alphas_cumprod[0]``, not to 1: ``final_timestep``).
    """
    if steps < 1 or steps > num_train_timesteps:
        raise ValueError(f"steps must be in 1..{num_train_timesteps}, got {steps}")
    if skip == "uniform":
        stride = num_train_timesteps // steps
        seq = list(range(0, num_train_timesteps, stride))[:steps]
    elif skip == "quad":
        # As in the DDIM code Q-Diffusion uses: the first few entries repeat (0, 0, 0, 0, 1, ...
        # for 100 steps); a step between equal timesteps leaves x unchanged but is kept, so the
        # number of model evaluations matches the paper's protocol.
        seq = [int(s) for s in np.linspace(0, np.sqrt(num_train_timesteps * 0.8), steps) ** 2]
    elif skip == "trailing":
        seq = [int(np.floor(k * num_train_timesteps / steps + 0.5)) - 1 for k in range(1, steps + 1)]
    elif skip == "ldm":
        stride = num_train_timesteps // steps
        seq = [s + 1 for s in range(0, num_train_timesteps, stride)][:steps]
    else:
        raise ValueError(f"unknown skip type {skip!r}; expected one of {', '.join(map(repr, SKIPS))}")
    return seq[::-1]


def final_timestep(skip: str) -> int:
    """The timestep the last step lands on: -1 (alpha 1, the clean image) for DDIM's grids, 0 for
    ``ldm`` (the latent-diffusion samplers stop at ``alphas_cumprod[0]``)."""
    return 0 if skip == "ldm" else -1


def step_alphas(alphas_cumprod: torch.Tensor, cfg: SamplerConfig) -> list[tuple[int, int, float, float]]:
    """``(t, t_next, a_t, a_next)`` of every step of ``cfg``'s grid, noisiest first; ``t_next`` is
    the next step's model timestep (``final_timestep`` after the last) and ``a_next`` its
    alphas_cumprod (1 at -1)."""
    ac = alphas_cumprod.double().cpu()
    ts = ddim_timesteps(ac.shape[0], cfg.steps, cfg.skip)
    nxt = ts[1:] + [final_timestep(cfg.skip)]
    return [(t, tn, float(ac[t]), float(ac[tn]) if tn >= 0 else 1.0) for t, tn in zip(ts, nxt)]


def model_timesteps(num_train_timesteps: int, cfg: SamplerConfig) -> list[int]:
    """Every timestep ``cfg``'s sampler evaluates the model at: its grid, and for PLMS the point
    its first step's second evaluation lands on (the next grid timestep, or the final one)."""
    ts = ddim_timesteps(num_train_timesteps, cfg.steps, cfg.skip)
    if cfg.name == "plms" and len(ts) == 1:
        ts = ts + [max(final_timestep(cfg.skip), 0)]
    return ts


def plms_combine(eps: torch.Tensor, history: Sequence[torch.Tensor]) -> torch.Tensor:
    """PLMS's linear multistep eps from this step's ``eps`` and the previous steps' (oldest first,
    up to three): the Adams-Bashforth weights of order 2, 3 and 4 (3, -1)/2, (23, -16, 5)/12,
    (55, -59, 37, -9)/24. With no history the first step is a second-order (Heun) step the caller
    makes itself."""
    h = list(history)[-3:][::-1]  # newest first
    if len(h) == 1:
        return (3 * eps - h[0]) / 2
    if len(h) == 2:
        return (23 * eps - 16 * h[0] + 5 * h[1]) / 12
    if len(h) == 3:
        return (55 * eps - 59 * h[0] + 37 * h[1] - 9 * h[2]) / 24
    raise ValueError("plms_combine needs one to three previous eps")


def initial_noise(indices: Sequence[int], shape: tuple[int, ...], base_seed: int) -> tuple[torch.Tensor, list[torch.Generator]]:
    """x_T for each image index from its own CPU generator; returns the generators for later noise."""
    gens = [torch.Generator().manual_seed(int(base_seed) + int(i)) for i in indices]
    x = torch.stack([torch.randn(shape, generator=g) for g in gens])
    return x, gens


def ddim_step(x: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float, eta: float,
              noise: torch.Tensor | None, clip_x0: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update from x_t to x_prev; returns (x_prev, predicted x0). With ``clip_x0`` the x0
    estimate is clipped to [-1, 1] and eps re-derived from the clipped x0, as the DDIM and
    progressive-distillation samplers do (so x_prev lies on the line from x0 through x_t, and the
    update is the one progressive distillation's targets assume)."""
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (x - a_t**0.5 * x0) / (1 - a_t) ** 0.5
    sigma = eta * ((1 - a_prev) / (1 - a_t)) ** 0.5 * (1 - a_t / a_prev) ** 0.5
    x_prev = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
    if sigma > 0:
        x_prev = x_prev + sigma * noise
    return x_prev, x0


@torch.no_grad()
def ddim_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    cfg: SamplerConfig,
    generators: Sequence[torch.Generator] | None = None,
    record: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Run ``cfg``'s sampler (DDIM or PLMS) from ``x_T``; ``model_fn(x, t)`` predicts epsilon.

    ``record(step_index, x_t, t)`` is called with the model input of every step (calibration
    trajectories; PLMS's extra evaluation in its first step is not a step's input and is not
    recorded). Noise for eta > 0 comes from ``generators`` (one per image).

    PLMS (pseudo linear multistep, the latent-diffusion and Stable Diffusion sampler) makes DDIM
    updates with a multistep eps: its first step averages eps at x_t and at the DDIM point it
    leads to (two evaluations), later steps combine the last four evaluations (``plms_combine``).
    It is deterministic (eta 0).
    """
    if cfg.name not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg.name!r}; expected one of {', '.join(SAMPLERS)}")
    if cfg.name == "plms" and cfg.eta != 0:
        raise ValueError(f"the plms sampler is deterministic: sampler.eta must be 0, got {cfg.eta}")
    device = x_T.device
    x = x_T
    history: list[torch.Tensor] = []
    for i, (t, t_next, a_t, a_next) in enumerate(step_alphas(alphas_cumprod, cfg)):
        t_batch = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        if record is not None:
            record(i, x, t_batch)
        eps = model_fn(x, t_batch).to(x.dtype)
        if cfg.name == "plms":
            if history:
                e = plms_combine(eps, history)
            else:
                x_mid, _ = ddim_step(x, eps, a_t, a_next, 0.0, None, cfg.clip_x0)
                t_mid = torch.full_like(t_batch, max(t_next, 0))
                e = (eps + model_fn(x_mid, t_mid).to(x.dtype)) / 2
            history = (history + [eps])[-3:]
            x, _ = ddim_step(x, e, a_t, a_next, 0.0, None, cfg.clip_x0)
            continue
        noise = None  # the last step of a grid that ends at the clean image adds none
        if cfg.eta > 0 and t_next >= 0:
            if generators is None:
                raise ValueError("eta > 0 needs per-image generators")
            noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in generators]).to(device, x.dtype)
        x, _ = ddim_step(x, eps, a_t, a_next, cfg.eta if t_next >= 0 else 0.0, noise, cfg.clip_x0)
    return x


def unet_fn(unet: torch.nn.Module, autocast_dtype: torch.dtype | None = None, prediction_type: str = "epsilon",
            alphas_cumprod: torch.Tensor | None = None):
    """Wrap a diffusers UNet as ``(x, t[, labels]) -> eps``; optionally under autocast (bf16 on GPU).
    ``labels`` (class-conditional UNets, ``models.conditioning``) is the UNet's third argument.
    A model that predicts x or v (``prediction_type``, diffusers' names or eps/x/v) has its output
    converted to eps, which needs the schedule ``alphas_cumprod``."""
    from .parameterization import coefficients, kind_of, to_eps

    kind = kind_of(prediction_type)
    if kind != "eps" and alphas_cumprod is None:
        raise ValueError(f"a {prediction_type} model needs alphas_cumprod to give eps")

    def raw(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        args = (x, t) if labels is None else (x, t, labels)
        if autocast_dtype is not None:
            with torch.autocast(device_type=x.device.type, dtype=autocast_dtype):
                return unet(*args).sample.float()
        return unet(*args).sample

    if kind == "eps":
        return raw

    def fn(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        tt = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        a, s = coefficients(alphas_cumprod.to(x.device), tt)
        return to_eps(raw(x, t, labels), x, a, s, kind)

    return fn


def set_precision(precision: str, device: str | torch.device) -> torch.dtype | None:
    """Set the CUDA math mode of ``precision`` and return the autocast dtype it needs:
    ``fp32`` exact (TF32 off: cuDNN convolutions default to TF32, about 1e-3 relative error, which
    a few-step sampler multiplies by 1 / sqrt(alphas_cumprod[t])), ``tf32`` (TF32 matmuls and
    convolutions), ``bf16`` (autocast to bf16). On CPU only ``bf16`` changes anything."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if str(device).startswith("cuda"):
        exact = precision == "fp32"
        torch.backends.cudnn.allow_tf32 = not exact
        torch.backends.cuda.matmul.allow_tf32 = not exact
    return torch.bfloat16 if precision == "bf16" else None


def compiled(unet: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    """``unet`` under ``torch.compile`` (``mode``: torch's, e.g. ``default``, ``max-autotune``,
    ``reduce-overhead`` for CUDA graphs); as is with None. The timestep reaches the UNet (and
    every per-timestep quantizer) as a tensor, so the sampling steps share one graph."""
    if mode is None:
        return unet
    return torch.compile(unet, mode=None if mode == "default" else mode, dynamic=False)


def generate(
    model_fn,
    indices: Sequence[int],
    shape: tuple[int, ...],
    alphas_cumprod: torch.Tensor,
    cfg: SamplerConfig,
    base_seed: int,
    device: str | torch.device = "cpu",
    labels: torch.Tensor | None = None,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Images for ``indices`` (float in [-1, 1], on CPU). ``labels`` (one per index) are passed to
    ``model_fn(x, t, labels)``; ``decode`` maps the final latents to images (a latent model's
    autoencoder), before the clamp."""
    x_T, gens = initial_noise(indices, shape, base_seed)
    fn = model_fn
    if labels is not None:
        from .conditioning import with_labels

        if labels.shape != (len(indices),):
            raise ValueError(f"labels must hold one label per index, got shape {tuple(labels.shape)} for {len(indices)}")
        fn = with_labels(model_fn, labels.to(device))
    x = ddim_sample(fn, x_T.to(device), alphas_cumprod, cfg, generators=gens)
    if decode is not None:
        with torch.no_grad():
            x = decode(x)
    return x.float().clamp(-1, 1).cpu()
