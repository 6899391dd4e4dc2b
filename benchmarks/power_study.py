"""Power study: how log10 p of the frozen-features test scales with the number of classes C,
the marker's feature dimension d, the fraction q and the mark strength (docs/results.md).

    python benchmarks/power_study.py synthetic [--quick]
    python benchmarks/power_study.py plan [--quick]

``synthetic`` (labelled synthetic: no images): C Gaussian classes in R^d (class means of norm
``separation`` = 1 times the noise scale, isotropic unit noise, n images per class); a fraction q of
each class gets the mark of paper §4 in feature space, ``phi + δ u_c``, where δ is the mark
strength in units of the noise; a linear classifier is trained to convergence (the
frozen-features threat) and tested. Median over 3 carrier draws.

``plan`` (real images): ``auditkit plan``'s simulation on Fashion-MNIST for the markers of
benchmarks/reproduce.py (small_resnet_w16 d = 64, small_resnet d = 128, ImageNet MobileNetV2
d = 1280) at two PSNR floors, no augmentation, to set beside the measured Table 1 rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine
from auditkit.audit.whitebox import cosine_test
from auditkit.training import train_linear_probe


def synthetic_log10_p(classes: int, dim: int, q: float, strength: float, per_class: int, seed: int,
                      separation: float = 1.0) -> float:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, dim))
    means *= separation / np.linalg.norm(means, axis=1, keepdims=True)
    carriers = rng.standard_normal((classes, dim))
    carriers /= np.linalg.norm(carriers, axis=1, keepdims=True)
    labels = np.repeat(np.arange(classes), per_class)
    features = means[labels] + rng.standard_normal((len(labels), dim))
    marked = rng.random(len(labels)) < q
    features[marked] += strength * carriers[labels[marked]]
    probe = train_linear_probe(torch.from_numpy(features), torch.from_numpy(labels), classes, seed=seed)
    return cosine_test(probe.weight.detach().double().numpy(), carriers).log10_pvalue


def synthetic(quick: bool) -> None:
    per_class = 200 if quick else 500
    base = {"classes": 10, "dim": 128, "q": 0.1, "strength": 2.0}
    sweeps = {
        "classes": (10, 100) if quick else (10, 30, 100, 300),
        "dim": (32, 128, 512) if quick else (32, 64, 128, 256, 512, 1024),
        "q": (0.02, 0.1) if quick else (0.01, 0.02, 0.05, 0.1, 0.2),
        "strength": (1.0, 4.0) if quick else (0.5, 1.0, 2.0, 4.0, 8.0),
    }
    print(f"synthetic Gaussian classes (class means of norm 1, unit noise: hard classes), {per_class} images per class; "
          f"default C = 10, d = 128, q = 0.1, δ = 2; each row varies one; median log10 p over 3 draws\n")
    for name, values in sweeps.items():
        print(f"| {name} | " + " | ".join(f"{v:g}" for v in values) + " |")
        print("|---|" + "---:|" * len(values))
        row = []
        for value in values:
            config = base | {name: value}
            row.append(np.median([synthetic_log10_p(int(config["classes"]), int(config["dim"]), float(config["q"]),
                                                    float(config["strength"]), per_class, seed) for seed in range(3)]))
        print("| log10 p | " + " | ".join(f"{v:.2f}" for v in row) + " |\n", flush=True)


def plan_rows(quick: bool) -> None:
    from auditkit.datasets import add_dataset
    from auditkit.marking.optimize import MarkingParams
    from auditkit.owner import init_owner
    from auditkit.planning import PlanRequest, plan_release
    from auditkit.registry.store import open_registry
    from auditkit.sampledata import FASHION_MNIST_CLASSES, load_fashion_mnist, write_image_folder
    from reproduce import marker, setup

    s = setup(quick)
    x, y = load_fashion_mnist("train")
    n = len(s.owner)
    fractions = (0.05, 0.2) if quick else (0.01, 0.02, 0.05, 0.1, 0.2)
    with tempfile.TemporaryDirectory() as tmp:
        source = write_image_folder(Path(tmp) / "owner", x[20000 : 20000 + n], y[20000 : 20000 + n], list(FASHION_MNIST_CLASSES))
        url = f"sqlite:///{tmp}/registry.db"
        init_owner(url, Path(tmp) / "keys")
        registry = open_registry(url)
        add_dataset(registry, "fmnist", source)
        print(f"plan on Fashion-MNIST, {n} owner images (those of benchmarks/reproduce.py), no augmentation in eq. 5 "
              "(compare Table 1's 'no augmentation' rows), 3 draws (median)\n")
        print("| marker | d | PSNR floor | " + " | ".join(f"q = {q:g}" for q in fractions) + " | pilot shift / class spread |")
        print("|---|---:|---:|" + "---:|" * (len(fractions) + 1))
        for kind in ("small_resnet_w16", "small_resnet", "mobilenet_v2"):
            model = marker(s, kind)[1]
            for psnr in (42.0, 30.0):
                result = plan_release(registry, model, PlanRequest("fmnist", fractions, MarkingParams(psnr=psnr, augment="none"),
                                                                   images=n))
                print(f"| {kind} | {result.dim} | {psnr:g} | " + " | ".join(f"{row.median:.2f}" for row in result.rows)
                      + f" | {result.shift_ratio:.2f} |", flush=True)
        registry.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["synthetic", "plan"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"machine: {machine()}\n")
    synthetic(args.quick) if args.part == "synthetic" else plan_rows(args.quick)
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
