"""SQL store shared by the hub services: SQLite by default, any SQLAlchemy URL, with schema versions.

Each service declares its tables on its own ``DeclarativeBase`` and keeps Alembic migrations for
them (``<service>/migrations/versions``), as JupyterHub does for its own database. Opening a
:class:`Store` brings the database to the newest revision: a new database gets every migration,
a database from before schema versions (its tables exist, the version table does not) is stamped
with the first revision, which describes exactly that schema, and then upgraded. Each service
has a version table of its own, so services may share one database. SQLite runs in WAL mode so
page reads never wait for a build that is writing its log.
"""

import os
from contextlib import contextmanager
from datetime import datetime, timezone

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.orm import sessionmaker


def utcnow():
    """Now, timezone-aware (the store's DateTime(timezone=True) columns)."""
    return datetime.now(timezone.utc)


def aware(when):
    """A stored time as a timezone-aware UTC time (SQLite hands back naive times); None stays None."""
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=timezone.utc)


def iso(when):
    """A stored time as the API shows it: ISO 8601 in UTC with a Z."""
    if when is None:
        return None
    return aware(when).isoformat().replace("+00:00", "Z")


class Store:
    def __init__(self, url, base, migrations=None, version_table="alembic_version"):
        self.url = url
        kwargs = {}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                private_file(path)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", sqlite_pragmas)
        if migrations:
            migrate(self.engine, migrations, version_table, base.metadata)
        else:
            base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self):
        """A session committed on success and rolled back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self):
        self.engine.dispose()


def migrate(engine, migrations, version_table, metadata):
    """Upgrade the database to the newest revision in ``migrations``; the revision it is at now."""
    config = Config()
    config.set_main_option("script_location", migrations)
    script = ScriptDirectory.from_config(config)
    base_revision = script.get_base()
    with engine.begin() as connection:
        tables = set(inspect(connection).get_table_names())
        unversioned = version_table not in tables and bool(tables & set(metadata.tables))

        def upgrade(revision, _context):
            return script._upgrade_revs("head", revision)

        with EnvironmentContext(config, script, fn=upgrade, destination_rev="head") as environment:
            environment.configure(connection=connection, target_metadata=metadata, version_table=version_table)
            context = environment.get_context()
            if unversioned:
                # written before schema versions: exactly the first revision's schema
                context.stamp(script, base_revision)
            with environment.begin_transaction():
                environment.run_migrations()
            return context.get_current_revision()


def private_file(path):
    """Create ``path`` (or tighten it) as mode 0600: SQLite gives its -wal and -shm files the mode of
    the database, so records, logs and sessions are readable by the service's account only."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.chmod(path + suffix, 0o600)


def sqlite_pragmas(dbapi_connection, _record=None):
    """WAL with synchronous=NORMAL: readers never wait for a writer, and a commit appends to the
    log instead of syncing the database file (a power cut may lose the last commits, never
    corrupt the file). A SQLAlchemy ``connect`` listener."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_WAL_FILES = set()


def use_wal_for(path):
    """Put every SQLite connection this process opens on the database file ``path`` in WAL mode
    (:func:`sqlite_pragmas`), whoever makes the engine: for a database whose engine is not ours,
    such as JupyterHub's own. Safe to call more than once."""
    import sqlite3

    from sqlalchemy.engine import Engine

    target = os.path.realpath(path)
    if target in _WAL_FILES:
        return
    _WAL_FILES.add(target)
    if len(_WAL_FILES) > 1:
        return  # the listener is there already and reads the set

    def on_connect(dbapi_connection, record):
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cursor = dbapi_connection.cursor()
        try:
            files = {os.path.realpath(row[2]) for row in cursor.execute("PRAGMA database_list") if row[2]}
        finally:
            cursor.close()
        if files & _WAL_FILES:
            sqlite_pragmas(dbapi_connection, record)

    event.listen(Engine, "connect", on_connect)
