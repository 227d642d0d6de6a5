"""The original DDPM checkpoints (Ho et al.'s TF model as converted for PyTorch, the ``Model`` of
the DDIM code that the Q-Diffusion and EDA-DM code load) as diffusers ``UNet2DModel`` folders.

That ``Model`` is a ``UNet2DModel`` with another parameter layout, so conversion renames keys
and reshapes the attention's 1x1 convolutions into linear layers:

| original | diffusers |
|---|---|
| ``temb.dense.{0,1}`` | ``time_embedding.linear_{1,2}`` |
| ``down.{i}.block.{j}.{norm1,conv1,temb_proj,norm2,conv2,nin_shortcut}`` | ``down_blocks.{i}.resnets.{j}.{norm1,conv1,time_emb_proj,norm2,conv2,conv_shortcut}`` |
| ``down.{i}.attn.{j}.{norm,q,k,v,proj_out}`` | ``down_blocks.{i}.attentions.{j}.{group_norm,to_q,to_k,to_v,to_out.0}`` |
| ``down.{i}.downsample.conv`` | ``down_blocks.{i}.downsamplers.0.conv`` (pad right/bottom, no padding) |
| ``mid.{block_1,attn_1,block_2}`` | ``mid_block.{resnets.0,attentions.0,resnets.1}`` |
| ``up.{i}`` (level i, 0 = full resolution) | ``up_blocks.{L-1-i}`` (``upsample.conv`` -> ``upsamplers.0.conv``) |
| ``norm_out``, ``conv_out`` | ``conv_norm_out``, ``conv_out`` |

The architecture (channels, levels, blocks per level, attention levels) is read from the
checkpoint's shapes; the timestep embedding is ``[sin, cos]`` with frequencies
``exp(-log(10000) k / (d/2 - 1))`` (``flip_sin_to_cos=False``, ``freq_shift=1``), GroupNorm has
32 groups and eps 1e-6, attention is one head. ``to_original`` is the inverse mapping (tests
build a checkpoint in the original layout from a random diffusers model with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

_RESNET = {"norm1": "norm1", "conv1": "conv1", "temb_proj": "time_emb_proj", "norm2": "norm2", "conv2": "conv2",
           "nin_shortcut": "conv_shortcut"}
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTN_LINEAR = {"q", "k", "v", "proj_out"}


class CheckpointError(ValueError):
    """A state dict that is not the original DDPM ``Model``'s."""


@dataclass(frozen=True)
class OriginalArch:
    """What the checkpoint's shapes say: ``ch``, ``ch_mult``, blocks per level, attention levels."""

    in_channels: int
    out_channels: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_levels: tuple[int, ...]

    def unet_config(self, sample_size: int) -> dict:
        """The ``UNet2DModel`` config of this architecture."""
        n = len(self.ch_mult)
        return dict(
            sample_size=sample_size, in_channels=self.in_channels, out_channels=self.out_channels,
            block_out_channels=tuple(self.ch * m for m in self.ch_mult), layers_per_block=self.num_res_blocks,
            down_block_types=tuple("AttnDownBlock2D" if i in self.attn_levels else "DownBlock2D" for i in range(n)),
            up_block_types=tuple("AttnUpBlock2D" if (n - 1 - i) in self.attn_levels else "UpBlock2D" for i in range(n)),
            attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6, downsample_padding=0,
            flip_sin_to_cos=False, freq_shift=1, act_fn="silu", mid_block_scale_factor=1, dropout=0.1,
            time_embedding_type="positional", center_input_sample=False, resnet_time_scale_shift="default",
        )


def infer_arch(sd: Mapping[str, torch.Tensor]) -> OriginalArch:
    """The architecture of an original-layout state dict, from its keys and shapes."""
    for k in ("conv_in.weight", "conv_out.weight", "temb.dense.0.weight", "mid.attn_1.q.weight"):
        if k not in sd:
            raise CheckpointError(f"no {k!r}: not a checkpoint of the DDPM Model (keys like {sorted(sd)[:3]})")
    ch = sd["conv_in.weight"].shape[0]
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"down\.(\d+)\.", k))})
    if levels != list(range(len(levels))) or not levels:
        raise CheckpointError(f"down levels {levels} are not 0..L-1")
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"down\.0\.block\.(\d+)\.", k))})
    mult = []
    for i in levels:
        out = sd[f"down.{i}.block.0.conv1.weight"].shape[0]
        if out % ch:
            raise CheckpointError(f"level {i} has {out} channels, not a multiple of {ch}")
        mult.append(out // ch)
    attn = tuple(i for i in levels if f"down.{i}.attn.0.q.weight" in sd)
    return OriginalArch(in_channels=sd["conv_in.weight"].shape[1], out_channels=sd["conv_out.weight"].shape[0], ch=ch,
                        ch_mult=tuple(mult), num_res_blocks=len(blocks), attn_levels=attn)


def _map_key(key: str, n_levels: int) -> str:
    """One original key -> its diffusers key."""
    simple = {"temb.dense.0": "time_embedding.linear_1", "temb.dense.1": "time_embedding.linear_2",
              "conv_in": "conv_in", "norm_out": "conv_norm_out", "conv_out": "conv_out"}
    stem, _, param = key.rpartition(".")
    if stem in simple:
        return f"{simple[stem]}.{param}"
    parts = stem.split(".")
    if parts[0] == "mid":
        block = {"block_1": "resnets.0", "attn_1": "attentions.0", "block_2": "resnets.1"}[parts[1]]
        table = _RESNET if parts[1].startswith("block") else _ATTN
        return f"mid_block.{block}.{table[parts[2]]}.{param}"
    if parts[0] in ("down", "up"):
        level = int(parts[1])
        prefix = f"down_blocks.{level}" if parts[0] == "down" else f"up_blocks.{n_levels - 1 - level}"
        kind = parts[2]
        if kind == "block":
            return f"{prefix}.resnets.{parts[3]}.{_RESNET[parts[4]]}.{param}"
        if kind == "attn":
            return f"{prefix}.attentions.{parts[3]}.{_ATTN[parts[4]]}.{param}"
        if kind in ("downsample", "upsample") and parts[3] == "conv":
            return f"{prefix}.{kind}rs.0.conv.{param}"
    raise KeyError(key)


def to_diffusers(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], OriginalArch]:
    """An original-layout state dict as a ``UNet2DModel`` state dict (and its architecture)."""
    arch = infer_arch(sd)
    out = {}
    for k, v in sd.items():
        try:
            new = _map_key(k, len(arch.ch_mult))
        except (KeyError, IndexError, ValueError):
            raise CheckpointError(f"unexpected key {k!r} for the DDPM Model") from None
        is_attn_proj = ".attn" in k and k.rsplit(".", 2)[-2] in _ATTN_LINEAR
        out[new] = v[:, :, 0, 0].contiguous() if is_attn_proj and v.ndim == 4 else v
    return out, arch


