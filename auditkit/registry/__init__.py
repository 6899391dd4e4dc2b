"""The registry of datasets, releases, marked items and audits (SQLAlchemy + Alembic)."""

from auditkit.registry.store import Registry, open_registry

__all__ = ["Registry", "open_registry"]
