"""The marking optimisation (paper §3.3, eq. 3–5), on tensors.

For each image x of class c with carrier u = u_c, find x~ with ||x~ - x||_inf <= R minimising

    E_s[ -(phi(F(s, x~)) - phi(F(s, x)))^T u + lambda1 ||x~ - x||_2 + lambda2 ||phi(F(s, x~)) - phi(F(s, x))||_2 ]

in 0–255 pixel units (eq. 5). Departures from the paper's recipe, for speed at equal quality:
only the input gets gradients (the network is frozen); plain SGD is replaced by steepest-descent
steps in the L2 geometry of the PSNR budget (normalised gradients, optionally averaged with
momentum, step size shrinking linearly; Adam is available as ``optimizer="adam"``); and the
owner states the mark strength as a PSNR floor (``psnr``) that is enforced by projection
every step — on 28x28 images the paper's lambda1 alone gives ~31 dB, on 224x224 ~42 dB,
so a fixed lambda hides the image quality; a PSNR floor states it. Pixels are rounded to
integers every ``round_every`` steps and at the end (round, not truncate), and the final
rounding is scaled so the saved image still meets the floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from auditkit.marking import augment


@dataclass(frozen=True)
class MarkingParams:
    """Marking hyper-parameters; defaults are the paper's where it has them (R, lambdas, T)."""

    radius: float = 10.0  # L_inf bound R in 0–255 pixel units
    psnr: float = 42.0  # PSNR floor in dB (``0`` disables it: the paper's unconstrained recipe)
    steps: int = 40
    lr: float = 1.0  # "l2": first step = lr/2 of the L2 budget, shrinking linearly; "adam": step in pixel units
    lambda1: float = 0.0  # the paper uses 0.0005; with a PSNR floor the pixel penalty is redundant, and
    # in absolute pixel units it swamps the carrier term of markers with small features
    lambda2: float = 0.01
    round_every: int = 10  # T in the paper
    augment: str = "random"
    optimizer: str = "l2"  # "l2": normalised-gradient steps sized to the PSNR budget; "adam"
    momentum: float = 0.0  # "l2": average of past normalised gradients (smooths the augmentation noise)

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


@dataclass
class MarkedBatch:
    """Marked pixels (integers in 0..255, same shape as the input), per-image PSNR, and the
    feature shift (phi(x~) - phi(x))^T u measured without augmentation."""

    pixels: torch.Tensor
    psnr: np.ndarray
    shift: np.ndarray


FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def psnr_db(delta: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of an additive perturbation in 0–255 units, per image."""
    mse = delta.detach().double().pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, 10 * torch.log10(255.0**2 / mse.clamp_min(1e-300)), torch.full_like(mse, math.inf))


def _l2_budget(delta: torch.Tensor, psnr: float) -> float:
    """Largest ||delta||_2 with PSNR >= ``psnr`` for images of this shape."""
    return math.sqrt(delta[0].numel() * 255.0**2 * 10 ** (-psnr / 10))


def _project(delta: torch.Tensor, original: torch.Tensor, params: MarkingParams) -> torch.Tensor:
    """Project onto {PSNR >= floor} ∩ {||delta||_inf <= R} ∩ {0 <= x + delta <= 255}. The L2
    step comes first: the two clamps after it only shrink |delta|, so all three hold."""
    if params.psnr > 0:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = (_l2_budget(delta, params.psnr) / norms).clamp(max=1.0)
        delta = delta * scale.view(-1, *([1] * (delta.dim() - 1)))
    delta = delta.clamp(-params.radius, params.radius)
    return (original + delta).clamp(0.0, 255.0) - original


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norms, shaped to broadcast over ``t``."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def _final_rounding(delta: torch.Tensor, original: torch.Tensor, params: MarkingParams) -> torch.Tensor:
    """Round x + delta to integers; where rounding pushed PSNR under the floor, shrink delta
    by the largest factor in a fixed ladder for which the rounded image meets it."""
    rounded = torch.round(original + delta) - original
    if params.psnr <= 0:
        return rounded
    for factor in np.linspace(0.99, 0.0, 100):
        failing = psnr_db(rounded) < params.psnr
        if not bool(failing.any()):
            break
        retry = torch.round(original + delta * float(factor)) - original
        rounded = torch.where(failing.view(-1, *([1] * (delta.dim() - 1))), retry, rounded)
    return rounded


def autocast_for(device: torch.device) -> torch.dtype | None:
    """The autocast dtype marking uses on ``device``: bf16 on CUDA, none (float32) on CPU."""
    return torch.bfloat16 if device.type == "cuda" else None


def _to_rgb(pixels: torch.Tensor) -> torch.Tensor:
    """Network input in [0, 1], grayscale replicated to three channels."""
    x = pixels / 255.0
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def mark_batch(
    features: FeatureFn,
    images: torch.Tensor,
    carriers: torch.Tensor,
    params: MarkingParams,
    rngs: Sequence[np.random.Generator],
    *,
    autocast_dtype: torch.dtype | None = None,
) -> MarkedBatch:
    """Mark a batch of same-size images (eq. 5).

    Args:
        features: the marking network phi_0, mapping [0, 1] RGB images ``[N, 3, H, W]`` to
            features ``[N, d]``; its parameters should not require gradients.
        images: float pixels ``[N, C, H, W]`` in 0..255 (C = 1 or 3), on the model's device.
        carriers: ``[N, d]``, row i the carrier of image i's class.
        rngs: one generator per image, for the augmentations.
        autocast_dtype: e.g. ``torch.bfloat16`` on CUDA; ``None`` computes in float32.
    """
    original = images.detach().float()
    carriers = carriers.to(original.device, torch.float32)
    delta = torch.zeros_like(original, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=params.lr) if params.optimizer == "adam" else None
    budget = _l2_budget(original, params.psnr) if params.psnr > 0 else params.radius * math.sqrt(original[0].numel())
    device_type = original.device.type
    velocity = torch.zeros_like(original)

    def phi(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            return features(x).float()

    for step in range(1, params.steps + 1):
        aug = augment.draw_params(params.augment, rngs)
        with torch.no_grad():
            reference = phi(augment.apply(_to_rgb(original), aug))
        shifted = phi(augment.apply(_to_rgb(original + delta), aug)) - reference
        loss = (
            -(shifted * carriers).sum(1)
            + params.lambda1 * delta.flatten(1).norm(dim=1)
            + params.lambda2 * shifted.norm(dim=1)
        ).sum()
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                # steepest descent for the L2 geometry of the PSNR budget, step shrinking linearly
                size = params.lr * budget * (1.0 - (step - 1) / params.steps) / 2
                velocity.mul_(params.momentum).add_(grad / _norms(grad))
                delta -= size * velocity / _norms(velocity)
        with torch.no_grad():
            projected = _project(delta, original, params)
            if step % params.round_every == 0 and step < params.steps:
                projected = _project(torch.round(original + projected) - original, original, params)
            delta.copy_(projected)

    with torch.no_grad():
        final = _final_rounding(delta.detach(), original, params)
        marked = original + final
        shift = ((phi(_to_rgb(marked)) - phi(_to_rgb(original))) * carriers).sum(1)
    return MarkedBatch(marked.round().to(torch.uint8), psnr_db(final).cpu().numpy(), shift.cpu().numpy())
