"""Metrics as pure functions of features, through torch-fidelity.

FID, KID and precision/recall use the extractor's pooled features, IS its logits, and sFID is
the Frechet distance of spatial features (Nash et al. 2021; ADM's evaluator uses the first 7
channels of Inception's mixed_6/conv). The reference set's statistics are computed once and
stored (``reference_statistics``), then every variant is compared with them (``compare``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

SPATIAL_FEATURE = {"fmnist-classifier": "spatial", "inception-v3-compat-sfid": "2023"}
# Config names -> the torch-fidelity extractor that serves them (inception-v3-compat with sFID).
REGISTERED = {"inception-v3-compat": "inception-v3-compat-sfid"}
ADM_KEYS = ("mu", "sigma", "mu_s", "sigma_s")


class Uint8Images(Dataset):
    """(N, C, H, W) uint8 array as the tensor dataset torch-fidelity reads."""

    def __init__(self, images: np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {images.shape}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i])


@dataclass(frozen=True)
class Extractor:
    """Which torch-fidelity extractor, with which weights, and which of its features serve which metric."""

    name: str
    weights: str | None = None

    def layers(self) -> dict[str, str | None]:
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        cls = FEATURE_EXTRACTORS_REGISTRY[self.name]
        return {
            "fid": cls.get_default_feature_layer_for_metric("fid"),
            "isc": cls.get_default_feature_layer_for_metric("isc"),
            "sfid": SPATIAL_FEATURE.get(self.name),
        }


def make_extractor(name: str, weights: str | None) -> Extractor:
    """The extractor of config name ``name`` (``fmnist-classifier`` with its folder, or
    ``inception-v3-compat`` with torch-fidelity's weights file, None: torch-fidelity downloads it)."""
    if name == "fmnist-classifier":
        from .extractor import register

        register()
    elif name in REGISTERED:
        from .inception import register

        register()
        name = REGISTERED[name]
    return Extractor(name=name, weights=weights)


def extract(images: np.ndarray | Dataset, ext: Extractor, device: str = "cpu",
            batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Features of ``images`` (a uint8 (N, C, H, W) array, or a dataset of uint8 (C, H, W)
    tensors read a batch at a time: ``data.image_folder.ImageFiles``) for every layer the metrics
    need."""
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    layers = sorted({v for v in ext.layers().values() if v is not None})
    cuda = device.startswith("cuda")
    kwargs = {"feature_extractor_weights_path": ext.weights} if ext.weights else {}
    fe = create_feature_extractor(ext.name, layers, cuda=cuda, verbose=False, **kwargs)
    data = Uint8Images(images) if isinstance(images, np.ndarray) else images
    feats = get_featuresdict_from_dataset(data, fe, batch_size, cuda, save_cpu_ram=True, verbose=False)
    return {k: v.double() for k, v in feats.items()}


def _stats(x: torch.Tensor) -> dict[str, np.ndarray]:
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(x)


def reference_statistics(images: np.ndarray | Dataset, ext: Extractor, device: str = "cpu") -> dict[str, np.ndarray]:
    """What every comparison needs of the reference set (``extract``'s array or dataset):
    mean/covariance of the FID and sFID features, and the FID features themselves (KID,
    precision/recall)."""
    f = extract(images, ext, device)
    layers = ext.layers()
    out = {"n": np.array(len(images)), "source": np.array("images")}
    st = _stats(f[layers["fid"]])
    out.update(fid_mu=st["mu"], fid_sigma=st["sigma"], fid_features=f[layers["fid"]].float().numpy())
    if layers["sfid"]:
        st = _stats(f[layers["sfid"]])
        out.update(sfid_mu=st["mu"], sfid_sigma=st["sigma"])
    return out


def adm_reference(path: str, ext: Extractor, device: str = "cpu") -> dict[str, np.ndarray]:
    """Reference statistics from an ADM evaluator reference batch (``mu``, ``sigma``: pool
    features, ``mu_s``, ``sigma_s``: sFID's spatial features; read without unpickling). Its images
    ``arr_0`` (N, H, W, 3 uint8), when present, give the features KID and precision/recall need;
    without them those two are not computed."""
    from ..io import load_npz

    z = load_npz(path, {k: None for k in ADM_KEYS}, optional=("arr_0",),
                 remedy="give a reference batch in the ADM evaluator's format")
    layers = ext.layers()
    dims = {"mu": 2048, "mu_s": 2023}
    for k, d in dims.items():
        if z[k].shape != (d,) or z[k.replace("mu", "sigma")].shape != (d, d):
            raise ValueError(f"{path}: {k} has shape {z[k].shape}, expected ({d},) with a ({d}, {d}) covariance "
                             "(pool features of 2048 and sFID features of 2023 values)")
    out = {"n": np.array(len(z["arr_0"]) if "arr_0" in z else 0), "source": np.array("adm-npz"),
           "fid_mu": z["mu"].astype(np.float64), "fid_sigma": z["sigma"].astype(np.float64),
           "sfid_mu": z["mu_s"].astype(np.float64), "sfid_sigma": z["sigma_s"].astype(np.float64)}
    if "arr_0" in z:
        images = np.ascontiguousarray(z["arr_0"].transpose(0, 3, 1, 2))
        out["fid_features"] = extract(images, ext, device)[layers["fid"]].float().numpy()
    return out


def frechet(mu1, sigma1, mu2, sigma2) -> float:
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    r = fid_statistics_to_metric({"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}, verbose=False)
    return float(r["frechet_inception_distance"])


def compare(images: np.ndarray, ref: dict[str, np.ndarray], ext: Extractor, device: str = "cpu",
            rng_seed: int = 2020) -> dict[str, float | None]:
    """FID, sFID, IS (mean, std over 10 splits), KID (mean, std) and precision/recall of
    ``images`` against the reference statistics ``ref``."""
    return from_features(extract(images, ext, device), ref, ext.layers(), rng_seed)


def from_features(f: dict[str, torch.Tensor], ref: dict[str, np.ndarray], layers: dict[str, str | None],
                  rng_seed: int = 2020) -> dict[str, float | None]:
    """The metrics of ``compare`` from the generated images' features ``f`` (per layer) and the
    reference statistics: precision is the share of generated samples inside the reference
    manifold, recall the share of reference samples inside the generated one."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    n = len(f[layers["fid"]])
    gen = _stats(f[layers["fid"]])
    out: dict[str, float | None] = {"fid": frechet(gen["mu"], gen["sigma"], ref["fid_mu"], ref["fid_sigma"])}
    if layers["sfid"] and "sfid_mu" in ref:
        s = _stats(f[layers["sfid"]])
        out["sfid"] = frechet(s["mu"], s["sigma"], ref["sfid_mu"], ref["sfid_sigma"])
    else:
        out["sfid"] = None
    isc = isc_features_to_metric(f[layers["isc"]].float(), splits=10, shuffle=True, rng_seed=rng_seed)
    out["is"], out["is_std"] = isc["inception_score_mean"], isc["inception_score_std"]
    if "fid_features" not in ref:  # an ADM reference batch without its images
        out.update(kid=None, kid_std=None, precision=None, recall=None)
        return {k: (None if v is None else float(v)) for k, v in out.items()}
    real = torch.from_numpy(ref["fid_features"]).double()
    subset = min(1000, n, len(real))
    kid = kid_features_to_metric(f[layers["fid"]], real, kid_subsets=100, kid_subset_size=subset,
                                 kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                 kid_kernel_poly_coef0=1, rng_seed=rng_seed, verbose=False)
    out["kid"], out["kid_std"] = kid["kernel_inception_distance_mean"], kid["kernel_inception_distance_std"]
    prc = prc_features_to_metric(f[layers["fid"]].float(), real.float(), prc_neighborhood=3, prc_batch_size=10000,
                                 save_cpu_ram=True, verbose=False)
    out["precision"], out["recall"] = prc["precision"], prc["recall"]
    return {k: (None if v is None else float(v)) for k, v in out.items()}
