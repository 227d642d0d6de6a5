"""Range initialisation of a wrapped model's quantizers from its weights and calibration data.

Activation ranges are observed, not learned: every activation grid in use (``Quantizer.leaves``,
so per-timestep quantizers get one range per timestep) lets its input pass through unquantized
while a forward pre-hook records its statistics; then the range is set from them.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .module import act_quantizers, quant_modules

RunFn = Callable[[nn.Module, tuple[torch.Tensor, ...]], object]
MODES = ("minmax", "running", "mse")


@torch.no_grad()
def init_weights(model: nn.Module, method: str = "minmax", p: float = 2.4) -> None:
    """Range of every weight quantizer from its weights: ``minmax`` or ``mse`` (L_p shrink search)."""
    if method not in ("minmax", "mse"):
        raise ValueError(f"unknown weight init {method!r}")
    for _, m in quant_modules(model):
        for q, w in m.weight_parts():
            for leaf in q.leaves():
                leaf.init_minmax(w) if method == "minmax" else leaf.init_mse(w, p=p)


class Observer:
    """Statistics of one quantizer's inputs: ``minmax`` (min/max over all inputs), ``running``
    (EMA of per-batch min/max with ``momentum``), ``mse`` (keeps the first input for the L_p
    shrink search)."""

    def __init__(self, mode: str, p: float = 2.4, momentum: float = 0.95):
        if mode not in MODES:
            raise ValueError(f"unknown observation mode {mode!r}")
        self.mode, self.p, self.momentum = mode, p, momentum
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None
        self.first: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor, dims: tuple[int, ...]) -> None:
        lo, hi = x.detach().amin(dim=dims).float(), x.detach().amax(dim=dims).float()
        if self.lo is None:
            self.lo, self.hi = lo, hi
            if self.mode == "mse":
                self.first = x.detach().float().clone()
        elif self.mode == "running":
            m = self.momentum
            self.lo, self.hi = m * self.lo + (1 - m) * lo, m * self.hi + (1 - m) * hi
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)

    def apply(self, leaf) -> None:
        if self.mode == "mse":
            leaf.init_mse(self.first, p=self.p)
        else:
            leaf.set_range(self.lo, self.hi)


@torch.no_grad()
def init_activations(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], run: RunFn,
                     mode: str = "minmax", p: float = 2.4, sequential: bool = False) -> None:
    """Observe every activation grid's inputs over ``batches`` and set its range (see ``Observer``).
    Weights stay in their current state while observing.

    ``sequential``: each grid takes its range from the first batch that reaches it and quantizes
    from then on, within the same forward pass, so grids further down see the inputs the
    quantized network produces (Q-Diffusion's initialisation on the first forward); otherwise
    every grid passes its input through unquantized until all batches are observed."""
    if sequential:
        return _init_sequential(model, batches, run, mode, p)
    leaves = [(f"{name}{f'[{i}]' if len(q.leaves()) > 1 else ''}", leaf)
              for name, q in act_quantizers(model) for i, leaf in enumerate(q.leaves())]
    observers = [Observer(mode, p) for _ in leaves]
    handles, enabled = [], []
    for (_, leaf), obs in zip(leaves, observers):
        handles.append(leaf.register_forward_pre_hook(lambda mod, args, obs=obs: obs.update(args[0], mod.reduce_dims(args[0]))))
        enabled.append(leaf.enabled)
        leaf.enabled = False  # pass through unquantized while observing
    try:
        for batch in tqdm(list(batches), desc=f"activation ranges ({mode})", mininterval=5):
            run(model, batch)
    finally:
        for h in handles:
            h.remove()
        for (_, leaf), e in zip(leaves, enabled):
            leaf.enabled = e
    missing = [n for (n, _), obs in zip(leaves, observers) if obs.lo is None]
    for (_, leaf), obs in zip(leaves, observers):
        if obs.lo is not None:
            obs.apply(leaf)
    if missing:
        raise RuntimeError(f"{len(missing)} activation quantizers saw no input, e.g. {missing[:3]}")



def _init_sequential(model: nn.Module, batches, run: RunFn, mode: str, p: float) -> None:
    leaves = [(name, leaf) for name, q in act_quantizers(model) for leaf in q.leaves()]
    done: set[int] = set()

    def hook(mod, args):
        if id(mod) in done:
            return None
        obs = Observer(mode if mode != "running" else "minmax", p)
        obs.update(args[0], mod.reduce_dims(args[0]))
        obs.apply(mod)
        done.add(id(mod))
        return None  # the grid now has its range and quantizes this very input

    handles = [leaf.register_forward_pre_hook(hook) for _, leaf in leaves]
    try:
        for batch in tqdm(list(batches), desc=f"activation ranges ({mode}, sequential)", mininterval=5):
            run(model, batch)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n, leaf in leaves if id(leaf) not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} activation quantizers saw no input, e.g. {missing[:3]}")
