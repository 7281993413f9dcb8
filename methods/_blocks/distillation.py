"""Knowledge distillation: the soft-target loss and the two-stage teacher-student schedule.

Soft targets (Hinton, Vinyals, Dean, "Distilling the knowledge in a neural network",
NIPS-W 2015), with z_s the student's logits, z_t the teacher's and T the temperature:

    L_kd = T^2 KL(softmax(z_t / T) || softmax(z_s / T)),   averaged over the batch;

the T^2 factor keeps the gradient scale independent of T. KL(teacher || student) is
``KLDivLoss(log p_s, p_t)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bench.interface import Method, Stage


def soft_target_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T^2 KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    log_p_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
    return kl * temperature**2


class TeacherStudent(Method):
    """A method with two networks, ``self.teacher`` and ``self.student``, trained in two stages.

    ``teacher`` (``teacher_epochs`` of the budget, complete samples only) trains the teacher;
    ``student`` (the full budget, every sample) trains the student while the teacher is
    frozen: no gradients, and eval mode (BatchNorm statistics, dropout) whatever the mode of
    the whole. Inference uses the student alone.
    """

    teacher: nn.Module
    student: nn.Module
    teacher_epochs: float = 0.5

    @property
    def learner(self) -> nn.Module:
        """The network this stage trains."""
        return self.teacher if self.stage == "teacher" else self.student

    def stages(self) -> list[Stage]:
        return [Stage("teacher", epochs=self.teacher_epochs, complete_only=True), Stage("student")]

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
