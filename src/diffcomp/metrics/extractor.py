"""The Fashion-MNIST classifier as a torch-fidelity feature extractor.

Registered under ``fmnist-classifier``; provides ``pool`` (FID, KID, precision/recall),
``spatial`` (sFID) and ``logits`` (IS). torch-fidelity instantiates it with every keyword of
``calculate_metrics``; the weights folder comes in as ``feature_extractor_weights_path``.
"""

from __future__ import annotations

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from .classifier import load_classifier

NAME = "fmnist-classifier"


class FMNISTFeatureExtractor(FeatureExtractorBase):
    """Features of the shipped Fashion-MNIST classifier for uint8 (N, 1|3, 32, 32) images."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{NAME}: feature_extractor_weights_path (the classifier folder) is required")
        self.net = load_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list():
        return ("pool", "spatial", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "pool", "kid": "pool", "prc": "pool"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x):
        feats = self.net.features(x)
        return tuple(feats[name].float() for name in self.features_list)


def register() -> str:
    """Register the extractor with torch-fidelity (idempotent); returns its name."""
    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(NAME, FMNISTFeatureExtractor)
    return NAME
