"""Parameter dataclasses of the distillation methods (torch-free). Defaults are the papers'
values (RDD's released code, repo cantbebetter2/RDD, which reuses progressive distillation's
recipe); each docstring says where a value comes from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PDParams:
    """Progressive distillation (Salimans & Ho, ICLR 2022) as in RDD's ``PD.py`` /
    ``config/CIFAR10_PD.txt``: every stage halves the number of sampling steps; the student starts
    as a copy of its teacher; the teacher's two DDIM steps t -> t' -> t'' give the target x~ that
    one student step t -> t'' must reach; loss mean(max(MSE_x0, MSE_eps)) per sample ("truncated
    SNR weighting"); Adam, lr 5e-5, no weight decay, cosine decay over the stage, no warm-up,
    gradient clipping at 1, no EMA, dropout 0 (the student runs without dropout); batch 128;
    ``iters`` 10k per stage and ``low_step_factor`` 2x for the 1- and 2-step students.

    ``clip_teacher_x0``: clip the teacher's x0 to [-1, 1] inside the two target steps (the
    released code does not; sampling clips). ``hflip``: random horizontal flips of the training
    images, as the base model was trained.
    """

    iters: int = 10_000
    low_step_factor: int = 2
    batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_teacher_x0: bool = False
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 500

    def stage_iters(self, student_steps: int) -> int:
        """Iterations of the stage that produces a ``student_steps``-step student."""
        return self.iters * (self.low_step_factor if student_steps <= 2 else 1)


@dataclass(frozen=True)
class RDDParams(PDParams):
    """RDD (relational diffusion distillation): PD's stages and targets, trained with losses in
    the space of a frozen feature network (``train_rdd.py`` / ``train_rdd.sh``,
    ``--loss_type mp2p --feature``, lr 5e-5, 20k steps at batch 128; the paper's network is a
    CIFAR-10 DenseNet-201, the default here the Fashion-MNIST classifier):

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

    iters: int = 20_000
    low_step_factor: int = 1
    temperature: float = 0.9
    feature_weight: float = 1.0
    intra_weight: float = 1.0
    intra_temperature: float = 1.0
    memory_weight: float = 0.1
    memory_size: int = 20_000
    memory_update: int = 128
    anchors: int = 4096
    contrast_temperature: float = 0.1
    kd_temperature: float = 1.0
    mse_weight: float = 0.0
