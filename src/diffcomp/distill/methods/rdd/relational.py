"""RDD's losses in the space of a frozen feature network (Feng et al., ACM MM 2024).

Each loss takes student features (with gradient) and teacher features (targets) and is zero when
they are equal. Shapes: pooled feature vectors (B, C); feature maps (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def feature_kl(feat_s: torch.Tensor, feat_t: torch.Tensor, temperature: float = 0.9) -> torch.Tensor:
    """RCFD's feature-distribution term: KL(softmax(f_T / tau) || softmax(f_S)), batch mean.

    As in the released code the temperature divides the teacher's features only, so the loss is
    zero when f_S equals f_T / tau (for tau = 1: when the features are equal).
    """
    target = F.softmax(feat_t.detach() / temperature, dim=-1)
    return F.kl_div(F.log_softmax(feat_s, dim=-1), target, reduction="batchmean")


def _pixels(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, HW, C), L2-normalised over channels."""
    return F.normalize(fmap.flatten(2), p=2, dim=1).transpose(1, 2)


def pixel_relation_kl(map_s: torch.Tensor, map_t: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The cross-sample pixel relation term: for every sample pair (b, d) and pixel i of b, the
    distribution over pixels j of d of the cosine similarity <p_bi, p_dj> / tau; KL(P_T || P_S)
    summed over j and averaged over the B * B * HW rows."""
    ps, pt = _pixels(map_s), _pixels(map_t.detach())
    sim_s = torch.einsum("bic,djc->bdij", ps, ps).flatten(0, 2)
    sim_t = torch.einsum("bic,djc->bdij", pt, pt).flatten(0, 2)
    return F.kl_div(F.log_softmax(sim_s / temperature, dim=1), F.softmax(sim_t / temperature, dim=1),
                    reduction="batchmean")


def anchor_relation_kl(map_s: torch.Tensor, map_t: torch.Tensor, anchors: torch.Tensor,
                       contrast_temperature: float = 0.1, kd_temperature: float = 1.0) -> torch.Tensor:
    """Every pixel's distribution over ``anchors`` (A, C) unit embeddings, softmax of
    <p, anchor> / contrast_temperature; KL(P_T || P_S) at ``kd_temperature`` (times its square),
    summed over anchors, averaged over the batch and the pixels."""
    ps, pt = _pixels(map_s), _pixels(map_t.detach())
    logit_s = ps @ anchors.T / contrast_temperature
    logit_t = pt @ anchors.T / contrast_temperature
    tau = kd_temperature
    kl = F.kl_div(F.log_softmax(logit_s / tau, dim=2), F.softmax(logit_t / tau, dim=2), reduction="batchmean")
    return kl * tau**2 / ps.shape[1]


class PixelMemory(nn.Module):
    """A first-in-first-out queue of ``size`` L2-normalised pixel embeddings (a ring buffer).

    It starts with random unit vectors, as RDD's does. ``ordered()`` returns the entries oldest
    first. (RDD's code, on reaching the end, writes the last K rows and restarts at 0; here the
    write wraps around, so the queue is exactly the last ``size`` embeddings in order.)
    """

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("queue", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.queue.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Append ``keys`` (K, dim), normalised, overwriting the oldest entries."""
        keys = F.normalize(keys.to(self.queue.dtype), dim=1)[-self.size :]
        k = keys.shape[0]
        # the write position stays on the device: no host synchronisation (a CUDA graph can hold it)
        idx = (torch.arange(k, device=self.queue.device) + self.ptr) % self.size
        self.queue.index_copy_(0, idx, keys)
        self.ptr.copy_((self.ptr + k) % self.size)

    def ordered(self) -> torch.Tensor:
        return torch.roll(self.queue, shifts=-int(self.ptr), dims=0)


class MemoryRelationLoss(nn.Module):
    """RDD's memory relation term: student pixels (through a trainable projection head) and
    teacher pixels are both compared with ``anchors`` fixed entries of a queue of teacher pixel
    embeddings; KL between the two distributions over anchors, per pixel.

    ``forward`` first enqueues ``update`` random teacher pixels of the batch (as the released code
    does, before computing the loss). The head's parameters need their own optimiser.
    """

    def __init__(self, channels: int, size: int = 20_000, update: int = 128, anchors: int = 4096,
                 contrast_temperature: float = 0.1, kd_temperature: float = 1.0, seed: int = 0):
        super().__init__()
        if anchors > size:
            raise ValueError(f"anchors ({anchors}) must not exceed the memory size ({size})")
        gen = torch.Generator().manual_seed(seed)
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
        )
        self.memory = PixelMemory(size, channels, gen)
        self.register_buffer("anchor_index", torch.linspace(0, size - 1, anchors).round().long())
        self.update = update
        self.contrast_temperature = contrast_temperature
        self.kd_temperature = kd_temperature
        self.gen = gen

    def draw(self, pixels: int) -> torch.Tensor:
        """The indices of the ``update`` batch pixels (of ``pixels``) one step enqueues, from the
        loss's own generator (on the CPU)."""
        return torch.randperm(pixels, generator=self.gen)[: self.update]

    def enqueue_from(self, map_t: torch.Tensor, pick: torch.Tensor | None = None) -> None:
        """Enqueue the batch pixels ``pick`` (``draw``'s indices; None: drawn now)."""
        pix = map_t.detach().flatten(2).transpose(1, 2).reshape(-1, map_t.shape[1])
        pick = self.draw(pix.shape[0]) if pick is None else pick
        self.memory.enqueue(pix.index_select(0, pick.to(pix.device)))

    def forward(self, map_s: torch.Tensor, map_t: torch.Tensor, enqueue: bool = True,
                pick: torch.Tensor | None = None) -> torch.Tensor:
        if enqueue:
            self.enqueue_from(map_t, pick)
        anchors = self.memory.queue[self.anchor_index]
        return anchor_relation_kl(self.head(map_s), map_t, anchors, self.contrast_temperature, self.kd_temperature)
