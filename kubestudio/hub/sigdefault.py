"""``python -m kubestudio.hub.sigdefault CMD ...``: run CMD with SIGINT and SIGTERM at their defaults.

JupyterHub stops a managed service with SIGINT first and waits 10 s before SIGTERM. A hub
started from a shell script or in the background inherits SIGINT *ignored*, and so does every
program it starts; a program that does not handle SIGINT itself (Debian's docker-registry) then
sits out the whole timeout and Ctrl-C on the hub takes tens of seconds.
"""

import os
import signal
import sys


def main(argv):
    if not argv:
        sys.exit("usage: python -m kubestudio.hub.sigdefault COMMAND [ARG...]")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        sys.exit(f"{argv[0]}: {e.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
