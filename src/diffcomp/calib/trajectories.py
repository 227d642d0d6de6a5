"""FP sampler trajectories: the UNet input (x_t, t) at every sampling step, as a safetensors file
(tensors ``xs`` and ``ts``; the sampler and calibration settings as JSON in its header)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..io import atomic_path


@dataclass
class Trajectories:
    """``xs[s, n]`` is trajectory n's model input at sampling step s (noisiest first); ``ts[s]`` its timestep."""

    xs: torch.Tensor  # (S, N, C, H, W)
    ts: torch.Tensor  # (S,)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.xs.dim() != 5 or self.ts.dim() != 1 or self.xs.shape[0] != self.ts.shape[0]:
            raise ValueError(f"trajectories need xs (S, N, C, H, W) and ts (S,), got {tuple(self.xs.shape)} and {tuple(self.ts.shape)}")

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            save_file({"xs": self.xs.contiguous(), "ts": self.ts.contiguous()}, str(tmp),
                      metadata={"format": "diffcomp-trajectories/1", "meta": json.dumps(self.meta, sort_keys=True)})

    @classmethod
    def load(cls, path: str | Path) -> "Trajectories":
        """Read a file written by ``save`` (never unpickles); a damaged or foreign file is one
        clear error naming it."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                if header.get("format") != "diffcomp-trajectories/1" or set(f.keys()) != {"xs", "ts"}:
                    raise ValueError("not a trajectories file of this version")
                traj = cls(xs=f.get_tensor("xs"), ts=f.get_tensor("ts"), meta=json.loads(header.get("meta", "{}")))
        except Exception as e:  # safetensors raises its own error types for truncated files
            raise ValueError(f"{path}: cannot read the trajectories ({e}); delete it to have it rebuilt") from None
        return traj
