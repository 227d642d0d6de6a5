"""Per-timestep quantizers and the timestep context that reaches them.

``StepContext`` is set once per UNet call: ``quantize_model`` registers it as a forward pre-hook
of the model (PyTorch's extension point), so it sees the timestep the UNet receives, whatever the
sampler and its order. It keeps the timesteps as a tensor and never reads them on the host, so a
compiled UNet neither breaks its graph nor recompiles from one sampling step to the next.

A ``TimestepQuantizer`` holds one ``UniformQuantizer`` per sampling step and applies, to each
sample, the grid of that sample's timestep. It has two equivalent paths: ``gather`` (the grids'
parameters stacked into tables and indexed by each sample's step index: no host
synchronisation, one kernel chain whatever the batch; the inference path, switched on by
``quant.inference.frozen``) and the default split path (the batch split by timestep and each part
passed through its own grid as a module, so calibration's hooks on the grids see exactly their
own timestep's inputs). Reconstruction of a single block sets the context itself
(``StepContext.using``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn

from .quantizer import Quantizer, UniformQuantizer, fake_quant, fake_quant_inplace


def step_lut(timesteps: Sequence[int]) -> torch.Tensor:
    """A table from model timestep to sampling-step index (-1 where a timestep has none). A
    timestep listed twice (the quad grid repeats its first entries) maps to its last step."""
    ts = [int(t) for t in timesteps]
    if any(t < 0 for t in ts):
        raise ValueError(f"timesteps must be >= 0, got {ts}")
    lut = torch.full((max(ts) + 1,), -1, dtype=torch.long)
    for i, t in enumerate(ts):
        lut[t] = i
    return lut


def lookup_steps(lut: torch.Tensor, t: torch.Tensor, what: str) -> torch.Tensor:
    """Step index of every entry of ``t`` by ``lut``. Eagerly, an unknown timestep is a
    ``KeyError`` (one host synchronisation); under ``torch.compile`` and while a CUDA graph is
    being captured the check is left out and a timestep without parameters would use step 0's,
    so the callers check the timesteps they will use up front: ``quant.inference.frozen``'s
    ``timesteps``; the reconstruction engines' calibration timesteps are the quantizers' own)."""
    t = t.to(lut.device).long().reshape(-1)
    idx = lut[t.clamp(0, lut.numel() - 1)]
    # is_compiling first: a traced graph must not reach is_current_stream_capturing, which
    # dynamo cannot trace (a graph break in every per-timestep quantizer on a CUDA model)
    if torch.compiler.is_compiling():
        return idx.clamp(min=0)
    if not (lut.is_cuda and torch.cuda.is_current_stream_capturing()):
        bad = (t < 0) | (t >= lut.numel()) | (idx < 0)
        if bool(bad.any()):
            known = (lut >= 0).nonzero().flatten().tolist()
            raise KeyError(f"timestep {sorted(set(t[bad].tolist()))[:5]} has no {what} (calibrated for {known})")
    return idx.clamp(min=0)


class StepContext:
    """The timesteps of the current UNet call: ``t``, one per sample (a tensor on the model's
    device; None outside a call)."""

    def __init__(self):
        self.t: torch.Tensor | None = None
        self._values: list[int] | None = None

    def set(self, t: torch.Tensor | int | None, batch: int | None = None) -> None:
        self._values = None
        if t is None:
            self.t = None
            return
        t = torch.as_tensor(t).reshape(-1)
        if batch is not None and t.numel() == 1 and batch > 1:
            t = t.expand(batch)
        self.t = t

    def values(self) -> list[int]:
        """The distinct timesteps of the call (one host synchronisation per call; the split path
        only)."""
        if self._values is None:
            self._values = sorted({int(v) for v in self.t.unique().tolist()})
        return self._values

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        """Forward pre-hook of the UNet (``forward(sample, timestep, ...)``)."""
        sample = args[0] if args else kwargs.get("sample")
        t = args[1] if len(args) > 1 else kwargs.get("timestep")
        self.set(t, batch=None if sample is None else sample.shape[0])
        return None  # the inputs are left as they are

    @contextmanager
    def using(self, t: torch.Tensor) -> Iterator[None]:
        old = (self.t, self._values)
        self.set(t)
        try:
            yield
        finally:
            self.t, self._values = old


class TimestepQuantizer(Quantizer):
    """One grid per sampling step (EfficientDM's per-timestep activation quantizers). Works on
    inputs whose dim 0 is the batch (or the batch times a head count, sample-major, as attention
    folds heads into it)."""

    def __init__(self, make: Callable[[], UniformQuantizer], timesteps: Sequence[int], context: StepContext):
        super().__init__()
        if not timesteps:
            raise ValueError("a per-timestep quantizer needs the sampling timesteps (QuantSpec.timesteps)")
        self.steps = nn.ModuleList(make() for _ in timesteps)
        self.register_buffer("timesteps", torch.tensor(list(timesteps), dtype=torch.long))
        self.register_buffer("lut", step_lut(timesteps), persistent=False)
        self.context = context
        self.gather = False  # set by quant.inference.frozen and by reconstruction
        self.tables: dict[str, torch.Tensor] = {}  # frozen parameter tables (quant.inference.frozen)
        self.tables_grid = None
        self._held: tuple = ()

    @torch.no_grad()
    def freeze_tables(self, clear: bool = False) -> None:
        """Stack every step's parameters into one table each, once (a compiled graph then holds one
        gather per quantizer instead of a stack of every step's tensors); ``clear`` drops them.
        In between, only the gather path works (``quant.inference.frozen`` switches to it)."""
        if clear:
            if self.tables:  # the steps' grids back into the module tree
                self._modules["steps"] = self._held[0]
            self.tables, self.tables_grid, self._held = {}, None, ()
            return
        if self.tables:
            return
        names = ("scale", "zero_point") + (("qmin_c", "qmax_c") if self.steps[0].mixed else ())
        self.tables = {n: torch.stack([getattr(q, n).detach() for q in self.steps]) for n in names}
        self.tables_grid = self._grid()
        # While frozen the grids are held outside the module tree: a compiled graph's tracing
        # walks the tree (diffusers reads the model's dtype from it), and a hundred grids per
        # quantizer made tracing several times slower than the tables need.
        self._held = (self._modules.pop("steps"),)

    def extra_repr(self) -> str:
        return f"{len(self.steps)} timesteps"

    def leaves(self) -> list[UniformQuantizer]:
        return list(self.steps)

    def index(self, t: int) -> int:
        i = int(self.lut[t]) if 0 <= t < self.lut.numel() else -1
        if i < 0:
            known = sorted(set(self.timesteps.tolist()))
            raise KeyError(f"timestep {t} has no quantization parameters (calibrated for {known})")
        return i

    def for_timestep(self, t: int) -> UniformQuantizer:
        return self.steps[self.index(t)]

    def _sample_t(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context
        if ctx is None or ctx.t is None:
            raise RuntimeError("per-timestep quantizer called outside a UNet call (no timestep context)")
        t = ctx.t.to(x.device)
        if x.shape[0] != t.shape[0]:  # attention folds heads into the batch, sample-major
            if x.shape[0] % t.shape[0]:
                raise RuntimeError(f"batch of {x.shape[0]} does not match {t.shape[0]} timesteps")
            t = t.repeat_interleave(x.shape[0] // t.shape[0])
        return t

    def _grid(self) -> tuple[bool, int | None, int, bool, int, int]:
        """(enabled, channels, axis, mixed, qmin, qmax) of the steps' grids (all alike)."""
        q = self.steps[0]
        return q.enabled, q.channels, q.axis, q.mixed, q.qmin, q.qmax

    def _gathered(self, x: torch.Tensor) -> torch.Tensor:
        """Every sample through its step's grid, by indexing stacked parameter tables. Frozen, it
        reads only the tables and the grid snapshot (a compiled graph never visits the steps'
        modules, which would cost tracing time in proportion to their number)."""
        idx = lookup_steps(self.lut, self._sample_t(x), "quantization parameters")
        frozen = self.tables_grid is not None  # not bool(dict): dynamo before 2.14 cannot trace it
        enabled, channels, axis, mixed, qmin, qmax = self.tables_grid if frozen else self._grid()
        if not enabled:
            return x
        view = [x.shape[0]] + [1] * (x.dim() - 1)
        if channels is not None:
            view[axis % x.dim()] = channels

        def table(name: str) -> torch.Tensor:
            # learning (the step sizes get gradients): stacked at every call
            tab = self.tables[name] if frozen else torch.stack([getattr(q, name) for q in self.steps])
            return tab[idx].view(view)

        scale, zp = table("scale"), table("zero_point")
        if mixed:
            qmin, qmax = table("qmin_c"), table("qmax_c")
        if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad):
            return fake_quant(x, scale, zp, qmin, qmax)
        return fake_quant_inplace(x, scale, zp, qmin, qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gather:
            return self._gathered(x)
        t = self._sample_t(x)
        values = self.context.values()
        if len(values) == 1:
            return self.for_timestep(values[0])(x)
        out = torch.empty_like(x)
        for v in values:
            mask = t == v
            out[mask] = self.for_timestep(v)(x[mask])
        return out
