import os
import sqlite3
import stat
from pathlib import Path

import pytest

from auditkit.errors import AuditkitError
from auditkit.keys import create_keys, load_keys
from auditkit.owner import init_owner, owner_keys_for
from auditkit.registry.store import head_revision, open_registry


def test_keys_are_private_and_never_overwritten(tmp_path: Path) -> None:
    keys, created = create_keys(tmp_path / "k")
    assert created
    for name in ("master.secret", "signing.key"):
        assert stat.S_IMODE((tmp_path / "k" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    again, created_again = create_keys(tmp_path / "k")
    assert not created_again
    assert again.master_secret == keys.master_secret and again.fingerprint == keys.fingerprint
    assert keys.master_secret.hex() not in repr(keys)


def test_world_readable_secret_is_refused(tmp_path: Path) -> None:
    create_keys(tmp_path / "k")
    os.chmod(tmp_path / "k" / "master.secret", 0o644)
    with pytest.raises(AuditkitError, match="chmod 600"):
        load_keys(tmp_path / "k")


def test_half_a_key_set_is_refused(tmp_path: Path) -> None:
    create_keys(tmp_path / "k")
    (tmp_path / "k" / "signing.key").unlink()
    with pytest.raises(AuditkitError, match="incomplete"):
        create_keys(tmp_path / "k")


def test_registry_stores_public_key_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    result = init_owner(url, tmp_path / "k")
    keys = load_keys(tmp_path / "k")
    dump = b"".join(line.encode() for line in sqlite3.connect(tmp_path / "r.db").iterdump())
    assert keys.master_secret.hex().encode() not in dump
    assert result.fingerprint.encode() in dump
    registry = open_registry(url)
    assert owner_keys_for(registry, tmp_path / "k").fingerprint == result.fingerprint
    create_keys(tmp_path / "other")
    with pytest.raises(AuditkitError, match="not this registry's owner"):
        owner_keys_for(registry, tmp_path / "other")


def test_missing_registry_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(AuditkitError, match="auditkit init"):
        open_registry(f"sqlite:///{tmp_path / 'none.db'}")


def test_future_schema_is_refused_and_old_schema_is_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    init_owner(url, tmp_path / "k")
    db = sqlite3.connect(tmp_path / "r.db")
    db.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    db.commit()
    with pytest.raises(AuditkitError, match="newer auditkit"):
        open_registry(url)
    # An older schema (here: before the first revision) is refused on open, and migrated by init.
    db.execute("DELETE FROM alembic_version")
    db.execute("DROP TABLE marked_items")
    db.execute("DROP TABLE audits")
    db.execute("DROP TABLE releases")
    db.execute("DROP TABLE datasets")
    db.execute("DROP TABLE owner")
    db.commit()
    db.close()
    with pytest.raises(AuditkitError, match="auditkit init"):
        open_registry(url)
    init_owner(url, tmp_path / "k")
    assert open_registry(url) is not None


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """The schema built by the migrations is exactly the models' schema (no pending change)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from auditkit.registry.models import Base

    url = f"sqlite:///{tmp_path / 'r.db'}"
    registry = open_registry(url, create=True)
    with registry.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, Base.metadata) == []
