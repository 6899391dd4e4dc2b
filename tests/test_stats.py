import math

import mpmath
import numpy as np
import pytest
from scipy import stats as sps

from auditkit.stats import (
    chi2_even_logsf,
    cosine_logsf,
    fisher_combine,
    format_pvalue,
    holm_adjust,
    log_betainc,
    mean_cosine_z,
    to_log10,
)


def mp_cosine_log10sf(tau: float, dim: int) -> mpmath.mpf:
    with mpmath.workdps(50):
        tau_mp = mpmath.mpf(tau)
        half = mpmath.betainc((dim - 1) / mpmath.mpf(2), mpmath.mpf(1) / 2, 0, 1 - tau_mp**2, regularized=True) / 2
        p = half if tau_mp >= 0 else 1 - half
        return mpmath.log10(p)


@pytest.mark.parametrize("dim", [2, 3, 10, 128, 512, 2048, 100_000])
@pytest.mark.parametrize("tau", [-0.95, -0.4, -0.05, 0.0, 1e-6, 0.02, 0.1, 0.3, 0.6])
def test_cosine_matches_scipy_where_scipy_is_accurate(tau: float, dim: int) -> None:
    # The cosine of a uniform unit vector is 2·Beta(a, a) - 1 with a = (d - 1) / 2.
    a = (dim - 1) / 2
    expected = sps.beta.sf((tau + 1) / 2, a, a)
    if not 1e-280 < expected:
        pytest.skip("scipy underflows here; covered by the mpmath test")
    assert math.exp(cosine_logsf(tau, dim)) == pytest.approx(expected, rel=1e-10, abs=0)


@pytest.mark.parametrize(
    ("tau", "dim"), [(0.99, 2048), (0.5, 2048), (0.9, 100_000), (0.999999, 512), (0.2, 100_000), (0.7, 10), (0.05, 5)]
)
def test_cosine_deep_tail_matches_mpmath(tau: float, dim: int) -> None:
    expected = float(mp_cosine_log10sf(tau, dim))
    got = to_log10(cosine_logsf(tau, dim))
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-9)


def test_golden_value_from_the_issue() -> None:
    assert to_log10(cosine_logsf(0.99, 2048)) == pytest.approx(-1743.1742176885583, rel=1e-12)


def test_cosine_boundaries_are_exact() -> None:
    assert cosine_logsf(0.0, 7) == pytest.approx(math.log(0.5))
    assert cosine_logsf(1.0, 7) == -math.inf  # P(c >= 1) is exactly zero
    assert cosine_logsf(-1.0, 7) == 0.0
    with pytest.raises(ValueError):
        cosine_logsf(float("nan"), 7)


def test_cosine_is_monotone_in_tau() -> None:
    taus = np.linspace(-0.999, 0.999, 401)
    logs = np.array([cosine_logsf(t, 256) for t in taus])
    assert np.all(np.diff(logs) < 0)


def test_cosine_pvalues_of_random_unit_vectors_are_uniform() -> None:
    rng = np.random.default_rng(1)
    dim = 64
    u = rng.standard_normal((4000, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.zeros(dim)
    v[0] = 1.0
    pvalues = np.exp([cosine_logsf(float(c), dim) for c in u @ v])
    assert sps.kstest(pvalues, "uniform").pvalue > 0.01


def test_log_betainc_both_branches_against_scipy() -> None:
    from scipy.special import betainc

    for a, b, x in [(3.0, 0.5, 0.2), (3.0, 0.5, 0.95), (0.5, 40.0, 0.001), (200.0, 0.5, 0.999)]:
        assert math.exp(log_betainc(a, b, x)) == pytest.approx(betainc(a, b, x), rel=1e-10)


@pytest.mark.parametrize("k", [1, 2, 10, 1000])
def test_fisher_matches_scipy_in_range(k: int) -> None:
    rng = np.random.default_rng(k)
    logs = np.log(rng.uniform(0.05, 1.0, size=k))
    assert fisher_combine(logs) == pytest.approx(sps.chi2.logsf(-2 * logs.sum(), 2 * k), rel=1e-9)


def test_fisher_deep_tail_matches_mpmath() -> None:
    logs = np.full(1000, -50.0)  # a 1000-class Fisher sum far beyond float64
    statistic = -2 * logs.sum()
    with mpmath.workdps(50):
        expected = mpmath.log(mpmath.gammainc(1000, mpmath.mpf(statistic) / 2, mpmath.inf, regularized=True))
    got = fisher_combine(logs)
    assert math.isfinite(got)
    assert got == pytest.approx(float(expected), rel=1e-10)


def test_fisher_of_uniform_pvalues_is_uniform() -> None:
    rng = np.random.default_rng(3)
    combined = [math.exp(fisher_combine(np.log(rng.uniform(size=10)))) for _ in range(2000)]
    assert sps.kstest(combined, "uniform").pvalue > 0.01


def test_chi2_rejects_odd_dof() -> None:
    with pytest.raises(ValueError):
        chi2_even_logsf(3.0, 3)


def test_holm_matches_definition() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    adjusted = np.exp(holm_adjust(np.log(p)))
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> 0.09 (monotone), 0.5*1=0.5
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_formatting_never_clamps() -> None:
    assert format_pvalue(-1743.1742) == "6.70e-1744"
    assert format_pvalue(-1.0) == "0.1"
    assert mean_cosine_z([0.1, 0.1], 100).z == pytest.approx(0.1 * math.sqrt(200))
