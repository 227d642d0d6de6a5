"""The reconstruction engine (BRECQ / Q-Diffusion / EDA-DM), one configurable loop over units.

A unit is a block (a diffusers ``ResnetBlock2D``, ``Attention`` or ``BasicTransformerBlock``) or
a quantized layer outside every block; units are visited in execution order. For each unit a
``Phase`` says

* what is learned: AdaRound rounding variables (``rounding``: an ``AdaRoundQuantizer`` is swapped
  into every weight slot and baked back out at the end), the LSQ step sizes of the unit's
  activation quantizers (``act_steps``), or both jointly, each group with its own Adam and
  optional cosine decay;
* where the unit's inputs come from: the quantized model (``quantized``), the FP model (``fp``),
  or QDrop's element-wise random mix of the two (``qdrop``, FP with probability ``qdrop_p``);
  and, inside the unit, QDrop's dropping of activation quantization (``act_drop_p``: while
  learning, each element that an activation quantizer of the unit sees keeps its FP value with
  that probability);
* the loss: a callable of the unit's output and FP target and, when it asks for them, the
  outputs of the unit's quantized layers and their FP counterparts (EDA-DM's layer terms), plus
  the rounding regulariser with an annealed beta while rounding is learned.

Q-Diffusion's two phases and EDA-DM's joint phase are configurations of this loop.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .adaround import AdaRoundQuantizer, BetaSchedule
from .module import act_quantizers, learnable_steps, quant_modules, step_contexts

log = logging.getLogger(__name__)

UNIT_TYPES = ("ResnetBlock2D", "Attention", "BasicTransformerBlock")
GROUPS = ("rounding", "act_steps")
ENGINES = ("eager", "resident", "graph")
INPUTS = ("quantized", "fp", "qdrop")


def lp_loss(pred: torch.Tensor, target: torch.Tensor, p: float) -> torch.Tensor:
    """``|pred - target|^p`` summed over dim 1 and averaged over the rest (Q-Diffusion's lp_loss)."""
    return (pred - target).abs().pow(p).sum(1).mean()


@dataclass(frozen=True)
class ReconLoss:
    """``lp_loss(out, target, p)`` + ``layer_weight`` x the sum over the unit's quantized layers of
    ``lp_loss(layer output, FP layer output, layer_p)`` (EDA-DM's fine-grained terms when > 0);
    ``skip_last_layer``: without the unit's last quantized layer (in registration order; EDA-DM
    leaves it to the unit's output term)."""

    p: float = 2.0
    layer_weight: float = 0.0
    layer_p: float = 2.0
    skip_last_layer: bool = False

    @property
    def needs_layers(self) -> bool:
        return self.layer_weight != 0

    def layer_names(self, names: Sequence[str]) -> list[str]:
        """Which of the unit's quantized layers (registration order) the layer terms cover."""
        return list(names[:-1] if self.skip_last_layer else names)

    def __call__(self, out, target, layer_out=None, layer_target=None) -> torch.Tensor:
        loss = lp_loss(out, target, self.p)
        if self.needs_layers and layer_out:  # a unit without inner layers (a layer alone) has no terms
            loss = loss + self.layer_weight * sum(lp_loss(layer_out[k], layer_target[k], self.layer_p) for k in layer_out)
        return loss


@dataclass(frozen=True)
class RoundingReg:
    """AdaRound's regulariser ``weight x sum(1 - |2h - 1|^beta)``, beta from ``b_start`` to ``b_end``
    after ``warmup`` (a fraction of the iterations) during which it is off."""

    weight: float = 0.01
    b_start: float = 20.0
    b_end: float = 2.0
    warmup: float = 0.2


@dataclass(frozen=True)
class Phase:
    """One pass of the engine over the units (see the module docstring). ``lr``/``cosine`` give
    each learned group's Adam learning rate and whether it decays (cosine to 0 over ``iters``);
    unit k draws its mini-batches with seed ``seed + k``."""

    learn: tuple[str, ...]
    iters: int
    batch_size: int
    lr: tuple[tuple[str, float], ...]
    cosine: tuple[str, ...] = ()
    inputs: str = "quantized"
    qdrop_p: float = 0.5
    act_drop_p: float = 0.0
    loss: Callable = ReconLoss()
    rounding_reg: RoundingReg | None = None
    seed: int = 0
    name: str = "reconstruction"

    def __post_init__(self):
        if not self.learn or any(g not in GROUPS for g in self.learn):
            raise ValueError(f"learn must be a non-empty subset of {GROUPS}, got {self.learn}")
        if set(dict(self.lr)) != set(self.learn):
            raise ValueError(f"one learning rate per learned group {self.learn}, got {dict(self.lr)}")
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {self.inputs!r}")
        for k in ("qdrop_p", "act_drop_p"):
            if not 0 <= getattr(self, k) <= 1:
                raise ValueError(f"{k} must be in [0, 1], got {getattr(self, k)}")

    def loss_needs_layers(self) -> bool:
        return bool(getattr(self.loss, "needs_layers", False))


def find_units(model: nn.Module) -> list[str]:
    """Names of the reconstruction units: outermost blocks of ``UNIT_TYPES`` that hold quantized
    modules, and quantized layers outside them (registration order; see ``execution_order``)."""
    holders = {name for name, _ in quant_modules(model)}
    units: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(u + ".") for u in units):
            continue
        if type(m).__name__ in UNIT_TYPES and any(h.startswith(name + ".") for h in holders):
            units.append(name)
        elif name in holders:
            units.append(name)
    return units


