"""The embedded default's offline Python base image: what preparing it costs, against the anchor.

- ``prepare_cold``: the service's BasePreparer end to end with no cached root filesystem:
  mmdebstrap (Debian 12, python3 + pip + venv + CAs) + buildah (FROM scratch, ADD) + push;
- ``prepare_cached``: the same with the root filesystem already in the cache (a second hub on
  the machine): buildah + push only;
- ``mmdebstrap_direct``: the anchor: the same mmdebstrap command run by hand, nothing else.

Usage: python benchmarks/base_image.py. Writes benchmarks/results/base_image.json.
"""

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.image_builder.backends.buildah import BuildahBackend  # noqa: E402
from kubestudio.image_builder.bases import BasePreparer, base_from_config  # noqa: E402
from kubestudio.registry import RegistryClient  # noqa: E402
from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.registry import LocalRegistry  # noqa: E402

BASE = {
    "image": "base/python:3.11",
    "suite": "bookworm",
    "packages": ["python3", "python3-pip", "python3-venv", "ca-certificates"],
}


def prepare(root, registry, cache_dir, tag):
    backend = BuildahBackend(
        storage_root=os.path.join(root, f"storage-{tag}"),
        run_root=os.path.join(root, f"run-{tag}"),
        tls_verify=False,
        auth_file=registry.auth,
        # the sandboxed buildah reaches the host's loopback only at the registries named here
        # (ImageBuilder names its own registry's addresses the same way)
        loopback_registries=[registry.host],
    )
    base = base_from_config({**BASE, "image": f"base/python:{tag}"})
    client = RegistryClient(registry.host, registry.auth, insecure=True)
    work = os.path.join(root, f"work-{tag}")
    os.makedirs(work)
    preparer = BasePreparer(
        [base],
        registry.host,
        client,
        backend,
        work,
        logging.getLogger("bench"),
        cache_dir=cache_dir,
        extra_ca_dir="/usr/local/share/ca-certificates",
    )

    async def run():
        started = time.perf_counter()
        preparer.start()
        await preparer.task
        return time.perf_counter() - started

    seconds = asyncio.run(run())
    if base.status != "ready":
        raise SystemExit(f"base image {tag}: {base.status}: {base.message}")
    return seconds


def main():
    root = tempfile.mkdtemp(prefix="kubestudio-bench-base-")
    registry = LocalRegistry(os.path.join(root, "registry"), user="bench", password="bench-pass").start()
    registry.auth = registry.auth_file(os.path.join(root, "auth.json"))
    cache = os.path.join(root, "cache")
    try:
        started = time.perf_counter()
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=apt",
                "--include=" + ",".join(BASE["packages"]),
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "bookworm",
                os.path.join(root, "direct.tar"),
            ],
            check=True,
            capture_output=True,
        )
        direct = time.perf_counter() - started
        cold = prepare(root, registry, cache, "cold")
        cached = prepare(root, registry, cache, "cached")
    finally:
        registry.stop()
        subprocess.run(["rm", "-rf", root])
    metrics = {
        "prepare_cold_s": round(cold, 2),
        "prepare_cached_s": round(cached, 2),
        "mmdebstrap_direct_s": round(direct, 2),
        "cold_over_direct": round(cold / direct, 2),
        "cached_over_cold": round(cached / cold, 3),
    }
    print(f"{'what':<24}{'seconds':>10}")
    for name, value in metrics.items():
        print(f"{name:<24}{value:>10}")
    write_results("base_image", metrics)


if __name__ == "__main__":
    main()
