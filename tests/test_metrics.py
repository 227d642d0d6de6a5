from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, needs_fmnist
from diffcomp.metrics.fidelity import Uint8Images, compare, frechet, make_extractor, reference_statistics

CLF = REPO / "resources" / "models" / "fmnist-classifier"


def test_frechet_distance_math():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    mu, sig = a.mean(0), np.cov(a, rowvar=False)
    assert abs(frechet(mu, sig, mu, sig)) < 1e-8
    # pure mean shift: FID = |d|^2
    assert frechet(mu + 2.0, sig, mu, sig) == pytest.approx(16.0, rel=1e-6)
    # isotropic scale: tr(S1 + S2 - 2 sqrt(S1 S2)) = d (s1 - s2)^2 for S = s^2 I
    assert frechet(np.zeros(3), 4 * np.eye(3), np.zeros(3), np.eye(3)) == pytest.approx(3.0, rel=1e-6)


def test_dataset_wrapper_checks_dtype():
    with pytest.raises(ValueError, match="uint8"):
        Uint8Images(np.zeros((2, 1, 4, 4), dtype=np.float32))


def test_extractor_is_registered_with_torch_fidelity():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    ext = make_extractor("fmnist-classifier", str(CLF))
    assert "fmnist-classifier" in FEATURE_EXTRACTORS_REGISTRY
    assert ext.layers() == {"fid": "pool", "isc": "logits", "sfid": "spatial"}
    make_extractor("fmnist-classifier", str(CLF))  # registering twice is fine


@pytest.fixture(scope="module")
def real():
    from diffcomp.data.fmnist import load_split

    x, _ = load_split("test", "debian", "/usr/share/datasets/fashion-mnist")
    return x


@needs_fmnist
def test_metric_sanity_on_real_and_degraded_images(real):
    ext = make_extractor("fmnist-classifier", str(CLF))
    ref = reference_statistics(real[:4000], ext)
    held_out = compare(real[5000:6000], ref, ext)
    rng = np.random.default_rng(0)
    noisy = np.clip(real[5000:6000].astype(int) + rng.normal(0, 60, real[5000:6000].shape), 0, 255).astype(np.uint8)
    degraded = compare(noisy, ref, ext)
    noise = compare(rng.integers(0, 256, (1000, 1, 32, 32), dtype=np.uint8), ref, ext)
    assert held_out["fid"] < degraded["fid"] < noise["fid"]
    assert held_out["sfid"] < degraded["sfid"]
    assert held_out["is"] > 5.0 > noise["is"]  # ten balanced, confidently classified classes vs one
    assert held_out["kid"] < degraded["kid"]
    assert held_out["precision"] > 0.5 and noise["precision"] < 0.05
    assert all(np.isfinite(v) for v in held_out.values())
    # 3-channel inputs (how torch-fidelity feeds RGB images) give the same features
    rgb = np.repeat(real[5000:5100], 3, axis=1)
    a, b = compare(rgb, ref, ext), compare(real[5000:5100], ref, ext)
    assert a["fid"] == pytest.approx(b["fid"], rel=1e-6)


def test_shipped_classifier_accuracy_is_recorded_and_high_enough():
    import json

    prov = json.loads((CLF / "provenance.json").read_text())
    assert prov["test_accuracy"] >= 0.90
    from diffcomp.provenance import sha256_file

    assert sha256_file(CLF / "model.safetensors") == prov["sha256"]


@needs_fmnist
def test_shipped_classifier_reaches_90_percent(real):
    from diffcomp.data.fmnist import load_split
    from diffcomp.metrics.classifier import accuracy, load_classifier

    x, y = load_split("test", "debian", "/usr/share/datasets/fashion-mnist")
    assert accuracy(load_classifier(CLF), x, y) >= 0.90


def test_precision_and_recall_on_single_class_sets():
    """Real features: two far-apart classes; generated: exactly the real samples of one class.
    Every generated sample lies on the real manifold (precision 1), half of the real samples on the
    generated one (recall 0.5)."""
    from diffcomp.metrics.fidelity import _stats, from_features

    g = torch.Generator().manual_seed(0)
    class_a = torch.randn(25, 4, generator=g, dtype=torch.float64)
    real = torch.cat([class_a, 100 + torch.randn(25, 4, generator=g, dtype=torch.float64)])
    st = _stats(real)
    ref = {"n": np.array(50), "fid_mu": st["mu"], "fid_sigma": st["sigma"], "fid_features": real.float().numpy()}
    feats = {"pool": class_a.clone(), "logits": torch.randn(25, 10, generator=g, dtype=torch.float64)}
    out = from_features(feats, ref, {"fid": "pool", "isc": "logits", "sfid": None})
    assert out["precision"] == 1.0 and out["recall"] == 0.5
    assert out["sfid"] is None and out["fid"] > 1000  # one class of two: far from the reference
