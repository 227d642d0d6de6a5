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

    def stage_iters(self, student_steps: int) -> int:
        """Iterations of the stage that produces a ``student_steps``-step student."""
        return self.iters * (self.low_step_factor if student_steps <= 2 else 1)
