"""A student that predicts something other than its teacher does (eps, x or v): the teacher's
weights with the output layer refitted by least squares to the prediction the teacher implies
(the standard start of a v-parameterised progressive distillation from an epsilon model)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.parameterization import coefficients, from_eps_x0, to_x0
from .targets import stage_times


def refit_inputs(data: torch.Tensor, alphas_cumprod: torch.Tensor, student_steps: int, n: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (z, t) a stage refits its student's output layer on: ``n`` training images noised at
    uniformly drawn student steps' timesteps, from a generator of their own (``seed``)."""
    g = torch.Generator().manual_seed(seed)
    x0 = data[torch.randint(0, data.shape[0], (n,), generator=g).to(data.device)]
    t = stage_times(int(alphas_cumprod.shape[0]), student_steps,
                    torch.randint(1, student_steps + 1, (n,), generator=g))[0].to(data.device)
    a, s = coefficients(alphas_cumprod, t)
    z = (a * x0.double() + s * torch.randn(x0.shape, generator=g).to(data.device).double()).float()
    return z, t


@torch.no_grad()
def refit_output(student: nn.Module, teacher_eps, z: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                 kind: str, batch_size: int = 32, ridge: float = 1e-6) -> dict:
    """Refit ``student.conv_out`` (weights and bias) in place by ridge least squares so that the
    student's output on inputs (``z``, ``t``) approaches the ``kind`` prediction the teacher's
    noise prediction ``teacher_eps(z, t)`` implies; the layers before it are unchanged. Returns the
    student's relative error on those inputs before and after."""
    conv = student.conv_out
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.bias is None:
        raise ValueError("refit_output needs an ungrouped Conv2d conv_out with a bias")
    seen: list[torch.Tensor] = []
    hook = conv.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    k = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] + 1
    gram = torch.zeros(k, k, dtype=torch.float64, device=z.device)
    rhs = torch.zeros(k, conv.out_channels, dtype=torch.float64, device=z.device)
    chunks = []
    try:
        for i in range(0, z.shape[0], batch_size):
            zb, tb = z[i:i + batch_size], t[i:i + batch_size]
            a, s = coefficients(alphas_cumprod, tb)
            eps = teacher_eps(zb, tb).double()
            target = from_eps_x0(eps, to_x0(eps, zb.double(), a, s, "eps"), a, s, kind)
            seen.clear()
            out = student(zb, tb).sample.double()
            h = seen[0].double()
            cols = F.unfold(h, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (B, C k k, HW)
            rows = torch.cat([cols.transpose(1, 2).reshape(-1, k - 1), cols.new_ones(cols.shape[0] * cols.shape[2], 1)], 1)
            y = target.flatten(2).transpose(1, 2).reshape(-1, conv.out_channels)
            gram += rows.T @ rows
            rhs += rows.T @ y
            chunks.append((h, target, out))
    finally:
        hook.remove()
    w = torch.linalg.solve(gram + ridge * gram.diagonal().mean() * torch.eye(k, dtype=gram.dtype, device=gram.device), rhs)
    before = sum(float((o - y).pow(2).sum()) for _, y, o in chunks)
    norm = sum(float(y.pow(2).sum()) for _, y, _ in chunks)
    conv.weight.copy_(w[:-1].T.reshape(conv.weight.shape).to(conv.weight.dtype))
    conv.bias.copy_(w[-1].to(conv.bias.dtype))
    after = sum(float((conv(h.to(conv.weight.dtype)).double() - y).pow(2).sum()) for h, y, _ in chunks)
    return {"kind": kind, "samples": int(z.shape[0]), "rel_err_before": (before / norm) ** 0.5,
            "rel_err_after": (after / norm) ** 0.5}
