"""Architectures by name: torchvision's classification models plus small built-in networks
for small images (the demo, the tests, Fashion-MNIST-sized data).

``create_architecture(name, num_classes)`` is the single entry point; an unknown name gets
an error that lists where valid names come from.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from auditkit.errors import AuditkitError


class SmallResNet(nn.Module):
    """A compact residual CNN for 28–64 px images: three stages (width w, 2w, 4w), global
    average pooling, then ``fc``. The features (input of ``fc``) have 4w dimensions."""

    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            )

        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(block(width, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class SmallConvNet(nn.Module):
    """A plain 3-layer CNN (no residuals, no batch norm): a *different* architecture from
    :class:`SmallResNet` for cross-architecture experiments. Features have 128 dimensions."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


BUILTIN: dict[str, Callable[[int], nn.Module]] = {
    "small_resnet": lambda num_classes: SmallResNet(num_classes),
    "small_resnet_w16": lambda num_classes: SmallResNet(num_classes, width=16),
    "small_convnet": lambda num_classes: SmallConvNet(num_classes),
}


def create_architecture(name: str, num_classes: int) -> nn.Module:
    """An untrained model of architecture ``name`` with ``num_classes`` outputs: a built-in
    name (``small_resnet``, ``small_resnet_w16``, ``small_convnet``) or any torchvision
    classification model (``resnet18``, ``mobilenet_v2``, ...)."""
    if name in BUILTIN:
        return BUILTIN[name](num_classes)
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise AuditkitError(
            f"unknown architecture {name!r}; use one of {', '.join(sorted(BUILTIN))} or a torchvision "
            "classification model name (python -c 'import torchvision; print(torchvision.models.list_models())')"
        )
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
