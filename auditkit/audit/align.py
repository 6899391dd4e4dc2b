"""Subspace alignment (paper §3.4, eq. 6): min_M E_x ||phi_t(x) - M phi_0(x)||^2.

A suspect trained from scratch has its own feature space; the classifier it learned, W,
acts on phi_t. Fitting phi_t ≈ M phi_0 + m on vanilla images by least squares maps the
suspect's classifier back into the marker's space: the rows of W·M are comparable with
the carriers. Under H0 M and W do not depend on the carriers, so the cosine test of
§3.2 stays exact.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from auditkit.errors import AuditkitError

IDENTITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Alignment:
    """``matrix`` M ``[d_t, d_0]`` with phi_t ≈ M phi_0 + ``offset``; ``residual`` is
    ||phi_t - fit||_F / ||phi_t - mean||_F (0: perfect, 1: no better than the mean)."""

    matrix: np.ndarray
    offset: np.ndarray
    n_images: int
    residual: float
    ridge: float
    identity: bool

    def summary(self) -> dict[str, float | int | bool]:
        return {"n_images": self.n_images, "relative_residual": self.residual, "ridge": self.ridge,
                "identity": self.identity, "suspect_dim": int(self.matrix.shape[0]), "marker_dim": int(self.matrix.shape[1])}


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise AuditkitError(f"{name} features contain NaN or infinity; the model file may be corrupt or mis-normalised")


def identity_alignment(marker_features: np.ndarray, suspect_features: np.ndarray) -> Alignment | None:
    """The identity when the suspect's features are the marker's own (frozen-features
    threat, §5.1), checked on the alignment images; else ``None``."""
    if marker_features.shape != suspect_features.shape:
        return None
    scale = np.linalg.norm(marker_features)
    if scale == 0 or np.linalg.norm(marker_features - suspect_features) > IDENTITY_TOLERANCE * scale:
        return None
    d = marker_features.shape[1]
    return Alignment(np.eye(d), np.zeros(d), marker_features.shape[0], 0.0, 0.0, True)


def fit_alignment(marker_features: np.ndarray, suspect_features: np.ndarray, *, ridge: float | None = None) -> Alignment:
    """Least-squares M (with an intercept) in float64.

    With fewer images than marker dimensions + 1 the problem is ill-posed: a ridge penalty
    (relative to the mean feature energy) is then applied, with a warning.
    """
    phi0 = np.asarray(marker_features, dtype=np.float64)
    phit = np.asarray(suspect_features, dtype=np.float64)
    _check_finite("marker", phi0)
    _check_finite("suspect", phit)
    n, d0 = phi0.shape
    if phit.shape[0] != n:
        raise AuditkitError(f"alignment needs the same images for both models ({n} vs {phit.shape[0]})")
    mean0, meant = phi0.mean(0), phit.mean(0)
    x, y = phi0 - mean0, phit - meant
    if ridge is None:
        ridge = 0.0
        if n < d0 + 1:
            ridge = 1e-3
            warnings.warn(
                f"only {n} alignment images for a {d0}-dimensional marker: the least-squares fit is "
                f"ill-posed, using ridge {ridge:g}; pass more vanilla images (--holdout) for an exact fit",
                stacklevel=2,
            )
    if ridge > 0:
        energy = float((x**2).sum() / max(n, 1) / d0)
        gram = x.T @ x + ridge * energy * n * np.eye(d0)
        matrix = np.linalg.solve(gram, x.T @ y).T
    else:
        solution, *_ = np.linalg.lstsq(x, y, rcond=None)
        matrix = solution.T
    fitted = x @ matrix.T
    denominator = np.linalg.norm(y)
    residual = float(np.linalg.norm(y - fitted) / denominator) if denominator > 0 else 0.0
    return Alignment(matrix, meant - matrix @ mean0, n, residual, float(ridge), False)
