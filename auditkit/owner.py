"""``auditkit init``: the registry and the owner's keys, created idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from auditkit.errors import AuditkitError
from auditkit.keys import OwnerKeys, create_keys, load_keys
from auditkit.registry.models import Owner
from auditkit.registry.store import Registry, open_registry


@dataclass(frozen=True)
class InitResult:
    keys_created: bool
    fingerprint: str
    keys_dir: Path
    registry_url: str


def init_owner(registry_url: str, keys_dir: Path) -> InitResult:
    """Create (or migrate) the registry and create the owner keys unless they exist.

    Idempotent: existing keys are never overwritten. A registry that already belongs to a
    different signing key is refused, so one registry never mixes two owners' evidence.
    """
    keys, created = create_keys(keys_dir)
    registry = open_registry(registry_url, create=True)
    try:
        with registry.session() as session:
            owner = session.scalar(select(Owner))
            if owner is None:
                session.add(Owner(public_key_pem=keys.public_pem, fingerprint=keys.fingerprint))
            elif owner.fingerprint != keys.fingerprint:
                raise AuditkitError(
                    f"registry belongs to key {owner.fingerprint[:16]}… but {keys_dir} holds key "
                    f"{keys.fingerprint[:16]}…; point --keys at the owner's key directory"
                )
    finally:
        registry.close()
    return InitResult(created, keys.fingerprint, Path(keys_dir), registry_url)


def owner_keys_for(registry: Registry, keys_dir: Path) -> OwnerKeys:
    """Load the owner keys and check they are the registry's owner."""
    keys = load_keys(keys_dir)
    with registry.session() as session:
        owner = session.scalar(select(Owner))
    if owner is None:
        raise AuditkitError("registry has no owner key; run `auditkit init`")
    if owner.fingerprint != keys.fingerprint:
        raise AuditkitError(
            f"keys in {keys_dir} (fingerprint {keys.fingerprint[:16]}…) are not this registry's owner "
            f"({owner.fingerprint[:16]}…); point --keys at the right key directory"
        )
    return keys
