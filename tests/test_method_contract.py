"""The contract every registered quantization method passes (DESIGN.md, "Methods")."""

import dataclasses

import pytest
import torch

from diffcomp.calib.trajectories import Trajectories
from diffcomp.variant import BitSetting
from diffcomp.methods import METHODS, get_recipe
from diffcomp.quant.wrap import load_quantized, save_quantized

# Each method at its smallest useful size, so the contract runs in seconds.
FAST = {
    "linear": {"calib_steps": 2, "calib_per_step": 8, "batch_size": 8},
    "qdiffusion": {"calib_steps": 2, "calib_per_step": 8, "iters_w": 3, "iters_a": 3, "batch_size": 8, "a_init_samples": 8},
}


def test_every_method_has_fast_settings():
    assert set(FAST) == set(METHODS)


@pytest.fixture(scope="module")
def traj(tiny_unet):
    from diffcomp.sections import SamplerConfig
    from diffcomp.calib.trajectories import capture
    from diffcomp.models.sampler import unet_fn
    from diffcomp.models.unet import build_scheduler

    return capture(unet_fn(tiny_unet), 8, (1, 32, 32), build_scheduler().alphas_cumprod,
                   SamplerConfig(steps=4, skip="uniform"), seed=0, batch_size=8)


def _quantize(name, unet, traj, bits):
    params = dataclasses.replace(METHODS[name].params(), **FAST[name])
    return get_recipe(name)(unet, traj, bits, params)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name, tiny_unet, traj, tmp_path):
    x, t = traj.xs[1, :4], traj.ts[1].repeat(4)
    with torch.no_grad():
        ref = tiny_unet(x, t).sample
    errs = {}
    for bits in (BitSetting(8, 8), BitSetting(4, 8), BitSetting(2, 4)):
        model, spec = _quantize(name, tiny_unet, traj, bits)
        with torch.no_grad():
            out = model(x, t).sample
        assert not torch.isnan(out).any()
        errs[bits.label] = float((out - ref).norm() / ref.norm())
        if bits.w == 4:  # state round trip into a freshly wrapped FP model
            save_quantized(model, spec, tmp_path / f"{name}.pt")
            with torch.no_grad():
                assert torch.equal(load_quantized(tiny_unet, tmp_path / f"{name}.pt")(x, t).sample, out)
    assert errs["W8A8"] < 0.05, errs  # 8 bits stay close to FP
    assert errs["W8A8"] < errs["W4A8"] < errs["W2A4"], errs  # fewer bits never help
    # the FP model is left untouched
    with torch.no_grad():
        assert torch.equal(tiny_unet(x, t).sample, ref)
