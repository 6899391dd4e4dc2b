"""Can the mark survive training from scratch at small scale? Variants of the marking recipe
against a from-scratch suspect at one fraction q (docs/results.md, "Beating the paper's recipe").

    python benchmarks/scratch_transfer.py [--quick] [--fraction Q] [--variants a,b] [--every-image]

Same set-up as benchmarks/reproduce.py (Fashion-MNIST, the owner's 6,000 images, small_resnet
suspects trained from scratch for 8 epochs with random crops and flips). Variants:

- paper: marker small_resnet (d = 128), random-resized-crop augmentation in eq. 5 (the paper's);
- shift: the same marker, translation + flip augmentation in eq. 5 (what the suspect's training
  actually applies to small images);
- ensemble: three small_resnets (training seeds 0, 1, 2) as one marker with concatenated features
  (d = 384) and one carrier uniform on that sphere, shift augmentation;
- mobilenet: ImageNet MobileNetV2 (d = 1280) through 64x64 upsampling, shift augmentation.

Each variant marks the same images at the same PSNR floor; each suspect and two clean models
(trained on the vanilla images) get three valid tests: the white-box cosine test with the
paper's alignment (eq. 6, on vanilla images), the cosine test with the alignment fitted on mark
responses (vanilla images marked along fresh random directions: how the suspect's features
respond to marks), and the black-box loss-gap rank test (K = 19) on 5 released images per class
and (``--every-image``) on every released image. All are valid under H0 for any marking recipe; the clean column shows it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import machine
from auditkit.audit.lossgap import cross_entropy, marked_set_scores, rank_test
from auditkit.carriers import derive_carriers
from auditkit.audit.whitebox import cosine_test
from auditkit.marking.optimize import MarkingParams, mark_batch
from auditkit.stats import to_log10
from reproduce import (SECRET, Release, Setup, _rgb, as_model, held_accuracy, marker, release, scratch_suspect, setup,
                       whitebox_log10_p)

VARIANTS = {
    "paper": ("small_resnet", "random"),
    "shift": ("small_resnet", "shift"),
    "ensemble": ("small_resnet+small_resnet@1+small_resnet@2", "shift"),
    "mobilenet": ("mobilenet_v2", "shift"),
}


class SideBySide:
    """Several black-box models queried as one: their logits side by side, so one marking pass
    serves them all (the marked images do not depend on the model)."""

    def __init__(self, models: list) -> None:  # type: ignore[type-arg]
        self.models = models

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.logits(images) for m in self.models], dim=1)


def loss_gap_log10_ps(s: Setup, kind: str, rel: Release, params: MarkingParams, models: list, q: float,
                      per_class: int | None, controls: int = 19) -> list[float]:  # type: ignore[type-arg]
    """The loss-gap rank test on ``per_class`` released images of each class (all when None),
    for each model."""
    features = marker(s, kind)[1].features
    chosen = rel.chosen(q)
    tested = np.concatenate([chosen[s.labels.numpy()[chosen] == c][:per_class] for c in range(10)])
    classes = s.labels.numpy()[tested].tolist()
    control_sets = [derive_carriers(SECRET, f"{kind}-control-{k}", 10, rel.carriers.shape[1]) for k in range(controls)]
    scores = marked_set_scores(SideBySide(models), features, [s.owner[i].numpy() for i in tested], classes,
                               [rel.carriers, *control_sets], params, [(0, int(i)) for i in tested], batch_size=64)
    n = scores.shape[2] // len(models)
    return [to_log10(rank_test(cross_entropy(scores[:, :, k * n : (k + 1) * n], classes), np.asarray(classes)).log_pvalue)
            for k in range(len(models))]


def mark_response_log10_ps(s: Setup, kind: str, rel: Release, params: MarkingParams, models: list,
                           pairs: int) -> list[float]:  # type: ignore[type-arg]
    """The cosine test with the alignment fitted on *mark responses* instead of vanilla images,
    for each model: vanilla images are marked along fresh random directions (never released;
    marked once, for all models), and Δphi_t ≈ M Δphi_0 is fitted on the pairs, so M says how
    the suspect's features respond to marks. Under H0 M depends only on the suspect, vanilla
    images and independent random directions, so the cosine test of rows of W·M against the
    release's carriers stays exact."""
    features = marker(s, kind)[1].features
    dim = rel.carriers.shape[1]
    pairs = min(pairs, len(s.vanilla))  # each vanilla image once; still overdetermined (> d) for every marker here
    pixels = (s.vanilla[:pairs, :1] * 255).round()
    rng = np.random.default_rng(12345)
    directions = rng.standard_normal((pairs, dim))
    directions = torch.from_numpy(directions / np.linalg.norm(directions, axis=1, keepdims=True)).float()
    deltas0: list[torch.Tensor] = []
    deltast: list[list[torch.Tensor]] = [[] for _ in models]
    for start in range(0, pairs, 64):
        part = slice(start, min(start + 64, pairs))
        marked = mark_batch(features, pixels[part], directions[part], params,
                            [np.random.default_rng([7, i]) for i in range(part.start, part.stop)]).pixels.float()
        with torch.no_grad():
            deltas0.append((features(_rgb(marked)) - features(_rgb(pixels[part]))).double())
            for k, model in enumerate(models):
                deltast[k].append((model.features(_rgb(marked)) - model.features(_rgb(pixels[part]))).double())
    d0 = torch.cat(deltas0).numpy()
    values = []
    for model, deltas in zip(models, deltast):
        matrix = np.linalg.lstsq(d0, torch.cat(deltas).numpy(), rcond=None)[0].T  # [d_t, d_0]
        values.append(cosine_test(model.classifier()[0] @ matrix, rel.carriers).log10_pvalue)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--psnr", type=float, default=30.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--every-image", action="store_true",
                        help="also the loss-gap test on every released image (K = 19 markings of each: slow for large markers)")
    args = parser.parse_args()
    started = time.perf_counter()
    s = setup(args.quick)
    q = args.fraction
    clean = [as_model(scratch_suspect(s, "small_resnet", s.owner, "clean", seed), False) for seed in range(2)]
    print(f"machine: {machine()}; Fashion-MNIST, {len(s.owner)} owner images, q = {q:g}, PSNR floor {args.psnr:g} dB; "
          f"small_resnet suspects from scratch, {s.epochs} epochs\n")
    print("| variant | marker d | mean PSNR | statistic | suspect log10 p | clean log10 p (2 seeds) |")
    print("|---|---:|---:|---|---:|---:|")
    base = None
    for name in args.variants.split(","):
        kind, aug = VARIANTS[name]
        params = MarkingParams(psnr=args.psnr, augment=aug)
        rel = release(s, kind, aug, args.psnr, top=q)
        suspect = as_model(scratch_suspect(s, "small_resnet", rel.at(q), f"{kind}-{aug}-{args.psnr:g}-{q:g}", 0), False)
        base = base if base is not None else held_accuracy(s, clean[0])
        models = [suspect, *clean]
        statistics = {
            "cosine, alignment on vanilla images (paper)": lambda: [whitebox_log10_p(s, kind, m, rel.carriers) for m in models],
            "cosine, alignment on mark responses": lambda: mark_response_log10_ps(
                s, kind, rel, params, models, 4 * rel.carriers.shape[1]),
            "loss-gap rank test (K = 19, 5 images per class)": lambda: loss_gap_log10_ps(s, kind, rel, params, models, q, 5),
        }
        if args.every_image:
            statistics["loss-gap rank test (K = 19, every released image)"] = lambda: loss_gap_log10_ps(
                s, kind, rel, params, models, q, None)
        for label, statistic in statistics.items():
            values = statistic()
            print(f"| {name} | {rel.carriers.shape[1]} | {rel.mean_psnr(q):.1f} | {label} | {values[0]:.2f} | "
                  f"{', '.join(f'{v:.2f}' for v in values[1:])} |", flush=True)
        print(f"| {name} | | | suspect Δacc | {held_accuracy(s, suspect) - base:+.3f} | |", flush=True)
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
