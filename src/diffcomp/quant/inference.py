"""A quantized model made ready for fast inference, and back.

``frozen(model)`` fake-quantizes every frozen weight once (not at every forward: the quantized
weight is stored beside the layer's weight, optionally in the compute dtype, e.g. bf16) and
switches per-timestep quantizers to their gather path (no host synchronisation per call). Inside
it the model computes what it computed before (bit for bit in fp32) and runs under
``torch.compile`` without graph breaks or recompiles across timesteps. Changing the model's
weights or quantizers inside the block is not seen by the frozen copies: only sample inside it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from .module import quant_modules
from .timestep import TimestepQuantizer, lookup_steps


def check_timesteps(model: nn.Module, timesteps: Sequence[int]) -> None:
    """Raise ``KeyError`` (naming them) if a per-timestep quantizer or the eps correction of
    ``model`` has no parameters for some of ``timesteps``: a compiled graph cannot check."""
    from .correction import EpsCorrection

    t = torch.as_tensor(list(timesteps), dtype=torch.long)
    for m in model.modules():
        if isinstance(m, TimestepQuantizer):
            lookup_steps(m.lut, t, "quantization parameters")
        elif isinstance(m, EpsCorrection):
            lookup_steps(m.lut, t, "eps correction")


@contextmanager
def frozen(model: nn.Module, dtype: torch.dtype | None = None,
           timesteps: Sequence[int] | None = None) -> Iterator[nn.Module]:
    """Within the block, ``model``'s quantized layers use weights quantized once (cast to
    ``dtype`` if given) and its per-timestep quantizers gather their parameters by index.
    ``timesteps``: the model timesteps that will be used, checked first (``check_timesteps``)."""
    if timesteps is not None:
        check_timesteps(model, timesteps)
    named = [(n, m) for n, m in quant_modules(model) if hasattr(m, "freeze_weight")]
    per_step = [n for n, m in named if m.quant_weights and any(q.context is not None for q, _ in m.weight_parts())]
    if per_step:
        raise ValueError(f"{per_step[0]}: per-timestep weight quantizers cannot be frozen (the weight depends on the step)")
    layers = [m for _, m in named]
    gathers = [m for m in model.modules() if isinstance(m, TimestepQuantizer)]
    try:
        with torch.no_grad():
            for m in layers:
                m.freeze_weight(dtype)
        for q in gathers:
            q.gather = True
            q.freeze_tables()
        yield model
    finally:
        for m in layers:
            m.freeze_weight(None, clear=True)
        for q in gathers:
            q.gather = False
            q.freeze_tables(clear=True)
