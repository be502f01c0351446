"""Build requests: what a user may ask for, checked field by field, and the image it makes.

A request is one of four kinds:

- ``context``: a folder of the user's workspace with a Dockerfile in it;
- ``dockerfile_text``: a Dockerfile sent in the request (empty context);
- ``environment``: a base image plus pip / apt / conda packages (we write the Dockerfile);
- ``from_server``: a running server's packages, captured and added on top of its image.

Every error is a :class:`RequestError` naming the field; the API answers it with a 4xx.
"""

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field

from .. import imageref
from ..imageref import NAME_COMPONENT, TAG
from . import dockerfile as df

KINDS = ("context", "dockerfile_text", "environment", "from_server")
FIELDS = set(KINDS) | {"dockerfile", "name", "tag", "project", "repository", "base", "labels"}

# package specs: names, versions, extras, markers are fine; shell metacharacters are not
PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-\[\],<>=!~*:@/]*$")
LABEL_KEY = re.compile(r"^[a-z0-9]([a-z0-9.\-/_]*[a-z0-9])?$")
MAX_DOCKERFILE = 256 * 1024
RESERVED_LABEL_PREFIXES = ("kubestudio.io/", "io.kubestudio.", "org.opencontainers.image.created")


class RequestError(ValueError):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclass
class BuildRequest:
    kind: str
    name: str
    tag: str | None = None  # None: the content hash
    context: str | None = None
    dockerfile: str = "Dockerfile"
    dockerfile_text: str | None = None
    environment: dict | None = None
    from_server: str | None = None
    base: str | None = None
    project: str | None = None
    repository: str | None = None  # admins only: push here instead of the owner's prefix
    labels: dict = field(default_factory=dict)

    def to_json(self):
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, [])}


