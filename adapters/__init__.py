"""Model adapters: how auditkit reads a suspect (or marking) model.

Built-in adapters are listed in :data:`BUILTIN` and imported lazily; other packages add
adapters through the entry-point group ``auditkit.adapters`` (an entry point names a
loader ``load_model(location, options) -> WhiteBoxModel | BlackBoxModel``). See
``docs/adapters.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from adapters.base import AdapterOptions, BlackBoxModel, InputSpec, WhiteBoxModel
from auditkit.errors import AuditkitError

ENTRY_POINT_GROUP = "auditkit.adapters"

#: name -> "module:function"; read-only to plugins, which use the entry-point group.
BUILTIN: dict[str, str] = {
    "torch": "adapters.pytorch:load_model",
    "timm": "adapters.timm_models:load_model",
    "onnx": "adapters.onnx_models:load_model",
    "http": "adapters.http_api:load_model",
}

Loader = Callable[[str, AdapterOptions], Any]


def available_adapters() -> dict[str, str]:
    """Every adapter name with where it comes from (built-ins win over plugins of the same name)."""
    found = {ep.name: f"plugin {ep.value}" for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found.update({name: f"built-in {target}" for name, target in BUILTIN.items()})
    return dict(sorted(found.items()))


def get_loader(name: str) -> Loader:
    """The loader of adapter ``name``."""
    if name in BUILTIN:
        module_name, function = BUILTIN[name].split(":")
        return getattr(importlib.import_module(module_name), function)  # type: ignore[no-any-return]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    raise AuditkitError(f"no adapter named {name!r}; installed adapters: {', '.join(available_adapters())}")


def resolve_adapter_name(location: str, adapter: str = "auto") -> str:
    """``auto`` picks ``http`` for URLs, ``onnx`` for ``*.onnx`` files and ``torch`` otherwise."""
    if adapter != "auto":
        return adapter
    if location.startswith(("http://", "https://")):
        return "http"
    return "onnx" if location.lower().endswith(".onnx") else "torch"


def load_model(location: str, options: AdapterOptions, adapter: str = "auto") -> WhiteBoxModel | BlackBoxModel:
    """Load a model through adapter ``adapter`` (``auto``: chosen from the location)."""
    return get_loader(resolve_adapter_name(location, adapter))(location, options)  # type: ignore[no-any-return]


__all__ = [
    "AdapterOptions",
    "BlackBoxModel",
    "InputSpec",
    "WhiteBoxModel",
    "available_adapters",
    "get_loader",
    "load_model",
    "resolve_adapter_name",
]
