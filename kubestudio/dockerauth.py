"""Docker ``config.json`` credentials (``{"auths": {host: {"auth": base64(user:password)}}}``),
read in one place: for registry checks, for the builders, and to mask secrets in logs.

The file is parsed again only when it changes (its modification time and size), not on every
registry request. Errors never include the file's contents.
"""

import base64
import json
import os


class AuthFileError(Exception):
    """The credentials file cannot be read or is not a Docker config."""


_cache = {}  # path -> ((mtime_ns, size), auths)


def read_auths(path):
    """``{registry key: entry}`` of a Docker config file (cached until the file changes)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise AuthFileError(f"registry credentials file {path} cannot be read: {type(e).__name__}") from None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        with open(path, encoding="utf-8") as f:
            auths = (json.load(f) or {}).get("auths", {})
    except (OSError, ValueError, AttributeError) as e:
        raise AuthFileError(f"registry credentials file {path} cannot be read: {type(e).__name__}") from None
    _cache[path] = (stamp, auths)
    return auths


def credentials(path, host):
    """(user, password) for ``host``, or None."""
    if not path:
        return None
    auths = read_auths(path)
    for key in (host, f"https://{host}", f"http://{host}"):
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        if entry and entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None


def secrets(path):
    """Strings that must never be shown: every password and token in the file, and their base64 forms."""
    if not path:
        return []
    try:
        auths = read_auths(path)
    except AuthFileError:
        return []
    found = []
    for entry in auths.values():
        for key in ("auth", "password", "identitytoken", "registrytoken"):
            if entry.get(key):
                found.append(entry[key])
        if entry.get("auth"):
            try:
                found.append(base64.b64decode(entry["auth"]).decode().partition(":")[2])
            except ValueError:
                pass
    return [s for s in found if len(s) >= 4]


def entry(user, password):
    """An ``auths`` entry logging in as ``user``."""
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def write_auths(path, auths):
    """A Docker config file (mode 0600) holding ``auths`` (``{registry: entry}``)."""
    fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"auths": auths}, f)
    os.replace(f"{path}.tmp", path)


def write_auth_file(path, host, user, password):
    """A Docker config file (mode 0600) holding one registry's credentials."""
    write_auths(path, {host: entry(user, password)})
