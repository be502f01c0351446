"""The OS accounts a test hub made (kubestudio.accounts), removed when it is done with them.

Each test hub names its users' accounts with a prefix of its own, so removing them touches
nothing another hub or test run made.
"""

import pwd
import secrets
import subprocess

from ..accounts import COMMENT, root_tool


def test_prefix():
    """A prefix no other hub on the machine uses: kt<6 hex>-."""
    return f"kt{secrets.token_hex(3)}-"


def made_accounts(prefix):
    marker = COMMENT.format("")
    return [e.pw_name for e in pwd.getpwall() if e.pw_name.startswith(prefix) and e.pw_gecos.startswith(marker)]


def remove_accounts(prefix):
    """userdel every account made with ``prefix`` (and its group); the names that could not go."""
    left = []
    for name in made_accounts(prefix):
        result = subprocess.run([root_tool("userdel"), name], capture_output=True, text=True, timeout=60)
        if result.returncode not in (0, 6):  # 6: gone meanwhile
            left.append(f"{name}: {result.stderr.strip()}")
    return left
