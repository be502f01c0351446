"""Command line of the Kubernetes test bench.

python -m kubestudio.testing.kubebench build
python -m kubestudio.testing.kubebench up --nodes nodes.yaml --kubeconfig out.yaml [--mode process]
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time

from .bench import DEFAULT_NODES, Bench
from .controlplane import build, default_cache_dir
from .kubelet import MODES


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m kubestudio.testing.kubebench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the control plane into the cache (skipped when cached)")
    b.add_argument("--cache-dir", default=default_cache_dir())
    up = sub.add_parser("up", help="run a bench until Ctrl-C")
    up.add_argument("--nodes", default=DEFAULT_NODES, help="nodes YAML (default: %(default)s)")
    up.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    up.add_argument("--mode", choices=MODES, default="process", help="how pods run (default: %(default)s)")
    up.add_argument("--missing-image", action="append", default=[], help="image that fails to pull (repeatable)")
    up.add_argument("--root", help="state folder (default: a temporary one, removed at exit)")
    up.add_argument("--no-crds", action="store_true", help="do not install the CRDs of ../shared/crds")
    args = parser.parse_args(argv)

    if args.command == "build":
        print(build(args.cache_dir))
        return 0

    root = args.root or tempfile.mkdtemp(prefix="kubebench-")
    bench = Bench(root, nodes=args.nodes, mode=args.mode, missing_images=args.missing_image, crds=not args.no_crds)
    started = time.monotonic()
    bench.start()
    shutil.copy(bench.kubeconfig, args.kubeconfig)
    print(
        json.dumps(
            {
                "kubeconfig": os.path.abspath(args.kubeconfig),
                "kubeconfig_through_fault_proxy": bench.proxy_kubeconfig,
                "fault_proxy": bench.proxy_url,
                "nodes": [n["name"] for n in bench.nodes],
                "crds_adapted_for_1_20": {k: v for k, v in bench.crd_report.items() if v},
                "crds_missing": bench.crds_missing,
                "root": root,
                "ready_after_s": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
    )
    print("bench is up; Ctrl-C stops it", file=sys.stderr)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        bench.stop()
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
