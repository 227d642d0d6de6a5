"""Few-step students: progressive distillation (Salimans & Ho 2022) and RDD's relational losses
(Feng et al., ACM MM 2024).

Importing this package does not import torch: the Snakefile validates distillation methods and
their parameters before any job runs (``DISTILLERS``); the training code lives in ``stage``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .params import PDParams, RDDParams


@dataclass(frozen=True)
class DistillerEntry:
    params: type
    label: str  # row label in tables
    uses_features: bool  # needs the frozen feature network
    sources: tuple[str, ...]  # the code it runs, relative to the package root (rerun trigger)


_PD_CODE = ("distill/__init__.py", "distill/params.py", "distill/targets.py", "distill/stage.py",
            "models/sampler.py")

DISTILLERS: dict[str, DistillerEntry] = {
    "pd": DistillerEntry(PDParams, "PD", False, _PD_CODE),
    "rdd": DistillerEntry(RDDParams, "RDD", True, _PD_CODE + ("distill/relational.py", "distill/features.py",
                                                              "metrics/classifier.py")),
}
