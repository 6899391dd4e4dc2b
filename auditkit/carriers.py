"""Secret carriers: one random unit direction per class in the marker's feature space.

Paper §3.2: under H0 the carrier u_c is uniform on the unit sphere of R^d and independent
of the suspect model. We derive the carriers deterministically from the owner's master
secret and the release id, so the registry never stores them:

    key    = HKDF-SHA256(master_secret, salt="auditkit/carriers/v1", info=release_id|C|d)
    stream = SHAKE-256(key)                       (an extendable-output function)
    z      = Box–Muller over 53-bit uniforms read from the stream, shape [C, d]
    u_c    = z_c / ||z_c||

Every step is a published standard computed in float64, so the same secret gives the same
carriers on any machine and any numpy version (a golden value is tested).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SCHEME = "auditkit/carriers/v1"


def _derive_key(master_secret: bytes, release_id: str, n_classes: int, dim: int, purpose: str) -> bytes:
    info = json.dumps(
        {"purpose": purpose, "release": release_id, "classes": n_classes, "dim": dim}, sort_keys=True
    ).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SCHEME.encode(), info=info).derive(master_secret)


def gaussian_stream(key: bytes, count: int) -> np.ndarray:
    """``count`` i.i.d. N(0, 1) float64 values from a SHAKE-256 stream keyed by ``key``
    (Box–Muller on uniforms in (0, 1) built from the top 53 bits of each 64-bit word)."""
    pairs = (count + 1) // 2
    words = np.frombuffer(hashlib.shake_256(key).digest(16 * pairs), dtype="<u8")
    uniforms = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    u1, u2 = uniforms[0::2], uniforms[1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * np.pi * u2
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).reshape(-1)[:count]


def derive_selection_seed(master_secret: bytes, release_id: str) -> int:
    """The 63-bit seed of the release's selection of marked images (which images of each class
    carry a mark), derived like the carriers: secret without the master secret, and the same
    for the same secret and release id."""
    key = _derive_key(master_secret, release_id, 0, 0, "selection")
    return int.from_bytes(key[:8], "little") >> 1


def derive_carriers(
    master_secret: bytes, release_id: str, n_classes: int, dim: int, *, purpose: str = "release"
) -> np.ndarray:
    """The release's carriers as float32 ``[n_classes, dim]``, rows uniform on the unit sphere.

    ``purpose`` separates independent carrier families from the same secret (e.g. the
    never-released control carriers of a black-box audit use ``purpose="control-<k>"``).
    """
    if n_classes < 1 or dim < 2:
        raise ValueError(f"need n_classes >= 1 and dim >= 2, got {n_classes}, {dim}")
    key = _derive_key(master_secret, release_id, n_classes, dim, purpose)
    z = gaussian_stream(key, n_classes * dim).reshape(n_classes, dim)
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)


def carrier_commitment(carriers: np.ndarray) -> str:
    """SHA-256 (hex) over a canonical encoding of the carriers: a JSON header with the
    scheme and shape, a newline, then the rows as little-endian float32. Stored at
    release time, it shows at audit time that the carriers were fixed before."""
    carriers = np.ascontiguousarray(carriers, dtype="<f4")
    header = json.dumps(
        {"scheme": SCHEME, "shape": list(carriers.shape), "dtype": "float32-le"}, sort_keys=True
    ).encode()
    return hashlib.sha256(header + b"\n" + carriers.tobytes()).hexdigest()
