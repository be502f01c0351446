"""Grants of the local registry's gate: a build's own account, what it may pull and push.

The image service writes a grant before a build (:func:`write_grant`) and removes it after
(:func:`remove_grant`); the gate (:mod:`kubestudio.hub.registry_gate`) reads it at each request
(:func:`load_grant`) and notes what it refused (:func:`note_refusal`), which the service reads when
the build fails (:func:`refusals`). One file per build in a folder only root reaches; only the
password's hash is kept.
"""

import hashlib
import hmac
import json
import os
import re
import time

BUILD_USER = re.compile(r"^build-[a-z0-9]{1,40}$")
MAX_REFUSALS = 64 * 1024  # bytes of a build's refusals kept


def _digest(password):
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def write_grant(folder, user, password, read, push, ttl):
    """Let ``user``:``password`` pull the repositories matching ``read`` and push those matching
    ``push`` (shell patterns, as ``fnmatch``) for ``ttl`` seconds: a file of the grants folder the
    gate reads at each request (only the password's hash is kept)."""
    if not BUILD_USER.match(user):
        raise ValueError(f"a grant's user must match {BUILD_USER.pattern}, not {user!r}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, f"{user}.json")
    fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(
            {
                "password_sha256": _digest(password),
                "read": sorted(set(read)),
                "push": sorted(set(push)),
                "expires": time.time() + ttl,
            },
            f,
        )
    os.replace(f"{path}.tmp", path)


def remove_grant(folder, user):
    for suffix in (".json", ".refused"):
        try:
            os.unlink(os.path.join(folder, f"{user}{suffix}"))
        except FileNotFoundError:
            pass


def note_refusal(folder, user, line):
    """Keep what the gate refused a build (buildah does not always say why a pull failed): the
    service reads it when the build fails (:func:`refusals`)."""
    path = os.path.join(folder, f"{user}.refused")
    try:
        if os.path.getsize(path) > MAX_REFUSALS:
            return
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line.replace("\n", " ")[:1000] + "\n")


def refusals(folder, user):
    """What the gate refused the build ``user``, first first."""
    try:
        with open(os.path.join(folder, f"{user}.refused"), encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def load_grant(folder, user, password):
    """The grant of ``user`` if ``password`` is its own and it has not expired, else None."""
    if not folder or not BUILD_USER.match(user):
        return None
    try:
        with open(os.path.join(folder, f"{user}.json"), encoding="utf-8") as f:
            grant = json.load(f)
    except (OSError, ValueError):
        return None
    if not hmac.compare_digest(_digest(password), str(grant.get("password_sha256", ""))):
        return None
    if not isinstance(grant.get("expires"), (int, float)) or grant["expires"] < time.time():
        return None
    return grant
