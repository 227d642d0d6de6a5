"""FP sampler trajectories: the UNet input (x_t, t) at every sampling step, as a safetensors file
(tensors ``xs`` and ``ts``, and ``labels`` for a class-conditional model; the sampler and
calibration settings as JSON in its header)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..io import atomic_path, damaged, missing, tensors_digest

FORMAT = "diffcomp-trajectories/2"


@dataclass
class Trajectories:
    """``xs[s, n]`` is trajectory n's model input at sampling step s (noisiest first); ``ts[s]`` its
    timestep; ``labels[n]`` trajectory n's class (a class-conditional model; None otherwise)."""

    xs: torch.Tensor  # (S, N, C, H, W)
    ts: torch.Tensor  # (S,)
    meta: dict = field(default_factory=dict)
    labels: torch.Tensor | None = None  # (N,) int64

    def __post_init__(self):
        if self.xs.dim() != 5 or self.ts.dim() != 1 or self.xs.shape[0] != self.ts.shape[0]:
            raise ValueError(f"trajectories need xs (S, N, C, H, W) and ts (S,), got {tuple(self.xs.shape)} and {tuple(self.ts.shape)}")
        if self.labels is not None and (self.labels.shape != (self.xs.shape[1],) or self.labels.dtype != torch.long):
            raise ValueError(f"labels must be int64 of shape ({self.xs.shape[1]},), got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")

    @property
    def guidance(self) -> float:
        """The guidance scale of the sampler that drew them (1: none, and for unlabelled ones)."""
        if self.labels is None:
            return 1.0
        return float(self.meta.get("sampler", {}).get("guidance", 1.0))

    def step_inputs(self, s: int, start: int = 0, stop: int | None = None) -> tuple:
        """The model inputs at step ``s`` of trajectories ``[start, stop)`` as calibration takes
        them (``calib.selectors.gather``): ``(x, t)``, or ``(x, t, labels)`` for a class-conditional
        model, under guidance each input followed by its null-label twin."""
        from .selectors import gather

        index = torch.arange(start, min(stop if stop is not None else self.xs.shape[1], self.xs.shape[1]))
        return gather(self, torch.full_like(index, s), index).tensors()

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {"xs": self.xs.contiguous(), "ts": self.ts.contiguous()}
        if self.labels is not None:
            tensors["labels"] = self.labels.contiguous()
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "meta": json.dumps(self.meta, sort_keys=True),
                                                   "sha256": tensors_digest(tensors)})

    @classmethod
    def load(cls, path: str | Path) -> "Trajectories":
        """Read a file written by ``save`` (never unpickles); a missing, damaged (its tensors no
        longer match the digest in the header) or foreign file is one ``FileError`` naming it."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise missing(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                keys = set(f.keys())
                if header.get("format") != FORMAT or keys not in ({"xs", "ts"}, {"xs", "ts", "labels"}):
                    raise ValueError(f"not a trajectories file of format {FORMAT}")
                tensors = {k: f.get_tensor(k) for k in sorted(keys)}
            if tensors_digest(tensors) != header.get("sha256"):
                raise ValueError("its tensors do not match the sha256 in its header")
            traj = cls(**tensors, meta=json.loads(header.get("meta", "{}")))
        except Exception as e:  # safetensors raises its own error types for truncated files
            raise damaged(path, e) from None
        return traj
