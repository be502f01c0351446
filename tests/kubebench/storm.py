"""Spawns under injected API faults: each must end ready or failed cleanly, with no orphan pod."""

import time


def spawn_storm(hub, bench, users, options=None, timeout=150, **faults):
    """Spawn every user with ``faults`` set on the bench's proxy; returns {user: outcome}."""
    outcome = {}
    try:
        bench.set_faults(**faults)
        for user in users:
            hub.create_user(user)
            hub.spawn(user, "", options, wait=False)
        for user in users:
            try:
                hub.wait_ready(user, timeout=timeout)
                outcome[user] = "ready"
            except (RuntimeError, TimeoutError):
                outcome[user] = "failed cleanly"
    finally:
        bench.set_faults()
        for user in users:
            hub.stop_server(user)
    return outcome


def leftover_pods(bench, label_selector, prefix, timeout=60):
    """Pods named ``prefix*`` still there after ``timeout`` seconds (deletion is graceful)."""
    deadline = time.monotonic() + timeout
    while True:
        items = bench.api("GET", f"/api/v1/namespaces/default/pods?labelSelector={label_selector}").json()["items"]
        left = [p["metadata"]["name"] for p in items if p["metadata"]["name"].startswith(prefix)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)
