"""``build_quantizer(config)``: the quantizer module a ``QuantizerConfig`` describes."""

from __future__ import annotations

from typing import Sequence

from .quantizer import Quantizer, UniformQuantizer
from .spec import QuantizerConfig
from .timestep import StepContext, TimestepQuantizer


def build_quantizer(cfg: QuantizerConfig, channels: int | None = None, axis: int = 0,
                    timesteps: Sequence[int] = (), context: StepContext | None = None) -> Quantizer:
    """``channels``: the size of the per-channel axis (used when ``cfg.per_channel``)."""

    def make() -> UniformQuantizer:
        return UniformQuantizer(cfg.bits, cfg.symmetric, channels if cfg.per_channel else None, axis,
                                cfg.unsigned, cfg.learnable, mixed=cfg.mixed)

    if cfg.per_timestep:
        if context is None:
            raise ValueError("a per-timestep quantizer needs a StepContext")
        return TimestepQuantizer(make, timesteps, context)
    return make()
