"""The bench's build script, run for real into an empty cache on every run.

The real build compiles Kubernetes for minutes and runs only on a new machine, so a fault after the
compile (a `| head` under pipefail killed it with SIGPIPE once every binary was made) only ever
showed there. Here the script runs unchanged, every line of it, with a stand-in `apt-get` on PATH
that hands it small Debian packages and a source tarball made in the test: a Makefile in place of
Kubernetes' that writes stand-in binaries, and an `etcd` whose `--version` writes far more than a
pipe holds, as a busy machine's real one may do before its reader is gone.
"""

import os
import stat
import subprocess
import tarfile
import textwrap

import pytest

from kubestudio.testing.kubebench import binaries_present
from kubestudio.testing.kubebench.controlplane import BUILD_SCRIPT

K8S_DEB_VERSION = "1.20.5+really1.20.2-1.1+deb12u1"


def _executable(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _deb(folder, name, files):
    """A real .deb (dpkg-deb --build) holding ``files`` ({path: (text, executable)})."""
    root = os.path.join(folder, f"{name}-root")
    os.makedirs(os.path.join(root, "DEBIAN"))
    with open(os.path.join(root, "DEBIAN", "control"), "w") as f:
        f.write(
            f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@example.invalid>\n"
            f"Description: stand-in for the bench's build test\n"
        )
    for path, (text, executable) in files.items():
        target = os.path.join(root, path)
        if executable:
            _executable(target, text)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                f.write(text)
    deb = os.path.join(folder, f"{name}_1.0_all.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", root, deb], check=True, capture_output=True)
    return deb


def _sources(folder):
    """Kubernetes' source tarball as Debian names it, with a Makefile that makes stand-in binaries."""
    tree = os.path.join(folder, "src", "kubernetes-1.20.2")
    for vendored in ("modern-go/reflect2", "json-iterator/go"):
        os.makedirs(os.path.join(tree, "vendor", "github.com", vendored, "old"))
    with open(os.path.join(tree, "Makefile"), "w") as f:
        f.write(
            textwrap.dedent("""\
            OUT := _output/local/bin/linux/amd64
            all:
            \tmkdir -p $(OUT)
            \tfor b in $(notdir $(WHAT)); do printf '#!/bin/sh\\necho "%s v1.20.2-stand-in"\\n' $$b > $(OUT)/$$b; chmod +x $(OUT)/$$b; done
            """).replace("all:", ".PHONY: all\nall:")
        )
    tarball = os.path.join(folder, "kubernetes_1.20.5+really1.20.2.orig.tar.gz")
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree, arcname="kubernetes-1.20.2")
    return tarball


@pytest.fixture
def stand_in_apt(tmp_path):
    """A folder for PATH whose `apt-get` serves the test's packages and sources, logging each call."""
    packages = tmp_path / "packages"
    packages.mkdir()
    # etcd's version writes ~2 MB: a reader that leaves after the first line (`| head -1`) makes it
    # die of SIGPIPE, and pipefail then fails the build, as it did on new machines
    loud_etcd = "#!/bin/sh\necho 'etcd Version: 3.4.23'\nyes 'Git SHA: stand-in' | head -c 2000000\n"
    _deb(
        str(packages),
        "stand-in-tools",
        {
            "usr/bin/etcd": (loud_etcd, True),
            "usr/bin/kubectl": ("#!/bin/sh\necho 'Client Version: v1.20.2'\n", True),
            "usr/bin/rsync": ("#!/bin/sh\nexit 0\n", True),
            "usr/lib/go-1.19/bin/go": ("#!/bin/sh\necho 'go version go1.19 linux/amd64'\n", True),
            "usr/lib/x86_64-linux-gnu/.keep": ("", False),
            "usr/share/gocode/src/github.com/modern-go/reflect2/reflect2.go": ("package reflect2\n", False),
            "usr/share/gocode/src/github.com/modern-go/reflect2/reflect2_test.go": ("package reflect2\n", False),
            "usr/share/gocode/src/github.com/json-iterator/go/iter.go": ("package jsoniter\n", False),
            "usr/share/gocode/src/github.com/json-iterator/go/go.mod": ("module x\n", False),
            "usr/share/gocode/src/github.com/json-iterator/go/extra/extra.go": ("package extra\n", False),
        },
    )
    _sources(str(packages))
    fake_bin = tmp_path / "fake-bin"
    calls = tmp_path / "apt-calls.log"
    _executable(
        str(fake_bin / "apt-get"),
        textwrap.dedent(f"""\
        #!/bin/sh
        # the stand-in apt-get: options first (-o X=Y, -qq), then the command and its arguments
        echo "$*" >> {calls}
        while [ $# -gt 0 ]; do
          case "$1" in -o) shift 2 ;; -*) shift ;; *) break ;; esac
        done
        case "$1" in
          update) exit 0 ;;
          source) cp {packages}/*.orig.tar.gz . ;;
          download) cp {packages}/*.deb . ;;
          *) echo "stand-in apt-get: unexpected command $1" >&2; exit 2 ;;
        esac
        """),
    )
    return fake_bin, calls


def test_build_into_an_empty_cache_runs_to_the_end(tmp_path, stand_in_apt):
    fake_bin, calls = stand_in_apt
    cache = tmp_path / "empty-cache"  # does not even exist yet, as on a new machine
    env = dict(os.environ, PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}", HOME=str(tmp_path / "home"))
    result = subprocess.run(["bash", BUILD_SCRIPT, str(cache)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert binaries_present(str(cache))
    assert (cache / "stamp").read_text().startswith(f"kubernetes {K8S_DEB_VERSION} ")
    assert not (cache / "work").exists()  # sources and caches are removed, the binaries kept
    assert "kube-apiserver v1.20.2-stand-in; etcd Version: 3.4.23" in result.stderr
    assert f"source --download-only -qq kubernetes={K8S_DEB_VERSION}" in calls.read_text()

    # run again: the stamp says it is built, and apt is not asked for anything
    calls.write_text("")
    again = subprocess.run(["bash", BUILD_SCRIPT, str(cache)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "cached in" in again.stderr
    assert calls.read_text() == ""


def test_a_failed_compile_says_why_and_leaves_no_stamp(tmp_path, stand_in_apt):
    fake_bin, _ = stand_in_apt
    # a `make` earlier on PATH that fails as a broken compile does
    _executable(str(fake_bin / "make"), "#!/bin/sh\necho 'vendor/x.go:1: undefined: mapiterinit' >&2\nexit 2\n")
    cache = tmp_path / "cache"
    env = dict(os.environ, PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}", HOME=str(tmp_path / "home"))
    result = subprocess.run(["bash", BUILD_SCRIPT, str(cache)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "undefined: mapiterinit" in result.stdout + result.stderr
    assert not (cache / "stamp").exists() and not binaries_present(str(cache))
