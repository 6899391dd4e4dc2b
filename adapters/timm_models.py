"""timm adapter: ``--adapter timm --arch NAME --model CHECKPOINT``.

The model is built with ``timm.create_model(NAME, pretrained=False, num_classes=C)`` (C read
from the checkpoint) and read through timm's own contract — ``forward_features`` then
``forward_head(pre_logits=True)`` for the features, ``get_classifier()`` for the head — so every
timm family (ResNet, ConvNeXt, EfficientNet, ViT/DeiT with their token pooling) works the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from adapters.base import AdapterOptions, InputSpec
from adapters.pytorch import _read_weights, _state_dict_from
from auditkit.device import resolve_device
from auditkit.errors import AuditkitError
from auditkit.fsutil import sha256_file


def _create(arch: str, num_classes: int) -> nn.Module:
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch}*")[:5]
        hint = f"; similar names: {', '.join(close)}" if close else "; see timm.list_models()"
        raise AuditkitError(f"timm has no model named {arch!r}{hint}")
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def _head_name(model: nn.Module) -> str:
    head = model.get_classifier()  # type: ignore[operator]
    if not isinstance(head, nn.Linear):
        raise AuditkitError(f"the classifier of this timm model is a {type(head).__name__}, not a linear layer")
    return next(name for name, module in model.named_modules() if module is head)


class TimmModel:
    """White-box view of a timm model through its standard API."""

    def __init__(self, model: nn.Module, *, description: str, digest: str, options: AdapterOptions) -> None:
        self.device = resolve_device(options.device)
        head = model.get_classifier()  # type: ignore[operator]
        self._weight = head.weight.detach().double().cpu().numpy().copy()
        self._bias = head.bias.detach().double().cpu().numpy().copy() if head.bias is not None else np.zeros(head.out_features)
        self.model = model.eval().requires_grad_(False).to(self.device)
        config = getattr(model, "pretrained_cfg", {}) or {}
        self.input_spec = options.input_spec or InputSpec(
            mean=tuple(config.get("mean", InputSpec().mean)), std=tuple(config.get("std", InputSpec().std))
        )
        self.description, self.digest = description, digest
        self.num_classes, self.feature_dim = head.out_features, head.in_features

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.input_spec.normalize(images.to(self.device))
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)  # type: ignore[operator]

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self._weight, self._bias


def load_model(location: str, options: AdapterOptions) -> TimmModel:
    """Adapter entry point."""
    path = Path(location)
    if not path.is_file():
        raise AuditkitError(f"model file {path} does not exist")
    if options.arch is None:
        raise AuditkitError("the timm adapter needs --arch NAME (a timm model name, e.g. resnet18 or vit_tiny_patch16_224)")
    state = _state_dict_from(_read_weights(path, options.unsafe_load), path)
    key = f"{_head_name(_create(options.arch, 2))}.weight"
    if key not in state:
        raise AuditkitError(f"{path} does not look like timm {options.arch}: it has no {key!r}; check --arch")
    model = _create(options.arch, int(state[key].shape[0]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise AuditkitError(f"weights in {path} do not fit timm {options.arch} ({first}); check --arch") from None
    return TimmModel(model, description=f"timm:{options.arch}", digest=sha256_file(path), options=options)
