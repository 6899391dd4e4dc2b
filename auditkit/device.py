"""Device selection: CUDA when present (``auto``), else CPU."""

from __future__ import annotations

import torch

from auditkit.errors import AuditkitError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AuditkitError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise AuditkitError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)
