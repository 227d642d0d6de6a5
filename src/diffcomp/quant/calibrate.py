"""Range initialisation of a wrapped model's quantizers from calibration data."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .attention import QuantAttnProcessor
from .layer import QuantLayer
from .quantizer import UniformQuantizer

RunFn = Callable[[nn.Module, tuple[torch.Tensor, ...]], object]


def weight_quantizers(model: nn.Module) -> Iterator[tuple[str, QuantLayer, UniformQuantizer, slice]]:
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            for q, sl in m.weight_parts():
                yield name, m, q, sl


def act_quantizers(model: nn.Module) -> Iterator[tuple[str, UniformQuantizer]]:
    """Every activation quantizer in use (its owner quantizes activations): layer inputs (both
    split parts) and attention q/k/v/softmax."""
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer) and m.quant_acts:
            for i, (q, _) in enumerate(m.input_parts()):
                yield f"{name}.input{'_skip' if i else ''}", q
        elif isinstance(m, QuantAttnProcessor) and m.quant_acts:
            for qn, q in m.act_quantizers():
                yield f"{name}.{qn}", q


@torch.no_grad()
def init_weights(model: nn.Module, method: str = "minmax", p: float = 2.4) -> None:
    """Range of every weight quantizer from its weights: ``minmax`` or ``mse`` (L_p shrink search)."""
    for _, layer, q, sl in weight_quantizers(model):
        w = layer.weight.detach()[:, sl]
        if method == "minmax":
            q.init_minmax(w)
        elif method == "mse":
            q.init_mse(w, p=p)
        else:
            raise ValueError(f"unknown weight init {method!r}")


def init_weights_minmax(model: nn.Module) -> None:
    init_weights(model, "minmax")


@torch.no_grad()
def init_activations(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], run: RunFn,
                     mode: str = "minmax", p: float = 2.4) -> None:
    """Observe every activation quantizer's inputs over ``batches`` (inputs pass through
    unquantized while observing) and set its range: ``minmax``, ``running`` (EMA 0.95 of
    per-batch min/max) or ``mse`` (L_p search on the first batch)."""
    qs = list(act_quantizers(model))
    for _, q in qs:
        q.start_observing(mode, p=p)
    try:
        for batch in tqdm(list(batches), desc=f"activation ranges ({mode})", mininterval=5):
            run(model, batch)
    finally:
        missing = [n for n, q in qs if q._observer is not None and q._observer.lo is None]
        for _, q in qs:
            if q._observer is not None and q._observer.lo is not None:
                q.stop_observing()
            q._observer = None
    if missing:
        raise RuntimeError(f"{len(missing)} activation quantizers saw no input, e.g. {missing[:3]}")


def init_acts_minmax(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], run: RunFn) -> None:
    """Per-tensor min/max of every activation quantizer's input over all ``batches``, measured
    with weights in their current state and activations unquantized."""
    init_activations(model, batches, run, "minmax")
