"""Quantized attention through a diffusers attention processor (the library's extension point).

The processor computes what diffusers' ``AttnProcessor`` computes (explicit q k^T, softmax, and
probabilities times v) with act-to-act inputs quantized: q, k and v by the ``act`` quantizer
config and the softmax output by the ``softmax`` one (Q-Diffusion: the activation bit-width and
8 bits unsigned). The linear projections are ``QuantLayer``s like any other layer. As an
``nn.Module`` the processor is registered under ``attn.processor``, so its quantizers are in the
model's ``state_dict``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .factory import build_quantizer
from .module import QuantModule
from .quantizer import Quantizer
from .spec import AttentionConfig
from .timestep import StepContext

_NAMES = ("q_quantizer", "k_quantizer", "v_quantizer", "softmax_quantizer")


class QuantAttnProcessor(QuantModule):
    allow_acts = True

    def __init__(self, config: AttentionConfig, timesteps: Sequence[int] = (), context: StepContext | None = None):
        super().__init__()
        for name in _NAMES:
            cfg = config.softmax if name == "softmax_quantizer" else config.act
            setattr(self, name, build_quantizer(cfg, None, 0, timesteps, context))
        self.quant_acts = True

    def act_quantizers(self) -> list[tuple[str, Quantizer]]:
        return [(n, getattr(self, n)) for n in _NAMES]

    def _q(self, quantizer: Quantizer, x: torch.Tensor) -> torch.Tensor:
        return quantizer(x) if self.quant_acts else x

    # diffusers reads the processor's call signature to decide which keyword arguments to pass.
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = self._q(self.q_quantizer, attn.head_to_batch_dim(query))
        key = self._q(self.k_quantizer, attn.head_to_batch_dim(key))
        value = self._q(self.v_quantizer, attn.head_to_batch_dim(value))
        probs = self._q(self.softmax_quantizer, attn.get_attention_scores(query, key, attention_mask))
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor
