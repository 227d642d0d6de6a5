"""The latent-diffusion checkpoints (the LDM-4 ImageNet, LSUN and other ``LatentDiffusion``
models of the latent-diffusion code) as diffusers folders: the denoiser, the first-stage
autoencoder and, for the class-conditional ImageNet model, its class embedding.

One mapping, from each diffusers parameter name to the checkpoint's (``ldm_key``), serves the
conversion and its inverse (``to_ldm``, which the tests use to write synthetic checkpoints of the
real layout). The checkpoint's denoiser is the ``UNetModel`` under ``model.diffusion_model.``:

| checkpoint | diffusers |
|---|---|
| ``time_embed.{0,2}``, ``input_blocks.0.0``, ``out.{0,2}``, ``label_emb`` | ``time_embedding.linear_{1,2}``, ``conv_in``, ``conv_norm_out``, ``conv_out``, ``class_embedding`` |
| ``input_blocks.{1 + b (n + 1) + l}.0`` / ``.1`` | ``down_blocks.{b}.resnets.{l}`` / ``.attentions.{l}`` (n resnets per level) |
| ``input_blocks.{(b + 1)(n + 1)}.0.op`` | ``down_blocks.{b}.downsamplers.0.conv`` |
| ``middle_block.{0,1,2}`` | ``mid_block.{resnets.0, attentions.0, resnets.1}`` |
| ``output_blocks.{b (n + 1) + l}.0`` / ``.1`` | ``up_blocks.{b}.resnets.{l}`` / ``.attentions.{l}`` |
| ``output_blocks.{b (n + 1) + n}.{1 or 2}.conv`` | ``up_blocks.{b}.upsamplers.0.conv`` |
| resnet ``in_layers.{0,2}``, ``emb_layers.1``, ``out_layers.{0,3}``, ``skip_connection`` | ``norm1``, ``conv1``, ``time_emb_proj``, ``norm2``, ``conv2``, ``conv_shortcut`` |

Attention comes in two kinds. A ``SpatialTransformer`` (cross-attention; the ImageNet model) has
diffusers' ``Transformer2DModel`` names already; its model is a ``UNet2DConditionModel`` whose
context is the class embedding ``cond_stage_model.embedding`` (``models.conditioning``: the table
becomes ``encoder_hid_proj``'s weight, transposed, bias zero). An ``AttentionBlock`` (the LSUN
models) is ``norm``, ``qkv`` and ``proj_out`` as 1-d convolutions with the rows of ``qkv``
grouped per head ([q_h, k_h, v_h] for each head h, the "legacy" order); its model is a
``UNet2DModel`` with ``group_norm``, ``to_q``, ``to_k``, ``to_v``, ``to_out.0``.

The first stage (``first_stage_model.``) is the DDPM-style encoder/decoder of the DDPM
converter's layout (``down.{i}.block.{j}``, ``mid.block_{1,2}``, ``mid.attn_1`` with 1x1-conv
``q``, ``k``, ``v``, ``proj_out``; the decoder's ``up.{i}`` is ``up_blocks.{L-1-i}``) plus
``quant_conv``, ``post_quant_conv`` and, for a VQ model, ``quantize.embedding``.

A level's resolution change is a convolution (``op`` / ``conv``) or, in a model trained with
``resblock_updown`` (LSUN-Church's LDM-8), a resnet that pools or repeats pixels (diffusers'
``downsample_type`` / ``upsample_type`` ``resnet``; ``Resnet{Down,Up}sampleBlock2D`` for a level
without attention). A legacy model with a fixed number of heads whose width changes across
levels is a ``FixedHeadsUNet2DModel`` (``models.heads_unet``).

The architecture is read from the shapes; only what shapes cannot tell is given: the attention
heads (``head_channels``, or ``heads`` per attention layer) and the image size. A checkpoint with
EMA weights (``model_ema.*``, the weights its sampler uses) is converted from those. The
checkpoint's own ``betas`` (when present) must equal the schedule the folder gets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from .ddpm_checkpoint import original_key

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLASS_TABLE = "cond_stage_model.embedding.weight"
_RES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
        "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_LEGACY = {"group_norm": "norm", "to_out.0": "proj_out"}


class LDMCheckpointError(ValueError):
    """A state dict that is not a latent-diffusion checkpoint this converter reads."""


@dataclass(frozen=True)
class LDMArch:
    """What the checkpoint's shapes say about its denoiser and autoencoder."""

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attn_levels: tuple[int, ...]
    spatial_transformer: bool
    context_dim: int | None
    scale_shift: bool
    class_rows: int | None  # the class embedding's rows (classes + the null class)
    label_emb_rows: int | None  # a UNetModel's own class embedding (added to the timestep's)
    vae_kind: str  # "vq" or "kl"
    vae_channels: int
    vae_mult: tuple[int, ...]
    vae_res_blocks: int
    latent_channels: int
    n_embed: int | None
    resblock_updown: bool = False  # levels change resolution through a resnet (LDM-8 Church), not a convolution

    def unet_config(self, sample_size: int, head_channels: int | None, heads: int | None) -> tuple[str, dict]:
        """(diffusers class name, config) of the denoiser."""
        chans = tuple(self.model_channels * m for m in self.channel_mult)
        n = len(chans)
        if (head_channels is None) == (heads is None):
            raise LDMCheckpointError("give exactly one of head_channels and heads (the checkpoint's shapes cannot tell)")
        common = dict(sample_size=sample_size, in_channels=self.in_channels, out_channels=self.out_channels,
                      block_out_channels=chans, layers_per_block=self.num_res_blocks, norm_num_groups=32, norm_eps=1e-5,
                      flip_sin_to_cos=True, freq_shift=0, downsample_padding=1,
                      resnet_time_scale_shift="scale_shift" if self.scale_shift else "default")
        if self.spatial_transformer and self.resblock_updown:
            raise LDMCheckpointError("resnet up/downsampling (resblock_updown) with cross-attention has no diffusers "
                                     "UNet2DConditionModel counterpart here")
        if self.spatial_transformer:
            per_level = tuple(heads if heads else max(c // head_channels, 1) for c in chans)
            cfg = dict(common, cross_attention_dim=self.context_dim, use_linear_projection=False,
                       attention_head_dim=per_level,  # diffusers reads this as the number of heads here
                       down_block_types=tuple("CrossAttnDownBlock2D" if i in self.attn_levels else "DownBlock2D"
                                              for i in range(n)),
                       up_block_types=tuple("CrossAttnUpBlock2D" if (n - 1 - i) in self.attn_levels else "UpBlock2D"
                                            for i in range(n)),
                       mid_block_type="UNetMidBlock2DCrossAttn")
            if self.class_rows is not None:
                cfg.update(encoder_hid_dim=self.class_rows, encoder_hid_dim_type="text_proj")
            return "UNet2DConditionModel", cfg
        updown = self.resblock_updown

        def plain(i: int, last: bool, down: bool) -> str:  # a level without attention
            if updown and not last:  # its resolution change is a resnet
                return "ResnetDownsampleBlock2D" if down else "ResnetUpsampleBlock2D"
            return "DownBlock2D" if down else "UpBlock2D"

        # attn_norm_num_groups: the latent-diffusion AttentionBlock always starts with a group norm;
        # diffusers leaves it out of the middle block's attention when the resnets use scale-shift
        cfg = dict(common, num_class_embeds=self.label_emb_rows, attn_norm_num_groups=32,
                   down_block_types=tuple("AttnDownBlock2D" if i in self.attn_levels else plain(i, i == n - 1, True)
                                          for i in range(n)),
                   up_block_types=tuple("AttnUpBlock2D" if (n - 1 - i) in self.attn_levels else plain(i, i == n - 1, False)
                                        for i in range(n)),
                   **(dict(downsample_type="resnet", upsample_type="resnet") if updown else {}))
        if heads is not None:
            dims = {chans[i] // heads for i in self.attn_levels} | {chans[-1] // heads}
            if len(dims) > 1:  # a fixed number of heads of varying width: the fixed-heads model
                return "FixedHeadsUNet2DModel", dict(cfg, attention_head_dim=None, attention_heads=heads)
            head_channels = dims.pop()
        return "UNet2DModel", dict(cfg, attention_head_dim=head_channels)

    def vae_config(self, sample_size: int, scaling_factor: float) -> tuple[str, dict]:
        """(diffusers class name, config) of the first stage."""
        n = len(self.vae_mult)
        cfg = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                   up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(self.vae_channels * m for m in self.vae_mult),
                   layers_per_block=self.vae_res_blocks, latent_channels=self.latent_channels, norm_num_groups=32,
                   sample_size=sample_size, scaling_factor=scaling_factor)
        if self.vae_kind == "vq":
            return "VQModel", dict(cfg, num_vq_embeddings=self.n_embed, vq_embed_dim=self.latent_channels)
        return "AutoencoderKL", cfg


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer_arch(sd: Mapping[str, torch.Tensor]) -> LDMArch:
    """The architecture of a checkpoint's denoiser and first stage, from its keys and shapes."""
    u = {k[len(UNET):]: v for k, v in sd.items() if k.startswith(UNET)}
    if "input_blocks.0.0.weight" not in u:
        raise LDMCheckpointError(f"no '{UNET}input_blocks.0.0.weight': not a latent-diffusion checkpoint")
    if not any(k.startswith(VAE) for k in sd):
        raise LDMCheckpointError(f"no '{VAE}' weights: the checkpoint has no first-stage autoencoder")
    ch = u["input_blocks.0.0.weight"].shape[0]
    # the first output block that carries an upsampler ends the lowest level: its index is n
    n = next((i for i in range(_count(u, r"output_blocks\.(\d+)\.")) if any(
        re.match(rf"output_blocks\.{i}\.[12]\.(conv|in_layers)", k) for k in u)), None)
    if n is None:
        raise LDMCheckpointError("no upsampler in the output blocks: cannot tell the resnets per level")
    updown = any(re.match(rf"output_blocks\.{n}\.[12]\.in_layers", k) for k in u)
    levels = _count(u, r"output_blocks\.(\d+)\.") // (n + 1)
    first = [1 + b * (n + 1) for b in range(levels)]
    mult = tuple(u[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0] // ch for i in first)
    attn = tuple(b for b, i in enumerate(first) if any(k.startswith(f"input_blocks.{i}.1.") for k in u))
    spatial = any("transformer_blocks" in k for k in u)
    ctx = next((v.shape[1] for k, v in u.items() if k.endswith("attn2.to_k.weight")), None)
    out0 = u[f"input_blocks.{first[0]}.0.out_layers.3.weight"].shape[0]
    scale_shift = u[f"input_blocks.{first[0]}.0.emb_layers.1.weight"].shape[0] == 2 * out0
    table = sd.get(CLASS_TABLE)
    if table is not None and table.shape[1] != ctx:
        raise LDMCheckpointError(f"the class embedding is {table.shape[1]} wide but the cross-attention context {ctx}")
    v = {k[len(VAE):]: t for k, t in sd.items() if k.startswith(VAE)}
    vch = v["encoder.conv_in.weight"].shape[0]
    vlev = _count(v, r"encoder\.down\.(\d+)\.")
    vmult = tuple(v[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // vch for i in range(vlev))
    if any(re.match(r"(encoder|decoder)\.(down|up)\.\d+\.attn\.", k) for k in v):
        raise LDMCheckpointError("first-stage attention outside the middle block has no diffusers counterpart here")
    vq = "quantize.embedding.weight" in v
    latent = v["quant_conv.weight"].shape[0] // (1 if vq else 2)
    return LDMArch(in_channels=u["input_blocks.0.0.weight"].shape[1], out_channels=u["out.2.weight"].shape[0],
                   model_channels=ch, channel_mult=mult, num_res_blocks=n, attn_levels=attn, spatial_transformer=spatial,
                   context_dim=ctx, scale_shift=scale_shift, resblock_updown=updown, class_rows=None if table is None else table.shape[0],
                   label_emb_rows=u["label_emb.weight"].shape[0] if "label_emb.weight" in u else None,
                   vae_kind="vq" if vq else "kl", vae_channels=vch, vae_mult=vmult,
                   vae_res_blocks=_count(v, r"encoder\.down\.0\.block\.(\d+)\."), latent_channels=latent,
                   n_embed=v["quantize.embedding.weight"].shape[0] if vq else None)


def unet_key(name: str, arch: LDMArch) -> str:
    """The checkpoint key (without ``model.diffusion_model.``) of a diffusers denoiser parameter;
    a legacy attention's ``to_q``/``to_k``/``to_v`` all name the one ``qkv``."""
    n = arch.num_res_blocks
    simple = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2", "class_embedding": "label_emb"}
    stem, _, param = name.rpartition(".")
    if stem in simple:
        return f"{simple[stem]}.{param}"
    if m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", name):
        side, b, kind, l, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        block = f"input_blocks.{1 + b * (n + 1) + l}" if side == "down" else f"output_blocks.{b * (n + 1) + l}"
        return f"{block}.0.{_res(rest)}" if kind == "resnets" else f"{block}.1.{_attn(rest, arch)}"
    # a level's resolution change: a convolution (op / conv) or, with resblock_updown, a resnet
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.(.+)", name):
        block, rest = f"input_blocks.{(int(m.group(1)) + 1) * (n + 1)}.0", m.group(2)
        return f"{block}.{_res(rest)}" if arch.resblock_updown else f"{block}.op.{rest.removeprefix('conv.')}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", name):
        b, rest = int(m.group(1)), m.group(2)
        has_attn = (len(arch.channel_mult) - 1 - b) in arch.attn_levels
        block = f"output_blocks.{b * (n + 1) + n}.{2 if has_attn else 1}"
        return f"{block}.{_res(rest)}" if arch.resblock_updown else f"{block}.{rest}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", name):
        return f"middle_block.{2 * int(m.group(1))}.{_res(m.group(2))}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", name):
        return f"middle_block.1.{_attn(m.group(1), arch)}"
    raise LDMCheckpointError(f"no checkpoint counterpart for the denoiser's {name!r}")


def _res(rest: str) -> str:
    stem, _, param = rest.rpartition(".")
    if stem not in _RES:
        raise LDMCheckpointError(f"unknown resnet parameter {rest!r}")
    return f"{_RES[stem]}.{param}"


def _attn(rest: str, arch: LDMArch) -> str:
    if arch.spatial_transformer:
        return rest
    stem, _, param = rest.rpartition(".")
    if stem in ("to_q", "to_k", "to_v"):
        return f"qkv.{param}"
    if stem not in _LEGACY:
        raise LDMCheckpointError(f"unknown attention parameter {rest!r}")
    return f"{_LEGACY[stem]}.{param}"


def vae_key(name: str, levels: int) -> str:
    """The checkpoint key (without ``first_stage_model.``) of a diffusers autoencoder parameter:
    the encoder's and decoder's are the DDPM ``Model`` layout's (``ddpm_checkpoint.original_key``),
    the rest (``quant_conv``, ``post_quant_conv``, ``quantize``) keep their names."""
    part, _, rest = name.partition(".")
    if part not in ("encoder", "decoder"):
        return name
    try:
        key = original_key(rest, levels)
    except KeyError:
        key = None
    if key is None:
        raise LDMCheckpointError(f"no checkpoint counterpart for the autoencoder's {name!r}")
    return f"{part}.{key}"


def _legacy_qkv(qkv: torch.Tensor, which: int, h: int) -> torch.Tensor:
    """Rows of q (0), k (1) or v (2) from a legacy ``qkv`` (rows [q_h, k_h, v_h] per head)."""
    c3 = qkv.shape[0]
    rest = qkv.shape[1:]
    return qkv.reshape(h, 3, c3 // (3 * h), *rest)[:, which].reshape(c3 // 3, *rest)


def _ema_key(key: str) -> str:
    """The EMA copy's name of a ``model.diffusion_model.`` key (its dots removed)."""
    return "model_ema." + key[len("model."):].replace(".", "")


def to_diffusers(sd: Mapping[str, torch.Tensor], arch: LDMArch, unet_names: Mapping[str, torch.Size],
                 vae_names: Mapping[str, torch.Size], head_channels: int | None, heads: int | None,
                 use_ema: bool = True) -> tuple[dict, dict]:
    """(denoiser state dict, autoencoder state dict) for models with these parameter names and
    shapes; every parameter must be found and every checkpoint weight of the two used."""
    ema = use_ema and sum(k.startswith("model_ema.") for k in sd) > 10
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        src = _ema_key(key) if ema and key.startswith(UNET) else key
        if src not in sd:
            raise LDMCheckpointError(f"the checkpoint has no {src!r}")
        used.add(key)
        return sd[src]

    unet = {}
    for name, shape in unet_names.items():
        if name == "encoder_hid_proj.weight":
            used.add(CLASS_TABLE)
            unet[name] = sd[CLASS_TABLE].T.contiguous()
            continue
        if name == "encoder_hid_proj.bias":
            unet[name] = torch.zeros(shape)
            continue
        key = UNET + unet_key(name, arch)
        w = take(key)
        stem = name.rsplit(".", 2)
        if key.rsplit(".", 2)[-2] == "qkv":
            h = heads if heads else (w.shape[0] // 3) // head_channels
            w = _legacy_qkv(w, ("to_q", "to_k", "to_v").index(stem[-2]), h)
        unet[name] = w.reshape(shape)
    vae = {name: take(VAE + vae_key(name, len(arch.vae_mult))).reshape(shape) for name, shape in vae_names.items()}
    left = sorted(k for k in sd if (k.startswith(UNET) or k.startswith(VAE)) and k not in used)
    if left:
        raise LDMCheckpointError(f"{len(left)} checkpoint weights have no diffusers counterpart, e.g. {left[:3]}")
    return unet, vae


def to_ldm(unet_sd: Mapping[str, torch.Tensor], vae_sd: Mapping[str, torch.Tensor], arch: LDMArch,
           head_channels: int | None, heads: int | None) -> dict[str, torch.Tensor]:
    """The inverse of ``to_diffusers``: diffusers state dicts in the checkpoint's layout (legacy
    attention's q, k, v interleaved per head into ``qkv`` 1-d convolutions; the class context's
    table transposed back)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for name, w in unet_sd.items():
        if name == "encoder_hid_proj.weight":
            out[CLASS_TABLE] = w.T.contiguous()
            continue
        if name == "encoder_hid_proj.bias":
            continue
        key = UNET + unet_key(name, arch)
        if key.rsplit(".", 2)[-2] == "qkv":
            qkv.setdefault(key, {})[name.rsplit(".", 2)[-2]] = w
            continue
        legacy_1d = not arch.spatial_transformer and (".1.proj_out." in key or ".1.norm." in key) and w.ndim == 2
        out[key] = w[:, :, None].clone() if legacy_1d else w.clone()
    for key, parts in qkv.items():
        q, k, v = parts["to_q"], parts["to_k"], parts["to_v"]
        h = heads if heads else q.shape[0] // head_channels
        stacked = torch.stack([t.reshape(h, q.shape[0] // h, *q.shape[1:]) for t in (q, k, v)], dim=1)
        w = stacked.reshape(3 * q.shape[0], *q.shape[1:])
        out[key] = w[:, :, None].clone() if w.ndim == 2 else w.clone()
    for name, w in vae_sd.items():
        key = VAE + vae_key(name, len(arch.vae_mult))
        out[key] = w[:, :, None, None].clone() if ".attn_1." in key and w.ndim == 2 and "norm" not in key else w.clone()
    return out


def ldm_scheduler(num_train_timesteps: int, linear_start: float, linear_end: float):
    """The latent-diffusion schedule: betas linear in their square root from ``linear_start`` to
    ``linear_end`` (diffusers' ``scaled_linear``)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_start=linear_start, beta_end=linear_end,
                         beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False)


def convert(sd: Mapping[str, torch.Tensor], sample_size: int, image_size: int, head_channels: int | None,
            heads: int | None, scheduler, scaling_factor: float | None = None, use_ema: bool = True):
    """(denoiser, autoencoder, arch) holding a latent-diffusion checkpoint's weights (every
    parameter assigned, every checkpoint weight used). ``scaling_factor`` None: the checkpoint's
    ``scale_factor`` (models trained with scale_by_std store it), else 1. The checkpoint's
    ``betas``, when it has them, must be ``scheduler``'s."""
    import diffusers

    from .conditioning import accept_labels
    from .pipeline import denoiser_class

    arch = infer_arch(sd)
    if "betas" in sd and not torch.allclose(sd["betas"].double(), scheduler.betas.double(), rtol=1e-4, atol=1e-7):
        raise LDMCheckpointError("the checkpoint's betas differ from the configured schedule (check linear_start, "
                                 "linear_end and timesteps)")
    if scaling_factor is None:
        scaling_factor = float(sd["scale_factor"]) if "scale_factor" in sd else 1.0
    uname, ucfg = arch.unet_config(sample_size, head_channels, heads)
    vname, vcfg = arch.vae_config(image_size, scaling_factor)
    unet, vae = denoiser_class(uname)(**ucfg), getattr(diffusers, vname)(**vcfg)
    usd, vsd = to_diffusers(sd, arch, {k: v.shape for k, v in unet.state_dict().items()},
                            {k: v.shape for k, v in vae.state_dict().items()}, head_channels, heads, use_ema)
    unet.load_state_dict(usd, strict=True)
    vae.load_state_dict(vsd, strict=True)
    return accept_labels(unet.eval()), vae.eval(), arch
