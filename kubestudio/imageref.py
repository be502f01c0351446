"""Image references, one grammar for every part of KubeStudio (builder, spawner, FROM checks).

The grammar is the OCI distribution reference grammar that Docker, containerd and the registries
use (``[domain/]path[:tag][@digest]``): lowercase path components joined by ``.``, ``_``, ``__``
or runs of ``-``; a domain of DNS labels or a bracketed IPv6 address, with an optional port; a tag
of up to 128 word characters, dots and dashes; a digest ``algorithm:hex`` whose length fits the
algorithm; a name of at most 255 characters.
"""

import re

ALPHANUMERIC = r"[a-z0-9]+"
SEPARATOR = r"(?:[._]|__|-+)"
PATH_COMPONENT = rf"{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*"
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN_NAME = rf"{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*"
IPV6 = r"\[[a-fA-F0-9:]+\]"
DOMAIN = rf"(?:{DOMAIN_NAME}|{IPV6})(?::[0-9]+)?"
TAG_PATTERN = r"[\w][\w.-]{0,127}"
DIGEST_PATTERN = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
NAME_PATTERN = rf"(?:{DOMAIN}/)?{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"

NAME_COMPONENT = re.compile(rf"^{PATH_COMPONENT}$")  # one path component (an image name, a project)
TAG = re.compile(rf"^{TAG_PATTERN}$")
REFERENCE = re.compile(rf"^(?P<name>{NAME_PATTERN})(?::(?P<tag>{TAG_PATTERN}))?(?:@(?P<digest>{DIGEST_PATTERN}))?$")
MAX_NAME = 255
DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def parse(reference):
    """``{"name", "tag", "digest"}`` of a valid reference, or None."""
    if not isinstance(reference, str):
        return None
    match = REFERENCE.match(reference)
    if not match or len(match.group("name")) > MAX_NAME:
        return None
    digest = match.group("digest")
    if digest:
        algorithm, _, hex_ = digest.partition(":")
        if DIGEST_LENGTHS.get(algorithm) != len(hex_):
            return None
    return match.groupdict()


def is_valid(reference):
    return parse(reference) is not None


def is_repository_path(path):
    """Whether ``path`` is a registry path (``team/project/name``) without domain or tag."""
    return bool(path) and all(NAME_COMPONENT.match(part) for part in path.split("/"))


def registry_of(reference):
    """The registry host a pull of ``reference`` goes to, as clients decide it: the first component
    when it has a ``.`` or ``:`` or is ``localhost``, else None (Docker Hub)."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def registry_names(host, aliases=()):
    """Every name of one registry: ``host``, its ``aliases``, and both 127.0.0.1 and localhost
    for a loopback one (a Dockerfile may spell any of them)."""
    names = [host, *aliases]
    name, _, port = host.rpartition(":")
    if name in ("127.0.0.1", "localhost") and port.isdigit():
        names += [f"127.0.0.1:{port}", f"localhost:{port}"]
    return list(dict.fromkeys(names))
