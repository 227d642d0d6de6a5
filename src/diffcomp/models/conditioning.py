"""Class conditioning and classifier-free guidance, as plain functions.

A class-conditional denoiser here is a ``UNet2DModel`` with ``num_class_embeds = K + 1``: labels
``0..K-1`` are the classes and label ``K`` is the unconditional ("null") class, which
classifier-free guidance needs (the convention of the LDM-4 ImageNet checkpoint, whose class
embedding has 1001 rows for 1000 classes). Every denoiser call takes the conditioning as its
third positional argument (``UNet2DModel(x, t, class_labels)``), so a calibration batch
``(x, t, labels)`` feeds a quantized model by ``model(*batch)`` exactly as ``(x, t)`` feeds an
unconditional one.

Image ``i`` of a sampling run gets label ``i mod K``, whatever the seed: every seed set and shard
holds the classes in equal numbers (50 per class for 50,000 ImageNet images, as the papers'
evaluation does), and an image's label, like its noise, depends on its index alone.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

CondFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def num_classes(unet: torch.nn.Module) -> int | None:
    """K for a class-conditional UNet (its class embedding has K + 1 rows, the last the null
    class); None for an unconditional one."""
    rows = getattr(getattr(unet, "config", None), "num_class_embeds", None)
    if rows is None:
        return None
    if rows < 2:
        raise ValueError(f"a class-conditional UNet needs num_class_embeds >= 2 (classes + the null class), got {rows}")
    return int(rows) - 1


def labels_for(indices: Sequence[int], classes: int) -> torch.Tensor:
    """The class label of each image index: ``i mod classes`` (balanced over any run of indices)."""
    if classes < 1:
        raise ValueError(f"classes must be at least 1, got {classes}")
    return torch.tensor([int(i) % classes for i in indices], dtype=torch.long)


def with_labels(fn: CondFn, labels: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``fn(x, t, labels)`` as the ``(x, t) -> eps`` the samplers call, for one batch's labels."""

    def bound(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return fn(x, t, labels)

    return bound


def guided(fn: CondFn, scale: float, null_label: int) -> CondFn:
    """Classifier-free guidance of ``fn(x, t, labels) -> eps``: ``eps_u + scale (eps_c - eps_u)``
    with ``eps_u`` the prediction for the null label, both in one forward of a doubled batch
    (conditional half first). ``scale`` 1 is the conditional model alone (one forward); an
    unconditional call (labels None) passes through."""
    if scale == 1.0:
        return fn

    def cfg(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            return fn(x, t, None)
        n = x.shape[0]
        tt = torch.as_tensor(t, device=x.device).reshape(-1).expand(n)
        null = torch.full_like(labels, null_label)
        eps = fn(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, null]))
        cond, uncond = eps[:n], eps[n:]
        return uncond + scale * (cond - uncond)

    return cfg
