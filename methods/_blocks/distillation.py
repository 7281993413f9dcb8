"""Knowledge distillation: the soft-target loss and the two-stage teacher-student schedule.

Soft targets (Hinton, Vinyals, Dean, "Distilling the knowledge in a neural network",
NIPS-W 2015), with z_s the student's logits, z_t the teacher's and T the temperature:

    L_kd = T^2 KL(softmax(z_t / T) || softmax(z_s / T)),   averaged over the batch;

the T^2 factor keeps the gradient scale independent of T. KL(teacher || student) is
``KLDivLoss(log p_s, p_t)``.

Cross-modal distillation (IMDR's ``code/distill_method.py``, github.com/Medical-IMDR/IMDR:
a complete-modality teacher, a student that lacks a modality, the same samples): in the
student stage the training loop drops modalities from complete training pairs
(:mod:`bench.dropout`, ``uniform-count``); the student reads the dropped batch, the frozen
teacher its undropped view ``Batch.undropped``, in which those rows are complete. The
distillation terms run over the rows R where the teacher sees every modality and the
student lacks one, each row weighted as in a batch mean (sum over R divided by the batch
size B): a complete row the student also sees complete would be self-distillation, and a
row the protocol left incomplete is an input the teacher never trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.dropout import ModalityDropout
from bench.interface import Batch, Method, Stage

STUDENT_DROPOUT = ModalityDropout("uniform-count")


def soft_target_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T^2 KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    log_p_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
    return kl * temperature**2


def present_feature_mse(student: Tensor, teacher: Tensor, present: Tensor) -> Tensor:
    """Mean squared difference of (B, M, d) features over the present (sample, modality)."""
    per_modality = (student.float() - teacher.float()).pow(2).mean(dim=-1)  # (B, M)
    weight = present.to(per_modality.dtype)
    return (per_modality * weight).sum() / weight.sum().clamp(min=1.0)


def cross_modal_rows(student: Tensor, teacher: Tensor) -> Tensor:
    """(B,) bool: rows whose teacher presence (B, M) is complete and whose student presence
    lacks a modality."""
    return teacher.all(dim=1) & (teacher & ~student).any(dim=1)


def row_share(rows: Tensor) -> float:
    """|R| / B: scales a mean over the rows R to a batch mean with zeros elsewhere."""
    return float(rows.sum()) / max(rows.numel(), 1)


class TeacherStudent(Method):
    """A method with two networks, ``self.teacher`` and ``self.student``, trained in two stages.

    ``teacher`` (``teacher_epochs`` of the budget, complete samples only) trains the teacher;
    ``student`` (the full budget, every sample) trains the student while the teacher is
    frozen: no gradients, and eval mode (BatchNorm statistics, dropout) whatever the mode of
    the whole. With ``cross_modal`` the student stage declares :data:`STUDENT_DROPOUT` and the
    teacher reads the undropped view (:meth:`teacher_view`); without it, the teacher reads the
    student's own batch and every row distils. Inference uses the student alone.
    """

    teacher: nn.Module
    student: nn.Module
    teacher_epochs: float = 0.5
    cross_modal: bool = True

    @property
    def learner(self) -> nn.Module:
        """The network this stage trains."""
        return self.teacher if self.stage == "teacher" else self.student

    def stages(self) -> list[Stage]:
        dropout = STUDENT_DROPOUT if self.cross_modal else None
        return [
            Stage("teacher", epochs=self.teacher_epochs, complete_only=True),
            Stage("student", modality_dropout=dropout),
        ]

    def teacher_view(self, batch: Batch) -> tuple[Batch, Tensor]:
        """The batch the frozen teacher reads and the (B,) rows that distil."""
        if not self.cross_modal:
            return batch, torch.ones_like(batch.present[:, 0])
        view = batch.undropped if batch.undropped is not None else batch
        return view, cross_modal_rows(batch.present, view.present)

    def set_stage(self, name: str) -> None:
        super().set_stage(name)
        self.teacher.requires_grad_(name == "teacher")
        self.student.requires_grad_(name != "teacher")
        self.train(self.training)

    def train(self, mode: bool = True) -> TeacherStudent:
        super().train(mode)
        if self.stage != "teacher":
            self.teacher.eval()
        return self

    def inference_modules(self) -> list[nn.Module]:
        """The student alone: the teacher only provides training targets."""
        return [self.student]
