"""The default UNet: the CIFAR-10 DDPM's block types (resnet blocks, attention at 16x16,
up blocks that concatenate skips), scaled down for 32x32 single-channel Fashion-MNIST."""

from __future__ import annotations

from .config import UNetArch


def build_unet(arch: UNetArch = UNetArch()):
    """A randomly initialised diffusers ``UNet2DModel`` with architecture ``arch``."""
    from diffusers import UNet2DModel

    n = len(arch.block_out_channels)
    down = tuple("AttnDownBlock2D" if i in arch.attention_levels else "DownBlock2D" for i in range(n))
    up = tuple(
        "AttnUpBlock2D" if (n - 1 - i) in arch.attention_levels else "UpBlock2D" for i in range(n)
    )
    return UNet2DModel(
        sample_size=arch.sample_size,
        in_channels=arch.channels,
        out_channels=arch.channels,
        block_out_channels=arch.block_out_channels,
        layers_per_block=arch.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        attention_head_dim=arch.attention_head_dim,
        norm_num_groups=arch.norm_num_groups,
        dropout=arch.dropout,
    )


def build_scheduler(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
    """The DDPM noise schedule of Ho et al. (linear betas 1e-4 -> 0.02 over 1000 steps)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule="linear",
        prediction_type="epsilon",
        clip_sample=True,
    )
