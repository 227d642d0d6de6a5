"""Packed integer checkpoints of quantized models, for use outside the workflow.

The workflow's quantized model (``wrap.save_quantized``) keeps the FP weights and fake-quantizes
them at every forward. An export keeps, for every weight the model quantizes, only its integer
codes: offset to ``[0, 2^b - 1]`` and packed (two codes per byte up to 4 bits, one per byte up
to 8), beside the grid's scales and zero points. Everything else is stored as it is: biases,
norms, the parameters of every activation quantizer (layer inputs, attention q/k/v and softmax),
the spec and quant switches, and the UNet's diffusers config, so ``load_export(path)`` rebuilds
the model from this one file.

Loading dequantizes each code to ``(code - zero_point) * scale``, the value the workflow's model
computes for that weight, and wraps the model with the same spec (activation quantizers and the
quantized attention processor included); the weight quantizers are kept, and fake-quantizing an
already dequantized weight returns it bit for bit, so the loaded model computes exactly what
the workflow's does. ``export_quantized`` checks this for every weight before writing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..io import atomic_path
from .layer import QuantLayer
from .module import apply_quant_states, check_initialized, quant_modules, quant_states
from .quantizer import UniformQuantizer, quantize_int
from .spec import QuantSpec
from .wrap import quantize_model

FORMAT = "diffcomp-qint/1"
CODES = "weight_codes"  # tensor name suffix: "{layer}.weight_codes.{part}"


def storage_bits(bits: int) -> int:
    """Bits a code occupies in the file: 4 (two per byte), 8 (one per byte) or 16."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    return 4 if bits <= 4 else 8 if bits <= 8 else 16


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Flat packed codes of non-negative integers ``codes`` < 2^bits: uint8 with two codes per
    byte (low nibble first) for bits <= 4, uint8 for bits <= 8, int32 above."""
    flat = codes.reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 2**bits):
        raise ValueError(f"codes outside [0, 2^{bits} - 1]")
    width = storage_bits(bits)
    if width == 4:
        if flat.numel() % 2:
            flat = torch.cat([flat, flat.new_zeros(1)])
        pairs = flat.view(-1, 2)
        return (pairs[:, 0] | (pairs[:, 1] << 4)).to(torch.uint8)
    return flat.to(torch.uint8 if width == 8 else torch.int32)


def unpack_codes(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """The flat int64 codes ``pack_codes`` packed (its inverse)."""
    p = packed.reshape(-1).to(torch.int64)
    if storage_bits(bits) == 4:
        p = torch.stack([p & 0xF, p >> 4], dim=1).reshape(-1)
    if p.numel() < numel:
        raise ValueError(f"{p.numel()} codes stored, {numel} expected")
    return p[:numel]


@dataclass(frozen=True)
class PackedPart:
    """One packed weight part: channel slice ``part`` of layer ``layer`` (two parts for a split
    layer), its shape and the bits of its widest code."""

    layer: str
    part: int
    shape: tuple[int, ...]
    bits: int

    @property
    def key(self) -> str:
        return f"{self.layer}.{CODES}.{self.part}"


@dataclass(frozen=True)
class ExportInfo:
    """What ``export_quantized`` wrote: the file, its size, the packed weight parts and the
    number of weights stored as integer codes."""

    path: str
    bytes: int
    parts: int
    packed_weights: int


def _grid(q: Any, w: torch.Tensor, where: str):
    """(scale, zero point, qmin, qmax) of a weight grid, broadcast against ``w``."""
    if not isinstance(q, UniformQuantizer):
        raise ValueError(f"{where}: a {type(q).__name__} weight quantizer has no single integer grid "
                         "to export (per-timestep weights are not exportable)")
    qmin, qmax = q.bounds(w)
    return q.view(q.scale.detach(), w), q.view(q.zero_point, w), qmin, qmax


def _codes(q: UniformQuantizer, w: torch.Tensor, where: str) -> tuple[torch.Tensor, int]:
    """(codes offset to start at 0, the bits of the widest channel) of weight part ``w``; checks
    that dequantizing them gives exactly what the model's fake quantizer gives."""
    scale, zp, qmin, qmax = _grid(q, w, where)
    codes = quantize_int(w, scale, zp, qmin, qmax)
    with torch.no_grad():
        if not torch.equal((codes - zp) * scale, q(w)):
            raise RuntimeError(f"{where}: dequantized codes differ from the fake-quantized weight")
    offset = codes - qmin if isinstance(qmin, torch.Tensor) else codes - float(qmin)
    bits = int(q.channel_bits.max()) if q.mixed else q.bits
    return offset.round().to(torch.int64), bits


