"""Wait for the event that proves something, instead of sleeping and hoping it happened."""

import time


def wait_for(check, timeout=60, interval=0.2, what="condition"):
    """``check()``'s first true value, asked every ``interval`` s; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met in {timeout}s")
        time.sleep(interval)
