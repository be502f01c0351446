import os

import pytest

from kubestudio.spawner.storage import ensure_user_folders, user_folders, user_slug

TRICKY = [
    "alice",
    "first.last",
    "someone@example.org",
    "ünïcödé-名前",
    "..",
    "../../etc",
    ".",
    "a/b",
    "x" * 200,
    "Alice",
    "-leading-dash",
    "with space",
    "evil\x00nul",
]


@pytest.mark.parametrize("name", TRICKY)
def test_every_folder_stays_inside_data_dir(tmp_path, name):
    data = tmp_path / "data"
    folders = user_folders(str(data), name)
    ensure_user_folders(folders)
    users = os.path.realpath(data / "users")
    for path in (folders.root, folders.workspace, folders.archives, folders.home):
        real = os.path.realpath(path)
        assert os.path.commonpath([real, users]) == users
        assert os.path.isdir(real)
    assert os.path.dirname(folders.root) == str(data / "users")
    # the archives link resolves to the user's own archives folder
    assert os.path.realpath(os.path.join(folders.workspace, "archives")) == os.path.realpath(folders.archives)
    assert len(os.path.basename(folders.root)) <= 63


def test_same_name_same_folder_and_distinct_names_distinct_folders(tmp_path):
    paths = {name: user_folders(str(tmp_path), name).root for name in TRICKY}
    assert user_folders(str(tmp_path), "first.last").root == paths["first.last"]
    assert len(set(paths.values())) == len(TRICKY)
    assert user_slug("alice") == "alice"
    assert user_slug("Alice") != "alice"


def test_user_file_named_archives_is_kept(tmp_path):
    folders = user_folders(str(tmp_path), "bob")
    os.makedirs(folders.workspace)
    (tmp_path / "users" / "bob" / "mnt" / "archives").write_text("mine")
    ensure_user_folders(folders)
    assert (tmp_path / "users" / "bob" / "mnt" / "archives").read_text() == "mine"


def test_folders_are_private(tmp_path):
    folders = user_folders(str(tmp_path), "carol")
    ensure_user_folders(folders)
    assert os.stat(folders.workspace).st_mode & 0o077 == 0
