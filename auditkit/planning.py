"""``auditkit plan``: the p-value an owner can expect before releasing, in the frozen-features
threat (paper §5.1: a linear classifier trained on the marking network's features).

Marking every image of a large dataset to find out takes hours; the plan takes minutes. It
marks a few *pilot* images per class for real (eq. 5, the owner's marking parameters) and
measures the full feature change each mark makes, ``Δphi = phi(x~) - phi(x)``. It then
simulates the release in feature space — the features of the owner's vanilla images, with the
Δphi of a random pilot of the same class added to a fraction q of each class (the idealisation
of paper §4, with empirical shifts instead of exactly ``δ u``) — trains the frozen-features
suspect on it (the same L-BFGS linear classifier as the threat builders) and runs the white-box
test. Each draw uses fresh random carriers and fresh pilots; the spread over draws is reported.

It is a prediction, not a measurement: the shifts of the pilots stand in for the shifts of the
images they are resampled onto, and only ``images`` vanilla images are used (the full dataset
gives a somewhat better-estimated classifier). ``docs/results.md`` compares plans with measured
releases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adapters import WhiteBoxModel
from auditkit.audit.images import batched_features, choose, load_rgb_batch
from auditkit.audit.whitebox import cosine_test
from auditkit.datasets import get_dataset
from auditkit.errors import AuditkitError
from auditkit.imagefolder import scan_image_folder
from auditkit.marking.optimize import MarkingParams, autocast_for, mark_batch
from auditkit.registry.store import Registry
from auditkit.training import train_linear_probe


@dataclass(frozen=True)
class PlanRequest:
    dataset: str
    fractions: Sequence[float]
    params: MarkingParams = MarkingParams()
    pilot_per_class: int = 8
    images: int = 5000
    draws: int = 3
    seed: int = 0


@dataclass(frozen=True)
class PlanRow:
    fraction: float
    log10_p: list[float]  # one per draw

    @property
    def median(self) -> float:
        return float(np.median(self.log10_p))


@dataclass(frozen=True)
class PlanResult:
    classes: int
    dim: int
    images: int
    pilot_psnr: float
    pilot_shift: float  # mean (phi(x~) - phi(x))^T u of the pilots
    shift_ratio: float  # pilot shift / RMS distance of a class mean from the overall mean
    rows: list[PlanRow]


def _random_carriers(rng: np.random.Generator, n_classes: int, dim: int) -> np.ndarray:
    z = rng.standard_normal((n_classes, dim))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def plan_release(
    registry: Registry, marker: WhiteBoxModel, request: PlanRequest, *, progress: Callable[[int, int], None] | None = None
) -> PlanResult:
    """Predict log10 p of the frozen-features test for each fraction in ``request.fractions``."""
    if not request.fractions or not all(0 < q <= 1 for q in request.fractions):
        raise AuditkitError("--fraction values must be in (0, 1]")
    with registry.session() as session:
        dataset = get_dataset(session, request.dataset)
        source, n_classes = Path(dataset.source), len(dataset.classes)
    scan = scan_image_folder(source)
    sample = choose(list(range(len(scan.images))), request.images, seed=request.seed)
    paths = [source / scan.images[i].relpath for i in sample]
    labels = np.array([scan.images[i].class_index for i in sample])
    features = batched_features(marker.features, paths)
    dim = features.shape[1]
    centred = np.array([features[labels == c].mean(0) for c in range(n_classes) if np.any(labels == c)]) - features.mean(0)
    rng = np.random.default_rng(request.seed)
    logs: dict[float, list[float]] = {q: [] for q in request.fractions}
    psnrs, shifts = [], []
    for draw in range(request.draws):
        carriers = _random_carriers(rng, n_classes, dim)
        deltas, pilot_psnr, pilot_shift = _pilot_shifts(marker, paths, labels, carriers, request, rng)
        psnrs.append(pilot_psnr)
        shifts.append(pilot_shift)
        order = rng.permutation(len(paths))  # nested selections: q1 < q2 marks a superset
        for q in request.fractions:
            simulated = features.copy()
            for c in range(n_classes):
                members = order[labels[order] == c]
                chosen = members[: max(1, round(q * len(members)))] if len(members) else members
                simulated[chosen] += deltas[c][rng.integers(0, len(deltas[c]), len(chosen))]
            probe = train_linear_probe(torch.from_numpy(simulated), torch.from_numpy(labels), n_classes, seed=draw)
            logs[q].append(cosine_test(probe.weight.detach().double().numpy(), carriers).log10_pvalue)
        if progress is not None:
            progress(draw + 1, request.draws)
    spread = float(np.sqrt((centred**2).sum(1).mean()))
    return PlanResult(n_classes, dim, len(paths), float(np.mean(psnrs)), float(np.mean(shifts)),
                      float(np.mean(shifts)) / spread if spread > 0 else float("inf"),
                      [PlanRow(q, logs[q]) for q in request.fractions])


def _pilot_shifts(
    marker: WhiteBoxModel, paths: list[Path], labels: np.ndarray, carriers: np.ndarray, request: PlanRequest,
    rng: np.random.Generator,
) -> tuple[dict[int, np.ndarray], float, float]:
    """Mark ``pilot_per_class`` images of each class for real; their full feature changes."""
    deltas: dict[int, np.ndarray] = {}
    psnrs, shifts = [], []
    carriers_t = torch.from_numpy(carriers.astype(np.float32))
    for c in range(len(carriers)):
        members = np.flatnonzero(labels == c)
        if not len(members):
            continue
        pilots = rng.choice(members, size=min(request.pilot_per_class, len(members)), replace=False)
        pixels = (load_rgb_batch([paths[i] for i in pilots]) * 255).round().to(marker.device)
        result = mark_batch(marker.features, pixels, carriers_t[[c] * len(pilots)], request.params,
                            [np.random.default_rng([request.seed, int(i)]) for i in pilots],
                            autocast_dtype=autocast_for(marker.device))
        with torch.no_grad():
            before = marker.features(pixels / 255).double().cpu().numpy()
            after = marker.features(result.pixels.float() / 255).double().cpu().numpy()
        deltas[c] = after - before
        psnrs.extend(result.psnr.tolist())
        shifts.extend(result.shift.tolist())
    return deltas, float(np.mean(psnrs)), float(np.mean(shifts))
