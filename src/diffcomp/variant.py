"""What a variant is (one model to sample and evaluate) and the workflow's paths for it.

A variant is ``fp`` (the full-precision model with the config's sampler), ``{instance}-w{W}a{A}``
(a quantization method instance at a bit setting), ``fp-s{N}`` (the FP model sampled with N
steps on the distillation grid) or ``{instance}-s{N}`` (an N-step distilled student). The one
``Variant`` type formats and parses these names for the Snakefile, the verbs and the tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INSTANCE = r"[a-z][a-z0-9_]*"
PATTERN = rf"fp|{INSTANCE}-w\d+a\d+|{INSTANCE}-s\d+"


@dataclass(frozen=True)
class BitSetting:
    """Weight and activation bit-widths."""

    w: int
    a: int

    @property
    def label(self) -> str:
        return f"W{self.w}A{self.a}"

    @property
    def tag(self) -> str:
        return f"w{self.w}a{self.a}"

    @classmethod
    def parse(cls, text: str) -> "BitSetting":
        """``w4a8`` or ``W4A8``."""
        m = re.fullmatch(r"[wW](\d+)[aA](\d+)", text)
        if not m:
            raise ValueError(f"bad bit setting {text!r}; expected like w4a8")
        return cls(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class Variant:
    """``name`` is ``fp`` or a method instance; ``bits`` for a quantized variant, ``steps`` for a
    few-step one (the FP model's or a student's)."""

    name: str
    bits: BitSetting | None = None
    steps: int | None = None

    def __post_init__(self):
        if self.bits is not None and self.steps is not None:
            raise ValueError("a variant has bits or steps, not both")
        if self.name != "fp" and not re.fullmatch(INSTANCE, self.name):
            raise ValueError(f"bad instance name {self.name!r} (lower case, digits and _)")
        if self.name == "fp" and self.bits is not None:
            raise ValueError("the FP model has no bit setting")
        if self.name != "fp" and self.bits is None and self.steps is None:
            raise ValueError(f"variant {self.name!r} needs a bit setting or a step count")

    @property
    def kind(self) -> str:
        """``fp``, ``quant`` (a quantized model) or ``steps`` (a few-step sampler of the FP model
        or a distilled student)."""
        if self.bits is not None:
            return "quant"
        return "steps" if self.steps is not None else "fp"

    @property
    def distilled(self) -> bool:
        return self.steps is not None and self.name != "fp"

    def __str__(self) -> str:
        if self.bits is not None:
            return f"{self.name}-{self.bits.tag}"
        if self.steps is not None:
            return f"{self.name}-s{self.steps}"
        return self.name

    @classmethod
    def parse(cls, text: str) -> "Variant":
        if text == "fp":
            return cls("fp")
        m = re.fullmatch(rf"({INSTANCE})-w(\d+)a(\d+)", text)
        if m:
            return cls(m.group(1), bits=BitSetting(int(m.group(2)), int(m.group(3))))
        m = re.fullmatch(rf"({INSTANCE})-s(\d+)", text)
        if m:
            return cls(m.group(1), steps=int(m.group(2)))
        raise ValueError(f"bad variant name {text!r} (expected fp, NAME-wWaA or NAME-sN)")


# ---- where the workflow keeps a variant's files (one definition for the rules and the verbs)


def quant_state_path(variant: Variant | str) -> str:
    """The quantized model of a ``quant`` variant (safetensors with its spec in the header)."""
    return f"results/quant/{variant}.safetensors"


def student_dir(name: str, steps: int) -> str:
    """The ``steps``-step student of distillation instance ``name`` (a diffusers folder)."""
    return f"results/distill/{name}/steps{steps}"


def export_path(variant: Variant | str) -> str:
    """The packed integer checkpoint of a ``quant`` variant (``diffcomp export``)."""
    return f"results/export/{variant}.safetensors"
