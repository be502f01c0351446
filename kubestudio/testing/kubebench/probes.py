"""Readiness probes as the kubelet runs them: HTTP GET, TCP socket or exec, on the pod's address.

A container with a ``readinessProbe`` starts not Ready; the probe runs every ``periodSeconds``
after ``initialDelaySeconds``; ``successThreshold`` passes in a row make it Ready and
``failureThreshold`` failures in a row make it not Ready again, with an ``Unhealthy`` event
whose message says why, worded like the kubelet's (``Readiness probe failed: ...``).
"""

import asyncio
import ssl

import aiohttp


def _port(spec_port, container):
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(spec_port, int) or (isinstance(spec_port, str) and spec_port.isdigit()):
        return int(spec_port)
    for port in container.get("ports") or []:
        if port.get("name") == spec_port:
            return port["containerPort"]
    raise ValueError(f"port {spec_port!r} is not a port of container {container['name']}")


async def probe_once(probe, container, pod_ip, run_exec):
    """(passed, why not) for one run of ``probe``; ``run_exec(argv, timeout)`` -> (exit code, output)."""
    timeout = probe.get("timeoutSeconds") or 1
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            scheme = (spec.get("scheme") or "HTTP").lower()
            host = spec.get("host") or pod_ip
            url = f"{scheme}://{host}:{_port(spec['port'], container)}{spec.get('path') or '/'}"
            headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.20")
            context = ssl.create_default_context() if scheme == "https" else None
            if context:
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                async with session.get(url, headers=headers, ssl=context, allow_redirects=False) as r:
                    if 200 <= r.status < 400:
                        return True, ""
                    return False, f"HTTP probe failed with statuscode: {r.status}"
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host = spec.get("host") or pod_ip
            port = _port(spec["port"], container)
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            return True, ""
        if "exec" in probe:
            code, output = await run_exec(list(probe["exec"].get("command") or []), timeout)
            if code == 0:
                return True, ""
            return False, output.strip()[-1024:] or f"command exited with {code}"
    except asyncio.TimeoutError:
        return False, f"timeout after {timeout}s"
    except (OSError, aiohttp.ClientError, ValueError) as e:
        return False, str(e) or type(e).__name__
    return False, "the probe names no handler (httpGet, tcpSocket or exec)"


async def run_readiness(probe, container, pod_ip, run_exec, set_ready, warn):
    """Probe forever; ``await set_ready(bool)`` on each change, ``await warn(message)`` on failures."""
    await asyncio.sleep(probe.get("initialDelaySeconds") or 0)
    period = probe.get("periodSeconds") or 10
    need_ok, need_fail = probe.get("successThreshold") or 1, probe.get("failureThreshold") or 3
    ready, passes, failures = False, 0, 0
    while True:
        passed, why = await probe_once(probe, container, pod_ip, run_exec)
        if passed:
            passes, failures = passes + 1, 0
            if not ready and passes >= need_ok:
                ready = True
                await set_ready(True)
        else:
            passes, failures = 0, failures + 1
            await warn(f"Readiness probe failed: {why}")
            if ready and failures >= need_fail:
                ready = False
                await set_ready(False)
        await asyncio.sleep(period)
