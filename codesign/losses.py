"""The distillation loss.

``loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``

with teacher logits t, student logits s, labels y, temperature T (Hinton et al., 2015: the T^2
keeps the soft term's gradient scale independent of T). ``alpha = 0`` is plain cross-entropy
on the labels (the ``labels`` student).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import check_range


class KDTargets:
    """Teacher targets prepared once for many loss evaluations on the same rows.

    Args:
        teacher_logits: ``[n, C]`` or None (labels only).
        labels: ``[n]`` int64.
        temperature: T > 0.
        alpha: weight of the soft term in [0, 1].
    """

    def __init__(self, teacher_logits: torch.Tensor | None, labels: torch.Tensor, temperature: float, alpha: float) -> None:
        check_range("temperature", temperature, 1e-3, 1e3)
        check_range("alpha", alpha, 0.0, 1.0)
        if teacher_logits is None and alpha > 0:
            raise ValueError("alpha > 0 needs teacher logits")
        self.labels = labels
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        if alpha > 0:
            log_p = F.log_softmax(teacher_logits.float() / temperature, dim=1)
            self.soft = log_p.exp()
            # The teacher's entropy: a constant that turns cross-entropy into KL exactly.
            self.entropy = -(self.soft * log_p).sum(1)
        else:
            self.soft = None
            self.entropy = None

    def subset(self, idx: torch.Tensor) -> "KDTargets":
        """The same targets restricted to rows ``idx`` (for minibatches)."""
        out = object.__new__(KDTargets)
        out.labels = self.labels[idx]
        out.temperature, out.alpha = self.temperature, self.alpha
        out.soft = None if self.soft is None else self.soft[idx]
        out.entropy = None if self.entropy is None else self.entropy[idx]
        return out


def kd_loss(student_logits: torch.Tensor, targets: KDTargets) -> torch.Tensor:
    """Mean distillation loss of ``student_logits`` against prepared ``targets``."""
    T, a = targets.temperature, targets.alpha
    loss = student_logits.new_zeros(())
    if a > 0:
        log_q = F.log_softmax(student_logits / T, dim=1)
        kl = -(targets.soft * log_q).sum(1) - targets.entropy
        loss = loss + a * T * T * kl.mean()
    if a < 1:
        loss = loss + (1 - a) * F.cross_entropy(student_logits, targets.labels)
    return loss