class _Stop(Exception):
    pass


def execution_order(model: nn.Module, units: Sequence[str], run: Callable[[nn.Module], object]) -> list[str]:
    """``units`` sorted by when they first run in one forward pass (``run(model)``)."""
    seen: list[str] = []
    handles = [model.get_submodule(u).register_forward_hook(lambda m, a, o, u=u: seen.append(u) if u not in seen else None)
               for u in units]
    try:
        with torch.no_grad():
            run(model)
    finally:
        for h in handles:
            h.remove()
    missing = [u for u in units if u not in seen]
    if missing:
        raise RuntimeError(f"units never executed: {missing[:3]}")
    return seen


def _map(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return obj


def _cat(items: list):
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(items)
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([it[i] for it in items]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _cat([it[k] for it in items]) for k in first}
    return first


def _mix(q, fp, p: float, gen: torch.Generator):
    """QDrop: each element from the FP input with probability ``p``, else the quantized one."""
    if isinstance(q, torch.Tensor) and q.is_floating_point():
        keep_fp = torch.rand(q.shape, generator=gen, device=gen.device) < p
        return torch.where(keep_fp.to(q.device), fp, q)
    if isinstance(q, (tuple, list)):
        return type(q)(_mix(a, b, p, gen) for a, b in zip(q, fp))
    if isinstance(q, dict):
        return {k: _mix(q[k], fp[k], p, gen) for k in q}
    return q


def merge_batches(batches: Sequence[tuple], size: int) -> list[tuple]:
    """Consecutive ``(x, t, ...)`` batches joined into batches of at most ``size`` samples (fewer
    forward calls, the same samples in the same order). A scalar timestep is expanded to one per
    sample; other tensors with the batch's leading size are concatenated; anything else must be
    the same object in every batch joined. ``size`` <= 1, or batches that cannot be joined: the
    batches as they are."""
    if size <= 1 or len(batches) < 2:
        return list(batches)

    def join(group: list[tuple]) -> tuple | None:
        if len(group) == 1:
            return group[0]
        if len({len(b) for b in group}) != 1:
            return None
        out = []
        for i in range(len(group[0])):
            parts = []
            for b in group:
                v, n = b[i], b[0].shape[0]
                if isinstance(v, torch.Tensor) and i > 0 and v.numel() == 1:
                    v = v.reshape(1).expand(n)
                if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n:
                    parts.append(v)
                elif v is group[0][i]:
                    parts.append(None)
                else:
                    return None
            out.append(group[0][i] if parts[0] is None else torch.cat(parts))
        return tuple(out)

    merged, group, n = [], [], 0
    for b in batches:
        if group and n + b[0].shape[0] > size:
            merged.append(group)
            group, n = [], 0
        group.append(b)
        n += b[0].shape[0]
    merged.append(group)
    joined = [join(g) for g in merged]
    return list(batches) if any(j is None for j in joined) else joined


@torch.no_grad()
def capture(model: nn.Module, unit: str, batches: Sequence[tuple], run: Callable, want_input: bool,
            want_output: bool, layers: Sequence[str] = (), keep: torch.device | str | None = None) -> tuple:
    """Over all batches: the unit's inputs ``(args, kwargs)`` and/or outputs, and the outputs of
    its submodules ``layers`` (names relative to the unit); each forward stops right after the
    unit. The captures are moved to the CPU, or kept on ``keep`` (a device) when given."""
    module = model.get_submodule(unit)
    ins, outs, inner = [], [], {k: [] for k in layers}
    # a copy, so that no module later in the forward can overwrite a capture in place
    store = lambda t: t.detach().to(keep or "cpu", copy=True)  # noqa: E731

    def hook(m, args, kwargs, out):
        if want_input:
            ins.append(_map((args, kwargs), store))
        if want_output:
            outs.append(store(out))
        raise _Stop

    handles = [module.register_forward_hook(hook, with_kwargs=True)]
    handles += [module.get_submodule(k).register_forward_hook(lambda m, a, o, k=k: inner[k].append(store(o)))
                for k in layers]
    try:
        for b in batches:
            try:
                run(model, b)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    return (_cat(ins) if want_input else None), (_cat(outs) if want_output else None), {k: torch.cat(v) for k, v in inner.items()}


@contextmanager
def _dropping(unit: nn.Module, p: float, gen: torch.Generator):
    """QDrop inside the unit: each element an activation quantizer of the unit returns is, with
    probability ``p``, its FP input instead (forward hooks, removed on exit)."""
    if p == 0:
        yield
        return
    seen: dict[int, torch.Tensor] = {}

    def pre(m, args):
        seen[id(m)] = args[0].clone()  # the quantizer may round its input in place outside autograd

    def post(m, args, out):
        x = seen.pop(id(m))
        keep_fp = (torch.rand(out.shape, generator=gen, device=gen.device) < p).to(out.device)
        return torch.where(keep_fp, x, out)

    handles = []
    for _, q in act_quantizers(unit):
        handles += [q.register_forward_pre_hook(pre), q.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _timesteps(batches: Sequence[tuple]) -> torch.Tensor:
    return torch.cat([torch.as_tensor(b[1]).reshape(-1).expand(b[0].shape[0]) for b in batches])


def _learned(unit: nn.Module, phase: Phase) -> dict[str, list[nn.Parameter]]:
    """Swap AdaRound into the unit's quantized weight slots and collect each learned group."""
    groups: dict[str, list[nn.Parameter]] = {}
    for g in phase.learn:
        if g == "rounding":
            mods = [m for _, m in quant_modules(unit) if m.quant_weights]
            for m in mods:
                m.swap_weight_quantizers(lambda q, w: AdaRoundQuantizer(q, w))
            params = [q.alpha for m in mods for q, _ in m.weight_parts()]
        else:
            params = learnable_steps(unit)
        if params:
            groups[g] = params
    return groups


def _optimise(unit: nn.Module, phase: Phase, groups: dict[str, list[nn.Parameter]], inputs, target: torch.Tensor,
              fp_inputs, layer_target: dict, ts: torch.Tensor, seed: int, device, desc: str,
              curve: list[float] | None = None) -> float:
    lrs = dict(phase.lr)
    opts = {g: torch.optim.Adam(ps, lr=lrs[g]) for g, ps in groups.items()}
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(opts[g], T_max=phase.iters, eta_min=0.0)
              for g in groups if g in phase.cosine]
    rounders = [q for _, m in quant_modules(unit) for q, _ in m.weight_parts() if q.pending] if "rounding" in groups else []
    reg = phase.rounding_reg
    sched = BetaSchedule(phase.iters, reg.b_start, reg.b_end, reg.warmup) if (reg and rounders) else None
    contexts = step_contexts(unit)
    layer_names = sorted(layer_target)
    layer_out: dict[str, torch.Tensor] = {}
    hooks = [unit.get_submodule(k).register_forward_hook(lambda m, a, o, k=k: layer_out.__setitem__(k, o))
             for k in layer_names]
    n = target.shape[0]
    gen = torch.Generator().manual_seed(seed)  # mini-batches
    mix_gen = torch.Generator().manual_seed(seed)  # QDrop's masks (their own stream: p = 0 is plain inputs)
    drop_gen = torch.Generator().manual_seed(seed + 1)  # QDrop inside the unit
    last = float("nan")
    try:
        for it in tqdm(range(phase.iters), desc=desc, mininterval=10, leave=False):
            idx = torch.randint(0, n, (min(phase.batch_size, n),), generator=gen)
            batch_in = _map(inputs, lambda t: t[idx])
            if phase.inputs == "qdrop":
                batch_in = _mix(batch_in, _map(fp_inputs, lambda t: t[idx]), phase.qdrop_p, mix_gen)
            args, kwargs = _map(batch_in, lambda t: t.to(device))
            with ExitStack() as stack:
                for c in contexts:
                    stack.enter_context(c.using(ts[idx]))
                stack.enter_context(_dropping(unit, phase.act_drop_p, drop_gen))
                out = unit(*args, **kwargs)
            if layer_names:
                loss = phase.loss(out, target[idx].to(device), layer_out,
                                  {k: layer_target[k][idx].to(device) for k in layer_names})
            else:
                loss = phase.loss(out, target[idx].to(device))
            if sched is not None:
                loss = loss + (reg.weight * sum(q.regularizer(sched(it)) for q in rounders) if sched.active(it)
                               else torch.zeros((), device=device))
            for o in opts.values():
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in opts.values():
                o.step()
            for s in scheds:
                s.step()
            for p in groups.get("act_steps", ()):  # step sizes stay positive
                p.data.clamp_(min=1e-8)
            last = float(loss.detach())
            if curve is not None:
                curve.append(last)
    finally:
        for h in hooks:
            h.remove()
    return last


def _schedules(phase: Phase, groups, with_reg: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per iteration: each group's learning rate (the closed form of ``CosineAnnealingLR`` to 0 for
    the groups in ``phase.cosine``), AdaRound's beta and whether its regulariser is on."""
    import math

    its = torch.arange(phase.iters, dtype=torch.float64)
    lrs = {}
    for g in groups:
        base = dict(phase.lr)[g]
        lrs[g] = (base * (1 + torch.cos(math.pi * its / phase.iters)) / 2 if g in phase.cosine
                  else torch.full_like(its, base)).float()
    reg = phase.rounding_reg
    if with_reg:
        sched = BetaSchedule(phase.iters, reg.b_start, reg.b_end, reg.warmup)
        betas = torch.tensor([sched(i) for i in range(phase.iters)], dtype=torch.float32)
        on = torch.tensor([float(sched.active(i)) for i in range(phase.iters)], dtype=torch.float32)
    else:
        betas, on = torch.zeros(phase.iters), torch.zeros(phase.iters)
    return lrs, betas, on


def _optimise_resident(unit: nn.Module, phase: Phase, groups: dict[str, list[nn.Parameter]], inputs,
                       target: torch.Tensor, fp_inputs, layer_target: dict, ts: torch.Tensor, seed: int, device,
                       desc: str, curve: list[float] | None = None, graph: bool = False, warmup: int = 3) -> float:
    """``_optimise``'s iterations with everything on ``device``: the unit's inputs and targets, the
    mini-batch indices (drawn up front from the same CPU stream as ``_optimise``), the learning rates,
    temperatures and the loss of every iteration; QDrop's masks from a generator on the device. The
    step reads its iteration from a device counter, so it never waits for the host; with ``graph``
    it is captured as one CUDA graph after ``warmup`` ordinary steps and replayed."""
    from .timestep import TimestepQuantizer

    dev = torch.device(device)
    n, bs = target.shape[0], min(phase.batch_size, target.shape[0])
    gen = torch.Generator().manual_seed(seed)
    idx_all = torch.stack([torch.randint(0, n, (bs,), generator=gen) for _ in range(phase.iters)]).to(dev)
    mix_gen = torch.Generator(device=dev).manual_seed(seed)
    drop_gen = torch.Generator(device=dev).manual_seed(seed + 1)
    to_dev = lambda t: t.to(dev)  # noqa: E731
    d_inputs, d_target = _map(inputs, to_dev), target.to(dev)
    d_fp = _map(fp_inputs, to_dev) if phase.inputs == "qdrop" else None
    d_layer = {k: v.to(dev) for k, v in layer_target.items()}
    d_ts = ts.to(dev)
    rounders = [q for _, m in quant_modules(unit) for q, _ in m.weight_parts() if q.pending] if "rounding" in groups else []
    reg = phase.rounding_reg
    lr_host, beta_tab, on_tab = _schedules(phase, groups, bool(reg and rounders))
    lr_tab = {g: v.to(dev) for g, v in lr_host.items()}
    beta_tab, on_tab = beta_tab.to(dev), on_tab.to(dev)
    opts = {g: torch.optim.Adam(ps, lr=lr_tab[g][0].clone() if graph else float(lr_host[g][0]), capturable=graph)
            for g, ps in groups.items()}
    contexts = step_contexts(unit)
    gathers = [m for m in unit.modules() if isinstance(m, TimestepQuantizer)]
    layer_names = sorted(layer_target)
    layer_out: dict[str, torch.Tensor] = {}
    hooks = [unit.get_submodule(k).register_forward_hook(lambda m, a, o, k=k: layer_out.__setitem__(k, o))
             for k in layer_names]
    it = torch.zeros(1, dtype=torch.long, device=dev)
    losses = torch.zeros(phase.iters, device=dev)

    def at(tab: torch.Tensor) -> torch.Tensor:
        return tab.index_select(0, it).squeeze(0)

    def step() -> None:
        idx = at(idx_all)
        pick = lambda t: t.index_select(0, idx)  # noqa: E731
        batch_in = _map(d_inputs, pick)
        if d_fp is not None:
            batch_in = _mix(batch_in, _map(d_fp, pick), phase.qdrop_p, mix_gen)
        args, kwargs = batch_in
        with ExitStack() as stack:
            for c in contexts:
                stack.enter_context(c.using(pick(d_ts)))
            stack.enter_context(_dropping(unit, phase.act_drop_p, drop_gen))
            out = unit(*args, **kwargs)
        if layer_names:
            loss = phase.loss(out, pick(d_target), layer_out, {k: pick(d_layer[k]) for k in layer_names})
        else:
            loss = phase.loss(out, pick(d_target))
        if rounders and reg is not None:
            beta = at(beta_tab)
            loss = loss + at(on_tab) * (reg.weight * sum(q.regularizer(beta) for q in rounders))
        loss.backward()
        for g, o in opts.items():
            if graph:
                o.param_groups[0]["lr"].copy_(at(lr_tab[g]))
            o.step()
        for p in groups.get("act_steps", ()):  # step sizes stay positive
            p.data.clamp_(min=1e-8)
        losses.index_copy_(0, it, loss.detach().reshape(1).float())
        it.add_(1)

    def zero() -> None:
        for o in opts.values():
            o.zero_grad(set_to_none=True)

    for q in gathers:
        q.gather = True
    try:
        n_eager = min(warmup, phase.iters) if graph else phase.iters
        side = torch.cuda.Stream(dev) if graph else None
        if side is not None:
            side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side) if side is not None else ExitStack():
            for i in tqdm(range(n_eager), desc=desc, mininterval=10, leave=False, disable=graph):
                if not graph:
                    for g, o in opts.items():
                        o.param_groups[0]["lr"] = float(lr_host[g][i])
                zero()
                step()
        if side is not None:
            torch.cuda.current_stream(dev).wait_stream(side)
        if graph and phase.iters > n_eager:
            g = torch.cuda.CUDAGraph()
            for gen_ in (mix_gen, drop_gen):
                g.register_generator_state(gen_)
            zero()
            with torch.cuda.graph(g):
                step()
            for _ in tqdm(range(phase.iters - n_eager), desc=desc, mininterval=10, leave=False):
                g.replay()
    finally:
        for h in hooks:
            h.remove()
        for q in gathers:
            q.gather = False
    values = losses.tolist()  # the one host synchronisation of the unit
    if curve is not None:
        curve.extend(values)
    return values[-1] if values else float("nan")


