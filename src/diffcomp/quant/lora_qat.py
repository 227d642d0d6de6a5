"""LoRA quantization-aware training of a wrapped UNet (the training of EfficientDM and of the
methods built on it): the spec (per-channel weights with a learnable step, per-timestep learnable
activations, layers at a higher width chosen by name pattern), per-step range initialisation on
the FP trajectories, LoRA on the quantized layers, the parameter groups with their learning
rates, and the QAT run (``quant.qat``) with LoRA merged into the weights at the end.

``LoRAQATParams`` holds the parameters with EfficientDM's values as defaults; a method's
parameter dataclass extends it. Torch-free at import (the Snakefile validates parameters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from ..typedconfig import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range

Bits = Annotated[int, Range(2, 16)]
INIT = {"max": "minmax", "mse": "mse"}


@dataclass(frozen=True)
class LoRAQATParams:
    """LoRA QAT; the defaults are EfficientDM's (He et al., ICLR 2024) as released (repo
    ThisisBillhe/EfficientDM; the MPQ-DM repo's ``train_ourdm.py`` trains the same way):

    * weights: per-output-channel asymmetric, ``w_init`` 'mse' (80 shrink factors, L_2.4); the
      step size is trained with lr ``lr_w_step`` 1e-6 (the released code trains the zero point too;
      here it stays fixed);
    * activations: per-tensor asymmetric, one step size and zero point per sampling step (TALSQ),
      trained with lr ``lr_a`` 5e-4; initialised as the released code does: one range per layer
      ('mse') on ``init_samples`` 32 FP trajectory inputs spread over the steps, copied to every
      step; ``per_step_init`` (ours) initialises each step's range on ``init_samples`` inputs of
      its own step instead (ten times the cost of the search);
    * layers: every Conv2d/Linear except the ResBlock shortcut convs and the downsampling convs
      (``exclude``: the released code skips modules named 'skip' and 'op'); attention matmuls are
      not quantized. ``special`` (name patterns: time embedding, input and output conv) get
      ``special_bits`` 8 for weights and inputs and no LoRA;
    * LoRA of rank ``lora_rank`` 32 (alpha = rank) on every other quantized layer, merged into the
      weight before fake quantization; conv LoRA per kernel position; per-layer lr = mean weight
      step size / ``lora_lr_divisor`` 2500;
    * QAT: AdamW (``weight_decay`` 0.01, its default), linear decay to 0 without warm-up,
      ``epochs`` 800 batches of ``batch_size`` 4 FP trajectories (the ImageNet setting: 800 x 20
      steps), one step per sampling step, loss the summed squared error between the quantized
      and the FP noise prediction. Resume state every ``checkpoint_every`` epochs; ``seed`` fixes
      LoRA's initialisation and the trajectory order.
    """

    w_init: str = "mse"
    a_init: str = "mse"
    init_samples: PositiveInt = 32
    per_step_init: bool = False
    exclude: tuple[str, ...] = (r"conv_shortcut$", r"downsamplers\.\d+\.conv$")
    special: tuple[str, ...] = (r"^time_embedding\.", r"^conv_in$", r"^conv_out$")
    special_bits: Bits = 8
    lora_rank: PositiveInt = 32
    lora_lr_divisor: PositiveFloat = 2500.0
    lr_w_step: NonNegativeFloat = 1e-6
    lr_a: NonNegativeFloat = 5e-4
    weight_decay: NonNegativeFloat = 0.01
    epochs: PositiveInt = 800
    batch_size: PositiveInt = 4
    checkpoint_every: PositiveInt = 10
    seed: NonNegativeInt = 0

    def __post_init__(self):
        for k in ("w_init", "a_init"):
            if getattr(self, k) not in INIT:
                raise ValueError(f"{k} must be 'max' or 'mse', got {getattr(self, k)!r}")
        for pat in self.exclude + self.special:
            re.compile(pat)


def spec_for(bits, timesteps, p: LoRAQATParams, mixed: bool = False, smooth: bool = False):
    """Per-channel weights (learnable step; ``mixed`` per-channel widths), per-timestep learnable
    per-tensor inputs; ``special`` layers at ``special_bits`` without mixing or smoothing."""
    from .spec import QuantizerConfig, QuantSpec

    weight = QuantizerConfig(bits.w, per_channel=True, learnable=True, mixed=mixed)
    act = QuantizerConfig(bits.a, learnable=True, per_timestep=True)
    special = "|".join(f"(?:{s})" for s in p.special)
    overrides = []
    if smooth:
        overrides.append((".*", {"smooth": True}))
    if p.special:
        overrides.append((special, {"weight.bits": p.special_bits, "weight.mixed": False,
                                    "act.bits": p.special_bits, "smooth": False}))
    return QuantSpec(weight=weight, act=act, exclude=tuple(p.exclude), overrides=tuple(overrides),
                     timesteps=tuple(int(t) for t in timesteps))


def is_special(name: str, p: LoRAQATParams) -> bool:
    return any(re.search(s, name) for s in p.special)


def step_batches(traj, n: int, device) -> list[tuple]:
    """One batch per sampling step: the first ``n`` FP trajectories' inputs at that step (with
    their labels, and null twins under guidance, for a class-conditional model)."""
    return [tuple(v.to(device) for v in traj.step_inputs(s, 0, n)) for s in range(traj.xs.shape[0])]


def spread_batch(traj, n: int, device) -> tuple:
    """``n`` trajectory inputs spread over the sampling steps (step i mod S of trajectory i div S),
    as a batch ``(x, t[, labels])`` (``calib.selectors.gather``)."""
    import torch

    from ..calib.selectors import gather

    S, N = traj.xs.shape[:2]
    i = torch.arange(min(n, S * N))
    return tuple(v.to(device) for v in gather(traj, i % S, (i // S) % N).tensors())


def init_ranges(model, traj, p: LoRAQATParams, device, weights: bool = True) -> None:
    """Weight ranges from the weights, then the activation ranges: one per layer on inputs spread
    over the steps, copied to every step (or, ``per_step_init``, each step's from its own)."""
    import torch

    from .calibrate import init_activations, init_weights
    from .module import act_quantizers, set_quant_state

    if weights:
        init_weights(model, INIT[p.w_init])
    set_quant_state(model, weights=True, acts=True)

    def run(m, b):
        return m(*b).sample

    if p.per_step_init:
        init_activations(model, step_batches(traj, p.init_samples, device), run, INIT[p.a_init])
        return
    # one range per quantizer from all its inputs (its grids passing them through), on every step
    qs = list(act_quantizers(model))
    seen: dict[str, list] = {n: [] for n, _ in qs}
    for _, q in qs:
        for leaf in q.leaves():
            leaf.enabled = False
    handles = [q.register_forward_pre_hook(lambda mod, args, n=n: seen[n].append(args[0].detach()))
               for n, q in qs]
    try:
        with torch.no_grad():
            run(model, spread_batch(traj, p.init_samples, device))
    finally:
        for h in handles:
            h.remove()
        for _, q in qs:
            for leaf in q.leaves():
                leaf.enabled = True
    with torch.no_grad():
        for n, q in qs:
            x = torch.cat([v.flatten() for v in seen.pop(n)])
            first, *rest = q.leaves()
            if p.a_init == "mse":
                first.init_mse(x)
            else:
                first.init_minmax(x)
            for leaf in rest:
                leaf.load_state_dict(first.state_dict())


def add_lora(model, p: LoRAQATParams) -> list[str]:
    """LoRA on every quantized layer with weights except the special ones; returns their names."""
    import torch

    from .adapters import LoRA
    from .module import quant_modules

    torch.manual_seed(p.seed)
    names = []
    for name, m in quant_modules(model):
        if m.allow_weights and hasattr(m, "weight_adapters") and not is_special(name, p):
            w = m.weight
            m.weight_adapters.append(LoRA(tuple(w.shape), p.lora_rank).to(w.device))
            names.append(name)
    return names


def param_groups(model, p: LoRAQATParams):
    """LoRA per layer at mean weight step / divisor, weight steps, activation steps."""
    import torch.nn as nn

    from .module import quant_modules
    from .qat import ParamGroup

    groups, w_steps, a_steps = [], [], []
    for name, m in quant_modules(model):
        wq = [q for q, _ in m.weight_parts()]
        w_steps += [leaf.scale for q in wq for leaf in q.leaves() if isinstance(leaf.scale, nn.Parameter)]
        a_steps += [leaf.scale for _, q in m.act_quantizers() for leaf in q.leaves()
                    if isinstance(leaf.scale, nn.Parameter)]
        adapters = list(getattr(m, "weight_adapters", []))
        if adapters:
            mean_step = float(sum(float(leaf.scale.detach().sum()) for q in wq for leaf in q.leaves())
                              / sum(leaf.scale.numel() for q in wq for leaf in q.leaves()))
            groups.append(ParamGroup(f"lora:{name}", tuple(a for ad in adapters for a in ad.parameters()),
                                     mean_step / p.lora_lr_divisor))
    groups.append(ParamGroup("weight_steps", tuple(w_steps), p.lr_w_step))
    groups.append(ParamGroup("act_steps", tuple(a_steps), p.lr_a))
    return groups


def train(model, fp, traj, p: LoRAQATParams, device, terms=(), state_dir=None, stop_at=None) -> dict:
    """LoRA, then QAT along the FP trajectories; LoRA is merged into the weights at the end."""
    from .module import quant_modules
    from .qat import QATSchedule, train_qat

    lora = add_lora(model, p)
    schedule = QATSchedule(p.epochs, p.batch_size, p.seed, p.weight_decay, p.checkpoint_every)
    stats = train_qat(model, fp, traj, param_groups(model, p), schedule, terms, device,
                      state_dir=state_dir, stop_at=stop_at)
    if not stats["stopped"]:
        for _, m in quant_modules(model):
            if hasattr(m, "merge_adapters"):
                m.merge_adapters()
    stats["lora_layers"] = len(lora)
    return stats


