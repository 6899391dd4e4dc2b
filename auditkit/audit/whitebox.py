"""The white-box test (paper §3.2 and §3.4).

For each class c, the cosine between the suspect's classifier direction for c, mapped to
the marker's feature space (row c of W·M), and the carrier u_c. Under H0 ("the model was
not trained on this release") u_c is uniform on the sphere and independent of W·M, so
P(cos >= tau) = 1/2 · I_{1-tau^2}((d-1)/2, 1/2) exactly; the C one-sided p-values are
independent (the carriers are) and are combined with Fisher's method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditkit.errors import AuditkitError
from auditkit.stats import cosine_logsf, fisher_combine, mean_cosine_z, to_log10


@dataclass(frozen=True)
class CosineTestResult:
    """Per-class cosines and p-values (natural logs) and the Fisher-combined p-value."""

    cosines: np.ndarray
    log_pvalues: np.ndarray
    log_pvalue: float
    dim: int
    mean_cosine: float
    z_score: float

    @property
    def log10_pvalue(self) -> float:
        return to_log10(self.log_pvalue)

    def __repr__(self) -> str:
        return (f"CosineTestResult(classes={self.cosines.size}, dim={self.dim}, mean_cosine={self.mean_cosine:.4f}, "
                f"log10_pvalue={self.log10_pvalue:.3f})")


def cosine_test(directions: np.ndarray, carriers: np.ndarray) -> CosineTestResult:
    """Test classifier ``directions [C, d]`` (rows of W·M) against ``carriers [C, d]``.

    Null hypothesis: each carrier is uniform on the unit sphere and independent of the
    directions. Alternative: directions are aligned with their class's carrier (one-sided).
    """
    directions = np.asarray(directions, dtype=np.float64)
    carriers = np.asarray(carriers, dtype=np.float64)
    if directions.shape != carriers.shape:
        raise AuditkitError(
            f"classifier directions {directions.shape} do not match the carriers {carriers.shape}; "
            "the class count or feature dimension differs from the release"
        )
    norms = np.linalg.norm(directions, axis=1) * np.linalg.norm(carriers, axis=1)
    if np.any(norms == 0) or not np.isfinite(directions).all():
        raise AuditkitError("a classifier direction is zero or not finite; the suspect's classifier is degenerate")
    cosines = np.clip((directions * carriers).sum(1) / norms, -1.0, 1.0)
    dim = carriers.shape[1]
    log_p = np.array([cosine_logsf(float(c), dim) for c in cosines])
    z = mean_cosine_z(cosines, dim)
    return CosineTestResult(cosines, log_p, fisher_combine(log_p), dim, z.mean, z.z)
