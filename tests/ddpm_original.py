"""A functional forward pass of the original DDPM ``Model`` (the DDIM code's ``models/diffusion.py``
architecture) over a state dict in its own key layout, written for the conversion tests: it
computes what the original code computes from the original checkpoint, independently of diffusers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _norm(sd, p, x):
    return F.group_norm(x, 32, sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-6)


def _conv(sd, p, x, stride=1, padding=1):
    return F.conv2d(x, sd[f"{p}.weight"], sd[f"{p}.bias"], stride=stride, padding=padding)


def _resnet(sd, p, x, temb):
    h = _conv(sd, f"{p}.conv1", F.silu(_norm(sd, f"{p}.norm1", x)))
    h = h + F.linear(F.silu(temb), sd[f"{p}.temb_proj.weight"], sd[f"{p}.temb_proj.bias"])[:, :, None, None]
    h = _conv(sd, f"{p}.conv2", F.silu(_norm(sd, f"{p}.norm2", h)))
    if f"{p}.nin_shortcut.weight" in sd:
        x = _conv(sd, f"{p}.nin_shortcut", x, padding=0)
    return x + h


def _attn(sd, p, x):
    b, c, hh, ww = x.shape
    h = _norm(sd, f"{p}.norm", x)
    q, k, v = (_conv(sd, f"{p}.{n}", h, padding=0).reshape(b, c, hh * ww) for n in "qkv")
    w = torch.softmax(torch.bmm(q.permute(0, 2, 1), k) * c**-0.5, dim=2)  # (b, query, key)
    out = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
    return x + _conv(sd, f"{p}.proj_out", out, padding=0)


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    emb = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)


def forward(sd, x, t, ch, n_levels, n_blocks):
    temb = timestep_embedding(t, ch)
    temb = F.linear(temb, sd["temb.dense.0.weight"], sd["temb.dense.0.bias"])
    temb = F.linear(F.silu(temb), sd["temb.dense.1.weight"], sd["temb.dense.1.bias"])
    hs = [_conv(sd, "conv_in", x)]
    for i in range(n_levels):
        for j in range(n_blocks):
            h = _resnet(sd, f"down.{i}.block.{j}", hs[-1], temb)
            if f"down.{i}.attn.{j}.q.weight" in sd:
                h = _attn(sd, f"down.{i}.attn.{j}", h)
            hs.append(h)
        if i != n_levels - 1:
            hs.append(_conv(sd, f"down.{i}.downsample.conv", F.pad(hs[-1], (0, 1, 0, 1)), stride=2, padding=0))
    h = _resnet(sd, "mid.block_1", hs[-1], temb)
    h = _attn(sd, "mid.attn_1", h)
    h = _resnet(sd, "mid.block_2", h, temb)
    for i in reversed(range(n_levels)):
        for j in range(n_blocks + 1):
            h = _resnet(sd, f"up.{i}.block.{j}", torch.cat([h, hs.pop()], dim=1), temb)
            if f"up.{i}.attn.{j}.q.weight" in sd:
                h = _attn(sd, f"up.{i}.attn.{j}", h)
        if i != 0:
            h = _conv(sd, f"up.{i}.upsample.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"))
    return _conv(sd, "conv_out", F.silu(_norm(sd, "norm_out", h)))
