"""Validity: under H0 (models that never saw the release) the printed p-values are uniform.

Clean linear classifiers, each trained on its own bootstrap sample of vanilla marker
features, each tested against an independent carrier set (its own release id) through the
same alignment + cosine-test code the CLI uses. Independent carriers make the p-values
i.i.d. under H0 (each test is exact conditionally on the model), so a KS test at 1% catches
an anti-conservative test. The black-box modes get the same check: the loss-gap rank test
(per-class ranks uniform, combined p-values never smaller than uniform) and distillation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from adapters.pytorch import from_module
from auditkit.audit.align import fit_alignment, identity_alignment
from auditkit.audit.whitebox import cosine_test
from auditkit.carriers import derive_carriers
from auditkit.sampledata import generate_shapes
from auditkit.training import to_tensor_images, train_linear_probe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vanilla_features(trained_marker: dict) -> tuple[np.ndarray, np.ndarray]:
    images, labels = generate_shapes(60, size=32, seed=99)
    with torch.no_grad():
        features = from_module(trained_marker["model"]).features(to_tensor_images(images))
    return features.double().numpy(), labels


@pytest.mark.parametrize("threat", ["frozen", "mixed"])
def test_clean_model_pvalues_are_uniform(vanilla_features: tuple[np.ndarray, np.ndarray], threat: str) -> None:
    features, labels = vanilla_features
    n, dim = features.shape
    pvalues = []
    for k in range(60):
        rng = np.random.default_rng(k)
        sample = rng.choice(n, size=n, replace=True)
        suspect_features = features
        if threat == "mixed":
            suspect_features = features @ rng.standard_normal((dim, dim))
        probe = train_linear_probe(torch.from_numpy(suspect_features[sample]).float(), torch.from_numpy(labels[sample]), 10, seed=k)
        alignment = identity_alignment(features, suspect_features) or fit_alignment(features, suspect_features)
        carriers = derive_carriers(b"owner" * 6 + b"!!", f"clean-{threat}-{k}", 10, dim)
        result = cosine_test(probe.weight.detach().double().numpy() @ alignment.matrix, carriers)
        pvalues.append(math.exp(result.log_pvalue))
    assert sps.kstest(pvalues, "uniform").pvalue > 0.01
    assert min(pvalues) > 1e-4  # no wildly significant clean model


@pytest.fixture(scope="module")
def clean_black_boxes(trained_marker: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Clean suspects (linear heads on the marker's features, each on its own bootstrap sample
    of vanilla images) seen only through ``logits``, and a folder of vanilla images."""
    from auditkit.sampledata import write_image_folder
    from auditkit.threats import frozen_features_suspect

    images, labels = generate_shapes(40, size=32, seed=5)
    x, y = to_tensor_images(images), torch.from_numpy(labels)
    suspects = []
    for k in range(5):
        sample = torch.from_numpy(np.random.default_rng(100 + k).choice(len(y), len(y), replace=True))
        suspects.append(from_module(frozen_features_suspect(trained_marker["model"], x[sample], y[sample], seed=k)))
    folder = write_image_folder(tmp_path_factory.mktemp("vanilla"), images, labels, [f"c{k}" for k in range(10)])
    return {"suspects": suspects, "paths": sorted(folder.rglob("*.png")), "marker": from_module(trained_marker["model"])}


def test_loss_gap_pvalues_are_uniform_on_clean_models(clean_black_boxes: dict) -> None:
    """Per-class ranks must be uniform on {1..K+1} and the Fisher-combined p-values no smaller
    than uniform. A test that treated the images of a class as independent, or compared the
    released bytes against freshly re-marked controls, fails here."""
    from auditkit.audit.lossgap import cross_entropy, marked_set_scores, rank_test
    from auditkit.imagefolder import load_image
    from auditkit.marking.optimize import MarkingParams

    marker = clean_black_boxes["marker"]
    picks = [p for k in range(10) for p in [q for q in clean_black_boxes["paths"] if q.parent.name == f"c{k}"][:2]]
    pixels = [load_image(p).pixels for p in picks]
    classes = [int(p.parent.name[1:]) for p in picks]
    controls, ranks, combined = 9, [], []
    for r in range(30):
        suspect = clean_black_boxes["suspects"][r % 5]
        sets = [derive_carriers(b"owner" * 6 + b"!!", f"calibration-{r}", 10, marker.feature_dim,
                                purpose="release" if k == 0 else f"control-{k}") for k in range(controls + 1)]
        scores = marked_set_scores(suspect, marker.features, pixels, classes, sets,
                                   MarkingParams(psnr=30.0, steps=5, augment="none"), [(r, i) for i in range(len(picks))])
        result = rank_test(cross_entropy(scores, classes), np.asarray(classes))
        ranks.extend(np.rint(np.exp(result.log_pvalues) * (controls + 1)).astype(int).tolist())
        combined.append(math.exp(result.log_pvalue))
    counts = np.bincount(ranks, minlength=controls + 2)[1:]
    assert counts.sum() == 300
    assert sps.chisquare(counts).pvalue > 1e-3, counts  # ranks uniform on 1..K+1
    assert sps.kstest(combined, "uniform", alternative="greater").pvalue > 0.01  # never anti-conservative
    assert min(combined) > 1e-3


def test_distillation_pvalues_are_uniform_on_clean_models(clean_black_boxes: dict, trained_marker: dict) -> None:
    from auditkit.audit.distill import DistillParams, distill
    from auditkit.audit.images import batched_features

    marker, paths = clean_black_boxes["marker"], clean_black_boxes["paths"]
    marker_features = batched_features(marker.features, paths)
    pvalues = []
    for k in range(60):
        student = distill(clean_black_boxes["suspects"][k % 5], marker, paths, DistillParams(seed=k))
        student_features = batched_features(student.model.features, paths)
        alignment = identity_alignment(marker_features, student_features) or fit_alignment(marker_features, student_features)
        carriers = derive_carriers(b"owner" * 6 + b"!!", f"clean-distill-{k}", 10, marker.feature_dim)
        result = cosine_test(student.model.classifier()[0] @ alignment.matrix, carriers)
        pvalues.append(math.exp(result.log_pvalue))
    assert student.agreement > 0.8  # the student imitates its teacher
    assert sps.kstest(pvalues, "uniform").pvalue > 0.01
    assert min(pvalues) > 1e-4
