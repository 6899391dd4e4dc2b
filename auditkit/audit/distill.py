"""Distillation audit (paper §5.3 "Distillation" and Appendix A, Table 5, made a test with a
valid p-value).

The suspect API is queried on *vanilla* images only; a student learns to imitate its soft
outputs; the white-box test then runs on the student. Under H0 the suspect is independent of
the carriers, the vanilla images are too, hence so is the student, and the cosine test of
``docs/statistics.md`` is exact. Querying on marked images would be invalid: the student
would learn the marks from the owner's own queries, whatever the suspect did.

Default student: the marking network's own frozen features with a linear head fitted by least
squares to the suspect's centred log-scores ("logit matching", Ba & Caruana 2014). Centred
log-probabilities equal centred logits, so probabilities and logits give the same student, a
suspect that is linear in the marker's features is recovered exactly (up to the common row
that softmax ignores), and no alignment is needed. ``student_arch`` instead trains a whole
network on the soft outputs (Hinton et al., 2015), as paper Appendix A does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from adapters import AdapterOptions, BlackBoxModel, WhiteBoxModel
from adapters.base import InputSpec
from adapters.pytorch import TorchModel
from auditkit.audit.images import load_rgb_batch
from auditkit.training import train_classifier

QUERY_BATCH = 256
SCORE_RANGE = 30.0  # log-scores more than this below a row's top are clipped (underflowed probabilities)


@dataclass(frozen=True)
class DistillParams:
    student_arch: str | None = None  # None: the marker's frozen features + a linear head
    epochs: int = 10
    seed: int = 0


@dataclass
class Student:
    model: WhiteBoxModel
    images: int  # vanilla images the suspect was asked about
    agreement: float  # argmax agreement with the suspect on held-out queried images


class _FrozenFeatures(nn.Module):
    """The marker's feature map as a module (so the student is an ordinary torch model)."""

    def __init__(self, marker: WhiteBoxModel) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.marker.features(images).float().cpu()


def _batched(fn, images: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return torch.cat([fn(images[i : i + QUERY_BATCH]).double().cpu() for i in range(0, len(images), QUERY_BATCH)])


def logit_matching_head(features: torch.Tensor, log_scores: torch.Tensor) -> nn.Linear:
    """Least-squares linear head with ``W phi + b ≈ centred log-scores`` (float64)."""
    top = log_scores.max(1, keepdim=True).values
    targets = torch.maximum(log_scores, top - SCORE_RANGE)
    targets = targets - targets.mean(1, keepdim=True)
    x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(x, targets.double(), driver="gelsd").solution  # [d + 1, C]
    head = nn.Linear(features.shape[1], log_scores.shape[1])
    with torch.no_grad():
        head.weight.copy_(solution[:-1].T)
        head.bias.copy_(solution[-1])
    return head.eval()


def distill(model: BlackBoxModel, marker: WhiteBoxModel, paths: list[Path], params: DistillParams) -> Student:
    """Query ``model`` on the vanilla images at ``paths`` and train a student on its outputs."""
    images = load_rgb_batch(paths)
    teacher = _batched(model.logits, images)
    targets = torch.softmax(teacher, dim=1)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(params.seed))
    held = order[: max(1, len(order) // 5)]
    train = order[len(held) :]
    if params.student_arch is None:
        features = _batched(marker.features, images)
        head = logit_matching_head(features[train], teacher[train])
        with torch.no_grad():
            predicted = head(features[held].float()).argmax(1)
        student_module: nn.Module = nn.Sequential(_FrozenFeatures(marker), head)
        spec = InputSpec(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # the marker normalises inside
    else:
        from auditkit.nets import create_architecture

        torch.manual_seed(params.seed)
        student_module = create_architecture(params.student_arch, targets.shape[1])
        spec = InputSpec()
        train_classifier(student_module, images[train], targets[train].float(), epochs=params.epochs, seed=params.seed,
                         input_spec=spec)
        with torch.no_grad():
            predicted = student_module(spec.normalize(images[held])).argmax(1)
    agreement = float((predicted == teacher[held].argmax(1)).double().mean())
    student = TorchModel(student_module, description=f"student of {model.description}", digest=model.digest,
                         options=AdapterOptions(device="cpu", input_spec=spec))
    return Student(student, len(images), agreement)


__all__ = ["DistillParams", "Student", "distill"]
