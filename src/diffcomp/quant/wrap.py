"""Model wrapping: ``quantize_model(unet, spec)`` replaces the ``Conv2d``/``Linear`` layers chosen
by name patterns with ``QuantLayer``s, never by list position or exact model type, and sets a
``QuantAttnProcessor`` on the chosen attention modules. A quantized model is saved as a
safetensors file (its state dict, with the spec and the quant switches as JSON in the header)
and loaded by wrapping a fresh FP model with the same spec: nothing is unpickled."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch
import torch.nn as nn

from ..io import FileError, atomic_path, damaged, missing, one_line, tensors_digest
from ..models.conditioning import conditioning_modules, num_classes
from .attention import QuantAttnProcessor
from .correction import EpsCorrection, attach
from .layer import QuantLayer
from .module import apply_quant_states, check_initialized, quant_states
from .spec import QuantSpec
from .timestep import StepContext

FORMAT = "diffcomp-quant/3"


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    parent._modules[child] = new


def concat_splits(unet: nn.Module) -> dict[str, int]:
    """``{layer name: C}`` for the shortcut convs of diffusers up blocks, whose input is
    ``cat([h, skip], dim=1)`` with ``h`` of C channels (Q-Diffusion's split points).

    Found from the model itself: resnet 0 of an up block receives the block's input hidden
    states, resnet j > 0 the output of resnet j - 1 (diffusers' ``UpBlock2D``/``AttnUpBlock2D``).
    One forward of a single zero input records each up block's input channels.
    """
    up_blocks = getattr(unet, "up_blocks", None)
    if up_blocks is None:
        return {}
    entry: dict[int, int] = {}

    def record(i):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]  # UNet2DConditionModel passes keywords
            entry.setdefault(i, h.shape[1])  # returns None: the inputs are left as they are

        return hook

    handles = [b.register_forward_pre_hook(record(i), with_kwargs=True) for i, b in enumerate(up_blocks)]
    try:
        cfg = unet.config
        p = next(unet.parameters())
        zero = torch.zeros(1, device=p.device, dtype=torch.long)  # timestep 0 (and class 0 if conditional)
        cond = (zero,) if num_classes(unet) is not None else ()
        with torch.no_grad():
            unet(torch.zeros(1, cfg.in_channels, cfg.sample_size, cfg.sample_size, device=p.device, dtype=p.dtype),
                 zero, *cond)
    finally:
        for h in handles:
            h.remove()
    splits = {}
    for i, block in enumerate(up_blocks):
        for j, res in enumerate(block.resnets):
            shortcut = getattr(res, "conv_shortcut", None)
            if shortcut is None:
                continue
            h = entry[i] if j == 0 else block.resnets[j - 1].out_channels
            splits[f"up_blocks.{i}.resnets.{j}.conv_shortcut"] = int(h)
    return splits


def with_split_shortcut(spec: QuantSpec, unet: nn.Module) -> QuantSpec:
    """``spec`` plus explicit ``split`` overrides for every concat-input shortcut conv (stored in
    the spec, so loading needs no forward pass)."""
    return spec.with_overrides(*((f"^{re.escape(n)}$", {"split": c}) for n, c in concat_splits(unet).items()))


def quantize_model(model: nn.Module, spec: QuantSpec, inplace: bool = False) -> nn.Module:
    """A copy of ``model`` whose chosen Conv2d/Linear layers are ``QuantLayer``s and, with
    ``spec.attention``, whose attention modules use ``QuantAttnProcessor`` (ranges not yet set).
    With ``spec.timesteps``, a ``StepContext`` pre-hook on the model feeds per-timestep quantizers."""
    from diffusers.models.attention_processor import Attention

    model = model if inplace else copy.deepcopy(model)
    context = StepContext() if spec.timesteps else None
    keep = conditioning_modules(model)  # the conditioning stage stays in full precision
    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and not any(n == k or n.startswith(k + ".") for k in keep)]
    for name, module in targets:
        cfg = spec.layer_config(name)
        if cfg is not None:
            _set_submodule(model, name, QuantLayer(module, cfg, spec.timesteps, context))
    if spec.attention is not None:
        for name, m in model.named_modules():
            if isinstance(m, Attention) and spec.selects(name):
                m.set_processor(QuantAttnProcessor(spec.attention, spec.timesteps, context))
    if context is not None:
        model.register_forward_pre_hook(context, with_kwargs=True)
    if spec.eps_correction:
        c = model.config
        attach(model, EpsCorrection(spec.eps_correction, (c.in_channels, c.sample_size, c.sample_size),
                                    spec.eps_correction_per_pixel))
    return model


def save_quantized(model: nn.Module, spec: QuantSpec, path: str | Path, meta: dict | None = None) -> None:
    """Write the full ``state_dict`` with the spec, the quant switches and ``meta`` in the header."""
    from safetensors.torch import save_file

    check_initialized(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "spec": json.dumps(spec.to_dict(), sort_keys=True),
              "quant_state": json.dumps(quant_states(model), sort_keys=True),
              "meta": json.dumps(meta or {}, sort_keys=True, default=str), "sha256": tensors_digest(state)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=header)


def read_quantized(path: str | Path) -> tuple[QuantSpec, dict, dict, dict[str, torch.Tensor]]:
    """(spec, quant switches, meta, state dict) of a file written by ``save_quantized``; a missing,
    damaged (tensors that no longer match the digest in the header) or foreign file is one
    ``FileError`` naming it."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise missing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}, expected {FORMAT!r}")
            state = {k: f.get_tensor(k) for k in f.keys()}
        if tensors_digest(state) != header.get("sha256"):
            raise ValueError("its tensors do not match the sha256 in its header")
        spec = QuantSpec.from_dict(json.loads(header["spec"]))
        return spec, json.loads(header["quant_state"]), json.loads(header.get("meta", "{}")), state
    except Exception as e:  # safetensors, JSON and key errors alike
        raise damaged(path, f"not a readable quantized model: {type(e).__name__}: {e}") from None


def load_quantized(fp_model: nn.Module, path: str | Path) -> nn.Module:
    """Wrap ``fp_model`` with the saved spec and load the saved state (strict)."""
    spec, states, _, state = read_quantized(path)
    model = quantize_model(fp_model, spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise FileError(f"{path} does not fit this FP model ({one_line(e)}): delete it and rerun") from None
    apply_quant_states(model, states)
    check_initialized(model)
    return model.eval()
