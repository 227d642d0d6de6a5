"""What a denoiser's output means, and the conversions between its parameterisations.

With z_t = a_t x + s_t eps (a_t = sqrt(alphas_cumprod[t]), s_t = sqrt(1 - alphas_cumprod[t]),
a_t^2 + s_t^2 = 1) a network can predict the noise eps (``eps``), the clean image x (``x``) or
v = a_t eps - s_t x (``v``, Salimans & Ho 2022). The names in configs are ``eps``/``x``/``v``;
diffusers records the same choice as the scheduler's ``prediction_type`` (``epsilon``,
``sample``, ``v_prediction``), which is how a saved model carries it.
"""

from __future__ import annotations

import torch

KINDS = ("eps", "x", "v")
DIFFUSERS = {"eps": "epsilon", "x": "sample", "v": "v_prediction"}
FROM_DIFFUSERS = {v: k for k, v in DIFFUSERS.items()}


def kind_of(prediction_type: str) -> str:
    """``eps``/``x``/``v`` from a diffusers ``prediction_type`` (or one of those names)."""
    if prediction_type in KINDS:
        return prediction_type
    try:
        return FROM_DIFFUSERS[prediction_type]
    except KeyError:
        raise ValueError(f"unknown prediction type {prediction_type!r} (one of {sorted(FROM_DIFFUSERS)})") from None


def coefficients(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_t, s_t) per sample as (B, 1, 1, 1) float64 tensors; t == -1 gives (1, 0)."""
    ac = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod]).to(torch.float64)
    a2 = ac.to(t.device)[t.reshape(-1) + 1].view(-1, 1, 1, 1)
    return a2.sqrt(), (1 - a2).clamp(min=0).sqrt()


def to_eps(out: torch.Tensor, z: torch.Tensor, a: torch.Tensor, s: torch.Tensor, kind: str) -> torch.Tensor:
    """The noise a prediction ``out`` of ``kind`` implies at z (in ``out``'s dtype; ``x`` needs s > 0)."""
    a, s = a.to(out.dtype), s.to(out.dtype)
    if kind == "eps":
        return out
    if kind == "v":
        return s * z + a * out
    if kind == "x":
        return (z - a * out) / s
    raise ValueError(f"unknown parameterisation {kind!r} (one of {KINDS})")


def to_x0(out: torch.Tensor, z: torch.Tensor, a: torch.Tensor, s: torch.Tensor, kind: str) -> torch.Tensor:
    """The clean image a prediction ``out`` of ``kind`` implies at z (``eps`` needs a > 0)."""
    a, s = a.to(out.dtype), s.to(out.dtype)
    if kind == "eps":
        return (z - s * out) / a
    if kind == "v":
        return a * z - s * out
    if kind == "x":
        return out
    raise ValueError(f"unknown parameterisation {kind!r} (one of {KINDS})")


def from_eps_x0(eps: torch.Tensor, x0: torch.Tensor, a: torch.Tensor, s: torch.Tensor, kind: str) -> torch.Tensor:
    """The prediction of ``kind`` for a given (eps, x0) pair."""
    a, s = a.to(eps.dtype), s.to(eps.dtype)
    if kind == "eps":
        return eps
    if kind == "v":
        return a * eps - s * x0
    if kind == "x":
        return x0
    raise ValueError(f"unknown parameterisation {kind!r} (one of {KINDS})")
