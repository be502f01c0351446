"""Build requests, Dockerfiles and contexts: every bad input is refused with the field at fault."""

import os

import pytest

from kubestudio.image_builder import dockerfile as df
from kubestudio.image_builder.context import open_context, scan_context
from kubestudio.image_builder.spec import RequestError, content_hash, environment_dockerfile, parse_request


def refused(body, status=400):
    with pytest.raises(RequestError) as e:
        parse_request(body)
    assert e.value.status == status
    return str(e.value)


def test_one_kind_exactly():
    assert "exactly one of" in refused({})
    assert "got context, dockerfile_text" in refused({"context": "a", "dockerfile_text": "FROM x"})
    assert refused({"context": "a", "colour": "red"}).startswith("colour: unknown field")


def test_kinds_and_defaults():
    r = parse_request({"context": "projects/My Image/"})
    assert (r.kind, r.name, r.dockerfile, r.tag) == ("context", "my-image", "Dockerfile", None)
    r = parse_request({"dockerfile_text": "FROM busybox", "name": "tool", "tag": "v1.2"})
    assert (r.kind, r.name, r.tag) == ("dockerfile_text", "tool", "v1.2")
    r = parse_request({"environment": {"base": "python:3.11", "pip": ["torch==2.3.0", "transformers[torch]>=4"]}})
    assert r.environment == {"base": "python:3.11", "pip": ["torch==2.3.0", "transformers[torch]>=4"]}
    r = parse_request({"from_server": "gpu", "base": "registry.example.org/team/py:1"})
    assert (r.kind, r.from_server, r.name) == ("from_server", "gpu", "server-gpu")


@pytest.mark.parametrize("name", ["UPPER", "-lead", "trail-", "a/b", "a b", "x" * 129, "ä"])
def test_bad_names(name):
    assert refused({"context": "a", "name": name}).startswith("name:")


@pytest.mark.parametrize("tag", [".x", "-x", "a:b", "a/b", "t" * 129, "sp ace"])
def test_bad_tags(tag):
    assert refused({"context": "a", "tag": tag}).startswith("tag:")


def test_environment_checks():
    assert refused({"environment": "numpy"}).startswith("environment:")
    assert refused({"environment": {"pip": ["x"]}}).startswith("environment.base:")
    assert refused({"environment": {"base": "Not A Ref!", "pip": ["x"]}}).startswith("environment.base:")
    assert "not a package" in refused({"environment": {"base": "python:3", "pip": ["x; rm -rf /"]}})
    assert "not a package" in refused({"environment": {"base": "python:3", "apt": ["$(reboot)"]}})
    assert refused({"environment": {"base": "python:3"}}).startswith("environment: list at least one")
    assert refused({"environment": {"base": "python:3", "npm": ["x"]}}).startswith("environment.npm:")


def test_environment_dockerfile_quotes_and_parses():
    text = environment_dockerfile({"base": "python:3.11", "apt": ["ffmpeg"], "pip": ["numpy>=1.26", "a[b]"]})
    assert text.startswith("FROM python:3.11\n")
    assert "pip install --no-cache-dir 'numpy>=1.26' 'a[b]'" in text
    assert [i[1] for i in df.parse(text)] == ["FROM", "USER", "RUN", "RUN"]


def test_other_fields_checked():
    assert refused({"dockerfile_text": "FROM x", "dockerfile": "D"}).startswith("dockerfile: only used with context")
    assert refused({"context": "a", "base": "python:3"}).startswith("base: only used with from_server")
    assert refused({"context": "a", "labels": {"Bad Key": "v"}}).startswith("labels:")
    assert refused({"context": "a", "repository": "../etc"}).startswith("repository:")
    assert refused({"dockerfile_text": "x" * (300 * 1024)}, 413).startswith("dockerfile_text: longer")
    assert refused({"context": "a\0b"}).startswith("context: must not contain NUL")


def test_dockerfile_parse():
    steps = df.parse(
        "# syntax=docker/dockerfile:1\nARG V=1\nFROM busybox:${V} AS base\n\nRUN echo a \\\n  && echo b\n"
        "# comment\nCOPY . /src\nFROM base\n"
    )
    assert [s[1] for s in steps] == ["ARG", "FROM", "RUN", "COPY", "FROM"]
    assert steps[2] == (5, "RUN", "echo a  && echo b")


