"""RDD's objective: PD's target, RDD's relational losses in a frozen feature network's space."""

from __future__ import annotations

import torch
import torch.nn as nn

from ...targets import pd_loss
from . import RDDParams
from .relational import MemoryRelationLoss, feature_kl, pixel_relation_kl


class RDDObjective(nn.Module):
    """Feature KL + pixel relation KL + memory relation KL (+ optional PD MSE), on the student's
    x0 estimate and the PD target, both through the frozen ``features`` network."""

    def __init__(self, params: RDDParams, features: nn.Module, channels: int):
        super().__init__()
        self.params = params
        self.features = features
        self.memory = MemoryRelationLoss(channels, params.memory_size, params.memory_update, params.anchors,
                                         params.contrast_temperature, params.kd_temperature, seed=params.seed)
        self._pixels: int | None = None  # feature-map pixels per image, found on the first draw

    def trainable(self) -> list[nn.Parameter]:
        return list(self.memory.head.parameters())

    def extra_state(self):
        return self.memory.gen.get_state()

    def load_extra_state(self, state) -> None:
        self.memory.gen.set_state(state.cpu())  # a CPU generator (the checkpoint may be mapped to a GPU)

    def draw(self, n: int, batch: int, image_shape: tuple[int, ...], device) -> dict[str, torch.Tensor]:
        """``n`` steps' random inputs, stacked (the memory's enqueued pixels), in the order
        ``forward`` without ``draws`` takes them from the same generator."""
        if self._pixels is None:
            with torch.no_grad():
                fmap, _ = self.features(torch.zeros(1, *image_shape, device=device))
            self._pixels = fmap.shape[-2] * fmap.shape[-1]
        return {"pick": torch.stack([self.memory.draw(batch * self._pixels) for _ in range(n)])}

    def forward(self, eps_s, z, x_target, a, s, x0_s=None,
                draws: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p = self.params
        mse, x0_s = pd_loss(eps_s, z, x_target, a, s, x0_s)
        with torch.no_grad():
            map_t, vec_t = self.features(x_target)
        map_s, vec_s = self.features(x0_s)
        parts = {
            "feature": feature_kl(vec_s, vec_t, p.temperature),
            "intra": pixel_relation_kl(map_s, map_t, p.intra_temperature),
            "memory": self.memory(map_s, map_t, pick=(draws or {}).get("pick")),
            "mse": mse,
        }
        weights = {"feature": p.feature_weight, "intra": p.intra_weight, "memory": p.memory_weight, "mse": p.mse_weight}
        loss = sum(weights[k] * v for k, v in parts.items() if weights[k] != 0)
        return loss, {k: v.detach() for k, v in parts.items()}
