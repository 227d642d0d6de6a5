"""Fake quantizers: the ``Quantizer`` protocol and the uniform affine grid quantizer.

Every quantizer is an ``nn.Module`` mapping a tensor to its fake-quantized value with a
straight-through gradient. Its parameters are buffers (or ``nn.Parameter`` for a learnable LSQ
step) created at construction with their final shapes (per-tensor ``()``, per-channel ``(C,)``),
so ``state_dict`` round-trips before any data has been seen. Composite quantizers (AdaRound, one
grid per timestep) are built from ``UniformQuantizer`` leaves; range initialisation works on the
leaves (``Quantizer.leaves``), so no caller needs to know which kind it holds.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest in the forward pass, identity gradient in the backward pass."""
    return (x.round() - x).detach() + x


def qrange(bits: int, symmetric: bool, unsigned: bool = False) -> tuple[int, int]:
    """Integer grid: asymmetric or unsigned ``[0, 2^b - 1]``; symmetric ``[-2^(b-1), 2^(b-1) - 1]``."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    if symmetric and not unsigned:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def qrange_tensor(bits: torch.Tensor, symmetric: bool, unsigned: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``qrange`` per entry of an integer tensor of bit widths (as float tensors)."""
    if bits.numel() and not (1 <= int(bits.min()) and int(bits.max()) <= 16):
        raise ValueError(f"bits must be in 1..16, got {bits.unique().tolist()}")
    levels = torch.pow(2.0, bits.double())
    if symmetric and not unsigned:
        return (-levels / 2).float(), (levels / 2 - 1).float()
    return torch.zeros_like(levels).float(), (levels - 1).float()


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin, qmax) -> torch.Tensor:
    """``dequant(quant(x))`` with STE rounding; ``scale``/``zero_point`` (and tensor ``qmin``/``qmax``)
    broadcast against ``x``.

    Computes ``round(x * (1 / scale))`` like PyTorch's fused kernel, so the fused inference path
    (``fake_quant_inplace``) and this differentiable one agree bit for bit.
    """
    q = torch.clamp(round_ste(x * (1.0 / scale)) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def fake_quant_inplace(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin, qmax) -> torch.Tensor:
    """The same function as ``fake_quant`` without autograd, in place on one new buffer
    (inference; about 4x faster than the out-of-place chain or PyTorch's fused kernel on CPU)."""
    y = x * (1.0 / scale)
    return y.round_().add_(zero_point).clamp_(qmin, qmax).sub_(zero_point).mul_(scale)


def quantize_int(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin, qmax) -> torch.Tensor:
    """The integer codes of ``x`` (as float)."""
    return torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, qmin, qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    return (q - zero_point) * scale


def minmax_params(xmin: torch.Tensor, xmax: torch.Tensor, bits: int | torch.Tensor, symmetric: bool,
                  unsigned: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point whose grid covers ``[xmin, xmax]`` (zero always representable);
    ``bits`` may be a tensor of per-channel bit widths shaped like ``xmin``."""
    if isinstance(bits, torch.Tensor):
        qmin, qmax = qrange_tensor(bits, symmetric, unsigned)
        qmin, qmax = qmin.to(xmin.device), qmax.to(xmin.device)
    else:
        qmin, qmax = qrange(bits, symmetric, unsigned)
    xmin = torch.minimum(xmin, torch.zeros_like(xmin))
    xmax = torch.maximum(xmax, torch.zeros_like(xmax))
    if unsigned:
        scale = xmax / qmax
        zero_point = torch.zeros_like(scale)
    elif symmetric:
        scale = torch.maximum(xmin.abs(), xmax) / qmax
        zero_point = torch.zeros_like(scale)
    else:
        scale = (xmax - xmin) / (qmax - qmin)
        zero_point = torch.round(-xmin / scale.clamp_min(1e-12)) + qmin
    scale = scale.clamp_min(1e-8)
    return scale, zero_point


class Quantizer(nn.Module):
    """The protocol every fake quantizer follows (see the module docstring).

    * ``forward(x)``: the fake-quantized ``x``;
    * ``leaves()``: the ``UniformQuantizer`` grids whose ranges calibration sets;
    * ``bake(w)``: for a weight quantizer whose learned state belongs in the weight (AdaRound's
      rounding), ``(weight to store, quantizer to keep)``; plain quantizers return ``(w, self)``;
    * ``pending``: True while such learned state is not yet baked (a model is saved only without);
    * ``context``: the timestep context a per-timestep quantizer reads, else None.
    """

    pending = False
    context = None

    def leaves(self) -> list["UniformQuantizer"]:
        raise NotImplementedError

    def bake(self, w: torch.Tensor) -> tuple[torch.Tensor, "Quantizer"]:
        return w, self

    def is_initialized(self) -> bool:
        """Every leaf grid has been given a range."""
        return all(bool(q.initialized) for q in self.leaves())


class UniformQuantizer(Quantizer):
    """Fake-quantizes a tensor on a uniform affine grid.

    Args:
        bits: bit-width (with ``mixed``: the average of the per-channel widths).
        symmetric: symmetric grid with zero point 0, else asymmetric with a zero point.
        channels: ``None`` for one scale per tensor, else the number of channels along ``axis``.
        axis: the channel axis for per-channel quantization (0 for weights).
        unsigned: grid ``[0, 2^b - 1]`` with zero point 0 (softmax outputs).
        learnable: the scale is an ``nn.Parameter`` (LSQ step-size learning); zero point stays fixed.
        mixed: per-channel bit widths (buffer ``channel_bits``, set by ``set_channel_bits``; all
            ``bits`` until then) whose mean is always exactly ``bits``.
    """

    def __init__(self, bits: int, symmetric: bool = False, channels: int | None = None, axis: int = 0,
                 unsigned: bool = False, learnable: bool = False, mixed: bool = False):
        super().__init__()
        self.bits = int(bits)
        self.symmetric = bool(symmetric)
        self.unsigned = bool(unsigned)
        self.axis = axis
        self.channels = channels
        self.mixed = bool(mixed)
        self.qmin, self.qmax = qrange(self.bits, self.symmetric, self.unsigned)
        shape = () if channels is None else (channels,)
        if learnable:  # LSQ: the step size is trained (straight-through round)
            self.scale = nn.Parameter(torch.ones(shape))
        else:
            self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("zero_point", torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))
        if self.mixed:
            if channels is None:
                raise ValueError("mixed bit widths need per-channel quantization (channels)")
            self.register_buffer("channel_bits", torch.full((channels,), self.bits, dtype=torch.int32))
            lo, hi = qrange_tensor(self.channel_bits, self.symmetric, self.unsigned)
            self.register_buffer("qmin_c", lo)
            self.register_buffer("qmax_c", hi)
        self.enabled = True

    def extra_repr(self) -> str:
        kind = "per-tensor" if self.channels is None else f"per-channel({self.channels}, axis={self.axis})"
        grid = "unsigned" if self.unsigned else ("symmetric" if self.symmetric else "asymmetric")
        return f"bits={self.bits}{' (mean, mixed)' if self.mixed else ''}, {kind}, {grid}"

    def leaves(self) -> list["UniformQuantizer"]:
        return [self]

    def view(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A per-channel tensor ``t`` shaped to broadcast against ``x`` (per-tensor: as is)."""
        if self.channels is None:
            return t
        shape = [1] * x.dim()
        shape[self.axis] = -1
        return t.view(shape)

    def bounds(self, x: torch.Tensor):
        """The integer grid's ends for ``x``: ints, or per-channel tensors when ``mixed``."""
        if self.mixed:
            return self.view(self.qmin_c, x), self.view(self.qmax_c, x)
        return self.qmin, self.qmax

    def reduce_dims(self, x: torch.Tensor) -> tuple[int, ...]:
        """Dimensions to reduce over when computing this quantizer's statistics."""
        if self.channels is None:
            return tuple(range(x.dim()))
        return tuple(d for d in range(x.dim()) if d != self.axis % x.dim())

    @torch.no_grad()
    def set_channel_bits(self, bits: torch.Tensor) -> None:
        """Per-channel bit widths; their mean must be exactly ``self.bits`` (MPQ-DM keeps every
        layer's budget). The range must be set again afterwards."""
        if not self.mixed:
            raise RuntimeError("set_channel_bits: this quantizer was not built with mixed=True")
        bits = torch.as_tensor(bits, dtype=torch.int32).flatten().cpu()
        if bits.shape != self.channel_bits.shape:
            raise ValueError(f"set_channel_bits: expected {self.channels} widths, got {bits.numel()}")
        if int(bits.sum()) != self.bits * self.channels:
            raise ValueError(f"set_channel_bits: the mean width is {float(bits.float().mean()):.4f}, not {self.bits}")
        lo, hi = qrange_tensor(bits, self.symmetric, self.unsigned)
        self.channel_bits.copy_(bits)
        self.qmin_c.copy_(lo)
        self.qmax_c.copy_(hi)
        self.initialized.fill_(False)

    def _bits_for_range(self):
        return self.channel_bits if self.mixed else self.bits

    @torch.no_grad()
    def set_range(self, xmin: torch.Tensor, xmax: torch.Tensor) -> None:
        bits = self._bits_for_range()
        if isinstance(bits, torch.Tensor):
            bits = bits.reshape(xmin.shape).to(xmin.device)
        scale, zp = minmax_params(xmin.float(), xmax.float(), bits, self.symmetric, self.unsigned)
        self.scale.copy_(scale.reshape(self.scale.shape))
        self.zero_point.copy_(zp.reshape(self.zero_point.shape))
        self.initialized.fill_(True)

    @torch.no_grad()
    def init_mse(self, x: torch.Tensor, p: float = 2.4, n_candidates: int = 80) -> None:
        """Q-Diffusion's 'mse' init: shrink the min/max range by ``1 - 0.01 i`` for i < 80 and keep,
        per channel (or per tensor), the range whose quantization has the lowest L_p error."""
        x = x.detach().float()
        dims = self.reduce_dims(x)
        xmin, xmax = x.amin(dim=dims), x.amax(dim=dims)
        best_err = torch.full_like(xmin, float("inf"))
        best_lo, best_hi = xmin.clone(), xmax.clone()
        view = [1] * x.dim()
        if self.channels is not None:
            view[self.axis % x.dim()] = -1
        bits = self._bits_for_range()
        if isinstance(bits, torch.Tensor):
            bits = bits.to(x.device)
        qmin, qmax = self.bounds(x)
        for i in range(n_candidates):
            lo, hi = xmin * (1 - 0.01 * i), xmax * (1 - 0.01 * i)
            scale, zp = minmax_params(lo, hi, bits, self.symmetric, self.unsigned)
            y = fake_quant_inplace(x, scale.view(view), zp.view(view), qmin, qmax)
            err = (y - x).abs().pow(p).mean(dim=dims)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_lo, best_hi = torch.where(better, lo, best_lo), torch.where(better, hi, best_hi)
        self.set_range(best_lo, best_hi)

    def current_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The real interval the grid covers now."""
        s, z = self.scale.detach(), self.zero_point
        if self.mixed:
            return (self.qmin_c - z) * s, (self.qmax_c - z) * s
        return (self.qmin - z) * s, (self.qmax - z) * s

    @torch.no_grad()
    def init_minmax(self, x: torch.Tensor) -> None:
        """Set the range to the min and max of ``x`` (per channel or per tensor)."""
        dims = self.reduce_dims(x)
        self.set_range(x.amin(dim=dims), x.amax(dim=dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        scale, zp = self.view(self.scale, x), self.view(self.zero_point, x)
        qmin, qmax = self.bounds(x)
        if not (torch.is_grad_enabled() and (x.requires_grad or self.scale.requires_grad)):
            return fake_quant_inplace(x, scale, zp, qmin, qmax)
        return fake_quant(x, scale, zp, qmin, qmax)