def test_dockerfile_reads_continuations_and_mounts_as_buildah_does():
    # a no-break space after the backslash ends the line for buildah, so it does here
    steps = df.parse(
        "FROM scratch\nLABEL a=b \\\u00a0\nCOPY --from=x/y /a /b\nRUN cat <<< here-string\n"
        "RUN --mount=type=cache,target=/c --mount=type=bind,target=/b,rw=false ls\n"
    )
    assert [s[1] for s in steps] == ["FROM", "LABEL", "COPY", "RUN", "RUN"]
    assert df.image_references(steps) == [(3, "x/y")]


@pytest.mark.parametrize(
    "text,message",
    [
        ("FORM busybox\n", "line 1: unknown instruction 'FORM' (did you mean FROM?)"),
        ("RUN echo\n", "the first instruction (after ARGs) must be FROM"),
        ("FROM busybox\nRUN echo \\\n", "continues past the end of the file"),
        ("# only a comment\n", "it has no instructions"),
        ("FROM busybox\nCOPY\n", "line 2: COPY needs arguments"),
        ("FROM busybox\nRUN <<EOF\necho\nEOF\n", "line 2: here-documents (<<EOF) are not supported"),
        ("FROM busybox\nCOPY <<-'X' /f\nx\nX\n", "line 2: here-documents (<<X) are not supported"),
        (
            "FROM busybox\nRUN --mount=type=bind,from=l,source=/r,target=/h ls\n",
            "line 2: RUN --mount=type=bind with from=",
        ),
        ("FROM busybox\nRUN --mount=target=/h,rw ls\n", "CVE-2024-1753"),
        ("FROM busybox\nRUN --mount=type=bind,target=/h,readwrite=true ls\n", "with rw is refused"),
    ],
)
def test_dockerfile_errors(text, message):
    with pytest.raises(df.DockerfileError) as e:
        df.parse(text)
    assert message in str(e.value)


def test_content_hash_is_stable_and_sensitive():
    spec = {"kind": "context", "context": "a", "name": "n"}
    assert content_hash(spec, "FROM x", "d1") == content_hash(dict(reversed(spec.items())), "FROM x", "d1")
    assert content_hash(spec, "FROM x", "d1") != content_hash(spec, "FROM x", "d2")
    assert content_hash(spec, "FROM x", "d1") != content_hash(spec, "FROM y", "d1")


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "alice"
    (ws / "proj").mkdir(parents=True)
    (ws / "proj" / "Dockerfile").write_text("FROM busybox\n")
    (ws / "proj" / "data.txt").write_text("data")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key").write_text("do not read")
    return ws


def resolve_context(workspace, context, dockerfile="Dockerfile"):
    with open_context(workspace, context, dockerfile) as opened:
        return opened.subpath, opened.dockerfile


def test_context_inside_workspace(workspace):
    with open_context(str(workspace), "proj") as opened:
        assert (opened.subpath, opened.dockerfile, opened.dockerfile_text) == ("proj", "Dockerfile", "FROM busybox\n")
        digest, size, files = scan_context(opened, 1 << 20)
    assert (size, files) == (17, 2)
    (workspace / "proj" / "data.txt").write_text("changed")
    with open_context(str(workspace), "proj") as opened:
        assert scan_context(opened, 1 << 20)[0] != digest


def test_links_inside_the_workspace_are_followed_by_hand(workspace):
    os.symlink("proj", workspace / "alias")
    os.symlink(str(workspace / "proj"), workspace / "absolute")
    (workspace / "proj" / "docker").mkdir()
    (workspace / "proj" / "docker" / "Dockerfile.dev").write_text("FROM busybox\nRUN true\n")
    os.symlink("docker/Dockerfile.dev", workspace / "proj" / "Dockerfile.link")
    assert resolve_context(str(workspace), "alias") == ("proj", "Dockerfile")
    assert resolve_context(str(workspace), "absolute", "Dockerfile.link") == ("proj", "docker/Dockerfile.dev")
    os.symlink("../../secret/key", workspace / "proj" / "Dockerfile.out")
    with pytest.raises(RequestError, match="dockerfile: 'Dockerfile.out' is a link that leads outside the context"):
        resolve_context(str(workspace), "proj", "Dockerfile.out")


