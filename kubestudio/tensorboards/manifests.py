"""Pure builders for boards on Kubernetes: (board, settings) -> the Pod and Service to create.

A board's pod runs ``tensorboard --logdir <link tree> --host 0.0.0.0 --port 6006 --path_prefix
<its public prefix> --reload_interval N`` (never ``--bind_all``: it needs IPv6, which some nodes
lack). The link tree (one link per folder compared, so TensorBoard's fast loader sees them as
runs) is made by the container's shell in an emptyDir, before TensorBoard starts. The user's
workspace and archives subPaths are mounted **read-only** at the paths the user's server shows
(/mnt/<user>, /archives/<user>); a readiness probe on TensorBoard's own ``data/runs`` says when it
answers. The pod gets the project's node selector and tolerations, our labels, no
service-account token, and runs as the workspace's non-root user with a read-only root. Nothing
here talks to a cluster.
"""

import shlex

from ..names import (
    LABEL_BOARD_ID,
    LABEL_COMPONENT,
    LABEL_PROJECT,
    LABEL_USER,
    MANAGED_BY,
    PROJECT_ANNOTATION,
)
from ..slugs import safe_slug
from ..spawner.pods import project_scheduling, workspace_paths
from ..spawner.storage import user_slug

COMPONENT = "tensorboard"
PORT = 6006
TREE = "/tmp/logdir"  # in the pod's emptyDir (the root filesystem is read-only)


def object_name(board_id):
    """The pod's and the Service's name."""
    return f"tensorboard-{board_id}"


def labels(board_id, owner, project_name):
    return {
        **MANAGED_BY,
        LABEL_COMPONENT: COMPONENT,
        LABEL_USER: user_slug(owner),
        LABEL_PROJECT: safe_slug(project_name, max_length=63),
        LABEL_BOARD_ID: board_id,
    }


def probe_path(prefix):
    return prefix.rstrip("/") + "/data/runs"


def command(resolved, prefix, tensorboard_command, reload_interval):
    """``sh -c``: make the link tree, then exec TensorBoard on it."""
    steps = [f"mkdir -p {TREE}"]
    for name, path in resolved:
        steps.append(f"ln -sfn {shlex.quote(path)} {TREE}/{shlex.quote(name)}")
    argv = [
        *tensorboard_command,
        "--logdir",
        TREE,
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--path_prefix",
        prefix.rstrip("/"),
        "--reload_interval",
        str(reload_interval),
    ]
    steps.append("exec " + shlex.join(argv))
    return ["sh", "-c", " && ".join(steps)]


def board_pod(board_id, owner, resolved, prefix, settings, project, image, resources, board):
    """The board's pod.

    ``settings``: the workspace pods' :class:`~kubestudio.spawner.pods.PodSettings`; ``project``:
    the :class:`~kubestudio.spawner.projects.Project` it is scheduled in; ``resources``:
    ``{"requests": ..., "limits": ...}``; ``board``: the backend (``tensorboard_command``,
    ``reload_interval``)."""
    workspace, archives = workspace_paths(owner, settings)
    slug = user_slug(owner)
    volumes = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": settings.workspace_claim, "readOnly": True}},
        {"name": "archives", "persistentVolumeClaim": {"claimName": settings.archives_claim, "readOnly": True}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    mounts = [
        {"name": "workspace", "mountPath": workspace, "subPath": slug, "readOnly": True},
        {"name": "archives", "mountPath": archives, "subPath": slug, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    container = {
        "name": "tensorboard",
        "image": image,
        "command": command(resolved, prefix, board.tensorboard_command, board.reload_interval),
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "none"},
            {"name": "KUBESTUDIO_USER", "value": owner},
        ],
        "volumeMounts": mounts,
        "resources": {k: v for k, v in resources.items() if v},
        "readinessProbe": {
            "httpGet": {"path": probe_path(prefix), "port": PORT},
            "initialDelaySeconds": 1,
            "periodSeconds": 2,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": {
            "runAsUser": settings.uid,
            "runAsGroup": settings.gid,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec = {
        "containers": [container],
        "volumes": volumes,
        "restartPolicy": "Always",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"fsGroup": settings.fs_gid},
    }
    spec.update(project_scheduling(project))
    metadata = {
        "name": object_name(board_id),
        "namespace": settings.namespace,
        "labels": labels(board_id, owner, project.name),
        "annotations": {"kubestudio.io/username": owner, PROJECT_ANNOTATION: project.name},
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def board_service(board_id, owner, project, settings):
    """A ClusterIP Service in front of the board's pod (``tensorboard-<id>:6006`` in the cluster)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": object_name(board_id),
            "namespace": settings.namespace,
            "labels": labels(board_id, owner, project.name),
            "annotations": {"kubestudio.io/username": owner},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_BOARD_ID: board_id, LABEL_COMPONENT: COMPONENT},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }
