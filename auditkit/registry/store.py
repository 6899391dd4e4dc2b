"""Opening the registry: any SQLAlchemy URL, schema versioned by Alembic migrations.

``open_registry(url, create=True)`` (used by ``auditkit init``) applies pending migrations;
every other open checks that the database's schema revision is exactly the code's head
and refuses, with a message saying what to do, when it is older or unknown (newer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from auditkit.errors import AuditkitError

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(connection=None) -> Config:  # type: ignore[no-untyped-def]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _make_engine(url: str) -> Engine:
    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise AuditkitError(f"cannot use registry URL {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never see a half-written commit
            cursor.close()
    return engine


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) and len(url) > len(prefix) else None


class Registry:
    """A handle on an opened, schema-checked registry database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on any exception."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_registry(url: str, *, create: bool = False) -> Registry:
    """Open the registry at ``url``. With ``create``, create it or migrate it to the code's
    schema; without, refuse a missing, older or newer database with a clear message."""
    path = _sqlite_path(url)
    if path is not None and not create and not path.exists():
        raise AuditkitError(f"no registry at {path}; run `auditkit init` first (or pass --registry / AUDITKIT_REGISTRY)")
    engine = _make_engine(url)
    head = head_revision()
    try:
        current = _current_revision(engine)
        known = {rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
        if current is not None and current not in known:
            raise AuditkitError(
                f"registry {url} has schema revision {current}, which this auditkit does not know: it was "
                "written by a newer auditkit; upgrade auditkit to open it"
            )
        if current != head:
            if not create:
                if current is None and not inspect(engine).get_table_names():
                    raise AuditkitError(f"registry {url} is empty; run `auditkit init` first")
                raise AuditkitError(
                    f"registry {url} has schema revision {current}, older than this auditkit's {head}; "
                    "run `auditkit init` to migrate it (back it up first)"
                )
            with engine.begin() as connection:
                command.upgrade(_alembic_config(connection), "head")
    except SQLAlchemyError as exc:
        raise AuditkitError(f"cannot open registry {url}: {exc.__class__.__name__}: {exc}".splitlines()[0]) from None
    return Registry(engine)
