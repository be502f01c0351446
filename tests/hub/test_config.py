import os

import pytest
from jupyterhub import orm
from sqlalchemy import text
from traitlets.config import Config

from kubestudio.hub import configure
from kubestudio.hub.config import KubeStudio
from kubestudio.hub.membership import ensure_member
from kubestudio.spawner.local import LocalWorkspaceSpawner


def test_configure_embedded_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBESTUDIO_PASSWORD", "s3cret")
    c = Config()
    configure(c, data_dir=str(tmp_path / "data"), projects={"vision": {"users": ["a"], "max_gpus": 2}})
    assert c.JupyterHub.spawner_class is LocalWorkspaceSpawner
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000"
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path / 'data' / 'jupyterhub.sqlite'}"
    assert c.DummyAuthenticator.password == "s3cret"
    assert c.JupyterHub.load_groups == {
        "public": {"users": []},
        "vision": {"users": ["a"], "properties": {"max_gpus": 2}},
    }
    assert c.LocalWorkspaceSpawner.data_dir == str(tmp_path / "data")
    assert "from $KUBESTUDIO_PASSWORD" in capsys.readouterr().err
    assert not (tmp_path / "data" / "dummy-password").exists()


def test_configure_reads_c_kubestudio_first(tmp_path):
    c = Config()
    c.KubeStudio.bind_url = "http://127.0.0.1:9999"
    configure(c, data_dir=str(tmp_path))
    assert c.JupyterHub.bind_url == "http://127.0.0.1:9999"


def test_bad_catalog_exits_with_message(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("profiles:\n  - slug: ok\n  - slug: x\n    gpu: {count: -1}\n")
    with pytest.raises(SystemExit) as e:
        configure(Config(), data_dir=str(tmp_path), profiles_file=str(bad))
    assert e.value.code == 1
    assert f"{bad}: profiles[1].gpu.count: must be an integer >= 0" in capsys.readouterr().err


def test_projects_file_and_errors(tmp_path):
    projects = tmp_path / "projects.yaml"
    projects.write_text("projects:\n  nlp:\n    users: [x]\n    volume_mount: 'a(pvc):/a'\n")
    groups = KubeStudio(data_dir=str(tmp_path), projects_file=str(projects)).load_projects()
    assert groups["nlp"] == {"users": ["x"], "properties": {"volume_mount": "a(pvc):/a"}}
    projects.write_text("projects:\n  nlp:\n    users: x\n  cv:\n    max_servers: -3\n")
    with pytest.raises(ValueError) as e:
        KubeStudio(data_dir=str(tmp_path), projects_file=str(projects)).load_projects()
    assert f"{projects}: project 'nlp': users: must be a list of usernames" in str(e.value)
    assert "project 'cv': max_servers: must be an integer >= 0" in str(e.value)


def test_generated_password_kept_private(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBESTUDIO_PASSWORD", raising=False)
    studio = KubeStudio(data_dir=str(tmp_path))
    first, generated = studio.password()
    assert generated and len(first) >= 12
    assert studio.password() == (first, True)
    assert oct(os.stat(tmp_path / "dummy-password").st_mode & 0o777) == "0o600"


def test_ensure_member_on_real_jupyterhub_orm():
    db = orm.new_session_factory("sqlite://")()
    user = orm.User(name="zoe")
    db.add(user)
    db.commit()
    assert ensure_member(db, user) is True
    assert ensure_member(db, user) is False
    assert [g.name for g in user.groups] == ["public"]


def journal_mode(session):
    return session.execute(text("PRAGMA journal_mode")).scalar()


def test_hub_database_runs_in_wal_mode(tmp_path, monkeypatch):
    """JupyterHub's own engine (orm.new_session_factory, as the hub makes it) opens the hub's
    database in WAL mode; another SQLite file in the same process keeps its own journal."""
    monkeypatch.setenv("KUBESTUDIO_PASSWORD", "s3cret")
    c = Config()
    configure(c, data_dir=str(tmp_path / "data"))
    hub_db = orm.new_session_factory(c.JupyterHub.db_url)()
    other = orm.new_session_factory(f"sqlite:///{tmp_path / 'other.sqlite'}")()
    try:
        assert journal_mode(hub_db) == "wal"
        assert hub_db.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert journal_mode(other) == "delete"
    finally:
        hub_db.close()
        other.close()
    assert oct(os.stat(tmp_path / "data" / "jupyterhub.sqlite").st_mode & 0o777) == "0o600"


def test_hub_database_wal_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESTUDIO_PASSWORD", "s3cret")
    c = Config()
    configure(c, data_dir=str(tmp_path / "nfs"), hub_db_wal=False)
    hub_db = orm.new_session_factory(c.JupyterHub.db_url)()
    try:
        assert journal_mode(hub_db) == "delete"
    finally:
        hub_db.close()


def test_idle_culler_is_off_on_the_embedded_default_and_scoped_when_on(tmp_path):
    c = Config()
    configure(c, data_dir=str(tmp_path / "off"))
    assert "idle-culler" not in [s["name"] for s in c.JupyterHub.services]
    c = Config()
    configure(
        c, data_dir=str(tmp_path / "on"), cull_idle_servers=True, cull_timeout=600, cull_every=60, cull_max_age=86400
    )
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert culler["command"][1:] == [
        "-m",
        "jupyterhub_idle_culler",
        "--timeout=600",
        "--cull-every=60",
        "--concurrency=10",
        "--max-age=86400",
    ]
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler")
    assert role == {
        "name": "idle-culler",
        "services": ["idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    }
    with pytest.raises(SystemExit):
        configure(Config(), data_dir=str(tmp_path / "bad"), cull_idle_servers=True, cull_timeout=0)
