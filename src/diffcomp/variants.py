"""Load the model of a variant: the FP pipeline, with a quantized state applied if given."""

from __future__ import annotations

from pathlib import Path

import torch

from .models.pipeline import Pipeline, load_pipeline


def load_variant(model_dir: str | Path, quantized: str | Path | None = None, device: str | torch.device = "cpu") -> Pipeline:
    pipe = load_pipeline(model_dir, device="cpu")
    if quantized is not None:
        from .quant.wrap import load_quantized

        pipe.unet = load_quantized(pipe.unet, quantized)
    pipe.unet.to(device).eval()
    return pipe
