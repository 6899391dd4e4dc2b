"""The marking network phi_0: loaded through the adapters, identified by architecture,
weights digest, feature dimension and input normalisation (recorded in every release)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from adapters import AdapterOptions, WhiteBoxModel, load_model
from auditkit.errors import AuditkitError


def load_marker(arch: str, weights: Path | None, *, device: str = "auto") -> WhiteBoxModel:
    """Load the marking network: ``arch`` (a torchvision or built-in name, or ``timm:NAME``)
    with ``weights`` (state dict, checkpoint, safetensors or TorchScript). Without ``weights``, torchvision's default pretrained
    weights are used when they can be obtained (they cannot offline: the error says so)."""
    adapter, _, name = arch.rpartition(":")  # "timm:convnext_atto" -> the timm adapter
    if weights is None:
        if adapter:
            raise AuditkitError(f"--marker {arch} needs --marker-weights FILE")
        return _torchvision_pretrained(arch, device)
    model = load_model(str(weights), AdapterOptions(arch=name, device=device), adapter or "torch")
    if not isinstance(model, WhiteBoxModel):
        raise AuditkitError(f"{weights} exposes no features; a marking network must be white-box")
    return model


def _torchvision_pretrained(arch: str, device: str) -> WhiteBoxModel:
    import torchvision

    from adapters.pytorch import TorchModel

    try:
        module = torchvision.models.get_model(arch, weights="DEFAULT")
    except Exception as exc:
        raise AuditkitError(
            f"cannot obtain default pretrained weights for {arch!r} ({exc.__class__.__name__}); "
            "pass --marker-weights FILE with the marking network's weights"
        ) from None
    return TorchModel(module, description=f"torch:{arch} (torchvision DEFAULT)", digest=f"torchvision:{arch}:DEFAULT",
                      options=AdapterOptions(arch=arch, device=device))


def marker_identity(model: WhiteBoxModel, arch: str, weights: Path | None) -> dict[str, Any]:
    """What is recorded about phi_0 in a release; an audit reloads the same network from it
    (from ``weights_path``, checked against ``weights_sha256``)."""
    return {
        "arch": arch,
        "weights_path": str(Path(weights).resolve()) if weights is not None else None,
        "description": model.description,
        "weights_sha256": model.digest,
        "feature_dim": model.feature_dim,
        "num_classes": model.num_classes,
        "input_spec": asdict(model.input_spec),
    }


def reload_marker(identity: dict[str, Any], weights: Path | None = None, *, device: str = "auto") -> WhiteBoxModel:
    """Reload a release's marking network, from ``weights`` or the recorded path, and check
    it is byte-identical to the one the release was marked with."""
    path = weights if weights is not None else (Path(identity["weights_path"]) if identity.get("weights_path") else None)
    if path is not None and not Path(path).exists():
        raise AuditkitError(f"the marking network's weights {path} are gone; pass --marker-weights FILE (sha256 {identity['weights_sha256'][:16]}…)")
    model = load_marker(identity["arch"], path, device=device)
    if model.digest != identity["weights_sha256"]:
        raise AuditkitError(
            f"marking network {path} (sha256 {model.digest[:16]}…) is not the one this release was marked with "
            f"({identity['weights_sha256'][:16]}…); pass the original with --marker-weights"
        )
    return model
