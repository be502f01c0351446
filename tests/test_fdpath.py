"""fdpath.digest: what a pipeline's cache hashes in a user's workspace, by descriptor, never
following a link the user put in the way."""

import os

import pytest

from kubestudio import fdpath


def test_a_file_and_a_folder_hash_by_content(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("one")
    (tmp_path / "data" / "sub").mkdir()
    (tmp_path / "data" / "sub" / "b.txt").write_text("two")
    (tmp_path / "model.pkl").write_bytes(b"\x00\x01")
    root = str(tmp_path)
    folder, file = fdpath.digest(root, "data"), fdpath.digest(root, "model.pkl")
    assert len(folder) == 64 and folder != file
    assert fdpath.digest(root, "data/") == folder and fdpath.digest(root, "./data") == folder
    assert fdpath.digest(root, "missing.txt") is None and fdpath.digest(root, "nope/x") is None
    (tmp_path / "data" / "sub" / "b.txt").write_text("tw0")  # same size, other bytes
    assert fdpath.digest(root, "data") != folder
    (tmp_path / "data" / "sub" / "b.txt").write_text("two")
    assert fdpath.digest(root, "data") == folder
    os.rename(tmp_path / "data" / "a.txt", tmp_path / "data" / "c.txt")  # a name is content too
    assert fdpath.digest(root, "data") != folder


def test_a_link_on_the_way_is_refused_and_one_inside_is_its_text(tmp_path):
    secret = tmp_path / "other-user"
    secret.mkdir()
    (secret / "key").write_text("s3cret")
    workspace = tmp_path / "mnt"
    workspace.mkdir()
    (workspace / "ln").symlink_to(secret)
    (workspace / "file-ln").symlink_to(secret / "key")
    root = str(workspace)
    with pytest.raises(fdpath.NotHashable, match="is a link or not a folder"):
        fdpath.digest(root, "ln/key")
    with pytest.raises(fdpath.NotHashable, match="is a link"):
        fdpath.digest(root, "file-ln")
    with pytest.raises(fdpath.NotHashable, match="leaves the folder"):
        fdpath.digest(root, "../other-user/key")
    os.mkfifo(workspace / "fifo")
    with pytest.raises(fdpath.NotHashable):
        fdpath.digest(root, "fifo")
    # inside a folder, a link counts as where it points, and what it points at is never read
    before = fdpath.digest(root, "")
    (secret / "key").write_text("changed")
    assert fdpath.digest(root, "") == before


def test_more_than_the_limit_is_refused(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 5000)
    with pytest.raises(fdpath.NotHashable, match="more data"):
        fdpath.digest(str(tmp_path), "big", limit=4096)


def test_read_text_reads_a_small_file_and_nothing_through_a_link(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "acc.txt").write_text("0.93\n")
    (tmp_path / "big.txt").write_text("x" * 5000)
    (tmp_path / "ln").symlink_to(tmp_path / "runs")
    root = str(tmp_path)
    assert fdpath.read_text(root, "runs/acc.txt") == "0.93"
    assert fdpath.read_text(root, "runs/none.txt") is None and fdpath.read_text(root, "no/acc.txt") is None
    with pytest.raises(fdpath.NotHashable, match="more than 4096 bytes"):
        fdpath.read_text(root, "big.txt")
    with pytest.raises(fdpath.NotHashable, match="is a link"):
        fdpath.read_text(root, "ln/acc.txt")
    with pytest.raises(fdpath.NotHashable, match="not a regular file"):
        fdpath.read_text(root, "runs")


def test_exists_opens_each_part_without_following_and_reads_nothing(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "model.pkl").write_bytes(b"m")
    (tmp_path / "runs" / "unreadable").write_bytes(b"secret")
    (tmp_path / "runs" / "unreadable").chmod(0)  # exists() never opens the file itself
    (tmp_path / "ln").symlink_to(tmp_path / "runs")
    (tmp_path / "runs" / "last").symlink_to("model.pkl")
    root = str(tmp_path)
    assert fdpath.exists(root, "runs/model.pkl") and fdpath.exists(root, "runs") and fdpath.exists(root, "")
    assert fdpath.exists(root, "runs/unreadable")
    assert not fdpath.exists(root, "runs/gone") and not fdpath.exists(root, "gone/model.pkl")
    with pytest.raises(fdpath.NotHashable, match="is a link or not a folder"):
        fdpath.exists(root, "ln/model.pkl")
    with pytest.raises(fdpath.NotHashable, match="is a link"):
        fdpath.exists(root, "runs/last")
    with pytest.raises(fdpath.NotHashable, match="leaves the folder"):
        fdpath.exists(root, "runs/../..")
