"""Validity: under H0 (models that never saw the release) the printed p-values are uniform.

60 clean linear classifiers, each trained on its own bootstrap sample of vanilla marker
features, each tested against an independent carrier set (its own release id) through the
same alignment + cosine-test code the CLI uses. Independent models x independent carriers
make the 60 p-values i.i.d. under H0, so a KS test at 1% catches an anti-conservative test.
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
