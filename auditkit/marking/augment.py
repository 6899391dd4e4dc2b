"""Differentiable augmentations F(s, x) for eq. 5 (paper §3.3).

A random-resized-crop + horizontal flip is one affine map per image, applied with
``affine_grid``/``grid_sample`` so gradients flow back to the pixels. Parameters ``s`` are
drawn per image from that image's own generator, so an image's trajectory does not depend
on which other images share its batch (``--resume`` reproduces an uninterrupted run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTATIONS = ("random", "shift", "center", "none")
CROP_SCALE = (0.25, 1.0)  # fraction of the image area kept by a random crop
CROP_RATIO = (3 / 4, 4 / 3)
CENTER_FRACTION = 0.875  # 224 / 256, torchvision's classic centre crop
SHIFT_FRACTION = 1 / 16  # "shift": translations up to 1/16 of the side (2 px at 32 px), the small-image recipe


def draw_params(kind: str, rngs: Sequence[np.random.Generator]) -> np.ndarray | None:
    """One row ``[width, height, cx, cy, flip]`` per image (normalised coordinates), or
    ``None`` for the identity. ``random``: random-resized-crop + flip (ImageNet training, the
    paper's choice); ``shift``: translation + flip (padded random crops, the usual recipe for
    small images); ``center``: a fixed centre crop."""
    if kind == "none":
        return None
    if kind == "center":
        return np.tile([CENTER_FRACTION, CENTER_FRACTION, 0.0, 0.0, 1.0], (len(rngs), 1))
    if kind == "shift":
        span = 2 * SHIFT_FRACTION  # normalised coordinates run over [-1, 1]
        return np.asarray([[1.0, 1.0, rng.uniform(-span, span), rng.uniform(-span, span), -1.0 if rng.random() < 0.5 else 1.0]
                           for rng in rngs])
    if kind != "random":
        raise ValueError(f"unknown augmentation {kind!r}; use one of {AUGMENTATIONS}")
    rows = []
    for rng in rngs:
        area = rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        width, height = min(1.0, math.sqrt(area * ratio)), min(1.0, math.sqrt(area / ratio))
        cx, cy = rng.uniform(-(1 - width), 1 - width), rng.uniform(-(1 - height), 1 - height)
        flip = -1.0 if rng.random() < 0.5 else 1.0
        rows.append([width, height, cx, cy, flip])
    return np.asarray(rows)


def apply(images: torch.Tensor, params: np.ndarray | None) -> torch.Tensor:
    """Apply per-image crops/flips to ``images [N, C, H, W]``, keeping the spatial size."""
    if params is None:
        return images
    p = torch.as_tensor(params, dtype=images.dtype, device=images.device)
    theta = torch.zeros(images.shape[0], 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = p[:, 0] * p[:, 4]
    theta[:, 0, 2] = p[:, 2]
    theta[:, 1, 1] = p[:, 1]
    theta[:, 1, 2] = p[:, 3]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
