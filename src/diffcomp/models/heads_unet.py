"""A ``UNet2DModel`` whose attention layers have a fixed number of heads.

diffusers' ``UNet2DModel`` fixes the width of a head (``attention_head_dim``), so a level with
more channels gets more heads. The latent-diffusion ``UNetModel`` can fix the number of heads
instead (``num_heads``; LSUN-Church's LDM-8: 8 heads at every level, so heads of 24, 48 and 96
channels). ``FixedHeadsUNet2DModel`` is that model: a ``UNet2DModel`` with one more config entry,
``attention_heads``, that sets every attention layer's heads (and its scale, 1 / sqrt(head width))
once the layers are built. Their weights do not depend on the split into heads (q, k, v and the
output projection are channels x channels), so the state dict is a ``UNet2DModel``'s and every
handler that works on a ``UNet2DModel`` works on it; only the attention's reshaping into heads
reads the setting. ``save_pretrained`` writes ``attention_heads`` and ``_class_name:
FixedHeadsUNet2DModel`` into ``config.json``; the workflow's loader maps that name to this class
(``denoiser_class``), so no folder of it is read as a plain ``UNet2DModel`` with other heads.
"""

from __future__ import annotations

import inspect

from diffusers import UNet2DModel
from diffusers.models.attention_processor import Attention


class FixedHeadsUNet2DModel(UNet2DModel):
    """``UNet2DModel`` with ``attention_heads`` heads in every attention layer (None: as
    ``UNet2DModel``, the head width ``attention_head_dim``)."""

    def __init__(self, attention_heads: int | None = None, **unet_config):
        super().__init__(**unet_config)
        self.register_to_config(attention_heads=attention_heads)
        if attention_heads is None:
            return
        if attention_heads < 1:
            raise ValueError(f"attention_heads must be positive, got {attention_heads}")
        for name, m in self.named_modules():
            if isinstance(m, Attention):
                if m.inner_dim % attention_heads:
                    raise ValueError(f"{name}: {m.inner_dim} channels do not split into {attention_heads} heads")
                m.heads = m.sliceable_head_dim = attention_heads
                m.scale = (m.inner_dim // attention_heads) ** -0.5 if m.scale_qk else 1.0


# diffusers reads a model's config keys from its __init__'s signature (from_config passes only
# those): the signature is UNet2DModel's with attention_heads added.
_base = inspect.signature(UNet2DModel.__init__)
FixedHeadsUNet2DModel.__init__.__signature__ = _base.replace(parameters=[
    *_base.parameters.values(),
    inspect.Parameter("attention_heads", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="int | None"),
])
