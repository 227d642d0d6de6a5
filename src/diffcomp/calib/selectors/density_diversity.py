"""EDA-DM's temporal distribution alignment calibration (TDAC): calibration inputs spread over
the sampling steps in proportion to how dense and how diverse each step's features are.

Of ``n`` FP trajectories, the feature ``F_i`` of step ``i`` is the input of one module of the FP
UNet (``feature``: the middle block's attention) over all ``n`` trajectories at that step. Then

* density ``D_i`` = the number of other steps ``j`` with ``mean((F_i - F_j)^2) <= r``;
* diversity ``V_i`` = the sum over the other steps of ``sum(1 - cos(F_i, F_j))``, the cosine taken
  along channels and summed over trajectories and positions;
* both min-max normalised over the steps, ``w_i = D_i + lam * V_i``, and step ``i`` gets
  ``n_i = round(n * w_i / sum(w))`` inputs, the rounding repaired so that the counts sum to ``n``
  (``allocate``);
* trajectory ``k`` gives its input at the step assigned to it by a seeded permutation of the
  counts, so every calibration input comes from a different trajectory.

The counts depend only on the trajectories, the model and the parameters, not on the seed (the
seed draws the permutation), so a figure of counts per step is exact for every seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...typedconfig import ConfigError, NonNegativeFloat, PositiveFloat, PositiveInt
from . import selector

WEIGHTS = ("tdac", "even")


@dataclass(frozen=True)
class DensityDiversityParams:
    """EDA-DM's CIFAR-10 settings (repo BienLuky/EDA-DM, ``scripts/calibration.py`` and
    ``scripts/for_cifar.sh``): ``r`` 3.0 (0.3 for the LSUN and COCO models), ``lam`` 1.2, ``n``
    1024 calibration inputs from as many trajectories; ``feature`` the module whose input is the
    feature (diffusers' name of the middle block's attention); ``weights`` ``even`` spreads the
    ``n`` inputs evenly over the steps instead (the ablation without TDAC, otherwise the same);
    ``batch_size`` inputs per forward while computing the features."""

    r: PositiveFloat = 3.0
    lam: NonNegativeFloat = 1.2
    n: PositiveInt = 1024
    feature: str = "mid_block.attentions.0"
    weights: str = "tdac"
    batch_size: PositiveInt = 256

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {self.weights!r}")

    def check_against(self, cfg: Any, where: str) -> None:
        if self.n > cfg.calibration.n_trajectories:
            raise ConfigError(f"config key '{where}.n': {self.n} is more than calibration.n_trajectories "
                              f"({cfg.calibration.n_trajectories}); every input comes from a different trajectory")


def allocate(weights, n: int):
    """Counts per step: ``round(n * w / sum(w))`` (round half to even, as torch rounds), repaired
    as EDA-DM does: a shortfall of k adds one to each of the k largest counts (ties: the earlier
    step), an excess takes one from each step with a count, from the last step backwards, until
    the counts sum to ``n``. All weights zero: every step weighs the same."""
    import torch

    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.dim() != 1 or not len(w) or (w < 0).any() or not torch.isfinite(w).all():
        raise ValueError(f"weights must be a non-empty vector of finite non-negative numbers, got {w.tolist()}")
    if float(w.sum()) == 0:
        w = torch.ones_like(w)
    counts = torch.round(w / w.sum() * n).long()
    short = n - int(counts.sum())
    if short > 0:
        order = torch.sort(counts, descending=True, stable=True).indices
        counts[order[:short]] += 1  # |short| <= len(w) / 2: rounding moves each count by at most 1/2
    while short < 0:
        for i in reversed(range(len(counts))):
            if short == 0:
                break
            if counts[i] > 0:
                counts[i] -= 1
                short += 1
    assert int(counts.sum()) == n
    return counts


def minmax(x):
    """``(x - min) / (max - min)``; all zeros where every entry is the same (EDA-DM divides by
    zero there)."""
    span = x.max() - x.min()
    return (x - x.min()) / span if float(span) > 0 else x * 0


def scores(features, r: float, lam: float):
    """``(D, V, w)`` over the steps from ``features`` (a list, one ``(n, C, ...)`` tensor per step);
    D and V min-max normalised, ``w = D + lam * V``."""
    import torch
    import torch.nn.functional as F

    S = len(features)
    density = torch.zeros(S, dtype=torch.float64)
    diversity = torch.zeros(S, dtype=torch.float64)
    for i in range(S):
        for j in range(i + 1, S):
            a, b = features[i].double(), features[j].double()
            if float((a - b).pow(2).mean()) <= r:
                density[i] += 1
                density[j] += 1
            d = float((1 - F.cosine_similarity(a, b, dim=1, eps=1e-6)).sum())
            diversity[i] += d
            diversity[j] += d
    D, V = minmax(density), minmax(diversity)
    return D, V, D + lam * V


def step_features(model, traj, params: DensityDiversityParams):
    """The input of ``params.feature`` at every sampling step, over the first ``n`` trajectories."""
    import torch

    try:
        module = model.get_submodule(params.feature)
    except AttributeError:
        raise ValueError(f"calibration selector density_diversity: the model has no module {params.feature!r} "
                         "(parameter 'feature')") from None
    device = next(model.parameters()).device
    got: list = []
    hook = module.register_forward_pre_hook(
        lambda m, args, kwargs: got.append((args[0] if args else kwargs["hidden_states"]).detach().float().cpu()),
        with_kwargs=True)
    feats = []
    try:
        with torch.no_grad():
            for s in range(traj.xs.shape[0]):
                got.clear()
                for i in range(0, params.n, params.batch_size):
                    x = traj.xs[s, i : i + params.batch_size].to(device)
                    cond = () if traj.labels is None else (traj.labels[i : i + params.batch_size].to(device),)
                    model(x, traj.ts[s].to(device).expand(x.shape[0]), *cond)
                if not got:
                    raise ValueError(f"calibration selector density_diversity: module {params.feature!r} never ran")
                feats.append(torch.cat(got))
    finally:
        hook.remove()
    return feats


def step_counts(traj, params: DensityDiversityParams, model) -> Any:
    """Calibration inputs per sampling step (noisiest first), summing to ``params.n``."""
    S = traj.xs.shape[0]
    if params.weights == "even":
        return allocate([1.0] * S, params.n)
    _, _, w = scores(step_features(model, traj, params), params.r, params.lam)
    return allocate(w, params.n)


@selector("density_diversity", params=DensityDiversityParams, label="density + diversity (TDAC)", needs_model=True)
def density_diversity(traj, params: DensityDiversityParams, seed: int = 0, model=None):
    import torch

    S, N = traj.xs.shape[:2]
    if params.n > N:
        raise ValueError(f"calibration wants {params.n} inputs from as many trajectories but only {N} were captured")
    counts = step_counts(traj, params, model)
    steps = torch.repeat_interleave(torch.arange(S), counts)
    steps = steps[torch.randperm(params.n, generator=torch.Generator().manual_seed(seed))]
    return steps, torch.arange(params.n)
