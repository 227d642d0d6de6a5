"""Per-timestep diagnostics and the timestep-aware correction of the noise prediction."""

import numpy as np
import pytest
import torch

from diffcomp.diagnostics.eps import eps_stats, sample_stats
from diffcomp.quant.correction import EpsCorrection, attach, fit_correction


def _pairs(n=8, shape=(2, 4, 4), seed=0):
    """FP predictions whose per-pixel mean over samples is exactly zero (f and -f)."""
    torch.manual_seed(seed)
    f = torch.randn(n // 2, *shape, dtype=torch.float64)
    return torch.cat([f, -f])


def test_eps_stats_on_a_known_gain_and_bias():
    f = _pairs()
    q = 1.1 * f + 0.2
    s = eps_stats(q, f)
    assert s["gain"] == pytest.approx(1.1, abs=1e-12)  # <f, 1> = 0, so the bias adds nothing to the slope
    assert s["bias_rms"] == pytest.approx(0.2, abs=1e-12) and s["mean_bias"] == pytest.approx(0.2, abs=1e-12)
    assert s["rel_err"] == pytest.approx(float((0.1 * f + 0.2).norm() / f.norm()), rel=1e-9)
    same = eps_stats(f, f)
    assert same == {"rel_err": 0.0, "gain": 1.0, "bias_rms": 0.0, "mean_bias": 0.0}
    # zero-mean noise that differs per sample is error, not bias
    noisy = eps_stats(f + 0.3 * _pairs(seed=1), f)
    assert noisy["bias_rms"] == pytest.approx(0.0, abs=1e-12) and noisy["rel_err"] > 0


def test_sample_stats_shift_and_distance():
    fp = np.full((4, 1, 2, 2), 100, dtype=np.uint8)
    q = fp.copy()
    q[:, :, 0, 0] = 110  # a quarter of the pixels 10 levels brighter
    s = sample_stats(q, fp)
    assert s["pixel_shift"] == pytest.approx(10 / 127.5 / 4)
    assert s["rms_distance"] == pytest.approx(np.sqrt((10 / 127.5) ** 2 / 4))
    with pytest.raises(ValueError, match="differ in shape"):
        sample_stats(q[:2], fp)


@pytest.mark.parametrize("per_pixel", [False, True])
def test_correction_recovers_a_per_step_gain_and_bias(per_pixel):
    f = torch.stack([_pairs(seed=s) for s in range(3)])  # 3 steps
    f = f.float()
    bias = torch.randn(3, 2, 4, 4) if per_pixel else torch.randn(3, 2, 1, 1)
    gains = torch.tensor([1.02, 0.97, 1.0])
    q = gains.view(3, 1, 1, 1, 1) * f + bias[:, None]
    corr = EpsCorrection([900, 500, 100], (2, 4, 4), per_pixel)
    for s in range(3):
        corr.fit(s, q[s], f[s])
    assert torch.allclose(corr.gain, gains, atol=1e-6)
    for s, t in enumerate([900, 500, 100]):
        assert torch.allclose(corr(q[s], torch.tensor(t)), f[s], atol=1e-5)
    mixed = torch.stack([q[0, 0], q[2, 1]])  # a batch of two timesteps
    assert torch.allclose(corr(mixed, torch.tensor([900, 100])), torch.stack([f[0, 0], f[2, 1]]), atol=1e-5)
    with pytest.raises(KeyError, match="timestep \\[7\\] has no eps correction"):
        corr(q[0], torch.tensor(7))


def test_correction_attached_to_a_unet_fits_and_round_trips(tiny_unet, tmp_path):
    from diffcomp.quant.spec import QuantizerConfig, QuantSpec
    from diffcomp.quant.calibrate import init_activations, init_weights
    from diffcomp.quant.wrap import load_quantized, quantize_model, save_quantized
    from diffcomp.quant.correction import with_correction
    from diffcomp.calib.trajectories import Trajectories

    spec = QuantSpec(QuantizerConfig(3, per_channel=True), QuantizerConfig(4))
    model = quantize_model(tiny_unet, spec)
    torch.manual_seed(0)
    traj = Trajectories(xs=torch.randn(2, 16, 1, 32, 32), ts=torch.tensor([800, 200]))
    init_weights(model)
    init_activations(model, [(traj.xs[0], torch.full((16,), 800)), (traj.xs[1], torch.full((16,), 200))],
                     lambda m, b: m(*b).sample)
    with torch.no_grad():
        before = [eps_stats(model(traj.xs[s], traj.ts[s]).sample, tiny_unet(traj.xs[s], traj.ts[s]).sample) for s in (0, 1)]
    model, spec = with_correction(model, tiny_unet, spec, traj)
    assert spec.eps_correction == (800, 200)
    with torch.no_grad():
        after = [eps_stats(model(traj.xs[s], traj.ts[s]).sample, tiny_unet(traj.xs[s], traj.ts[s]).sample) for s in (0, 1)]
        out = model(traj.xs[0], traj.ts[0]).sample
    for b, a in zip(before, after):  # on the data it was fitted on: unit gain, no channel-mean bias
        assert abs(a["gain"] - 1) < 1e-4 < abs(b["gain"] - 1)
        assert abs(a["mean_bias"]) < 1e-5 < abs(b["mean_bias"])
    save_quantized(model, spec, tmp_path / "q.safetensors")
    loaded = load_quantized(tiny_unet, tmp_path / "q.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(traj.xs[0], traj.ts[0]).sample, out)
        assert torch.equal(loaded(traj.xs[0], traj.ts[0], return_dict=False)[0], out)


def test_bias_correction_makes_every_layers_mean_output_the_fp_layers(tiny_unet):
    from diffcomp.quant.bias_correction import correct_biases
    from diffcomp.quant.calibrate import init_activations, init_weights
    from diffcomp.quant.module import quant_modules
    from diffcomp.quant.spec import QuantizerConfig, QuantSpec
    from diffcomp.quant.wrap import quantize_model

    torch.manual_seed(0)
    model = quantize_model(tiny_unet, QuantSpec(QuantizerConfig(3, per_channel=True), QuantizerConfig(4)))
    batch = (torch.randn(12, 1, 32, 32), torch.tensor([900, 500, 100] * 4))
    run = lambda m, b: m(*b).sample  # noqa: E731
    init_weights(model)
    init_activations(model, [batch], run)
    layers = [n for n, m in quant_modules(model) if m.allow_weights and m.bias is not None]

    def means(m):
        rec = {}
        hs = [m.get_submodule(n).register_forward_hook(
            lambda mod, a, o, n=n: rec.__setitem__(n, o.double().mean(dim=[d for d in range(o.dim()) if d != (o.dim() - 1 if o.dim() == 3 or isinstance(getattr(mod, "module", mod), torch.nn.Linear) else 1)])))
            for n in layers]
        with torch.no_grad():
            run(m, batch)
        for h in hs:
            h.remove()
        return rec

    fp, before = means(tiny_unet), means(model)
    assert max(float((before[n] - fp[n]).abs().max()) for n in layers) > 1e-3
    shifts = correct_biases(model, tiny_unet, batch, run)
    assert set(shifts) == set(layers)
    after = means(model)
    # on the data it was fitted on, with every earlier layer corrected too: equal up to the rounding
    # of the 4-bit activations, where a last-bit difference of a float32 sum (CPUs differ) flips
    # an element to the next step and moves a channel's mean by about 1e-4; uncorrected, the
    # means are up to 0.2 apart (over 1e-3, asserted above)
    for n in layers:
        assert torch.allclose(after[n], fp[n], atol=3e-4), n


@pytest.mark.parametrize("verb", ["table1", "table2"])
def test_table_verbs_write_the_diagnostics_table_figure_and_caption(verb, tmp_path):
    import json

    import pandas as pd

    from diffcomp.cli import main

    steps = [{"t": t, "gain": 1 + g, "bias_rms": b, "rel_err": 0.1} for t, g, b in [(900, 0.02, 0.03), (500, -0.05, 0.01), (0, 0.9, 0.9)]]
    (tmp_path / "d.json").write_text(json.dumps({"variant": "linear-w4a8", "per_step": steps,
                                                 "samples": {"pixel_shift": 0.07, "rms_distance": 0.2}}))
    (tmp_path / "m.json").write_text(json.dumps({"variant": "linear-w4a8", "metrics": {"fid": 8.0, "sfid": 9.0, "is": 5.0},
                                                 "protocol": {"n_samples": 500, "sampler": {"name": "ddim", "steps": 10}}}))
    assert main([verb, "--metrics", str(tmp_path / "m.json"), "--methods", '[["linear", "Linear Quant"]]',
                 "--bits", '["W4A8"]', "--out-stem", str(tmp_path / "t"), "--diagnostics", str(tmp_path / "d.json"),
                 "--diagnostics-figure", str(tmp_path / "eps.png"), "--diagnostics-stem", str(tmp_path / "diag")]) == 0
    diag = pd.read_csv(tmp_path / "diag.csv", index_col=0)
    # the t = 0 step lies outside the band: the largest |gain - 1| and bias are those of t = 900 / 500
    assert diag.loc["Linear Quant W4A8", "max abs(gain - 1) (t>=100)"] == pytest.approx(0.05)
    assert diag.loc["Linear Quant W4A8", "max bias RMS (t>=100)"] == pytest.approx(0.03)
    assert (tmp_path / "eps.png").stat().st_size > 0
    title = "Table 1" if verb == "table1" else "Table 2"
    assert f"## {title} diagnostics" in (tmp_path / "diag.md").read_text()
    assert f"{verb}_diagnostics.md" in (tmp_path / "t.md").read_text()
