"""The one image-reference grammar, checked against the OCI distribution reference grammar's own
cases (github.com/distribution/reference, TestReferenceParse), and the builder and the spawner
agreeing on every one of them."""

import pytest

from kubestudio import imageref
from kubestudio.image_builder.spec import RequestError, check_reference
from kubestudio.spawner.request import _custom_image

F64 = "f" * 64
VALID = [
    "test_com",
    "test.com:tag",
    "test.com:5000",
    "test.com/repo:tag",
    "test:5000/repo",
    "test:5000/repo:tag",
    f"test:5000/repo@sha256:{F64}",
    f"test:5000/repo:tag@sha256:{F64}",
    "lowercase:Uppercase",
    "a/" * 127 + "a:tag-puts-this-over-max",
    "sub-dom1.foo.com/bar/baz/quux",
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
    "b.gcr.io/test.example.com/my-app:test.example.com",
    "xn--n3h.com/myimage:xn--n3h.com",
    f"xn--7o8h.com/myimage:xn--7o8h.com@sha512:{'f' * 128}",
    "foo_bar.com:8080",
    "foo/foo_bar.com:8080",
    "192.168.1.1",
    "192.168.1.1:tag",
    "192.168.1.1:5000",
    "192.168.1.1/repo",
    "192.168.1.1:5000/repo",
    "192.168.1.1:5000/repo:5050",
    "[2001:db8::1]/repo",
    "[2001:db8:1:2:3:4:5:6]/repo:tag",
    "[2001:db8::1]:5000/repo",
    "[2001:db8::1]:5000/repo:tag",
    f"[2001:db8::1]:5000/repo@sha256:{F64}",
    f"[2001:db8::1]:5000/repo:tag@sha256:{F64}",
    "[2001:db8::]:5000/repo",
    "[::1]:5000/repo",
    # the separators the old spawner rule refused: runs of dashes and a double underscore
    "registry.example.org/kubestudio/alice/my--env:1",
    "registry.example.org/kubestudio/alice/a__b:1",
]
INVALID = [
    "",
    ":justtag",
    f"@sha256:{F64}",
    "repo@sha256:" + "f" * 34,
    f"validname@invaliddigest:{F64}",
    "Uppercase:tag",
    "test:5000/Uppercase/lowercase:tag",
    "a/" * 128 + "a:tag",
    "aa/asdf$$^/aa",
    "[2001:db8::1]",
    "[2001:db8::1]:5000",
    "[2001:db8::1]:tag",
    "[fe80::1%eth0]:5000/repo",
    "[fe80::1%@invalidzone]:5000/repo",
    "a___b",
    "a/../b",
    "registry.example.org/kubestudio/alice/-x:1",
]


@pytest.mark.parametrize("reference", VALID)
def test_valid_references(reference):
    assert imageref.is_valid(reference)


@pytest.mark.parametrize("reference", INVALID)
def test_invalid_references(reference):
    assert not imageref.is_valid(reference)


@pytest.mark.parametrize("reference", VALID + INVALID)
def test_builder_and_spawner_agree(reference):
    try:
        check_reference(reference, "base")
        builder = True
    except RequestError:
        builder = False
    prefix = reference.split("/", 1)[0] + "/" if "/" in reference else ""
    spawner = _custom_image(reference, prefix) is not None if prefix else builder
    assert builder == spawner == imageref.is_valid(reference), reference


def test_registry_of_follows_the_clients_rule():
    assert imageref.registry_of("127.0.0.1:5000/base/python:3.11") == "127.0.0.1:5000"
    assert imageref.registry_of("localhost/x") == "localhost"
    assert imageref.registry_of("library/busybox") is None and imageref.registry_of("busybox") is None
