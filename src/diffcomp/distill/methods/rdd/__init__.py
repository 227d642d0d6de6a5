"""RDD: relational diffusion distillation (Feng et al., ACM MM 2024)."""

from __future__ import annotations

from dataclasses import dataclass

from ....typedconfig import NonNegativeFloat, PositiveFloat, PositiveInt
from .. import distiller
from ...params import StageParams


@dataclass(frozen=True)
class RDDParams(StageParams):
    """RDD: PD's stages and targets, trained with losses in the space of a frozen feature network
    (``train_rdd.py`` / ``train_rdd.sh``, ``--loss_type mp2p --feature``, lr 5e-5, 20k steps at
    batch 128; the paper's network is a CIFAR-10 DenseNet-201, the default here the Fashion-MNIST
    classifier):

    * ``feature_weight`` x KL(softmax(f_T / ``temperature``) || softmax(f_S)) of the pooled
      feature vectors (RCFD's term, temperature 0.9, batch mean);
    * ``intra_weight`` 1.0 x the cross-sample pixel relation KL: feature maps L2-normalised over
      channels, similarities of every pixel of every sample with every pixel of every sample,
      softmax over the second pixel at ``intra_temperature`` 1, KL(P_T || P_S), mean over rows;
    * ``memory_weight`` 0.1 x the memory relation term: the student map through a projection head
      (1x1 conv, BN, ReLU, 1x1 conv; its own Adam at ``lr``), teacher pixels in a queue of
      ``memory_size`` 20,000 L2-normalised embeddings (``memory_update`` 128 random pixels of
      the batch enqueued per step), ``anchors`` 4,096 fixed, evenly spaced queue entries;
      logits = pixel . anchor / ``contrast_temperature`` 0.1; KL at ``kd_temperature`` 1,
      per pixel;
    * ``mse_weight`` x PD's loss: 0 in the released script (no ``--logits``).
    """

    iters: PositiveInt = 20_000
    low_step_factor: PositiveInt = 1
    temperature: PositiveFloat = 0.9
    feature_weight: NonNegativeFloat = 1.0
    intra_weight: NonNegativeFloat = 1.0
    intra_temperature: PositiveFloat = 1.0
    memory_weight: NonNegativeFloat = 0.1
    memory_size: PositiveInt = 20_000
    memory_update: PositiveInt = 128
    anchors: PositiveInt = 4096
    contrast_temperature: PositiveFloat = 0.1
    kd_temperature: PositiveFloat = 1.0
    mse_weight: NonNegativeFloat = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.anchors > self.memory_size:
            raise ValueError(f"anchors ({self.anchors}) must not exceed memory_size ({self.memory_size})")


def load_features(name: str, path: str):
    """The frozen network's (feature map, pooled vector) module (``rdd.features``)."""
    from .features import load_feature_net

    return load_feature_net(name, path)


@distiller("rdd", label="RDD", params=RDDParams, features=load_features,
           contract={"iters": 2, "batch_size": 4, "memory_size": 64, "memory_update": 8, "anchors": 16,
                     "mse_weight": 1.0, "checkpoint_every": 1})
def objective(params: RDDParams, features):
    from .objective import RDDObjective

    if features is None:
        raise ValueError("RDD needs a feature network")
    return RDDObjective(params, features, features.channels)
