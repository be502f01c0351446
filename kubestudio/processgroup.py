"""Process groups: what KubeStudio starts on a machine (servers, base-image tools, bench pods)
leads a group of its own, so it can be stopped with everything it started."""

import os
import signal


def signal_group(pgid, sig=signal.SIGKILL):
    """Send ``sig`` to every process of group ``pgid``; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
