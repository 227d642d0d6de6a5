"""The papers' own numbers (a checked-in YAML, every number with its source), read for the
"paper" columns of the tables (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .typedconfig import ConfigError

METRICS = ("fid", "sfid", "is")


@dataclass(frozen=True)
class PaperConfig:
    """Which setting of the paper-numbers file the tables show beside ours."""

    numbers: str = "resources/paper/numbers.yaml"
    setting: str = "cifar10-ddim100"


@dataclass(frozen=True)
class PaperNumbers:
    """``cells[instance][bits label] = {metric: value}`` and the sources they come from."""

    setting: str
    protocol: str
    cells: Mapping[str, Mapping[str, Mapping[str, float]]]
    sources: tuple[str, ...]

    def get(self, instance: str, bits: str, metric: str) -> float | None:
        return self.cells.get(instance, {}).get(bits, {}).get(metric)


def paper_numbers(raw: Mapping, path: str | Path, setting: str) -> PaperNumbers:
    """Setting ``setting`` of the paper-numbers YAML ``raw`` (read from ``path`` by
    ``config.read_yaml``); a number without a source, an unknown metric or a non-number is one
    ``ConfigError`` naming the key."""
    settings = raw.get("settings") or {}
    if setting not in settings:
        raise ConfigError(f"{path}: no setting {setting!r} (known: {', '.join(sorted(settings))})")
    s = settings[setting] or {}
    cells: dict[str, dict[str, dict[str, float]]] = {}
    sources: list[str] = []
    for inst, by_bits in (s.get("rows") or {}).items():
        for bits, cell in (by_bits or {}).items():
            where = f"{path}: settings.{setting}.rows.{inst}.{bits}"
            cell = dict(cell or {})
            src = cell.pop("source", None)
            if not isinstance(src, str) or not src.strip():
                raise ConfigError(f"{where}.source: every number needs its source")
            for k, v in cell.items():
                if k not in METRICS:
                    raise ConfigError(f"{where}.{k}: unknown metric (known: {', '.join(METRICS)})")
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ConfigError(f"{where}.{k}: {v!r} is not a number")
            cells.setdefault(inst, {})[bits] = {k: float(v) for k, v in cell.items()}
            if src not in sources:
                sources.append(" ".join(src.split()))
    return PaperNumbers(setting, " ".join(str(s.get("protocol", "")).split()), cells, tuple(sources))
