import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from auditkit.audit.align import fit_alignment, identity_alignment
from auditkit.audit.service import read_class_map
from auditkit.audit.whitebox import cosine_test
from auditkit.carriers import derive_carriers
from auditkit.errors import AuditkitError


def test_alignment_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    phi0 = rng.standard_normal((400, 16))
    true = rng.standard_normal((24, 16))
    phit = phi0 @ true.T + 3.0 + 1e-6 * rng.standard_normal((400, 24))
    alignment = fit_alignment(phi0, phit)
    np.testing.assert_allclose(alignment.matrix, true, atol=1e-5)
    assert alignment.residual < 1e-5 and alignment.ridge == 0.0
    assert identity_alignment(phi0, phit) is None
    assert identity_alignment(phi0, phi0.copy()).identity


def test_alignment_warns_and_ridges_when_ill_posed() -> None:
    rng = np.random.default_rng(1)
    with pytest.warns(UserWarning, match="ill-posed"):
        alignment = fit_alignment(rng.standard_normal((10, 32)), rng.standard_normal((10, 8)))
    assert alignment.ridge > 0


def test_nan_features_are_refused() -> None:
    phi = np.ones((50, 4))
    bad = phi.copy()
    bad[3, 1] = np.nan
    with pytest.raises(AuditkitError, match="NaN"):
        fit_alignment(phi, bad)


def test_cosine_test_combines_exactly() -> None:
    carriers = derive_carriers(b"s" * 32, "r", 5, 64).astype(np.float64)
    directions = carriers * 2.0 + 0.01  # nearly aligned
    result = cosine_test(directions, carriers)
    assert result.cosines.min() > 0.99
    assert math.isfinite(result.log10_pvalue) and result.log10_pvalue < -100
    from auditkit.stats import fisher_combine

    assert result.log_pvalue == pytest.approx(fisher_combine(result.log_pvalues))
    with pytest.raises(AuditkitError, match="do not match"):
        cosine_test(directions[:, :10], carriers)


def test_cosine_test_is_uniform_under_the_null() -> None:
    """Fixed directions, independent carriers (as under H0): combined p-values are uniform."""
    directions = np.random.default_rng(2).standard_normal((10, 32))
    pvalues = [math.exp(cosine_test(directions, derive_carriers(b"k" * 32, f"r{i}", 10, 32)).log_pvalue) for i in range(300)]
    assert sps.kstest(pvalues, "uniform").pvalue > 0.01


def test_class_maps(tmp_path: Path) -> None:
    assert read_class_map(None, ["a", "b"], 2).tolist() == [0, 1]
    with pytest.raises(AuditkitError, match="--class-map"):
        read_class_map(None, ["a", "b"], 1000)
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"a": 281, "1": 207}))
    assert read_class_map(path, ["a", "b"], 1000).tolist() == [281, 207]
    path.write_text(json.dumps({"a": 5, "b": 5}))
    with pytest.raises(AuditkitError, match="same suspect output"):
        read_class_map(path, ["a", "b"], 10)
    path.write_text(json.dumps({"a": 5}))
    with pytest.raises(AuditkitError, match="class 'b'"):
        read_class_map(path, ["a", "b"], 10)
