"""A timestep-aware correction of a quantized model's noise prediction (in the spirit of PTQD's
correlated-noise correction), available to every PTQ method as an option.

For every sampling step of the calibration trajectories, the quantized prediction is regressed on
the FP one over the calibration inputs: ``q = g_t f + b_t`` (``b_t`` per channel, or per pixel);
the corrected prediction is ``(q - b_t) / g_t``. The correction is a module of the quantized model
(its buffers are in the state dict) applied by a forward hook on the UNet, so it follows the
timestep the UNet receives; a timestep it was not fitted for passes through uncorrected only if
``strict`` is off.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .timestep import lookup_steps, step_lut


class EpsCorrection(nn.Module):
    def __init__(self, timesteps: Sequence[int], shape: tuple[int, ...], per_pixel: bool = False):
        super().__init__()
        c = shape[0]
        bias_shape = (len(timesteps), *shape) if per_pixel else (len(timesteps), c, 1, 1)
        self.register_buffer("timesteps", torch.tensor(list(timesteps), dtype=torch.long))
        self.register_buffer("gain", torch.ones(len(timesteps)))
        self.register_buffer("bias", torch.zeros(bias_shape))
        self.register_buffer("lut", step_lut(timesteps), persistent=False)

    def index(self, t: torch.Tensor) -> torch.Tensor:
        """The fitted step of every entry of ``t`` (no host synchronisation under compile)."""
        return lookup_steps(self.lut, t, "eps correction")

    def forward(self, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=eps.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(eps.shape[0])
        i = self.index(t)
        g = self.gain[i].view(-1, 1, 1, 1).to(eps.dtype)
        return (eps - self.bias[i].to(eps.dtype)) / g

    @torch.no_grad()
    def fit(self, step: int, q: torch.Tensor, f: torch.Tensor) -> None:
        """Least-squares ``q = g f + b`` at sampling step index ``step`` (q, f: (N, C, H, W))."""
        q, f = q.double(), f.double()
        dims = (0,) if self.bias.shape[-1] > 1 else (0, 2, 3)
        qm, fm = q.mean(dim=dims, keepdim=True), f.mean(dim=dims, keepdim=True)
        g = ((q - qm) * (f - fm)).sum() / (f - fm).pow(2).sum().clamp_min(1e-30)
        self.gain[step] = g.float()
        self.bias[step] = (qm - g * fm)[0].float()


def _hook(module: nn.Module, args: tuple, kwargs: dict, output):
    t = args[1] if len(args) > 1 else kwargs.get("timestep")
    if isinstance(output, tuple):
        return (module.eps_correction(output[0], t),) + tuple(output[1:])
    return type(output)(sample=module.eps_correction(output.sample, t))


def attach(model: nn.Module, correction: EpsCorrection) -> nn.Module:
    """Install ``correction`` as ``model.eps_correction`` and apply it to every output."""
    model.add_module("eps_correction", correction)
    model.register_forward_hook(_hook, with_kwargs=True)
    return model


@torch.no_grad()
def fit_correction(qmodel: nn.Module, fp_model: nn.Module, trajectories, per_pixel: bool = False,
                   batch_size: int = 256) -> EpsCorrection:
    """Fit an ``EpsCorrection`` on every step of ``trajectories`` (their inputs as calibration
    takes them: with labels, and null-label twins under guidance, for a class-conditional model)."""
    device = next(qmodel.parameters()).device
    xs, ts = trajectories.xs, trajectories.ts
    corr = EpsCorrection([int(t) for t in ts], tuple(xs.shape[2:]), per_pixel)
    for s in range(xs.shape[0]):
        qs, fs = [], []
        for i in range(0, xs.shape[1], batch_size):
            b = tuple(v.to(device) for v in trajectories.step_inputs(s, i, i + batch_size))
            qs.append(qmodel(*b).sample.float().cpu())
            fs.append(fp_model(*b).sample.float().cpu())
        corr.fit(s, torch.cat(qs), torch.cat(fs))
    return corr.to(device)


def with_correction(model: nn.Module, fp_model: nn.Module, spec, trajectories, per_pixel: bool = False):
    """``(model with a fitted correction, its spec)``: fitted on every step of ``trajectories``."""
    import dataclasses

    corr = fit_correction(model, fp_model, trajectories, per_pixel)
    attach(model, corr)
    return model, dataclasses.replace(spec, eps_correction=tuple(int(t) for t in trajectories.ts),
                                      eps_correction_per_pixel=per_pixel)
