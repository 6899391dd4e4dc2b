"""The adapter contract: one small protocol every model adapter honours.

Images cross this boundary as float tensors ``[N, 3, H, W]`` with values in [0, 1] (RGB);
each adapter applies its own normalisation (:class:`InputSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """How a model expects its input: per-channel mean and std applied to [0, 1] pixels,
    and a fixed spatial size (``None``: any size, e.g. global-pooling CNNs)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    size: tuple[int, int] | None = None

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std


@dataclass(frozen=True)
class AdapterOptions:
    """What the user told us about the model (CLI flags), passed to every adapter."""

    arch: str | None = None
    num_classes: int | None = None
    classifier_layer: str | None = None
    unsafe_load: bool = False
    device: str = "auto"
    input_spec: InputSpec | None = None
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class WhiteBoxModel(Protocol):
    """A model whose penultimate features and final linear classifier we can read."""

    description: str  # e.g. "torch:resnet18"
    digest: str  # sha256 of the model file(s)
    num_classes: int
    feature_dim: int
    input_spec: InputSpec
    device: torch.device

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, feature_dim]`` (differentiable w.r.t. ``images``)."""
        ...

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The final linear layer as float64 ``W [num_classes, feature_dim]`` and ``b [num_classes]``."""
        ...


@runtime_checkable
class BlackBoxModel(Protocol):
    """A model we can only query for scores."""

    description: str
    digest: str
    num_classes: int

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, num_classes]``."""
        ...
