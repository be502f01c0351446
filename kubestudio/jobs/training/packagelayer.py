"""A job's ``packages`` on top of its image's Python, the same on the embedded default and on
Kubernetes (as Kubeflow's SDK installs ``packages_to_install`` on any image).

pip installs them, as the job's user and inside the job's image, into a folder of the user's own
(the home folder here, the workspace on a cluster) named by the image and the package list, which
goes first on ``PYTHONPATH``: the next job with the same list and image starts at once. Ranks that
install at the same moment each write a folder of their own and the first one done is kept.
"""

import hashlib
import json
import shlex

FOLDER = ".kubestudio/job-packages"  # under the user's home (embedded default) or workspace (a cluster)


def layer_folder(root, image, packages):
    """Where ``packages`` for ``image`` are kept under ``root`` (a path as the job's image sees it)."""
    key = hashlib.sha256(json.dumps([image or "", list(packages)]).encode()).hexdigest()[:16]
    return f"{root.rstrip('/')}/{FOLDER}/{key}"


def install_script(folder, packages, python="python3"):
    """sh that installs ``packages`` into ``folder`` unless a job did before, then puts it first on
    PYTHONPATH. Ends with ``exec "$@"`` left to the caller."""
    return (
        f"d={shlex.quote(folder)}; "
        'if [ ! -d "$d" ]; then '
        't="$d.${HOSTNAME:-local}.$$"; mkdir -p "${d%/*}" && '
        f"if {python} -m pip install --no-input --disable-pip-version-check --no-warn-script-location "
        f'--target "$t" {shlex.join(packages)}; '
        'then mv -T "$t" "$d" 2>/dev/null || rm -rf "$t"; '
        'else rm -rf "$t"; false; fi; '
        "fi && "
        'export PYTHONPATH="$d${PYTHONPATH:+:$PYTHONPATH}"'
    )