def reconstruct(qmodel: nn.Module, fp_model: nn.Module, batches: Sequence[tuple], run: Callable, phase: Phase,
                device, units: Sequence[str], engine: str = "auto",
                curves: dict[str, list[float]] | None = None, capture_batch: int = 512) -> dict[str, float]:
    """Run ``phase`` over ``units`` in order; returns each unit's last loss. Learned rounding is
    baked into the weights unit by unit (later units see the final rounding of earlier ones).

    ``engine``: ``eager`` (the reference loop: a step per iteration from the host), ``resident``
    (the same step with the unit's data, index schedule, temperatures and learning rates on the
    device and no host synchronisation until the unit ends), ``graph`` (``resident`` captured once
    as a CUDA graph and replayed: CUDA only), ``auto`` (``graph`` on CUDA, else ``eager``).
    ``curves``: filled with every unit's loss at every iteration. ``capture_batch``: the batch size
    of the forward passes that capture a unit's inputs and targets for the device engines."""
    if engine == "auto":
        engine = "graph" if str(device).startswith("cuda") else "eager"
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES} or 'auto', got {engine!r}")
    if engine == "graph" and not str(device).startswith("cuda"):
        raise ValueError("the graph engine needs a CUDA device")
    losses = {}
    ts = _timesteps(batches)
    # The device engines capture each unit's inputs in large batches and keep them on the device
    # (the eager loop: the calibration batches as given, the captures on the CPU).
    cal = batches if engine == "eager" else merge_batches(batches, capture_batch)
    keep = None if engine == "eager" else torch.device(device)
    for k, u in enumerate(tqdm(units, desc=phase.name)):
        unit = qmodel.get_submodule(u)
        if not _has_work(unit, phase):
            continue
        layers = []
        if phase.loss_needs_layers():
            layers = [n for n, m in quant_modules(unit) if n and m.allow_weights]
            layers = phase.loss.layer_names(layers) if hasattr(phase.loss, "layer_names") else layers
        if phase.inputs == "fp":
            inputs, target, layer_target = capture(fp_model, u, cal, run, True, True, layers, keep)
            fp_inputs = None
        else:
            inputs, _, _ = capture(qmodel, u, cal, run, True, False, keep=keep)
            fp_inputs, target, layer_target = capture(fp_model, u, cal, run, phase.inputs == "qdrop", True, layers, keep)
        groups = _learned(unit, phase)
        with torch.enable_grad():
            optimise = _optimise if engine == "eager" else _optimise_resident
            extra = {} if engine == "eager" else {"graph": engine == "graph"}
            curve: list[float] = []
            losses[u] = optimise(unit, phase, groups, inputs, target, fp_inputs, layer_target, ts, phase.seed + k,
                                 device, desc=f"{phase.name} {u}", curve=curve, **extra)
            if curves is not None:
                curves[u] = curve
        for _, m in quant_modules(unit):
            m.bake_weights()
        log.info("%s %s: loss %.4g", phase.name, u, losses[u])
    return losses


def _has_work(unit: nn.Module, phase: Phase) -> bool:
    mods = [m for _, m in quant_modules(unit)]
    if "rounding" in phase.learn and any(m.quant_weights and m.weight_parts() for m in mods):
        return True
    return "act_steps" in phase.learn and bool(learnable_steps(unit))
