"""Black-box loss-gap test with an exact, valid p-value (goes past paper §3.5, §5.3 and
Appendix B, where the loss gap has "no rigorous hypothesis testing").

The owner holds the originals and the secret. For each class ``c`` auditkit builds K control
sets: the same original images marked by the *same deterministic procedure* (same marking
parameters, same per-image augmentation seeds) but with control carriers ``v_{k,c}`` that were
never released (derived from the master secret with purpose ``control-k``). The released set
is re-marked the same way at audit time, so all K + 1 sets come from one procedure.

Null hypothesis H0: the suspect never saw the release. Then the K + 1 carriers of class c are
i.i.d. uniform and independent of the suspect, so the K + 1 per-class mean losses are
exchangeable, and the rank of the released set's loss among them is uniform:
``p_c = #{j : L_j <= L_released} / (K + 1)`` satisfies P(p_c <= t) <= t (ties count against
us). Carriers of different classes are independent, so the C per-class p-values are
independent, and Fisher's combination of these super-uniform p-values is valid (conservative).
Aggregating per class is what makes images of one class, which share a carrier, harmless: the
test never treats them as independent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adapters import BlackBoxModel
from auditkit.carriers import derive_carriers
from auditkit.fsutil import sha256_bytes
from auditkit.imagefolder import LoadedImage, encode_png, load_image, scan_image_folder
from auditkit.marking.optimize import FeatureFn, MarkingParams, autocast_for, mark_batch
from auditkit.registry.models import MarkedItem, Release
from auditkit.stats import fisher_combine, to_log10


@dataclass(frozen=True)
class LossGapParams:
    controls: int = 39  # K: per-class p-values are multiples of 1 / (K + 1)
    images_per_class: int = 5  # few: images of a class share a carrier, so more images add little
    seed: int = 0


@dataclass(frozen=True)
class LossGapResult:
    """Per-class rank p-values (natural logs) and their Fisher combination.

    ``losses`` is ``[K + 1, N]``: row 0 the released carriers, rows 1.. the controls."""

    losses: np.ndarray
    classes: np.ndarray  # dataset class index of each image
    class_ids: np.ndarray  # the classes tested, in order
    log_pvalues: np.ndarray
    log_pvalue: float

    @property
    def sets(self) -> int:
        return int(self.losses.shape[0])

    @property
    def gap(self) -> np.ndarray:
        """Per image: mean control loss minus released loss (positive: the released marks help)."""
        return self.losses[1:].mean(0) - self.losses[0]

    @property
    def effect_size(self) -> float:
        """Mean over classes of (mean control loss - released loss) / SD of the control losses:
        the gap in units of the carrier-to-carrier spread (a description, not a test: the
        p-value is the rank test's)."""
        sizes = []
        for c in self.class_ids:
            means = self.losses[:, self.classes == c].mean(1)
            spread = means[1:].std(ddof=1) if len(means) > 2 else 0.0
            sizes.append((means[1:].mean() - means[0]) / spread if spread > 0 else 0.0)
        return float(np.mean(sizes))

    @property
    def min_attainable_log_pvalue(self) -> float:
        return fisher_combine([-math.log(self.sets)] * len(self.class_ids))

    def __repr__(self) -> str:
        return (f"LossGapResult(classes={len(self.class_ids)}, sets={self.sets}, mean_gap={self.gap.mean():.4f}, "
                f"log10_pvalue={to_log10(self.log_pvalue):.3f})")


def rank_test(losses: np.ndarray, classes: np.ndarray) -> LossGapResult:
    """Per class, the rank p-value of the released set's mean loss (row 0 of ``losses``)
    among the K + 1 sets' mean losses; Fisher-combined over classes."""
    losses = np.asarray(losses, dtype=np.float64)
    classes = np.asarray(classes)
    class_ids = np.unique(classes)
    log_ps = []
    for c in class_ids:
        means = losses[:, classes == c].mean(1)
        log_ps.append(math.log(float(np.sum(means <= means[0])) / len(means)))
    return LossGapResult(losses, classes, class_ids, np.asarray(log_ps), fisher_combine(log_ps))


def _scores(model: BlackBoxModel, pixels: torch.Tensor) -> torch.Tensor:
    images = pixels.float() / 255.0
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return model.logits(images.cpu()).double()


def marked_set_scores(
    model: BlackBoxModel,
    marker_features: FeatureFn,
    images: Sequence[np.ndarray],
    classes: Sequence[int],
    carrier_sets: Sequence[np.ndarray],
    marking: MarkingParams,
    seeds: Sequence[Sequence[int]],
    *,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 32,
    on_marked: Callable[[int, int, torch.Tensor], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The suspect's log-scores on every image marked with every carrier set: ``[S, N, classes]``.

    ``images`` are float pixels ``[C, H, W]`` in 0..255 of dataset class ``classes[i]``; image i is marked with row ``classes[i]`` of each
    carrier set, its augmentations drawn from ``np.random.default_rng(seeds[i])`` afresh for
    every set. ``on_marked(set, image, pixels)`` sees each marked image (uint8)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    scores: np.ndarray | None = None
    for s, carriers in enumerate(carrier_sets):
        carriers_t = torch.from_numpy(np.asarray(carriers, dtype=np.float32))
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                part = members[start : start + batch_size]
                pixels = torch.from_numpy(np.stack([images[i] for i in part])).to(device)
                marked = mark_batch(marker_features, pixels, carriers_t[[classes[i] for i in part]], marking,
                                    [np.random.default_rng(list(seeds[i])) for i in part],
                                    autocast_dtype=autocast_for(device)).pixels.cpu()
                if on_marked is not None:
                    for k, i in enumerate(part):
                        on_marked(s, i, marked[k])
                answer = _scores(model, marked).numpy()
                if scores is None:
                    scores = np.zeros((len(carrier_sets), len(images), answer.shape[1]))
                scores[s, part] = answer
        if progress is not None:
            progress(s + 1, len(carrier_sets))
    assert scores is not None, "no images"
    return scores


def cross_entropy(scores: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Cross-entropy ``[S, N]`` of log-scores ``[S, N, classes]`` (logits or log-probabilities)
    against each image's suspect output index ``labels[i]``."""
    top = scores.max(axis=2, keepdims=True)
    log_norm = np.log(np.exp(scores - top).sum(axis=2)) + top[..., 0]
    return log_norm - np.take_along_axis(scores, np.asarray(labels)[None, :, None].repeat(len(scores), 0), axis=2)[..., 0]


def choose_items(items: list[MarkedItem], n_classes: int, per_class: int, seed: int) -> list[MarkedItem]:
    """Up to ``per_class`` marked items of each class, by a fixed-seed draw (independent of
    the carriers, so any choice keeps the test valid)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(n_classes):
        members = sorted((i for i in items if i.class_index == c), key=lambda i: i.source_path)
        if members:
            picks = rng.choice(len(members), size=min(per_class, len(members)), replace=False)
            chosen.extend(members[int(k)] for k in sorted(picks))
    return chosen


def loss_gap_test(
    model: BlackBoxModel,
    marker_features: FeatureFn,
    release: Release,
    items: list[MarkedItem],
    source: Path,
    n_classes: int,
    class_rows: np.ndarray,
    master_secret: bytes,
    params: LossGapParams,
    *,
    device: torch.device = torch.device("cpu"),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the test for one release; returns the JSON-ready result (log10 values)."""
    marking = MarkingParams(**{k: release.params[k] for k in MarkingParams.__dataclass_fields__})
    index_of = {entry.relpath: i for i, entry in enumerate(scan_image_folder(source).images)}
    selection_seed = int(release.params["selection_seed"])
    chosen = choose_items(items, n_classes, params.images_per_class, params.seed)
    loaded: list[LoadedImage] = [load_image(source / item.source_path) for item in chosen]
    carrier_sets = [derive_carriers(master_secret, release.release_id, n_classes, release.feature_dim)] + [
        derive_carriers(master_secret, release.release_id, n_classes, release.feature_dim, purpose=f"control-{k}")
        for k in range(params.controls)
    ]
    reproduced = 0

    def check_reproduction(set_index: int, i: int, pixels: torch.Tensor) -> None:
        nonlocal reproduced
        if set_index == 0:
            data = encode_png(pixels.numpy(), loaded[i].alpha, loaded[i].mode)
            reproduced += sha256_bytes(data) == chosen[i].sha256_after

    scores = marked_set_scores(
        model, marker_features, [image.pixels for image in loaded], [item.class_index for item in chosen], carrier_sets, marking,
        [(selection_seed, index_of[item.source_path]) for item in chosen],  # the seeds `mark` used
        device=device, batch_size=int(release.params.get("batch_size", 32)), on_marked=check_reproduction, progress=progress,
    )
    losses = cross_entropy(scores, [int(class_rows[item.class_index]) for item in chosen])
    test = rank_test(losses, np.array([item.class_index for item in chosen]))
    per_class = [
        {"class_index": int(c), "released_loss": float(losses[0, test.classes == c].mean()),
         "control_loss_mean": float(losses[1:, test.classes == c].mean()), "log10_p": to_log10(float(lp))}
        for c, lp in zip(test.class_ids, test.log_pvalues)
    ]
    return {
        "statistic": f"per-class rank of the released set's mean loss among {params.controls} control marks, Fisher-combined",
        "controls": params.controls,
        "images": len(chosen),
        "released_reproduced": reproduced,
        "per_class": per_class,
        "loss_gap_mean": float(test.gap.mean()),
        "effect_size": test.effect_size,
        "log10_p": to_log10(test.log_pvalue),
        "min_attainable_log10_p": to_log10(test.min_attainable_log_pvalue),
    }
