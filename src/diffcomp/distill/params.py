"""The stage recipe every progressive-distillation method shares (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from ..typedconfig import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt


@dataclass(frozen=True)
class StageParams:
    """A progressive-distillation stage, defaults as in RDD's released ``PD.py`` /
    ``config/CIFAR10_PD.txt`` (which follows Salimans & Ho): every
    stage halves the number of sampling steps; the student starts as a copy of its teacher; the
    teacher's two DDIM steps t -> t' -> t'' give the target x~ that one student step t -> t'' must
    reach; loss mean(max(MSE_x0, MSE_eps)) per sample ("truncated SNR weighting"); Adam, lr 5e-5,
    no weight decay, cosine decay over the stage, no warm-up, gradient clipping at 1, no EMA,
    dropout 0 (the student runs without dropout); batch 128; ``iters`` 10k per stage and
    ``low_step_factor`` 2x for the 1- and 2-step students.

    ``clip_teacher_x0``: clip the teacher's x0 to [-1, 1] inside the two target steps (the
    released code does not; sampling clips). ``hflip``: random horizontal flips of the training
    images, as the base model was trained.

    ``parameterization``: what the student predicts, ``eps``, ``x`` or ``v`` (saved as its
    scheduler's ``prediction_type``; the teacher keeps its own). The loss is the same truncated-SNR
    weighting for all three; they differ in how an output error becomes an x0 error: x0 =
    (z - s eps) / a multiplies an eps error by s / a (157 at t = 999 of the default schedule),
    x0 = a z - s v by at most 1. A student whose parameterisation differs from its teacher's
    starts from the teacher's weights with the output layer refitted by least squares
    (``refit_output``, on ``refit_samples`` inputs of the stage's timesteps) to the prediction
    the teacher implies.

    Diagnostics (ours, recorded in the student's provenance and the log): ``probe_per_step``
    samples at every student step give the loss and gradient norm of the top step against the
    rest at the start and the end of the stage, and every ``probe_every`` iterations (0: start
    and end only); ``match_noises`` noises give the teacher-match error (N-step student vs
    2N-step teacher) at the start and the end. 0 switches either off.
    """

    iters: PositiveInt = 10_000
    low_step_factor: PositiveInt = 2
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 5e-5
    weight_decay: NonNegativeFloat = 0.0
    grad_clip: PositiveFloat = 1.0
    clip_teacher_x0: bool = False
    hflip: bool = True
    seed: NonNegativeInt = 0
    checkpoint_every: PositiveInt = 500
    parameterization: str = "v"
    refit_output: bool = True
    refit_samples: PositiveInt = 256
    probe_per_step: NonNegativeInt = 8
    probe_every: NonNegativeInt = 0
    match_noises: NonNegativeInt = 64

    def __post_init__(self):
        if self.parameterization not in ("eps", "x", "v"):
            raise ValueError(f"parameterization must be 'eps', 'x' or 'v', got {self.parameterization!r}")

    def stage_iters(self, student_steps: int) -> int:
        """Iterations of the stage that produces a ``student_steps``-step student."""
        return self.iters * (self.low_step_factor if student_steps <= 2 else 1)
