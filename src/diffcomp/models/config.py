"""Config sections of the models package (torch-free): the default UNet's architecture, its
training recipe and the sampler."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "tf32", "bf16")
COMPILE_MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")


def check_compute(precision: str, compile: str | None) -> None:
    """A config's arithmetic: ``precision`` one of PRECISIONS, ``compile`` None or a torch.compile
    mode of COMPILE_MODES (ValueError naming the value otherwise)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if compile is not None and compile not in COMPILE_MODES:
        raise ValueError(f"compile must be null or one of {list(COMPILE_MODES)}, got {compile!r}")


@dataclass(frozen=True)
class UNetArch:
    """Architecture of the default UNet, trained by the ``train`` rule.

    The CIFAR-10 DDPM (Ho et al. 2020; Q-Diffusion's model) has ch 128, ch_mult (1, 2, 2, 2),
    2 resnet blocks per level, attention at 16x16, dropout 0.1. The default keeps the block
    types and the attention resolution with three levels (32, 16, 8) and fewer channels
    (1.1M parameters; about 130 image-steps per second on 2 CPU cores).
    """

    sample_size: int = 32
    channels: int = 1
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_levels: tuple[int, ...] = (1,)
    attention_head_dim: int = 64
    norm_num_groups: int = 8
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """DDPM training (Ho et al.'s CIFAR-10 recipe: lr 2e-4, batch 128, warm-up 5000,
    grad clip 1, EMA 0.9999, random flips; 800k steps there, far fewer here)."""

    steps: int = 800_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup: int = 5000
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 2000
    # How the steps compute (not the recipe): ``precision`` fp32 (exact: TF32 off), tf32 or bf16
    # (autocast; the loss, the weights, the optimiser and the EMA stay fp32); ``compile`` a
    # torch.compile mode for the forward, or None. The defaults are the exact CPU path; on a GPU
    # ``precision: bf16, compile: default``.
    precision: str = "fp32"
    compile: str | None = None

    def __post_init__(self):
        check_compute(self.precision, self.compile)


@dataclass(frozen=True)
class SamplerConfig:
    """The sampler: ``ddim`` or ``plms`` (eta 0), on the ``skip`` grid (``models.sampler``).
    Defaults are Q-Diffusion's CIFAR-10 protocol: DDIM, 100 steps, eta 0, quad skip.
    ``guidance``: the classifier-free guidance scale of a class-conditional model (1: the
    conditional model alone; unconditional models ignore it)."""

    name: str = "ddim"
    steps: int = 100
    eta: float = 0.0
    skip: str = "quad"
    clip_x0: bool = False
    guidance: float = 1.0
