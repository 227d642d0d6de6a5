"""Class conditioning and classifier-free guidance, as plain functions.

A class-conditional denoiser has K + 1 class rows: labels ``0..K-1`` are the classes and label
``K`` is the unconditional ("null") class, which classifier-free guidance needs (the convention of
the LDM-4 ImageNet checkpoint, whose class embedding has 1001 rows for 1000 classes). It is one of

* a ``UNet2DModel`` with ``num_class_embeds = K + 1`` (the class embedding is added to the
  timestep embedding);
* a ``UNet2DConditionModel`` whose cross-attention context is the class embedding, as in the
  LDM-4 ImageNet model: ``encoder_hid_dim_type = "text_proj"`` and ``encoder_hid_dim = K + 1``,
  so ``encoder_hid_proj`` (bias zero) holds the embedding table as its weight's columns and a
  one-hot label (1 token) maps to its row. ``accept_labels`` gives such a UNet a forward pre-hook
  that turns integer labels into that one-hot context, so it too takes the label as its third
  positional argument. Its ``encoder_hid_proj`` is the conditioning stage, not the denoiser:
  it is never quantized (``conditioning_modules``).

A text-to-image denoiser (Stable Diffusion) is a ``UNet2DConditionModel`` whose context is a
prompt's CLIP text embedding. Its "classes" are the K prompts of the model folder's
``prompts.txt`` (image i gets prompt i mod K) and its null class is the empty prompt:
``accept_prompts`` keeps the tokenized prompts as a buffer (``prompt_tokens``, K + 1 rows, the
last the empty prompt) and a forward pre-hook turns an integer id into the text encoder's output
for that row. The text encoder is held by the hook, not by the UNet, so it is never quantized
or saved with a quantized model.

Every denoiser call takes the conditioning as its third positional argument
(``UNet2DModel(x, t, class_labels)``), so a calibration batch ``(x, t, labels)`` feeds a
quantized model by ``model(*batch)`` exactly as ``(x, t)`` feeds an unconditional one.

Image ``i`` of a sampling run gets label ``i mod K``, whatever the seed: every seed set and shard
holds the classes in equal numbers (50 per class for 50,000 ImageNet images, as the papers'
evaluation does), and an image's label, like its noise, depends on its index alone.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

CondFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


CLASS_CONTEXT = "text_proj"  # encoder_hid_dim_type of a class-context UNet2DConditionModel


def class_context(unet: torch.nn.Module) -> bool:
    """Whether ``unet`` is a UNet2DConditionModel conditioned on a class through its
    cross-attention context (``encoder_hid_dim_type`` "text_proj", ``encoder_hid_dim`` K + 1)."""
    return getattr(getattr(unet, "config", None), "encoder_hid_dim_type", None) == CLASS_CONTEXT


def text_context(unet: torch.nn.Module) -> bool:
    """Whether ``unet`` takes prompt ids (``accept_prompts``)."""
    return isinstance(getattr(unet, "prompt_tokens", None), torch.Tensor)


def num_classes(unet: torch.nn.Module) -> int | None:
    """K for a class-conditional UNet (its class embedding has K + 1 rows, the last the null
    class) or a text-to-image one (K prompts and the empty one); None for an unconditional one."""
    if text_context(unet):
        return int(unet.prompt_tokens.shape[0]) - 1
    cfg = getattr(unet, "config", None)
    rows = getattr(cfg, "encoder_hid_dim", None) if class_context(unet) else getattr(cfg, "num_class_embeds", None)
    if rows is None:
        return None
    if rows < 2:
        raise ValueError(f"a class-conditional UNet needs num_class_embeds >= 2 (classes + the null class), got {rows}")
    return int(rows) - 1


def conditioning_modules(unet: torch.nn.Module) -> tuple[str, ...]:
    """Names of the modules that embed the conditioning (kept in full precision: only the
    denoiser is quantized)."""
    return ("encoder_hid_proj",) if class_context(unet) else ()


def _ids_to_context(args: tuple, kwargs: dict, embed: Callable[[torch.Tensor], torch.Tensor]) -> tuple[tuple, dict]:
    """A UNet call's arguments with its conditioning (the third positional argument, or
    ``encoder_hidden_states``) replaced by ``embed(ids)`` when it is an integer tensor of ids."""

    def convert(c):
        return embed(c.reshape(-1)) if isinstance(c, torch.Tensor) and not c.is_floating_point() else c

    if len(args) >= 3:
        args = (*args[:2], convert(args[2]), *args[3:])
    elif "encoder_hidden_states" in kwargs:
        kwargs = {**kwargs, "encoder_hidden_states": convert(kwargs["encoder_hidden_states"])}
    return args, kwargs


def _labels_to_context(module: torch.nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook of a class-context UNet: integer labels become the one-hot context
    ``(B, 1, K + 1)``."""
    rows, dtype = module.config.encoder_hid_dim, module.encoder_hid_proj.weight.dtype
    return _ids_to_context(args, kwargs, lambda ids: torch.nn.functional.one_hot(ids, rows).to(dtype)[:, None, :])


