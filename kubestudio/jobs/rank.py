"""One local rank: run the command with its output in the rank's log file, then write how it
ended to the rank's exit file, so a jobs service that restarted meanwhile still learns it.

    python -m kubestudio.jobs.rank LOG EXIT -- COMMAND [ARGS...]

It leads its own process group (the service starts it so): cancelling the job signals the group.
"""

import json
import os
import signal
import subprocess
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m kubestudio.jobs.rank LOG EXIT -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    log_path, exit_path, command = argv[0], argv[1], argv[3:]
    with open(log_path, "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as e:
            log.write(f"cannot start {command[0]}: {e.strerror or e}\n".encode())
            result = {"code": 127, "reason": f"cannot start {command[0]}: {e.strerror or e}"}
        else:
            # a SIGTERM to this wrapper alone (not the group) still ends the rank
            signal.signal(signal.SIGTERM, lambda *_: child.terminate())
            code = child.wait()
            if code < 0:
                name = signal.Signals(-code).name
                why = " (out of memory?)" if -code == signal.SIGKILL else ""
                result = {"code": 128 - code, "reason": f"killed by {name}{why}"}
            else:
                result = {"code": code, "reason": "Completed" if code == 0 else f"exit code {code}"}
    tmp = f"{exit_path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, exit_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
