"""Typed, frozen configuration dataclasses built from plain mappings (the validated YAML).

Generic machinery, knowing no section and no method: ``build_dataclass(cls, mapping, where)``
builds a frozen dataclass, checking unknown keys and types and naming the key in one
``ConfigError``; ``to_plain(obj)`` turns such a dataclass back into JSON-able data (what a rule
passes to a verb, and what a verb writes into provenance). A field type with a classmethod
``from_config(value, where)`` and a method ``to_config()`` converts itself (a choice among
registered entries, e.g. a calibration selector with its own parameters).

Bounds are declared on the field's type, not in code that names a method: ``iters: PositiveInt``
(``Annotated[int, Range(1)]``) is checked wherever a config is built, and every float must be
finite (``eta: .nan`` is refused), so a method's parameter dataclass states its own limits.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Annotated, Any, Iterable, Mapping


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and the problem."""


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a numeric field, as ``Annotated`` metadata: ``Annotated[int, Range(1)]``."""

    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False

    def check(self, value: Any, where: str) -> None:
        if self.min is not None and (value <= self.min if self.exclusive_min else value < self.min):
            relation = "less than or equal to" if self.exclusive_min else "less than"
            raise ConfigError(f"config key '{where}': {value!r} is {relation} the minimum of {self.min!r}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"config key '{where}': {value!r} is greater than the maximum of {self.max!r}")


PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, exclusive_min=True)]
NonNegativeFloat = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1)]


def key(path: Iterable[Any]) -> str:
    """``a.b[0].c`` from a path of keys and list indices."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def build_dataclass(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build frozen dataclass ``cls`` from a mapping; unknown keys and wrong types are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{where or '<top level>'}': expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for k in data:
        if k not in names:
            raise ConfigError(f"config key '{where + '.' if where else ''}{k}': unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"config key '{where or '<top level>'}': {e}") from None


def convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` as type ``tp`` (dataclasses, tuples, mappings, unions with None, scalars)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        out = convert(args[0], value, where)
        for bound in (m for m in tp.__metadata__ if isinstance(m, Range)):
            if out is not None:
                bound.check(out, where)
        return out
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(inner[0], value, where)
    if isinstance(tp, type) and hasattr(tp, "from_config"):
        return tp.from_config(value, where)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{where}': expected a list, got {value!r}")
        return tuple(convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{where}': expected a mapping, got {value!r}")
        vt = args[1] if args else Any
        return types.MappingProxyType({k: convert(vt, v, f"{where}.{k}") for k, v in value.items()})
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp in (int, float) and isinstance(value, bool))):
        raise ConfigError(f"config key '{where}': expected {tp.__name__}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"config key '{where}': {value!r} is not a finite number")
    return value


def to_plain(obj: Any) -> Any:
    """JSON-able data of a config object: dataclasses as mappings of their fields (``to_config``
    where a type defines it), tuples as lists, read-only mappings as dicts."""
    if hasattr(obj, "to_config") and not isinstance(obj, type):
        return obj.to_config()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
