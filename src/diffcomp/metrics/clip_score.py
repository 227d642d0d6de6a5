"""CLIP score of text-to-image samples: how well each image matches the prompt it was generated
for, in a CLIP model's joint embedding (the Stable Diffusion protocol reports it beside FID, with
CLIP ViT-L/14).

The score of an image and its prompt is ``100 * max(cos(image embedding, text embedding), 0)``,
the definition of the ``clip-score`` package and of torchmetrics' ``CLIPScore``, averaged over the
images. Its inputs are prepared as CLIP's processor prepares them, since a different resize or
normalisation moves the score:

* images: CLIP's PIL image processor (``CLIPImageProcessorPil``) with the settings the model
  folder's ``preprocessor_config.json`` gives: the shortest side resized to 224 (bicubic, on the
  uint8 image), centre crop 224, scaled to [0, 1] and normalised with CLIP's mean and std.
  transformers' default ``CLIPImageProcessor`` resizes with torchvision, whose bicubic filter
  differs from PIL's, which is what the original CLIP and the ``clip-score`` package use;
* prompts: CLIP's tokenizer, truncated to the text model's length (77 tokens for CLIP), padded
  to the longest prompt of the batch (CLIP's text transformer is causal and pools at the end of
  text token, so padding does not change an embedding).

The model is loaded from a local folder (``save_pretrained`` layout, safetensors weights) and
never from the network, so a run on an offline cluster node measures with the files it was given.
torch and transformers are imported inside the functions: the workflow reads ``FILES`` when it
plans, without them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import FileError, missing

WEIGHTS = "model.safetensors"
# The files of a CLIP model folder that the score reads (besides the tokenizer's vocabulary,
# which is either tokenizer.json or vocab.json + merges.txt).
FILES = ("config.json", WEIGHTS, "preprocessor_config.json", "tokenizer_config.json")


@dataclass
class Clip:
    """A CLIP model with the image processor and tokenizer it was trained with."""

    model: Any  # transformers.CLIPModel
    processor: Any  # transformers.CLIPImageProcessorPil
    tokenizer: Any  # transformers.CLIPTokenizer

    @property
    def max_length(self) -> int:
        """Tokens a prompt is truncated to: the text model's positions (77 for CLIP)."""
        return int(min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings))


def load_clip(folder: str | os.PathLike, device: str = "cpu") -> Clip:
    """The CLIP model, image processor and tokenizer of ``folder`` (offline, safetensors only)."""
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    root = Path(folder)
    absent = [f for f in FILES if not (root / f).is_file()]
    if absent:
        raise missing(root / absent[0], "a CLIP model folder as save_pretrained writes it (model, processor and "
                      "tokenizer; e.g. a download of openai/clip-vit-large-patch14)")
    model = CLIPModel.from_pretrained(root, use_safetensors=True, local_files_only=True)
    processor = CLIPImageProcessorPil.from_pretrained(root, local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(root, local_files_only=True)
    return Clip(model.eval().requires_grad_(False).to(device), processor, tokenizer)


def preprocess(images: np.ndarray, processor):
    """uint8 images (N, 3, H, W) as CLIP's pixel values (N, 3, crop, crop), float32."""
    from PIL import Image

    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {images.shape}")
    pil = [Image.fromarray(np.ascontiguousarray(im.transpose(1, 2, 0))) for im in images]
    return processor(images=pil, return_tensors="pt")["pixel_values"].float()


def tokenize(prompts: Sequence[str], clip: Clip) -> dict[str, Any]:
    """Token ids and attention mask of ``prompts``, truncated to ``clip.max_length``."""
    tok = clip.tokenizer(list(prompts), padding=True, truncation=True, max_length=clip.max_length,
                         return_tensors="pt")
    return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}


def _pooled(out):
    """The projected embedding of ``get_image_features`` / ``get_text_features`` (a tensor, or
    the pooled output of the model output transformers 5 returns)."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


def scores_of(pixels, tokens: dict[str, Any], model):
    """``100 * max(cos, 0)`` of each image embedding with its text embedding (one batch of
    pixel values and tokens, tensors on the model's device)."""
    import torch

    image = _pooled(model.get_image_features(pixel_values=pixels)).float()
    text = _pooled(model.get_text_features(**tokens)).float()
    cos = torch.nn.functional.cosine_similarity(image, text, dim=-1)
    return 100 * cos.clamp(min=0)


def clip_scores(images: np.ndarray, prompts: Sequence[str], clip: Clip, batch_size: int = 64) -> np.ndarray:
    """The CLIP score (float64, in [0, 100]) of image i with prompt i, in batches on the model's
    device, without gradients."""
    import torch

    if len(images) != len(prompts):
        raise ValueError(f"CLIP score: {len(images)} images but {len(prompts)} prompts (one prompt per image)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = next(clip.model.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            pixels = preprocess(images[s:s + batch_size], clip.processor).to(device)
            tokens = {k: v.to(device) for k, v in tokenize(prompts[s:s + batch_size], clip).items()}
            out.append(scores_of(pixels, tokens, clip.model).cpu().double())
    return torch.cat(out).numpy() if out else np.zeros(0)


def summary(scores: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation (over images, ddof 0) of per-image CLIP scores."""
    if len(scores) == 0:
        raise ValueError("CLIP score of no images")
    return {"clip_score": float(np.mean(scores)), "clip_score_std": float(np.std(scores))}


def prompts_of(indices: Sequence[int], prompts: Sequence[str]) -> list[str]:
    """The prompt each image index was sampled with: the label ``models.conditioning.labels_for``
    gives the sampler for that index, as a row of ``prompts`` (the model's prompts.txt)."""
    from ..models.conditioning import labels_for

    if not prompts:
        raise FileError("a text-to-image model without prompts has no CLIP score")
    return [prompts[int(k)] for k in labels_for([int(i) for i in indices], len(prompts))]
