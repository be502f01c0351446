"""Secrets made once and kept in a file only their owner can read (passwords, tokens, keys)."""

import os


def stored_secret(path, make):
    """(the secret kept in ``path``, whether it was made now); ``make()`` makes it the first time."""
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
        if secret:
            return secret, False
    except FileNotFoundError:
        pass
    secret = make()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret, True