def to_original(sd: Mapping[str, torch.Tensor], n_levels: int) -> dict[str, torch.Tensor]:
    """The inverse of ``to_diffusers``: a ``UNet2DModel`` state dict of this architecture in the
    original layout (attention projections as 1x1 convolutions)."""
    inverse: dict[str, str] = {}
    for k in _original_keys(sd, n_levels):
        inverse[_map_key(k, n_levels)] = k
    missing = sorted(set(sd) - set(inverse))
    if missing:
        raise CheckpointError(f"diffusers keys without an original counterpart: {missing[:3]}")
    out = {}
    for new, orig in inverse.items():
        v = sd[new]
        is_attn_proj = ".attn" in orig and orig.rsplit(".", 2)[-2] in _ATTN_LINEAR
        out[orig] = v[:, :, None, None].clone() if is_attn_proj and v.ndim == 2 else v.clone()
    return out


def _original_keys(sd: Mapping[str, torch.Tensor], n_levels: int) -> list[str]:
    """Candidate original keys for a diffusers state dict (every key the inverse must cover)."""
    return [key for k in sd if (key := original_key(k, n_levels)) is not None]


def original_key(name: str, n_levels: int) -> str | None:
    """The original key of one diffusers key (None for a name of no original block; ``KeyError``
    for an unknown parameter of a resnet or attention); the latent-diffusion first stage's encoder
    and decoder use the same layout."""
    rev_res = {v: k for k, v in _RESNET.items()}
    rev_attn = {v: k for k, v in _ATTN.items()}
    rev_simple = {"time_embedding.linear_1": "temb.dense.0", "time_embedding.linear_2": "temb.dense.1",
                  "conv_in": "conv_in", "conv_norm_out": "norm_out", "conv_out": "conv_out"}
    stem, _, param = name.rpartition(".")
    if stem in rev_simple:
        return f"{rev_simple[stem]}.{param}"
    m = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)", stem)
    mm = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", stem)
    if m:
        side, idx, kind, j, rest = m.groups()
        level = int(idx) if side == "down" else n_levels - 1 - int(idx)
        if kind == "resnets":
            return f"{side}.{level}.block.{j}.{rev_res[rest]}.{param}"
        if kind == "attentions":
            return f"{side}.{level}.attn.{j}.{rev_attn[rest]}.{param}"
        return f"{side}.{level}.{kind[:-2]}.conv.{param}"
    if mm:
        kind, j, rest = mm.groups()
        if kind == "resnets":
            return f"mid.block_{int(j) + 1}.{rev_res[rest]}.{param}"
        return f"mid.attn_1.{rev_attn[rest]}.{param}"
    return None


def load_original(path: str, member: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict in an original ``.ckpt`` (or in the archive member ``member`` of a .zip
    download): read with ``weights_only=True`` (tensors and plain containers only, nothing
    executed). The caller checks the file's checksum first."""
    import io
    import zipfile

    where = f"{path}:{member}" if member else path
    try:
        if member:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if member not in names:
                    raise CheckpointError(f"{path}: the archive has no {member!r} (it holds {names[:5]})")
                source = io.BytesIO(z.read(member))
        else:
            source = path
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 (any unreadable file is one message)
        raise CheckpointError(f"{where}: not a readable weights-only checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{where}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def convert(sd: Mapping[str, torch.Tensor], sample_size: int = 32):
    """A ``UNet2DModel`` holding the original state dict's weights (every parameter assigned)."""
    from diffusers import UNet2DModel

    new, arch = to_diffusers(sd)
    unet = UNet2DModel(**arch.unet_config(sample_size))
    result = unet.load_state_dict(new, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"conversion left parameters unassigned: missing {result.missing_keys[:3]}, "
                              f"unexpected {result.unexpected_keys[:3]}")
    return unet.eval(), arch
