"""Run the README's commands the way a newcomer does: a fresh copy of the repository with nothing
beside it, a clean environment, and the scripts exactly as written.

Used by ``tests/e2e/test_newcomer.py``. A harness that prepares something the user's shell does
not (a venv on PATH, ``../shared``, a port, a variable) is where the README's bugs hide, so this
one prepares nothing but the public port, which must be free on a shared machine.
"""

import os
import re
import shutil
import subprocess
import time

# the narrowest PATH a user may start the README's commands with (env -i PATH=/usr/bin:/bin)
SYSTEM_PATH = "/usr/bin:/bin"


def machine_env(**extra):
    """A login-like environment: the system PATH, HOME, the locale, and the machine's own network
    settings (CA bundles, proxies, package index settings); no virtualenv, nothing of ours."""
    keep = {}
    for name, value in os.environ.items():
        upper = name.upper()
        if (
            name in ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ")
            or upper.endswith("_PROXY")
            or "CA_BUNDLE" in upper
            or upper.startswith("SSL_CERT")
            or upper in ("NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE")
            or upper.startswith(
                ("PIP_INDEX", "PIP_EXTRA_INDEX", "PIP_FIND_LINKS", "PIP_TRUSTED", "NPM_CONFIG_REGISTRY")
            )
        ):
            keep[name] = value
    keep["PATH"] = SYSTEM_PATH
    keep.update(extra)
    return keep


def fresh_checkout(repo, dest):
    """What a clone of ``repo``'s working tree holds (tracked and new files, nothing ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = os.path.join(repo, rel)
        if not os.path.lexists(src):
            continue  # deleted in the working tree, not yet committed
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dest


class ScriptRun:
    """A README command running in its own process group (so Ctrl-C reaches all of it)."""

    def __init__(self, argv, cwd, env, log_path):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_for_output(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} before {pattern!r}:\n{self.output()[-6000:]}")
            time.sleep(0.5)
        raise TimeoutError(f"no {pattern!r} in {timeout}s:\n{self.output()[-6000:]}")

    def ctrl_c(self, timeout=30):
        """SIGINT to the whole process group, as a terminal's Ctrl-C; seconds until it exited."""
        started = time.monotonic()
        os.killpg(self.proc.pid, 2)
        try:
            self.proc.wait(timeout)
        finally:
            self._log.close()
        return time.monotonic() - started

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        if not self._log.closed:
            self._log.close()
