"""Per-timestep statistics of a quantized model's noise prediction against the FP model's, as
pure functions of the two predictions on the same inputs.

For predictions ``q`` and ``f`` of shape (N, C, H, W) at one timestep:

* ``rel_err`` = ||q - f|| / ||f|| over all N samples;
* ``gain`` = <q, f> / <f, f>: the least-squares slope of q on f (1 when the quantized model
  neither amplifies nor shrinks the prediction);
* ``bias_rms``: the mean over samples of (q - f), per pixel, then its root mean square over the
  pixels: the part of the error every sample shares (a brightness shift once it accumulates);
* ``mean_bias``: the mean of (q - f) over everything (its sign says which way the shift goes).
"""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def eps_stats(q: torch.Tensor, f: torch.Tensor) -> dict[str, float]:
    q, f = q.double(), f.double()
    d = q - f
    return {
        "rel_err": float(d.norm() / f.norm().clamp_min(1e-30)),
        "gain": float((q * f).sum() / (f * f).sum().clamp_min(1e-30)),
        "bias_rms": float(d.mean(dim=0).pow(2).mean().sqrt()),
        "mean_bias": float(d.mean()),
    }


def sample_stats(images: np.ndarray, fp_images: np.ndarray) -> dict[str, float]:
    """``pixel_shift``: mean pixel of the samples minus the FP model's, in model units ([-1, 1]);
    ``rms_distance``: RMS pixel difference between samples drawn from the same seeds (same
    indices), in model units. Images are uint8 (N, C, H, W) with matching indices."""
    if images.shape != fp_images.shape:
        raise ValueError(f"samples {images.shape} and FP samples {fp_images.shape} differ in shape")
    a = images.astype(np.float64) / 127.5 - 1.0
    b = fp_images.astype(np.float64) / 127.5 - 1.0
    return {"pixel_shift": float(a.mean() - b.mean()), "rms_distance": float(np.sqrt(((a - b) ** 2).mean()))}
