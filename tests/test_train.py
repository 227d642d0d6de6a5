import numpy as np
import torch

from diffcomp.sections import TrainConfig
from diffcomp.models.train import train_ddpm
from diffcomp.models.unet import build_scheduler, build_unet


def _data():
    return np.random.default_rng(0).integers(0, 256, (64, 1, 32, 32), dtype=np.uint8)


def test_training_lowers_the_loss_and_returns_ema(tiny_arch):
    torch.manual_seed(0)
    cfg = TrainConfig(steps=30, batch_size=8, lr=1e-3, warmup=1, ema_decay=0.5)
    ema, stats = train_ddpm(build_unet(tiny_arch), build_scheduler(), _data(), cfg)
    assert stats["steps"] == 30 and np.isfinite(stats["final_loss"])
    assert not any(p.requires_grad for p in ema.parameters())


def test_a_killed_training_resumes_to_the_same_weights(tiny_arch, tmp_path):
    arch = tiny_arch.__class__(**{**tiny_arch.__dict__, "dropout": 0.1})  # dropout RNG must be restored too
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, warmup=1, ema_decay=0.9, checkpoint_every=2)
    torch.manual_seed(0)
    straight, _ = train_ddpm(build_unet(arch), build_scheduler(), _data(), cfg)
    torch.manual_seed(0)
    unet = build_unet(arch)
    init = {k: v.clone() for k, v in unet.state_dict().items()}
    train_ddpm(unet, build_scheduler(), _data(), cfg, state_dir=tmp_path, stop_at=5)  # killed after step 5
    assert (tmp_path / "train_state.pt").exists()  # last checkpoint: step 4
    fresh = build_unet(arch)
    fresh.load_state_dict(init)
    torch.manual_seed(123)  # a retried job starts with another global RNG state
    resumed, stats = train_ddpm(fresh, build_scheduler(), _data(), cfg, state_dir=tmp_path)
    assert stats["resumed_from"] == 4
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_training_precision_is_part_of_the_recipe_and_checked(tiny_arch):
    """bf16 runs the forward under autocast (the loss differs from fp32's from the first step on
    the same data); an unknown precision or compile mode is one message naming the value."""
    import pytest

    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        cfg = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup=1, ema_decay=0.5, precision=precision)
        _, stats = train_ddpm(build_unet(tiny_arch), build_scheduler(), _data(), cfg)
        losses[precision] = stats["final_loss"]
        assert stats["config"]["precision"] == precision
    assert np.isfinite(losses["bf16"]) and losses["bf16"] != losses["fp32"]
    assert abs(losses["bf16"] / losses["fp32"] - 1) < 0.05  # the same computation, rounded
    with pytest.raises(ValueError, match="precision must be one of .*'fp16'"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="compile must be null or one of .*'fast'"):
        TrainConfig(compile="fast")
