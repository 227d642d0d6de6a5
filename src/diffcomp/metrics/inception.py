"""torch-fidelity's ``inception-v3-compat`` (the TF FID Inception, bit-compatible) with the
spatial feature of sFID, registered with torch-fidelity as ``inception-v3-compat-sfid``.

sFID as the ADM evaluator (guided-diffusion ``evaluations/evaluator.py``) defines it: the
Frechet distance of the first 7 channels of the TF graph's ``mixed_6/conv`` tensor, 17 x 17 x 7
= 2,023 values per image, flattened in TF's (height, width, channel) order so that statistics
compare with an ADM reference batch's ``mu_s``/``sigma_s``. ``mixed_6`` is the seventh mixed block
of the graph (``mixed``, ``mixed_1``, ... count from torchvision's ``Mixed_5b``), i.e.
``Mixed_6d``, and its ``conv`` is the 1x1 branch after batch norm and ReLU (torch-fidelity's
``Mixed_6d.branch1x1``). The extractor wraps an unchanged ``FeatureExtractorInceptionV3`` and
reads that tensor with a forward hook, so ``2048``, ``logits_unbiased`` and ``logits`` are
inception-v3-compat's own.

Weights: torch-fidelity reads a given weights file with an unrestricted unpickler; this
extractor first loads it with ``weights_only=True`` (tensors only, nothing executed) and refuses
anything else, so a file that would run code when unpickled never reaches torch-fidelity.
"""

from __future__ import annotations

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

NAME = "inception-v3-compat-sfid"
SFID = "2023"
BASE = ("64", "192", "768", "2048", "logits_unbiased", "logits")


def check_weights(path: str) -> None:
    """Refuse a weights file that is not a plain state dict of tensors (before torch-fidelity
    unpickles it without restriction)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: not a weights-only state dict ({type(e).__name__}: {e}); refusing to load it") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state dict of tensors; refusing to load it")


class InceptionV3SFID(FeatureExtractorBase):
    """inception-v3-compat's features plus ``2023`` (sFID's spatial feature)."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is not None:
            check_weights(feature_extractor_weights_path)
        inner = [f for f in features_list if f != SFID] or ["768"]  # "768" runs the net past Mixed_6d
        self.inner = FeatureExtractorInceptionV3("inception-v3-compat", inner,
                                                 feature_extractor_weights_path=feature_extractor_weights_path, **kwargs)
        self._spatial: list[torch.Tensor] = []
        if SFID in features_list:
            self.inner.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: self._spatial.append(out))

    @staticmethod
    def get_provided_features_list():
        return (*BASE, SFID)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return FeatureExtractorInceptionV3.get_default_feature_layer_for_metric(metric)

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return FeatureExtractorInceptionV3.get_dummy_input_for_compile()

    def forward(self, x):
        self._spatial.clear()
        out = dict(zip(self.inner.features_list, self.inner(x)))
        if SFID in self.features_list:
            (s,) = self._spatial
            out[SFID] = s[:, :7].permute(0, 2, 3, 1).reshape(s.shape[0], -1).to(torch.float32)
        return tuple(out[f] for f in self.features_list)


def register() -> str:
    """Register the extractor with torch-fidelity (idempotent); returns its name."""
    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(NAME, InceptionV3SFID)
    return NAME


def random_weights(path: str, seed: int = 0) -> None:
    """Random weights in torch-fidelity's inception-v3-compat format (a state dict saved with
    ``torch.save``): offline tests and the GPU acceptance run use them in place of the download.
    Convolutions are He-initialised and batch norms are identities, so activations keep their
    scale through the network."""
    from torch import nn
    from torch_fidelity import feature_extractor_inceptionv3 as fi

    gen = torch.Generator().manual_seed(seed)
    net = nn.Module()
    layout = [("Conv2d_1a_3x3", fi.BasicConv2d(3, 32, kernel_size=3, stride=2)),
              ("Conv2d_2a_3x3", fi.BasicConv2d(32, 32, kernel_size=3)),
              ("Conv2d_2b_3x3", fi.BasicConv2d(32, 64, kernel_size=3, padding=1)),
              ("Conv2d_3b_1x1", fi.BasicConv2d(64, 80, kernel_size=1)),
              ("Conv2d_4a_3x3", fi.BasicConv2d(80, 192, kernel_size=3)),
              ("Mixed_5b", fi.InceptionA(192, pool_features=32)), ("Mixed_5c", fi.InceptionA(256, pool_features=64)),
              ("Mixed_5d", fi.InceptionA(288, pool_features=64)), ("Mixed_6a", fi.InceptionB(288)),
              ("Mixed_6b", fi.InceptionC(768, channels_7x7=128)), ("Mixed_6c", fi.InceptionC(768, channels_7x7=160)),
              ("Mixed_6d", fi.InceptionC(768, channels_7x7=160)), ("Mixed_6e", fi.InceptionC(768, channels_7x7=192)),
              ("Mixed_7a", fi.InceptionD(768)), ("Mixed_7b", fi.InceptionE_1(1280)), ("Mixed_7c", fi.InceptionE_2(2048)),
              ("fc", nn.Linear(2048, 1008))]
    for name, module in layout:
        net.add_module(name, module)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, (2.0 / m.weight[0].numel()) ** 0.5, generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, m.in_features**-0.5, generator=gen)
                m.bias.zero_()
    torch.save(net.state_dict(), path)
