"""Small training loops used by the demo, the benchmarks and the tests to make suspect and
marking networks (the threat models of paper §5): a classifier from scratch, and a linear
classifier on frozen features."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from adapters.base import InputSpec


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """``uint8 [N, H, W]`` or ``[N, H, W, 3]`` to float ``[N, 3, H, W]`` in [0, 1]."""
    t = torch.from_numpy(np.array(images, copy=True)).float() / 255.0
    if t.dim() == 3:
        t = t.unsqueeze(1).expand(-1, 3, -1, -1)
    else:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()


def _random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    out = padded[:, :, dy : dy + h, dx : dx + w]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), out.flip(3), out)


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    input_spec: InputSpec | None = None,
    batch_size: int = 128,
    lr: float = 0.05,
    augment: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> nn.Module:
    """Train ``model`` (all layers) with SGD + momentum, one-cycle schedule, light augmentation.
    ``images`` are [0, 1] RGB; normalisation follows ``input_spec`` (ImageNet by default);
    ``labels`` are class indices or soft targets ``[N, C]`` (distillation)."""
    spec = input_spec or InputSpec()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps_per_epoch = max(1, (len(images) + batch_size - 1) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            index = order[start : start + batch_size]
            x = images[index]
            if augment:
                x = _random_crop_flip(x, generator)
            loss = nn.functional.cross_entropy(model(spec.normalize(x)), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if progress is not None:
            progress(epoch + 1, epochs)
    return model.eval()


def train_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, epochs: int = 100, seed: int = 0, weight_decay: float = 1e-4
) -> nn.Linear:
    """A linear classifier on frozen features (paper §5.1, "frozen features" threat),
    trained to convergence with full-batch L-BFGS on the cross-entropy."""
    torch.manual_seed(seed)
    linear = nn.Linear(features.shape[1], num_classes).double()
    x, y = features.double(), labels
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(linear(x), y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear.float().eval()


@torch.no_grad()
def accuracy(logits_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    correct = 0
    for start in range(0, len(images), batch_size):
        correct += int((logits_fn(images[start : start + batch_size]).argmax(1) == labels[start : start + batch_size]).sum())
    return correct / len(images)
