"""OMQ, outlier-driven mixed quantization (MPQ-DM): SmoothQuant-style pre-scaling of each layer,
then per-output-channel bit widths from the kurtosis of the scaled weight: the k channels of
highest kurtosis get N+1 bits, the k of lowest N-1, the rest N, so the layer's mean width is
exactly N; k is the candidate whose quantized layer output is closest (MSE) to the FP output on
calibration inputs."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)


def smoothing_scale(x_absmax: torch.Tensor, w_absmax: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant's per-input-channel ``s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)`` (alpha 0.5:
    MPQ-DM's ``sqrt(max|X_j| / max|W_:,j|)``); channels with a zero maximum get 1."""
    s = x_absmax.clamp_min(1e-8).pow(alpha) / w_absmax.clamp_min(1e-8).pow(1 - alpha)
    ok = (x_absmax > 0) & (w_absmax > 0) & torch.isfinite(s)
    return torch.where(ok, s, torch.ones_like(s))


def kurtosis(w: torch.Tensor) -> torch.Tensor:
    """Kurtosis (not excess: 3 for a Gaussian) of each output channel's flattened weights,
    ``m4 / m2^2`` with population moments (``scipy.stats.kurtosis(fisher=False)``; the released
    code's unbiased std scales every channel of a layer by the same factor, so the ranking and
    the bit widths are the same)."""
    w = w.detach().double().flatten(1)
    d = w - w.mean(dim=1, keepdim=True)
    m2, m4 = d.pow(2).mean(dim=1), d.pow(4).mean(dim=1)
    return (m4 / m2.pow(2).clamp_min(1e-300)).float()


def channel_bits(kurt: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """Widths per output channel: top-``k`` kurtosis N+1, bottom-``k`` N-1, the rest N (mean N)."""
    c = kurt.numel()
    if not 0 <= 2 * k <= c:
        raise ValueError(f"k={k} needs 2k <= {c} channels")
    out = torch.full((c,), bits, dtype=torch.int32)
    if k:
        order = torch.argsort(kurt, descending=True, stable=True)
        out[order[:k]] = bits + 1
        out[order[-k:]] = bits - 1
    return out


def candidates(channels: int, group_divisor: int, groups: int) -> list[int]:
    """k = 0, g, 2g, ... up to ``groups`` groups of ``g = channels // group_divisor`` (at least 1),
    while 2k <= channels."""
    g = max(1, channels // group_divisor)
    return [i * g for i in range(groups + 1) if 2 * i * g <= channels]


def _layer_out(layer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    m = layer.module
    if isinstance(m, nn.Conv2d):
        return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)
    return F.linear(x, w, m.bias)


@torch.no_grad()
def apply_omq(layer, x: torch.Tensor, bits: int, alpha: float, group_divisor: int, groups: int,
              w_init: str = "mse", smooth: bool = True) -> dict:
    """OMQ on one ``QuantLayer`` (built with ``smooth`` and a ``mixed`` weight quantizer) given
    FP inputs ``x`` of that layer: pre-scaling, kurtosis, the search over k by output MSE
    (weights quantized, inputs not, against the FP layer), then the chosen widths and the
    weight range. Returns what it measured."""
    if len(layer.weight_quantizers) != 1:
        raise ValueError("OMQ needs a layer with one weight quantizer (no split)")
    q = layer.weight_quantizers[0]
    w_fp = layer.module.weight.detach().clone()
    ref = _layer_out(layer, x, w_fp)
    axis_x = 1 if isinstance(layer.module, nn.Conv2d) else -1
    if smooth:
        dims = [d for d in range(x.dim()) if d != axis_x % x.dim()]
        x_max = x.abs().amax(dim=dims)
        w_max = w_fp.abs().transpose(0, 1).flatten(1).amax(dim=1)
        layer.set_smoothing(smoothing_scale(x_max, w_max, alpha))
    w = layer.module.weight.detach()
    state = layer.quant_state()
    layer.set_quant_state(True, False)
    y = layer.quantized_input(x)  # x / s, not quantized
    layer.set_quant_state(*state)
    kurt = kurtosis(w)
    errs = {}
    best = None
    for k in candidates(w.shape[0], group_divisor, groups):
        q.set_channel_bits(channel_bits(kurt, bits, k))
        if w_init == "mse":
            q.init_mse(w)
        else:
            q.init_minmax(w)
        err = float(F.mse_loss(_layer_out(layer, y, q(w)), ref))
        errs[k] = err
        if best is None or err < errs[best]:
            best = k
    q.set_channel_bits(channel_bits(kurt, bits, best))
    if w_init == "mse":
        q.init_mse(w)
    else:
        q.init_minmax(w)
    return {"k": best, "channels": int(w.shape[0]), "mse_by_k": errs,
            "bits": q.channel_bits.tolist(), "kurtosis": kurt.tolist()}

