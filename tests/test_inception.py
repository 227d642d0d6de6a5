"""The papers' metrics offline: torch-fidelity's inception-v3-compat with random weights saved in
its format, sFID's 2,023-dim spatial feature, ADM reference batches, and what the metrics JSON
records."""

import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

from conftest import REPO
from diffcomp.cli import main
from diffcomp.metrics.fidelity import adm_reference, extract, frechet, from_features, make_extractor
from diffcomp.metrics.inception import check_weights, random_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    random_weights(str(path), seed=0)
    return path


@pytest.fixture(scope="module")
def feats(weights):
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    ext = make_extractor("inception-v3-compat", str(weights))
    return images, ext, extract(images, ext)


def test_features_have_the_papers_shapes(feats, weights):
    images, ext, f = feats
    assert ext.name == "inception-v3-compat-sfid"
    assert ext.layers() == {"fid": "2048", "isc": "logits_unbiased", "sfid": "2023"}
    assert f["2048"].shape == (6, 2048) and f["2023"].shape == (6, 2023) and f["logits_unbiased"].shape == (6, 1008)
    assert f["2023"].std() > 0 and f["2048"].std() > 0
    # The pool features and logits are inception-v3-compat's own (the wrapper only adds a hook).
    from torch_fidelity.utils import create_feature_extractor

    plain = create_feature_extractor("inception-v3-compat", ["2048", "logits_unbiased"], cuda=False, verbose=False,
                                     feature_extractor_weights_path=str(weights))
    with torch.no_grad():
        pool, logits = plain(torch.from_numpy(images[:2]))
    torch.testing.assert_close(f["2048"][:2].float(), pool)
    torch.testing.assert_close(f["logits_unbiased"][:2].float(), logits)


def test_sfid_feature_is_mixed_6d_1x1_branch_first_7_channels_hwc(feats, weights):
    images, ext, f = feats
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["768"], feature_extractor_weights_path=str(weights))
    seen = []
    net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        net(torch.from_numpy(images[:1]))
    s = seen[0][0]  # (192, 17, 17)
    assert s.shape == (192, 17, 17)
    got = f["2023"][0].float().reshape(17, 17, 7)  # TF's NHWC flattening
    torch.testing.assert_close(got[3, 5], s[:7, 3, 5])


def test_fid_of_a_set_against_itself_is_zero(feats):
    _, _, f = feats
    x = f["2048"].numpy()
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    scale = np.trace(sigma)
    assert scale > 0
    assert abs(frechet(mu, sigma, mu, sigma)) < 1e-4 * scale  # float rounding of the eigenvalues only


def test_adm_reference_batch(tmp_path, feats):
    _, ext, f = feats
    rng = np.random.default_rng(1)
    z = {"mu": rng.normal(size=2048), "sigma": np.eye(2048), "mu_s": rng.normal(size=2023), "sigma_s": np.eye(2023)}
    np.savez(tmp_path / "ref.npz", **z)
    ref = adm_reference(str(tmp_path / "ref.npz"), ext)
    np.testing.assert_array_equal(ref["fid_mu"], z["mu"])
    np.testing.assert_array_equal(ref["sfid_sigma"], z["sigma_s"])
    assert "fid_features" not in ref and str(ref["source"]) == "adm-npz"
    np.savez(tmp_path / "bad.npz", **{**z, "mu_s": z["mu_s"][:100]})
    with pytest.raises(ValueError, match=r"mu_s has shape \(100,\), expected \(2023,\)"):
        adm_reference(str(tmp_path / "bad.npz"), ext)
    # Without the batch's images, KID and precision/recall are not computed (None), FID is.
    small = {"fid": "a", "isc": "b", "sfid": None}
    g = {"a": torch.randn(50, 8, dtype=torch.float64), "b": torch.randn(50, 10, dtype=torch.float64)}
    m = from_features(g, {"fid_mu": np.zeros(8), "fid_sigma": np.eye(8)}, small)
    assert m["kid"] is None and m["precision"] is None and m["fid"] == pytest.approx(frechet(
        g["a"].numpy().mean(0), np.cov(g["a"].numpy(), rowvar=False), np.zeros(8), np.eye(8)))


def test_weights_file_is_checked_before_torch_fidelity_unpickles_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"fc.weight": Payload()}, protocol=2))
    with pytest.raises(ValueError, match="refusing to load it"):
        check_weights(str(tmp_path / "evil.pth"))
    with pytest.raises(ValueError, match="refusing"):  # inside torch-fidelity's creation of the extractor
        extract(np.zeros((1, 3, 32, 32), np.uint8), make_extractor("inception-v3-compat", str(tmp_path / "evil.pth")))
    assert not (tmp_path / "pwned").exists()


def test_metrics_json_records_extractor_weights_reference_and_versions(tmp_path):
    clf = REPO / "resources" / "models" / "fmnist-classifier"
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "real.npz", images=rng.integers(0, 256, (40, 1, 32, 32), dtype=np.uint8))
    np.savez(tmp_path / "samples.npz", images=rng.integers(0, 256, (30, 1, 32, 32), dtype=np.uint8),
             indices=np.arange(30))
    assert main(["reference-stats", "--images", str(tmp_path / "real.npz"), "--weights", str(clf),
                 "--out", str(tmp_path / "ref.npz"), "--device", "cpu"]) == 0
    assert main(["evaluate", "--samples", str(tmp_path / "samples.npz"), "--reference", str(tmp_path / "ref.npz"),
                 "--weights", str(clf), "--variant", "fp", "--out", str(tmp_path / "m.json"), "--device", "cpu"]) == 0
    p = json.loads((tmp_path / "m.json").read_text())["protocol"]
    sha = lambda f: hashlib.sha256(f.read_bytes()).hexdigest()  # noqa: E731
    assert p["extractor"]["weights_sha256"] == sha(clf / "model.safetensors")
    assert p["reference_stats"]["sha256"] == sha(tmp_path / "ref.npz")
    assert p["reference_stats"]["source"] == "images"
    assert p["reference_stats"]["source_sha256"] == sha(tmp_path / "real.npz")
    assert p["versions"]["torch"] == torch.__version__ and p["versions"]["torch_fidelity"]