def export_quantized(model: nn.Module, spec: QuantSpec, unet_config: dict, path: str | Path,
                     meta: dict | None = None) -> ExportInfo:
    """Write ``model`` (a quantized UNet: ``wrap.quantize_model`` / ``wrap.load_quantized``) as a
    packed integer checkpoint at ``path`` (safetensors; spec, switches, UNet config and ``meta``
    as JSON in its header)."""
    from safetensors.torch import save_file

    check_initialized(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    parts: list[PackedPart] = []
    packed_weights = 0
    for name, m in quant_modules(model):
        if not m.quant_weights:
            continue  # a weight the model keeps FP is stored as it is
        if not isinstance(m, QuantLayer):
            raise ValueError(f"{name}: weight quantization in a {type(m).__name__} is not exportable")
        if len(m.weight_adapters):
            raise ValueError(f"{name}: weight adapters must be merged into the weight before export")
        w = m.module.weight.detach()
        for i, (q, sl) in enumerate(zip(m.weight_quantizers, m.slices)):
            codes, bits = _codes(q, w[:, sl], f"{name} (weight part {i})")
            codes = codes.cpu()
            part = PackedPart(name, i, tuple(codes.shape), bits)
            state[part.key] = pack_codes(codes, bits)
            parts.append(part)
            packed_weights += codes.numel()
        del state[f"{name}.module.weight"]
    header = {
        "format": FORMAT,
        "spec": json.dumps(spec.to_dict(), sort_keys=True),
        "quant_state": json.dumps(quant_states(model), sort_keys=True),
        "packed": json.dumps([asdict(p) for p in parts]),
        # where the FP model was loaded from is no part of the model
        "unet_config": json.dumps({k: v for k, v in dict(unet_config).items() if k != "_name_or_path"},
                                  sort_keys=True, default=str),
        "meta": json.dumps(meta or {}, sort_keys=True, default=str),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=header)
    return ExportInfo(str(path), Path(path).stat().st_size, len(parts), packed_weights)


def read_export(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(header with its JSON fields decoded, tensors) of an export; a damaged or foreign file is
    one error naming it."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            if raw.get("format") != FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT!r}")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        header = {k: (v if k == "format" else json.loads(v)) for k, v in raw.items()}
        header["spec"] = QuantSpec.from_dict(header["spec"])
        header["packed"] = [PackedPart(p["layer"], p["part"], tuple(p["shape"]), p["bits"]) for p in header["packed"]]
        return header, tensors
    except Exception as e:  # safetensors, JSON and key errors alike
        raise ValueError(f"{path}: not a readable diffcomp export ({type(e).__name__}: {e})") from None


def load_export(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The quantized ``UNet2DModel`` stored in an export, in eval mode, ready for a diffusers
    pipeline (``DDIMPipeline(unet=..., scheduler=...)``) or ``diffcomp``'s sampler."""
    from ..models.pipeline import denoiser_class

    header, tensors = read_export(path)
    with torch.random.fork_rng(devices=[]):  # the throwaway initial weights leave the global RNG as it was
        # the fixed-heads model's config has attention_heads (its heads are not a UNet2DModel's)
        cls = denoiser_class("FixedHeadsUNet2DModel" if "attention_heads" in header["unet_config"] else "UNet2DModel")
        unet = cls.from_config(header["unet_config"])
    model = quantize_model(unet, header["spec"], inplace=True)
    packed = {p.key: p for p in header["packed"]}
    rest = {k: v for k, v in tensors.items() if k not in packed}
    missing, unexpected = model.load_state_dict(rest, strict=False)
    weights = {f"{p.layer}.module.weight" for p in packed.values()}
    if unexpected or set(missing) != weights:
        raise ValueError(f"{path}: does not fit the model its header describes "
                         f"(missing {sorted(set(missing) - weights)[:3]}, unexpected {unexpected[:3]})")
    modules = dict(quant_modules(model))
    with torch.no_grad():
        for p in packed.values():
            layer = modules[p.layer]
            w = layer.module.weight
            sl = layer.slices[p.part]
            part = w[:, sl]
            if tuple(part.shape) != p.shape:
                raise ValueError(f"{path}: {p.key} has shape {p.shape}, the layer's weight part {tuple(part.shape)}")
            q = layer.weight_quantizers[p.part]
            scale, zp, qmin, _ = _grid(q, part, p.key)
            codes = unpack_codes(tensors[p.key], p.bits, part.numel()).reshape(p.shape).to(torch.float32)
            codes = codes + (qmin if isinstance(qmin, torch.Tensor) else float(qmin))
            w[:, sl] = (codes - zp) * scale
    apply_quant_states(model, header["quant_state"])
    check_initialized(model)
    return model.eval().requires_grad_(False).to(device)
