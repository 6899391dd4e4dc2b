"""Exact p-values in log space.

Every p-value auditkit prints comes from here, as a natural log, so that it stays exact far
beyond the 1e-308 floor of float64 (the paper reports "< 1e-150" there). Functions never
clamp: a finite statistic gives a finite log p; only an event of probability exactly zero
(a cosine of exactly 1) gives ``-inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln

LN10 = math.log(10.0)
_EPS = 1e-16
_TINY = 1e-300
_MAX_ITER = 1_000_000


def _log_betainc_cf(a: float, b: float, x: float, log_x: float, log_1mx: float) -> float:
    """log I_x(a, b) by the continued fraction of the incomplete beta function
    (modified Lentz), valid and fast for x < (a + 1) / (a + b + 2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    else:  # pragma: no cover - unreachable for b = 1/2 and finite a
        raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")
    return a * log_x + b * log_1mx - float(betaln(a, b)) + math.log(h) - math.log(a)


def log_betainc(a: float, b: float, x: float) -> float:
    """Natural log of the regularised incomplete beta function I_x(a, b), for 0 <= x <= 1."""
    if x <= 0.0:
        return -math.inf
    if x >= 1.0:
        return 0.0
    if x < (a + 1.0) / (a + b + 2.0):
        return _log_betainc_cf(a, b, x, math.log(x), math.log1p(-x))
    # I_x(a, b) = 1 - I_{1-x}(b, a); the complement is small here, so log1p is accurate.
    return math.log1p(-math.exp(_log_betainc_cf(b, a, 1.0 - x, math.log1p(-x), math.log(x))))


def cosine_logsf(tau: float, dim: int) -> float:
    """Natural log of P(c(u, v) >= tau) for u uniform on the unit sphere of R^dim.

    Paper §3.1 (Iscen et al., 2017): for tau >= 0,
    P(c >= tau) = 1/2 · I_{1-tau^2}((d-1)/2, 1/2); for tau < 0 it is 1 - P(c >= -tau).
    Computed in log space for every tau in [-1, 1] and any dim >= 2, without underflow.
    """
    if dim < 2:
        raise ValueError(f"dimension must be >= 2, got {dim}")
    if not -1.0 <= tau <= 1.0:
        if math.isnan(tau):
            raise ValueError("cosine is NaN")
        tau = max(-1.0, min(1.0, tau))  # rounding of a computed cosine; |tau| <= 1 + 1e-7
    a = (dim - 1) / 2.0
    t2 = tau * tau
    if t2 == 0.0:
        return math.log(0.5)
    if t2 >= 1.0:
        return -math.inf if tau > 0 else 0.0
    x = 1.0 - t2
    # log(1 - x) = log(tau^2): exact even when tau^2 is below float64 resolution of 1 - x.
    log_x, log_1mx = math.log1p(-t2), 2.0 * math.log(abs(tau))
    if x < (a + 1.0) / (a + 1.5 + 1.0):
        log_i = _log_betainc_cf(a, 0.5, x, log_x, log_1mx)
    else:
        log_i = math.log1p(-math.exp(_log_betainc_cf(0.5, a, t2, log_1mx, log_x)))
    if tau > 0:
        return math.log(0.5) + log_i
    return math.log1p(-0.5 * math.exp(log_i))


def cosine_logsf_array(taus: Sequence[float] | np.ndarray, dim: int) -> np.ndarray:
    """:func:`cosine_logsf` applied to each cosine."""
    return np.array([cosine_logsf(float(t), dim) for t in np.asarray(taus, dtype=np.float64).ravel()])


def chi2_even_logsf(statistic: float, dof: int) -> float:
    """Natural log of the survival function of chi^2 with an even number of degrees of
    freedom ``dof = 2k``: Q(k, z/2) = e^{-z/2} · sum_{j<k} (z/2)^j / j!, summed exactly in
    log space (log-sum-exp), so it is exact for any statistic, however large."""
    if dof < 2 or dof % 2:
        raise ValueError(f"dof must be a positive even integer, got {dof}")
    if math.isinf(statistic):
        return -math.inf
    half = statistic / 2.0
    if half <= 0.0:
        return 0.0
    terms = np.arange(dof // 2, dtype=np.float64)
    log_terms = terms * math.log(half) - np.array([math.lgamma(j + 1.0) for j in terms])
    top = float(log_terms.max())
    return -half + top + math.log(float(np.exp(log_terms - top).sum()))


def fisher_combine(log_pvalues: Sequence[float] | np.ndarray) -> float:
    """Fisher's method (paper §3.1): Z = -2 · sum log p_i ~ chi^2_{2k} under H0 when the k
    p-values are independent and uniform. Returns the natural log of the combined p-value."""
    logs = np.asarray(log_pvalues, dtype=np.float64)
    if logs.size == 0:
        raise ValueError("cannot combine zero p-values")
    if np.isnan(logs).any():
        raise ValueError("a p-value is NaN")
    return chi2_even_logsf(-2.0 * float(logs.sum()), 2 * logs.size)


def holm_adjust(log_pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values, in and out as natural logs. Controls the
    family-wise error rate when several releases are tested against one model."""
    logs = np.asarray(log_pvalues, dtype=np.float64)
    m = logs.size
    order = np.argsort(logs, kind="stable")
    adjusted = np.empty(m)
    running = -math.inf
    for rank, index in enumerate(order):
        running = max(running, min(0.0, math.log(m - rank) + logs[index]))
        adjusted[index] = running
    return adjusted


def to_log10(log_p: float) -> float:
    """Convert a natural-log p-value to log10."""
    return log_p / LN10


def format_pvalue(log10_p: float) -> str:
    """Human-readable p-value: plain decimal when >= 1e-4, else '10^-k' with k exact to 2 decimals."""
    if log10_p == -math.inf:
        return "0 (exact: the statistic is at its maximum)"
    if log10_p >= -4:
        return f"{10 ** log10_p:.4g}"
    mantissa_exp = math.floor(log10_p)
    mantissa = 10 ** (log10_p - mantissa_exp)
    return f"{mantissa:.2f}e{mantissa_exp}"


@dataclass(frozen=True)
class MeanCosineZ:
    """The mean of C cosines and its z-score: under H0 each cosine has mean 0 and variance
    1/d, so sqrt(C·d)·mean is approximately standard normal."""

    mean: float
    z: float


def mean_cosine_z(cosines: Sequence[float] | np.ndarray, dim: int) -> MeanCosineZ:
    values = np.asarray(cosines, dtype=np.float64)
    mean = float(values.mean())
    return MeanCosineZ(mean=mean, z=mean * math.sqrt(values.size * dim))
