"""The image service's store keeps its records across schema changes (Alembic migrations)."""

import os
import sqlite3

from sqlalchemy import inspect

from kubestudio.image_builder.logs import stored_lines
from kubestudio.image_builder.models import MIGRATIONS, Base, Build, LogChunk
from kubestudio.services.store import Store

RELEASE_DUMP = os.path.join(os.path.dirname(__file__), "fixtures", "images-release-2026-11.sql")
VERSION_TABLE = "kubestudio_images_version"


def open_store(path):
    return Store(f"sqlite:///{path}", Base, migrations=MIGRATIONS, version_table=VERSION_TABLE)


def revision(store):
    with store.engine.connect() as connection:
        return connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()


def test_a_store_written_by_the_last_release_is_upgraded_with_every_record(tmp_path):
    path = tmp_path / "images.sqlite"
    with open(RELEASE_DUMP) as f, sqlite3.connect(path) as connection:
        connection.executescript(f.read())
    store = open_store(path)
    assert revision(store) == "0002"
    assert {"builds", "build_log_chunks", VERSION_TABLE} <= set(inspect(store.engine).get_table_names())
    with store.session() as db:
        done, queued = db.get(Build, "a1b2c3d4e5f6"), db.get(Build, "ffeeddccbbaa")
        assert (done.owner, done.status, done.digest, done.size) == ("alice", "succeeded", "sha256:" + "ab" * 32, 1234)
        assert done.to_json()["labels"] == {"kubestudio.io/user": "alice"}
        assert (queued.owner, queued.status, queued.steps) == ("bob", "queued", 3)
        assert "job" not in queued.to_json()  # the service's own bookkeeping stays private
    # the old log, kept in the record, is read as before
    assert [line for lines in stored_lines(store, "a1b2c3d4e5f6") for line in lines][-2:] == [
        "STEP 2/2: RUN echo hi",
        "hi",
    ]
    store.close()
    # opening it again changes nothing
    again = open_store(path)
    assert revision(again) == "0002"
    with again.session() as db:
        assert db.query(Build).count() == 2
    again.close()


def test_a_new_store_gets_every_revision_and_new_logs_go_to_chunks(tmp_path):
    store = open_store(tmp_path / "new.sqlite")
    assert revision(store) == "0002"
    with store.session() as db:
        db.add(LogChunk(build_id="x", seq=0, lines=2, text="one\ntwo"))
    assert list(stored_lines(store, "x")) == [["one", "two"]]
    store.close()


def test_a_store_from_between_releases_keeps_its_log_chunks(tmp_path):
    """Created on use (before versions) with the chunks table already there."""
    path = tmp_path / "between.sqlite"
    unversioned = Store(f"sqlite:///{path}", Base)  # create_all, as the code between releases did
    with unversioned.session() as db:
        db.add(LogChunk(build_id="y", seq=0, lines=1, text="kept"))
    unversioned.close()
    store = open_store(path)
    assert revision(store) == "0002"
    assert list(stored_lines(store, "y")) == [["kept"]]
    store.close()
