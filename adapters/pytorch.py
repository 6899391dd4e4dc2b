"""PyTorch adapter: a torchvision (or built-in) architecture with a state dict, a full
checkpoint, a safetensors file, or — with ``unsafe_load`` — a pickled ``nn.Module``;
and TorchScript files.

The features are the input of the final linear layer, found generically (the last
``nn.Linear`` in module order, or ``classifier_layer`` by name). The layer is swapped for an
identity, so ``features()`` is a plain differentiable forward pass — no per-architecture code.
"""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adapters.base import AdapterOptions, InputSpec
from auditkit.device import resolve_device
from auditkit.errors import AuditkitError
from auditkit.fsutil import sha256_file

CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def _find_linear(module: nn.Module, name: str | None) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if name is not None:
        for n, m in linears:
            if n == name:
                return n, m
        raise AuditkitError(
            f"no linear layer named {name!r}; linear layers: {', '.join(n for n, _ in linears) or 'none'}"
        )
    if not linears:
        raise AuditkitError("the model has no nn.Linear layer; pass --classifier-layer NAME to name its classifier")
    return linears[-1]


def _set_submodule(root: nn.Module, name: str, value: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, value)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def _state_dict_from(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            prefix = "module."
            if all(k.startswith(prefix) for k in tensors):  # saved from DataParallel/DDP
                tensors = {k[len(prefix):]: v for k, v in tensors.items()}
            return tensors
    raise AuditkitError(f"{path} holds no state dict (a dict of tensors, or a checkpoint with one under 'state_dict')")


def _read_weights(path: Path, unsafe_load: bool) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe_load)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        hint = " (it holds Python objects: pass --unsafe-load only if you trust the file)" if "weights_only" in str(exc) else ""
        raise AuditkitError(f"cannot read {path} as PyTorch weights: {first}{hint}") from None


def _module_from_file(path: Path, options: AdapterOptions) -> tuple[nn.Module, str]:
    from auditkit.nets import create_architecture

    if _is_torchscript(path):
        scripted = torch.jit.load(str(path), map_location="cpu")
        if options.arch is None:
            raise AuditkitError(
                f"{path} is TorchScript: pass --arch NAME (its architecture) so auditkit can read its features"
            )
        obj: Any = scripted.state_dict()
        kind = "torchscript"
    else:
        obj = _read_weights(path, options.unsafe_load)
        kind = "state_dict"
        if isinstance(obj, nn.Module):
            if not options.unsafe_load:  # pragma: no cover - weights_only refuses modules already
                raise AuditkitError(f"{path} is a pickled module; pass --unsafe-load only if you trust the file")
            return obj, "module"
    state = _state_dict_from(obj, path)
    if options.arch is None:
        raise AuditkitError(f"{path} is a state dict: pass --arch NAME (e.g. resnet18) to say what it is")
    probe_name, _ = _find_linear(create_architecture(options.arch, 2), options.classifier_layer)
    weight_key = f"{probe_name}.weight"
    if weight_key not in state:
        raise AuditkitError(
            f"{path} does not look like a {options.arch}: it has no {weight_key!r}; check --arch"
        )
    num_classes = int(state[weight_key].shape[0])
    model = create_architecture(options.arch, num_classes)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        shapes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise AuditkitError(
            f"weights in {path} do not fit architecture {options.arch} ({shapes[0] if shapes else exc}); check --arch"
        ) from None
    if missing or unexpected:
        detail = "; ".join(
            part for part in (
                f"missing {', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}" if missing else "",
                f"unexpected {', '.join(unexpected[:3])}{'…' if len(unexpected) > 3 else ''}" if unexpected else "",
            ) if part
        )
        raise AuditkitError(f"weights in {path} do not fit architecture {options.arch} ({detail}); check --arch")
    return model, kind


class TorchModel:
    """A white-box view of an ``nn.Module``: features = input of its final linear layer."""

    def __init__(self, module: nn.Module, *, description: str, digest: str, options: AdapterOptions) -> None:
        self.device = resolve_device(options.device)
        layer_name, linear = _find_linear(module, options.classifier_layer)
        self._weight = linear.weight.detach().to(torch.float64).cpu().numpy().copy()
        self._bias = (
            linear.bias.detach().to(torch.float64).cpu().numpy().copy()
            if linear.bias is not None
            else np.zeros(linear.out_features)
        )
        body = copy.deepcopy(module)
        _set_submodule(body, layer_name, nn.Identity())
        body.eval().requires_grad_(False)
        self.body = body.to(self.device).to(memory_format=torch.channels_last)
        self.description = description
        self.digest = digest
        self.num_classes = linear.out_features
        self.feature_dim = linear.in_features
        self.classifier_layer = layer_name
        self.input_spec = options.input_spec or InputSpec()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.input_spec.normalize(images.to(self.device))
        if self.input_spec.size is not None and tuple(x.shape[-2:]) != self.input_spec.size:
            x = nn.functional.interpolate(x, size=self.input_spec.size, mode="bilinear", align_corners=False, antialias=False)
        out = self.body(x.contiguous(memory_format=torch.channels_last))
        return out.reshape(out.shape[0], -1)

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self._weight, self._bias

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        weight = torch.as_tensor(self._weight, dtype=torch.float32, device=self.device)
        bias = torch.as_tensor(self._bias, dtype=torch.float32, device=self.device)
        return self.features(images).float() @ weight.T + bias


def from_module(module: nn.Module, options: AdapterOptions | None = None, *, description: str = "torch:module") -> TorchModel:
    """Wrap an in-memory module (library users, tests, the demo)."""
    return TorchModel(module, description=description, digest="in-memory", options=options or AdapterOptions())


def load_model(location: str, options: AdapterOptions) -> TorchModel:
    """Adapter entry point: load ``location`` (a file) as described by ``options``."""
    path = Path(location)
    if not path.is_file():
        raise AuditkitError(f"model file {path} does not exist")
    module, kind = _module_from_file(path, options)
    arch = options.arch or type(module).__name__
    return TorchModel(module, description=f"torch:{arch} ({kind})", digest=sha256_file(path), options=options)
