"""Progressive distillation (Salimans & Ho, ICLR 2022)."""

from __future__ import annotations

from dataclasses import dataclass

from ..params import StageParams
from . import distiller


@dataclass(frozen=True)
class PDParams(StageParams):
    """Progressive distillation: the stage recipe of ``distill.params.StageParams`` with PD's own
    loss, mean(max(MSE_x0, MSE_eps)) per sample against the PD target (defaults: RDD's released
    ``PD.py`` / ``config/CIFAR10_PD.txt``, 10k iterations per stage at batch 128, lr 5e-5)."""


@distiller("pd", label="PD", params=PDParams, contract={"iters": 2, "batch_size": 4, "checkpoint_every": 1})
def objective(params: PDParams, features=None):
    from ..targets import PDObjective

    return PDObjective()
