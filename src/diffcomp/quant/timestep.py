"""Per-timestep quantizers and the timestep context that reaches them.

``StepContext`` is set once per UNet call: ``quantize_model`` registers it as a forward pre-hook
of the model (PyTorch's extension point), so it sees the timestep the UNet receives, whatever the
sampler and its order. A ``TimestepQuantizer`` holds one ``UniformQuantizer`` per sampling step
and applies, to each sample, the one of that sample's timestep (a batch of mixed timesteps, as in
calibration, is split by timestep). Reconstruction of a single block sets the context itself
(``StepContext.using``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn

from .quantizer import Quantizer, UniformQuantizer


class StepContext:
    """The timesteps of the current UNet call: ``t`` (one per sample) and its distinct values."""

    def __init__(self):
        self.t: torch.Tensor | None = None
        self.values: list[int] = []

    def set(self, t: torch.Tensor | int | None, batch: int | None = None) -> None:
        if t is None:
            self.t, self.values = None, []
            return
        t = torch.as_tensor(t).reshape(-1)
        if batch is not None and t.numel() == 1 and batch > 1:
            t = t.expand(batch)
        self.t = t
        self.values = sorted({int(v) for v in t.unique().tolist()})  # one host sync per UNet call

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        """Forward pre-hook of the UNet (``forward(sample, timestep, ...)``)."""
        sample = args[0] if args else kwargs.get("sample")
        t = args[1] if len(args) > 1 else kwargs.get("timestep")
        self.set(t, batch=None if sample is None else sample.shape[0])
        return None  # the inputs are left as they are

    @contextmanager
    def using(self, t: torch.Tensor) -> Iterator[None]:
        old = (self.t, self.values)
        self.set(t)
        try:
            yield
        finally:
            self.t, self.values = old


class TimestepQuantizer(Quantizer):
    """One grid per sampling step (EfficientDM's per-timestep activation quantizers)."""

    def __init__(self, make: Callable[[], UniformQuantizer], timesteps: Sequence[int], context: StepContext):
        super().__init__()
        if not timesteps:
            raise ValueError("a per-timestep quantizer needs the sampling timesteps (QuantSpec.timesteps)")
        self.steps = nn.ModuleList(make() for _ in timesteps)
        self.register_buffer("timesteps", torch.tensor(list(timesteps), dtype=torch.long))
        self._index = {int(t): i for i, t in enumerate(timesteps)}
        self.context = context

    def extra_repr(self) -> str:
        return f"{len(self.steps)} timesteps"

    def leaves(self) -> list[UniformQuantizer]:
        return list(self.steps)

    def index(self, t: int) -> int:
        if t not in self._index:
            raise KeyError(f"timestep {t} has no quantization parameters (calibrated for {sorted(self._index)})")
        return self._index[t]

    def for_timestep(self, t: int) -> UniformQuantizer:
        return self.steps[self.index(t)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context
        if ctx is None or ctx.t is None:
            raise RuntimeError("per-timestep quantizer called outside a UNet call (no timestep context)")
        if len(ctx.values) == 1:
            return self.for_timestep(ctx.values[0])(x)
        t = ctx.t.to(x.device)
        if x.shape[0] != t.shape[0]:  # attention folds heads into the batch, sample-major
            if x.shape[0] % t.shape[0]:
                raise RuntimeError(f"batch of {x.shape[0]} does not match {t.shape[0]} timesteps")
            t = t.repeat_interleave(x.shape[0] // t.shape[0])
        out = torch.empty_like(x)
        for v in ctx.values:
            mask = t == v
            out[mask] = self.for_timestep(v)(x[mask])
        return out
