"""Where auditkit keeps its state: the registry URL and the owner's key directory."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_REGISTRY_FILE = "registry.db"
REGISTRY_ENV = "AUDITKIT_REGISTRY"
KEYS_ENV = "AUDITKIT_KEYS"


def registry_url(explicit: str | None = None) -> str:
    """The SQLAlchemy URL of the registry: ``explicit``, else ``$AUDITKIT_REGISTRY``,
    else SQLite ``./registry.db``. A bare file path is accepted and turned into a SQLite URL."""
    value = explicit or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY_FILE
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def keys_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The owner's key directory: ``explicit``, else ``$AUDITKIT_KEYS``, else
    ``$XDG_CONFIG_HOME/auditkit`` (``~/.config/auditkit``)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "auditkit"