@pytest.mark.parametrize(
    "context,message",
    [
        ("../secret", "must stay inside your workspace"),
        ("/etc", "not an absolute path"),
        ("~root", "not an absolute path"),
        ("missing", "is not a folder in your workspace"),
        ("escape", "is a link that leads outside your workspace"),
    ],
)
def test_context_outside_refused(workspace, context, message):
    os.symlink(workspace.parent / "secret", workspace / "escape")
    with pytest.raises(RequestError) as e:
        resolve_context(str(workspace), context)
    assert message in str(e.value) and str(e.value).startswith("context:")


def test_dockerfile_and_links_inside_context(workspace):
    with pytest.raises(RequestError, match="dockerfile: there is no 'Missing' in 'proj'"):
        resolve_context(str(workspace), "proj", "Missing")
    with pytest.raises(RequestError, match="dockerfile: '../x' must be a path inside"):
        resolve_context(str(workspace), "proj", "../x")
    os.symlink(workspace.parent / "secret" / "key", workspace / "proj" / "key")
    with pytest.raises(RequestError, match="context: key is a link to outside the build context"):
        scan_context(str(workspace / "proj"), 1 << 20)


def test_context_size_limit(workspace):
    (workspace / "proj" / "big.bin").write_bytes(b"0" * 5000)
    with pytest.raises(RequestError) as e:
        scan_context(str(workspace / "proj"), 4096)
    assert e.value.status == 413 and "larger than the limit of 4.0 KiB" in str(e.value)


def test_dockerignore_leaves_files_out_of_hash_size_and_snapshot(workspace, tmp_path):
    proj = workspace / "proj"
    (proj / "data").mkdir()
    (proj / "data" / "big.bin").write_bytes(b"0" * 10000)
    (proj / "notes.md").write_text("notes")
    (proj / "keep.md").write_text("keep")
    (proj / "sub").mkdir()
    (proj / "sub" / "x.pyc").write_text("compiled")
    with pytest.raises(RequestError):
        scan_context(str(proj), 4096)  # data/big.bin does not fit
    (proj / ".dockerignore").write_text("# build inputs only\ndata\n*.md\n!keep.md\n**/*.pyc\nDockerfile\n")
    digest, size, files = scan_context(str(proj), 4096, snapshot=str(tmp_path / "snap"))
    copied = sorted(str(p.relative_to(tmp_path / "snap")) for p in (tmp_path / "snap").rglob("*") if p.is_file())
    # the Dockerfile and .dockerignore are always sent, as Docker does
    assert copied == [".dockerignore", "Dockerfile", "data.txt", "keep.md"]
    assert files == 4 and size == sum((proj / name).stat().st_size for name in copied)
    (proj / "notes.md").write_text("changed, but ignored")
    assert scan_context(str(proj), 4096)[0] == digest
    (proj / "keep.md").write_text("changed")
    assert scan_context(str(proj), 4096)[0] != digest


def test_snapshot_keeps_inner_links_and_modes(workspace, tmp_path):
    proj = workspace / "proj"
    (proj / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (proj / "run.sh").chmod(0o755)
    os.symlink("run.sh", proj / "start.sh")
    digest, _, _ = scan_context(str(proj), 1 << 20, snapshot=str(tmp_path / "snap"))
    snap = tmp_path / "snap"
    assert os.readlink(snap / "start.sh") == "run.sh" and (snap / "run.sh").stat().st_mode & 0o777 == 0o755
    assert scan_context(str(snap), 1 << 20)[0] == digest  # the snapshot is exactly what was hashed


def test_from_server_empty_string_is_the_default_server():
    for value in ("", True):
        r = parse_request({"from_server": value})
        assert (r.kind, r.from_server, r.name) == ("from_server", "", "server")


def test_environment_base_defaults_to_the_service_base():
    r = parse_request({"environment": {"pip": ["six"]}}, default_base="127.0.0.1:5000/base/python:3.11")
    assert r.environment["base"] == "127.0.0.1:5000/base/python:3.11"
    with pytest.raises(RequestError, match="environment.base: the base image is required"):
        parse_request({"environment": {"pip": ["six"]}})