def parse_request(body, default_base=None):
    """The request body -> BuildRequest, or RequestError naming the field."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise RequestError(
            f"{unknown[0]}: unknown field (expected one of: {', '.join(KINDS)}; "
            "and optionally name, tag, dockerfile, project, labels)"
        )
    # from_server names a server; "" (like true) is the default server, so it counts as given
    kinds = [k for k in KINDS if body.get(k) not in (None, "") or (k == "from_server" and body.get(k) == "")]
    if len(kinds) != 1:
        raise RequestError(f"give exactly one of {', '.join(KINDS)}" + (f" (got {', '.join(kinds)})" if kinds else ""))
    kind = kinds[0]
    request = BuildRequest(kind=kind, name="")

    if kind == "context":
        request.context = _string(body, "context")
        request.dockerfile = _string(body, "dockerfile", required=False) or "Dockerfile"
        default_name = request.context.rstrip("/").split("/")[-1]
    elif kind == "dockerfile_text":
        text = _string(body, "dockerfile_text")
        if len(text) > MAX_DOCKERFILE:
            raise RequestError(f"dockerfile_text: longer than {MAX_DOCKERFILE // 1024} KiB", 413)
        request.dockerfile_text = text
        default_name = "custom"
    elif kind == "environment":
        request.environment = parse_environment(body["environment"], default_base)
        default_name = "environment"
    else:
        request.from_server = "" if body["from_server"] in (True, "") else _string(body, "from_server")
        default_name = f"server-{request.from_server}" if request.from_server else "server"
    if body.get("base") is not None:
        if kind != "from_server":
            raise RequestError("base: only used with from_server (environment takes environment.base)")
        request.base = check_reference(_string(body, "base"), "base")
    if kind != "context" and body.get("dockerfile") not in (None, ""):
        raise RequestError("dockerfile: only used with context (the path of the Dockerfile in it)")

    name = body.get("name")
    if name in (None, ""):
        name = _default_name(default_name)
    if not isinstance(name, str) or not NAME_COMPONENT.match(name) or len(name) > 128:
        raise RequestError(
            f"name: {name!r} is not a valid image name (lowercase letters, digits and "
            "'.', '_', '-' between them, at most 128 characters)"
        )
    request.name = name
    tag = body.get("tag")
    if tag not in (None, ""):
        if not isinstance(tag, str) or not TAG.match(tag):
            raise RequestError(
                f"tag: {tag!r} is not a valid tag (letters, digits, '_', '.', '-'; "
                "at most 128; not starting with '.' or '-')"
            )
        request.tag = tag
    if body.get("project") not in (None, ""):
        project = _string(body, "project")
        if not NAME_COMPONENT.match(project):
            raise RequestError(f"project: {project!r} is not a valid repository path component")
        request.project = project
    if body.get("repository") not in (None, ""):
        repository = _string(body, "repository")
        if not imageref.is_repository_path(repository):
            raise RequestError(f"repository: {repository!r} is not a valid repository path")
        request.repository = repository
    labels = body.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(v, str) and isinstance(k, str) and LABEL_KEY.match(k) for k, v in labels.items()
    ):
        raise RequestError("labels: must map label keys (lowercase, dots, dashes) to strings")
    for key, value in labels.items():
        if key.startswith(RESERVED_LABEL_PREFIXES):
            raise RequestError(
                f"labels.{key}: reserved: the image service sets the labels under "
                f"{', '.join(RESERVED_LABEL_PREFIXES)} itself"
            )
        if len(value) > 4096 or any(ord(c) < 32 and c not in "\t" for c in value):
            raise RequestError(f"labels.{key}: must be one line of printable text, at most 4096 characters")
    request.labels = dict(labels)
    return request


def parse_environment(env, default_base=None):
    if not isinstance(env, dict):
        raise RequestError("environment: must be an object {base, pip, apt, conda}")
    unknown = sorted(set(env) - {"base", "pip", "apt", "conda"})
    if unknown:
        raise RequestError(f"environment.{unknown[0]}: unknown field (expected base, pip, apt, conda)")
    base = env.get("base") or default_base
    if not isinstance(base, str) or not base:
        raise RequestError("environment.base: the base image is required")
    out = {"base": check_reference(base, "environment.base")}
    for manager in ("apt", "conda", "pip"):
        packages = env.get(manager) or []
        if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
            raise RequestError(f"environment.{manager}: must be a list of package names")
        for package in packages:
            if not PACKAGE.match(package) or len(package) > 200:
                raise RequestError(f"environment.{manager}: {package!r} is not a package specification")
        if packages:
            out[manager] = list(packages)
    if not any(out.get(m) for m in ("apt", "conda", "pip")):
        raise RequestError("environment: list at least one package in pip, apt or conda")
    return out


def environment_dockerfile(env, labels=None):
    """The Dockerfile we write for an ``environment`` request."""
    lines = [f"FROM {env['base']}"]
    if env.get("apt"):
        packages = " ".join(shlex.quote(p) for p in env["apt"])
        lines.append("USER root")
        lines.append(
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            f"--no-install-recommends {packages} && rm -rf /var/lib/apt/lists/*"
        )
    if env.get("conda"):
        packages = " ".join(shlex.quote(p) for p in env["conda"])
        lines.append(f"RUN conda install -y {packages} && conda clean -afy")
    if env.get("pip"):
        packages = " ".join(shlex.quote(p) for p in env["pip"])
        lines.append(f"RUN pip install --no-cache-dir {packages}")
    return "\n".join(lines) + "\n"


def check_reference(reference, field_name):
    if not imageref.is_valid(reference):
        raise RequestError(
            f"{field_name}: {reference!r} is not a valid image reference (e.g. registry.example.org/team/python:3.11)"
        )
    return reference


def parse_dockerfile(text, name):
    try:
        return df.parse(text, name)
    except df.DockerfileError as e:
        raise RequestError(str(e)) from None


def content_hash(spec_json, dockerfile_text, context_digest):
    """The default tag: the same spec, Dockerfile and context files always give the same tag."""
    h = hashlib.sha256()
    h.update(json.dumps(spec_json, sort_keys=True).encode())
    h.update(b"\0" + dockerfile_text.encode())
    h.update(b"\0" + (context_digest or "").encode())
    return h.hexdigest()[:16]


def _string(body, key, required=True):
    value = body.get(key)
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{key}: must be a non-empty string")
    if "\0" in value:
        raise RequestError(f"{key}: must not contain NUL characters")
    return value


def _default_name(text):
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-._")
    name = re.sub(r"-{2,}", "-", name)
    return name[:64] or "image"
