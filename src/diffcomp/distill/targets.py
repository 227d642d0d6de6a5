"""Progressive distillation's target and loss for an epsilon-prediction model, as pure functions.

Notation: z_t = a_t x + s_t eps with a_t = sqrt(alphas_cumprod[t]), s_t = sqrt(1 - alphas_cumprod[t]);
timestep -1 stands for the clean image (a = 1, s = 0). A DDIM step (eta 0) from t to u with an
x0 estimate x^ moves z_u = a_u x^ + s_u (z_t - a_t x^) / s_t.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..models.parameterization import coefficients, to_x0

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ddim_move(z: torch.Tensor, x0: torch.Tensor, a: torch.Tensor, s: torch.Tensor,
              a_to: torch.Tensor, s_to: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step from (z at a, s) with x0 estimate ``x0`` to (a_to, s_to)."""
    return (a_to * x0 + s_to * (z - a * x0) / s).to(z.dtype)


@torch.no_grad()
def pd_target(teacher: EpsFn, z: torch.Tensor, t: torch.Tensor, t_mid: torch.Tensor, t_end: torch.Tensor,
              alphas_cumprod: torch.Tensor, clip_x0: bool = False) -> torch.Tensor:
    """The x0 target x~ of progressive distillation (Salimans & Ho, Algorithm 2).

    The teacher takes two DDIM steps t -> t_mid -> t_end from ``z``; x~ is the x0 for which one
    DDIM step t -> t_end from ``z`` lands exactly where the teacher did:
    x~ = (z'' - (s'' / s) z) / (a'' - (s'' / s) a). With ``clip_x0`` the teacher's x0 estimates are
    clipped to [-1, 1] as the sampler clips them.
    """
    a, s = coefficients(alphas_cumprod, t)
    a1, s1 = coefficients(alphas_cumprod, t_mid)
    a2, s2 = coefficients(alphas_cumprod, t_end)
    z64 = z.double()
    x = to_x0(teacher(z, t).double(), z64, a, s, "eps")
    if clip_x0:
        x = x.clamp(-1, 1)
    z1 = ddim_move(z64, x, a, s, a1, s1)
    x1 = to_x0(teacher(z1.to(z.dtype), t_mid).double(), z1, a1, s1, "eps")
    if clip_x0:
        x1 = x1.clamp(-1, 1)
    z2 = ddim_move(z1, x1, a1, s1, a2, s2)
    ratio = s2 / s
    return ((z2 - ratio * z64) / (a2 - ratio * a)).to(z.dtype)


def pd_loss(eps_student: torch.Tensor, z: torch.Tensor, x_target: torch.Tensor,
            a: torch.Tensor, s: torch.Tensor, x0_student: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """mean over the batch of max(MSE_x0, MSE_eps) per sample (the truncated-SNR weighting:
    MSE_eps = SNR * MSE_x0 at fixed z, so this is max(1, SNR) * MSE_x0 whatever the student
    predicts); also returns the student's x0. ``x0_student``: the student's own x0 (a student
    predicting x or v), else it is computed from ``eps_student``."""
    a, s = a.to(z.dtype), s.to(z.dtype)
    x0 = (z - s * eps_student) / a if x0_student is None else x0_student
    eps_target = (z - a * x_target) / s
    mse_x0 = (x0 - x_target).pow(2).flatten(1).mean(1)
    mse_eps = (eps_student - eps_target).pow(2).flatten(1).mean(1)
    return torch.maximum(mse_x0, mse_eps).mean(), x0


def stage_times(num_train_timesteps: int, student_steps: int, k: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Model timesteps (t, t_mid, t_end) of student step ``k`` in 1..N (N = ``student_steps``):
    the teacher's 2N-step trailing DDIM grid g (``ddim_timesteps(T, 2N, "trailing")``, with
    g(0) = -1, the clean image) at j = 2k, 2k - 1, 2k - 2. Student step k spans exactly teacher
    steps 2k and 2k - 1."""
    from ..models.sampler import ddim_timesteps

    g = torch.tensor([-1] + ddim_timesteps(num_train_timesteps, 2 * student_steps, "trailing")[::-1])
    k = k.long()
    return g[2 * k], g[2 * k - 1], g[2 * k - 2]


class PDObjective(torch.nn.Module):
    """max(MSE_x0, MSE_eps) against the PD target: the loss of progressive distillation, which a
    method's objective may extend. Objectives return (loss, its parts detached; the parts stay on
    the device, so logging them costs no synchronisation per iteration), list their own trainable
    parameters (``trainable``), any non-tensor state a resumed stage needs (``extra_state``) and the
    random inputs of each step (``draw``), which the stage draws ahead and passes back."""

    def forward(self, eps_s, z, x_target, a, s, x0_s=None, draws=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, _ = pd_loss(eps_s, z, x_target, a, s, x0_s)
        return loss, {"mse": loss.detach()}

    def draw(self, n: int, batch: int, image_shape: tuple[int, ...], device) -> dict[str, torch.Tensor]:
        """``n`` steps' random inputs of the objective (on the CPU, stacked; passed back to
        ``forward`` as ``draws``, one step's slice each), drawn by the host so that a captured step
        reads them from the device: none for PD."""
        return {}

    def trainable(self) -> list[torch.nn.Parameter]:
        return []

    def extra_state(self):
        return None

    def load_extra_state(self, state) -> None:
        pass
