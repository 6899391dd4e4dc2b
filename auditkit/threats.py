"""Suspect models for the threat models of paper §5, built from a release's images: used by
the demo, the benchmarks and the tests (and useful to owners who want to check, before
publishing, how detectable their release is)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adapters.base import InputSpec
from adapters.pytorch import _find_linear, _set_submodule
from auditkit.imagefolder import load_image, scan_image_folder
from auditkit.nets import create_architecture
from auditkit.training import train_classifier, train_linear_probe


def load_image_folder(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of an ImageFolder tree as ``[N, 3, H, W]`` floats in [0, 1] (same size
    required) and their class indices."""
    scan = scan_image_folder(Path(root))
    pixels = []
    for entry in scan.images:
        image = load_image(Path(root) / entry.relpath).pixels
        pixels.append(np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image)
    images = torch.from_numpy(np.stack(pixels)) / 255.0
    return images, torch.tensor([e.class_index for e in scan.images])


@torch.no_grad()
def _features(body: nn.Module, images: torch.Tensor, spec: InputSpec, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([body(spec.normalize(images[i : i + batch_size])) for i in range(0, len(images), batch_size)])


def _body(model: nn.Module) -> tuple[nn.Module, str]:
    name, _ = _find_linear(model, None)
    body = copy.deepcopy(model).eval()
    _set_submodule(body, name, nn.Identity())
    return body, name


def frozen_features_suspect(marker: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0) -> nn.Module:
    """Paper §5.1, frozen features: the marker's feature extractor with a new linear
    classifier trained (to convergence) on ``images``."""
    body, name = _body(marker)
    probe = train_linear_probe(_features(body, images, InputSpec()), labels, int(labels.max()) + 1, seed=seed)
    suspect = copy.deepcopy(marker).eval()
    _set_submodule(suspect, name, probe)
    return suspect


def mixed_features_suspect(marker: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0) -> nn.Sequential:
    """The marker's features through a random invertible linear map (channels mixed and
    permuted), then a linear head trained on ``images``: the cosine test fails without
    alignment and succeeds with it (paper §3.4)."""
    body, _ = _body(marker)
    features = _features(body, images, InputSpec())
    dim = features.shape[1]
    generator = torch.Generator().manual_seed(seed)
    mixing = nn.Linear(dim, dim, bias=False)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    scale = torch.exp(torch.randn(dim, generator=generator) * 0.1)  # mildly anisotropic
    mixing.weight.data = (q * scale)[torch.randperm(dim, generator=generator)]
    head = train_linear_probe(mixing(features).detach(), labels, int(labels.max()) + 1, seed=seed)
    return nn.Sequential(body, mixing, head).eval()


def scratch_suspect(arch: str, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, seed: int = 0) -> nn.Module:
    """Paper §5.2: a network of architecture ``arch`` trained from scratch on ``images``."""
    torch.manual_seed(seed)
    model = create_architecture(arch, int(labels.max()) + 1)
    return train_classifier(model, images, labels, epochs=epochs, seed=seed)
