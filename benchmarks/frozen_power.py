"""Detection power in the frozen-features threat (paper §5.1, Table 1 analogue) on real data.

    python benchmarks/frozen_power.py [--quick] [--data auto|fashion-mnist|generated]

Marker: small_resnet_w16 (d = 64) trained for 3 epochs on 10,000 vanilla Fashion-MNIST training
images (cached in benchmarks/cache/). Owner dataset: N test images. For each PSNR floor,
augmentation and fraction q, the selected images are marked (auditkit defaults otherwise), a
linear classifier is trained to convergence on the marker's frozen features of the release, and
the white-box test gives log10 p. Δacc is the change of that classifier's accuracy on 2,000
held-out vanilla images against one trained on the vanilla dataset. Clean rows: classifiers on
bootstrap samples of the vanilla dataset, each against an independent carrier set.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine
from adapters.pytorch import from_module
from auditkit.audit.whitebox import cosine_test
from auditkit.carriers import derive_carriers
from auditkit.marking.optimize import MarkingParams, mark_batch
from auditkit.nets import create_architecture
from auditkit.sampledata import fashion_mnist_available, generate_shapes, load_fashion_mnist
from auditkit.training import accuracy, to_tensor_images, train_classifier, train_linear_probe

CACHE = Path(__file__).parent / "cache"


def data(kind: str, n: int) -> tuple:
    if kind == "fashion-mnist" or (kind == "auto" and fashion_mnist_available()):
        train_x, train_y = load_fashion_mnist("train")
        test_x, test_y = load_fashion_mnist("test")
        return ("fashion-mnist", (train_x[:10000], train_y[:10000]), (test_x[:n], test_y[:n]),
                (train_x[50000:52000], train_y[50000:52000]))
    x, y = generate_shapes(1000, size=32, seed=1)
    owner = generate_shapes(n // 10, size=32, seed=2)
    held = generate_shapes(200, size=32, seed=3)
    return "generated", (x, y), owner, held


def marker_for(kind: str, train: tuple) -> torch.nn.Module:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"marker-{kind}.pt"
    model = create_architecture("small_resnet_w16", 10)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    train_classifier(model, to_tensor_images(train[0]), torch.from_numpy(train[1]), epochs=3, seed=0)
    torch.save(model.state_dict(), path)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 images and fewer rows")
    parser.add_argument("--data", default="auto")
    args = parser.parse_args()
    n = 2000 if args.quick else 5000
    fractions = (0.1, 0.4) if args.quick else (0.05, 0.1, 0.2, 0.4)
    floors = (42.0, 30.0)
    augments = ("none",) if args.quick else ("random", "none")
    started = time.perf_counter()

    kind, train, (owner_x, owner_y), (held_x, held_y) = data(args.data, n)
    marker = marker_for(kind, train)
    model = from_module(marker)
    images = to_tensor_images(owner_x) * 255
    labels = torch.from_numpy(owner_y)
    held_images, held_labels = to_tensor_images(held_x), torch.from_numpy(held_y)
    with torch.no_grad():
        vanilla_features = model.features(images / 255)
        held_features = model.features(held_images)
    base_probe = train_linear_probe(vanilla_features, labels, 10)
    base_acc = accuracy(base_probe, held_features, held_labels)
    print(f"machine: {machine()}; data {kind}, {n} images; marker small_resnet_w16 d={model.feature_dim}; "
          f"vanilla probe accuracy {base_acc:.3f}\n")
    print("| PSNR floor | augment | q | mean PSNR (dB) | Δacc | log10 p |")
    print("|---:|---|---:|---:|---:|---:|")
    for floor in floors:
        for aug in augments:
            for q in fractions:
                carriers = torch.from_numpy(derive_carriers(b"benchmark-owner-secret-000000000", f"{floor}-{aug}-{q}", 10, model.feature_dim))
                chosen = np.sort(np.random.default_rng(0).choice(n, int(q * n), replace=False))
                marked, psnrs = images.clone(), []
                for start in range(0, len(chosen), 64):
                    batch = chosen[start : start + 64]
                    result = mark_batch(model.features, images[batch], carriers[labels[batch]],
                                        MarkingParams(psnr=floor, augment=aug), [np.random.default_rng(int(i)) for i in batch])
                    marked[batch] = result.pixels.float()
                    psnrs.append(result.psnr)
                with torch.no_grad():
                    features = model.features(marked / 255)
                probe = train_linear_probe(features, labels, 10)
                test = cosine_test(probe.weight.detach().double().numpy(), carriers.numpy())
                delta_acc = accuracy(probe, held_features, held_labels) - base_acc
                print(f"| {floor:g} | {aug} | {q:g} | {np.concatenate(psnrs).mean():.1f} | {delta_acc:+.3f} | {test.log10_pvalue:.2f} |", flush=True)
    clean = []
    for seed in range(5):
        sample = np.random.default_rng(seed).choice(n, n, replace=True)
        probe = train_linear_probe(vanilla_features[sample], labels[sample], 10, seed=seed)
        carriers = derive_carriers(b"benchmark-owner-secret-000000000", f"clean-{seed}", 10, model.feature_dim)
        clean.append(cosine_test(probe.weight.detach().double().numpy(), carriers).log10_pvalue)
    print(f"\nclean models (5 bootstrap samples, independent carriers): log10 p = {', '.join(f'{v:.2f}' for v in clean)}")
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