def accept_labels(unet: torch.nn.Module) -> torch.nn.Module:
    """A class-context UNet that takes integer labels as its third argument (a forward pre-hook;
    once per module, copies keep it); other UNets are returned as they are."""
    if class_context(unet):
        if getattr(unet.encoder_hid_proj, "bias", None) is not None and unet.encoder_hid_proj.bias.abs().max() > 0:
            raise ValueError("a class-context UNet's encoder_hid_proj must have a zero bias (it is an embedding table)")
        hooks = getattr(unet, "_forward_pre_hooks", {}).values()
        if not any(getattr(h, "__name__", "") == _labels_to_context.__name__ for h in hooks):
            unet.register_forward_pre_hook(_labels_to_context, with_kwargs=True)
    return unet


def accept_prompts(unet: torch.nn.Module, text_encoder: torch.nn.Module, tokens: torch.Tensor) -> torch.nn.Module:
    """A text-conditioned UNet that takes prompt ids as its third argument: ``tokens`` (K + 1,
    L) are the tokenized prompts, the last row the empty prompt; the hook feeds the UNet the
    text encoder's last hidden state of each id's row (no gradient: the text encoder is frozen)."""
    if tokens.dim() != 2 or tokens.dtype != torch.long or tokens.shape[0] < 2:
        raise ValueError(f"prompt tokens must be int64 (prompts + 1, length), got {tokens.dtype} {tuple(tokens.shape)}")
    encoder = text_encoder.eval().requires_grad_(False)
    unet.register_buffer("prompt_tokens", tokens, persistent=False)

    def prompts_to_context(module, args, kwargs):
        def embed(ids):
            rows = module.prompt_tokens[ids.to(module.prompt_tokens.device)]
            with torch.no_grad():
                return encoder(rows.to(next(encoder.parameters()).device))[0].to(ids.device)

        return _ids_to_context(args, kwargs, embed)

    unet.register_forward_pre_hook(prompts_to_context, with_kwargs=True)
    return unet


def tokenize_prompts(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """The prompts and the empty prompt as padded token ids (K + 1, the tokenizer's length)."""
    return tokenizer(list(prompts) + [""], padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids.long()


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


def guided_pairs(eps: torch.Tensor, scale: float) -> torch.Tensor:
    """The guided predictions of a batch whose inputs come in (label, null label) pairs (the
    calibration layout under guidance, ``calib.selectors.gather``): ``eps_u + scale (eps_c -
    eps_u)`` per pair; ``scale`` 1 returns ``eps`` as it is (no pairs)."""
    if scale == 1.0:
        return eps
    if eps.shape[0] % 2:
        raise ValueError(f"a guided batch holds (label, null label) pairs, got {eps.shape[0]} predictions")
    pairs = eps.unflatten(0, (-1, 2))
    cond, uncond = pairs[:, 0], pairs[:, 1]
    return uncond + scale * (cond - uncond)
