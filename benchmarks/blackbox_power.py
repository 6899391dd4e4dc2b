"""Black-box detection power against the fraction q marked (docs/blackbox.md).

    python benchmarks/blackbox_power.py [--quick] [--data auto|fashion-mnist|generated] [--psnr DB]

For each q a release of the owner's images is marked (marker small_resnet_w16, d = 64, PSNR
floor --psnr, no augmentation in eq. 5); the suspect is a linear classifier trained to
convergence on the marker's frozen features of the release (paper §5.1) and is seen only
through its logits, exactly as `auditkit audit --mode loss-gap|distill` sees an API. Each row
gives the white-box log10 p of the same suspect (for reference), the loss-gap rank test
(K controls, n images per class) and distillation into the default student (the marker's
features + a linear head fitted to the suspect's centred log-scores on vanilla images). The clean
row is a classifier trained on the vanilla images, against the same carriers.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch import nn

from _common import machine
from adapters import AdapterOptions
from adapters.base import InputSpec
from adapters.pytorch import TorchModel, from_module
from auditkit.audit.distill import logit_matching_head
from auditkit.audit.lossgap import cross_entropy, marked_set_scores, rank_test
from auditkit.audit.whitebox import cosine_test
from auditkit.carriers import derive_carriers
from auditkit.marking.optimize import MarkingParams, mark_batch
from auditkit.stats import fisher_combine, to_log10
from auditkit.training import train_linear_probe
from frozen_power import data, marker_for

SECRET = b"benchmark-owner-secret-000000000"


def distill_log10_p(suspect: TorchModel, marker: TorchModel, vanilla: torch.Tensor, carriers: np.ndarray) -> tuple[float, float]:
    """The distillation test on logits only (auditkit.audit.distill's default student, images in memory)."""
    with torch.no_grad():
        teacher = suspect.logits(vanilla).double()
        features = marker.features(vanilla).double()
    head = logit_matching_head(features, teacher)
    with torch.no_grad():
        agreement = float((head(features.float()).argmax(1) == teacher.argmax(1)).double().mean())
    return cosine_test(head.weight.detach().double().numpy(), carriers).log10_pvalue, agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 images and two fractions")
    parser.add_argument("--data", default="auto")
    parser.add_argument("--psnr", type=float, default=30.0)
    parser.add_argument("--controls", type=int, default=39)
    parser.add_argument("--per-class", type=int, default=5)
    args = parser.parse_args()
    n = 2000 if args.quick else 5000
    fractions = (0.2, 0.8) if args.quick else (0.1, 0.2, 0.4, 0.6, 0.8)
    started = time.perf_counter()
    kind, train, (owner_x, owner_y), _ = data(args.data, n)
    marker_module = marker_for(kind, train)
    marker = from_module(marker_module)
    images = torch.from_numpy(np.array(owner_x, copy=True)).float()
    images = images[:, None] if images.dim() == 3 else images.permute(0, 3, 1, 2)
    labels = torch.from_numpy(owner_y)
    params = MarkingParams(psnr=args.psnr, augment="none")
    print(f"machine: {machine()}; data {kind}, {n} images; marker small_resnet_w16 d={marker.feature_dim}; PSNR floor "
          f"{args.psnr:g} dB, no augmentation; loss gap: K={args.controls} controls, {args.per_class} images/class\n")
    print("| q | suspect | white-box log10 p | loss-gap log10 p | mean loss gap | effect (control SDs) | naive per-image z "
          "(invalid) | distill log10 p | student agreement |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for q in fractions:
        release_id = f"blackbox-{kind}-{q}"
        sets = [derive_carriers(SECRET, release_id, 10, marker.feature_dim)] + [
            derive_carriers(SECRET, release_id, 10, marker.feature_dim, purpose=f"control-{k}") for k in range(args.controls)]
        carriers = torch.from_numpy(sets[0])
        rng = np.random.default_rng(0)
        chosen = np.sort(np.concatenate([rng.choice(np.flatnonzero(owner_y == c), int(q * np.sum(owner_y == c)), replace=False)
                                         for c in range(10)]))
        release = images.clone()
        for start in range(0, len(chosen), 64):
            batch = chosen[start : start + 64]
            release[batch] = mark_batch(marker.features, images[batch], carriers[labels[batch]], params,
                                        [np.random.default_rng([0, int(i)]) for i in batch]).pixels.float()
        vanilla_index = np.setdiff1d(np.arange(n), chosen)
        vanilla = images[vanilla_index].expand(-1, 3, -1, -1) / 255
        tested = np.concatenate([chosen[owner_y[chosen] == c][: args.per_class] for c in range(10)])
        for name, train_images in (("trained on release", release), ("clean", images)):
            with torch.no_grad():
                feats = marker.features(train_images.expand(-1, 3, -1, -1) / 255)
            probe = train_linear_probe(feats, labels, 10)
            suspect_module = nn.Sequential(_Body(marker_module), probe)
            suspect = TorchModel(suspect_module, description="suspect", digest="-", options=AdapterOptions(input_spec=InputSpec(
                mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))))
            white = cosine_test(probe.weight.detach().double().numpy(), sets[0]).log10_pvalue
            scores = marked_set_scores(suspect, marker.features, [images[i].numpy() for i in tested], owner_y[tested].tolist(),
                                       sets, params, [(0, int(i)) for i in tested])
            gap_test = rank_test(cross_entropy(scores, owner_y[tested].tolist()), owner_y[tested])
            distilled, agreement = distill_log10_p(suspect, marker, vanilla, sets[0])
            gap = gap_test.gap
            naive_z = gap.mean() / (gap.std(ddof=1) / math.sqrt(len(gap)))  # treats images as independent: invalid
            print(f"| {q:g} | {name} | {white:.2f} | {to_log10(gap_test.log_pvalue):.2f} | {gap.mean():+.3f} | "
                  f"{gap_test.effect_size:+.2f} | {naive_z:+.1f} | {distilled:.2f} | {agreement:.3f} |", flush=True)
    floor = to_log10(fisher_combine([-math.log(args.controls + 1)] * 10))
    print(f"\nsmallest attainable loss-gap log10 p with K={args.controls} and 10 classes: {floor:.2f}; "
          f"total time {time.perf_counter() - started:.0f} s")


class _Body(nn.Module):
    """The marker's feature extractor (normalisation included), as the suspect's frozen body."""

    def __init__(self, marker_module: nn.Module) -> None:
        super().__init__()
        self.marker = from_module(marker_module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.marker.features(x)


if __name__ == "__main__":
    main()
