"""What a quantized model is, as data (torch-free): quantizer configs, per-layer configs and the
model spec with its name-pattern selection and ordered overrides.

Like torchao's ``FakeQuantizeConfig``: a ``QuantizerConfig`` says what one fake quantizer does
(grid, granularity, learnable step, one set of parameters per sampling step, per-channel mixed
bit widths); ``quant.factory.build_quantizer`` turns it into a module. A spec is saved as JSON
next to the state dict, so loading wraps a fresh FP model the same way without any data.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class QuantizerConfig:
    """One fake quantizer.

    Args:
        bits: bit-width (with ``mixed``: the average over channels, which stays exactly this).
        symmetric: symmetric grid with zero point 0, else asymmetric with a zero point.
        per_channel: one step size per output channel (weights), else one per tensor.
        unsigned: grid ``[0, 2^b - 1]`` with zero point 0 (softmax outputs).
        learnable: the step size is trained (LSQ).
        per_timestep: one step size and zero point per sampling step, chosen by the timestep the
            UNet receives (EfficientDM's activation quantizers).
        mixed: per-channel bit widths (needs ``per_channel``) whose mean is ``bits`` (MPQ-DM).
    """

    bits: int
    symmetric: bool = False
    per_channel: bool = False
    unsigned: bool = False
    learnable: bool = False
    per_timestep: bool = False
    mixed: bool = False

    def __post_init__(self):
        if not 1 <= self.bits <= 16:
            raise ValueError(f"bits must be in 1..16, got {self.bits}")
        if self.mixed and not self.per_channel:
            raise ValueError("mixed bit widths are per channel: set per_channel too")


@dataclass(frozen=True)
class LayerConfig:
    """How one Conv2d/Linear is quantized: its weight and input quantizers (None: kept FP) and,
    for a layer whose input is ``cat([h, skip])``, ``split`` = the channels of ``h`` (two input and
    two weight quantizers on the two halves: Q-Diffusion's split shortcut quantization).
    ``smooth``: the layer holds a per-input-channel scale ``s`` (buffer ``smooth_scale``) and
    divides its input by it before input quantization; whoever sets ``s`` multiplies the stored
    weight by it (SmoothQuant-style pre-scaling, MPQ-DM's OMQ)."""

    weight: QuantizerConfig | None
    act: QuantizerConfig | None
    split: int = 0
    smooth: bool = False


@dataclass(frozen=True)
class AttentionConfig:
    """Act-to-act inputs of attention: q, k and v (``act``) and the softmax output (``softmax``)."""

    act: QuantizerConfig
    softmax: QuantizerConfig


def _apply(cfg: LayerConfig, changes: Mapping[str, Any]) -> LayerConfig:
    """``cfg`` with ``changes``: ``weight``/``act`` (a whole quantizer config as a mapping, or None
    for FP), ``weight.FIELD``/``act.FIELD`` (one field), ``split`` or ``smooth``."""
    for k, v in changes.items():
        part, _, fld = k.partition(".")
        if part == "split" and not fld:
            cfg = dataclasses.replace(cfg, split=int(v))
        elif part == "smooth" and not fld:
            cfg = dataclasses.replace(cfg, smooth=bool(v))
        elif part in ("weight", "act") and not fld:
            cfg = dataclasses.replace(cfg, **{part: None if v is None else QuantizerConfig(**dict(v))})
        elif part in ("weight", "act"):
            current = getattr(cfg, part)
            if current is None:
                raise ValueError(f"override {k!r}: this layer's {part} is not quantized")
            cfg = dataclasses.replace(cfg, **{part: dataclasses.replace(current, **{fld: v})})
        else:
            raise ValueError(f"unknown override key {k!r} (weight, act, weight.FIELD, act.FIELD, split, smooth)")
    return cfg


@dataclass(frozen=True)
class QuantSpec:
    """Which layers are quantized, and how.

    ``include``/``exclude`` are regexes matched (``re.search``) against module names; every
    Conv2d/Linear they select gets ``LayerConfig(weight, act)``, then every matching entry of the
    ordered ``overrides`` ``(regex, changes)`` applies, later ones winning, e.g.
    ``(("^conv_(in|out)$", {"weight.bits": 8, "act.bits": 8}),)`` for 8-bit first and last layers.
    ``attention`` quantizes q, k, v and the softmax output of the selected attention modules.
    ``timesteps`` are the sampling steps of per-timestep quantizers. ``eps_correction`` lists the
    timesteps of a fitted noise-prediction correction (``quant.correction``; empty: none), per
    channel or, with ``eps_correction_per_pixel``, per pixel.
    """

    weight: QuantizerConfig | None
    act: QuantizerConfig | None
    include: tuple[str, ...] = (".*",)
    exclude: tuple[str, ...] = ()
    overrides: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    attention: AttentionConfig | None = None
    timesteps: tuple[int, ...] = ()
    eps_correction: tuple[int, ...] = ()
    eps_correction_per_pixel: bool = False

    def selects(self, name: str) -> bool:
        return any(re.search(p, name) for p in self.include) and not any(re.search(p, name) for p in self.exclude)

    def layer_config(self, name: str) -> LayerConfig | None:
        if not self.selects(name):
            return None
        cfg = LayerConfig(self.weight, self.act)
        for pattern, changes in self.overrides:
            if re.search(pattern, name):
                cfg = _apply(cfg, changes)
        return cfg

    def with_overrides(self, *entries: tuple[str, Mapping[str, Any]]) -> "QuantSpec":
        return dataclasses.replace(self, overrides=self.overrides + tuple((p, dict(c)) for p, c in entries))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = [[p, dict(c)] for p, c in self.overrides]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QuantSpec":
        def qc(v):
            return None if v is None else QuantizerConfig(**v)

        att = d.get("attention")
        return cls(
            weight=qc(d.get("weight")), act=qc(d.get("act")),
            include=tuple(d.get("include", (".*",))), exclude=tuple(d.get("exclude", ())),
            overrides=tuple((p, dict(c)) for p, c in d.get("overrides", ())),
            attention=None if att is None else AttentionConfig(qc(att["act"]), qc(att["softmax"])),
            timesteps=tuple(int(t) for t in d.get("timesteps", ())),
            eps_correction=tuple(int(t) for t in d.get("eps_correction", ())),
            eps_correction_per_pixel=bool(d.get("eps_correction_per_pixel", False)),
        )  # fmt: skip
