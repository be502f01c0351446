"""The ``kubestudio`` command: hub services from a terminal (inside a server it needs no setup).

    kubestudio images build PATH --name N [--tag T] [--dockerfile F] [--no-follow]
    kubestudio images list [--builds]
    kubestudio images logs ID [--follow]
    kubestudio images cancel ID
"""

import argparse
import os
import sys

from .client import ImagesClient, ServiceError


def workspace_relative(path):
    """A path as the service wants it: relative to the user's workspace (/mnt/<user>)."""
    workspace = os.environ.get("KUBESTUDIO_WORKSPACE")
    absolute = os.path.abspath(path)
    if workspace:
        workspace = os.path.realpath(workspace)
        real = os.path.realpath(absolute)
        if real == workspace or real.startswith(workspace + os.sep):
            return os.path.relpath(real, workspace)
        raise ServiceError(0, f"{path} is not inside your workspace {workspace}: the build context must be there")
    if not os.path.isabs(path):
        return path  # taken as relative to the workspace already
    raise ServiceError(0, f"{path}: give the folder relative to your workspace (KUBESTUDIO_WORKSPACE is not set)")


def _print_build(build, out):
    where = f" (#{build['queue_position']} in the queue)" if build.get("queue_position") else ""
    print(f"build {build['id']}: {build['status']}{where}  {build['image']}", file=out)
    if build.get("message"):
        print(f"  {build['message']}", file=out)


def _follow(client, build_id, out):
    final = None
    for item in client.follow(build_id):
        if isinstance(item, dict):
            final = item
        else:
            print(item, file=out, flush=True)
    if final:
        _print_build(final, out)
        return 0 if final["status"] in ("succeeded", "exists") else 1
    return 1


def main(argv=None, out=sys.stdout):
    parser = argparse.ArgumentParser(prog="kubestudio", description="KubeStudio hub services from the terminal")
    sub = parser.add_subparsers(dest="service", required=True)
    images = sub.add_parser("images", help="build images and list yours").add_subparsers(dest="command", required=True)
    build = images.add_parser("build", help="build the folder PATH of your workspace (it holds a Dockerfile)")
    build.add_argument("path")
    build.add_argument("--name", help="image name (default: the folder's name)")
    build.add_argument("--tag", help="tag (default: a hash of the content: the same content is never built twice)")
    build.add_argument("--dockerfile", default=None, help="Dockerfile path inside PATH (default: Dockerfile)")
    build.add_argument("--no-follow", action="store_true", help="return at once instead of showing the log")
    listing = images.add_parser("list", help="your images (with --builds: your builds)")
    listing.add_argument("--builds", action="store_true")
    logs = images.add_parser("logs", help="a build's log")
    logs.add_argument("id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep following until the build ends")
    cancel = images.add_parser("cancel", help="cancel a queued or running build")
    cancel.add_argument("id")
    args = parser.parse_args(argv)

    try:
        client = ImagesClient()
        if args.command == "build":
            request = {"context": workspace_relative(args.path)}
            for key in ("name", "tag", "dockerfile"):
                if getattr(args, key):
                    request[key] = getattr(args, key)
            result = client.build(**request)
            _print_build(result, out)
            if args.no_follow or result["status"] not in ("queued", "running"):
                return 0 if result["status"] in ("queued", "running", "succeeded", "exists") else 1
            return _follow(client, result["id"], out)
        if args.command == "list":
            if args.builds:
                for b in client.builds():
                    print(f"{b['id']}  {b['status']:<10} {b['created']}  {b['image']}", file=out)
            else:
                for i in client.images():
                    size = f"{i['size'] / 2**20:.1f} MiB" if i.get("size") else ""  # as the images page shows it
                    print(f"{i['image']}  {size}  {i.get('digest') or ''}", file=out)
            return 0
        if args.command == "logs":
            if args.follow:
                return _follow(client, args.id, out)
            print(client.log(args.id), end="", file=out)
            return 0
        if args.command == "cancel":
            _print_build(client.cancel(args.id), out)
            return 0
    except ServiceError as e:
        status = f" (HTTP {e.status})" if e.status else ""
        print(f"kubestudio: {e}{status}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
