"""Pure builders for servings on Kubernetes: (serving, settings) -> the objects to create.

With KServe (found by API discovery) a serving is an ``InferenceService`` in ``RawDeployment``
mode whose predictor runs the model runtime (``python -m kubestudio.jobs.serve``) as a custom
container. A plain scikit-learn or PyTorch model is named by ``storageUri: pvc://<claim>/<path>``
(KServe mounts it read-only at ``/mnt/models``); a model class reads the user's workspace and
archives subPaths, mounted read-only at the paths the server shows. Without KServe: a
``Deployment`` and a ``Service`` (and a ``HorizontalPodAutoscaler`` when ``replicas.min`` <
``replicas.max``) with the same container and probes. Every pod gets what a workspace pod gets:
the project's node selector, tolerations and GPU-type affinity, our labels, no service-account
token, the workspace's non-root user. Nothing here talks to a cluster.
"""

import hashlib

from ...names import (
    LABEL_COMPONENT,
    LABEL_GPUS,
    LABEL_PROJECT,
    LABEL_USER,
    MANAGED_BY,
    PROJECT_ANNOTATION,
)
from ...slugs import safe_slug
from ...spawner.pods import container_resources, gpu_placement, project_scheduling, workspace_paths
from ...spawner.storage import user_slug

KSERVE = "serving.kserve.io/v1beta1"
COMPONENT = "serve"
LABEL_SERVING_ID = "kubestudio.io/serving-id"
LABEL_GENERATION = "kubestudio.io/serving-generation"  # the version a pod serves
PORT = 8080
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe mounts a storageUri
PVC_FORMATS = ("sklearn", "pytorch")


def object_name(owner, name):
    """``<name>-<6 hex of the owner>``: unique per namespace, short enough for KServe's
    ``-predictor`` suffix, and a valid DNS label whatever the user's name."""
    return f"{name}-{hashlib.sha256(owner.encode()).hexdigest()[:6]}"


def labels(serving_id, owner, project_name):
    return {
        **MANAGED_BY,
        LABEL_COMPONENT: COMPONENT,
        LABEL_USER: user_slug(owner),
        LABEL_PROJECT: safe_slug(project_name, max_length=63),
        LABEL_SERVING_ID: serving_id,
    }


def model_location(owner, model_path, model_format, settings, kserve):
    """(the path the runtime loads, storageUri or None): a plain model of the workspace claim is
    KServe's to mount; anything else is read through the workspace mounts."""
    workspace, archives = workspace_paths(owner, settings)
    if kserve and model_format in PVC_FORMATS:
        for mount, claim in ((workspace, settings.workspace_claim), (archives, settings.archives_claim)):
            if model_path == mount or model_path.startswith(mount + "/"):
                relative = model_path[len(mount) :].strip("/")
                uri = f"pvc://{claim}/{user_slug(owner)}" + (f"/{relative}" if relative else "")
                return KSERVE_MODEL_DIR, uri
    return model_path, None


def runtime_container(owner, spec, model_path, model_format, image, settings, storage_uri=None):
    """The model runtime's container (KServe's custom-container contract: ``kserve-container``)."""
    workspace, archives = workspace_paths(owner, settings)
    argv = [
        "python",
        "-m",
        "kubestudio.jobs.serve",
        "--model",
        model_path,
        "--name",
        spec.name,
        "--format",
        model_format,
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--packages-dir",
        "/tmp/kubestudio-packages",
    ]
    if spec.model_class:
        argv += ["--class", spec.model_class]
    for package in spec.packages:
        argv += ["--package", package]
    env = {
        **spec.env,
        "KUBESTUDIO_USER": owner,
        "KUBESTUDIO_SERVING": spec.name,
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
    }
    if not spec.resources.gpu.count:
        env["NVIDIA_VISIBLE_DEVICES"] = "none"  # the NVIDIA runtime would show the node's GPUs
    if storage_uri:
        env["STORAGE_URI"] = storage_uri  # KServe's storage initializer contract for custom containers
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    if not storage_uri:
        mounts += [
            {"name": "workspace", "mountPath": workspace, "subPath": user_slug(owner), "readOnly": True},
            {"name": "archives", "mountPath": archives, "subPath": user_slug(owner), "readOnly": True},
        ]
    probe = {"httpGet": {"path": f"/v1/models/{spec.name}", "port": PORT}, "periodSeconds": 2, "timeoutSeconds": 5}
    container = {
        "name": "kserve-container",
        "image": image,
        "command": argv,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": mounts,
        "readinessProbe": {**probe, "failureThreshold": 3},
        # a model may take minutes to load: the liveness probe waits for it (startupProbe)
        "startupProbe": {**probe, "failureThreshold": 300},
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": PORT},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": {
            "runAsUser": settings.uid,
            "runAsGroup": settings.gid,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    resources = container_resources(spec.resources, settings)
    if resources:
        container["resources"] = resources
    return container


def pod_settings(owner, spec, project, settings, storage_uri=None):
    """The pod spec's fields besides its containers: volumes, scheduling, security."""
    _, affinity = gpu_placement(
        spec.resources.gpu.count, spec.resources.gpu.type, spec.resources.gpu.resource, settings
    )
    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}]
    if not storage_uri:
        volumes += [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": settings.workspace_claim, "readOnly": True}},
            {"name": "archives", "persistentVolumeClaim": {"claimName": settings.archives_claim, "readOnly": True}},
        ]
    pod = {
        "volumes": volumes,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"fsGroup": settings.fs_gid},
    }
    pod.update(project_scheduling(project, affinity))
    return pod


def _metadata(run, settings, isvc=False):
    meta = {
        "name": object_name(run.owner, run.spec.name),
        "namespace": settings.namespace,
        "labels": labels(run.id, run.owner, run.project.name),
        "annotations": {"kubestudio.io/username": run.owner, PROJECT_ANNOTATION: run.project.name},
    }
    if isvc:  # KServe gives an InferenceService's labels to its predictor's pods
        meta["labels"][LABEL_GPUS] = str(run.spec.resources.gpu.count)
        meta["labels"][LABEL_GENERATION] = str(run.generation)
    return meta


def inference_service(run, image, settings):
    """The InferenceService of a serving's version ``run`` (KServe, RawDeployment)."""
    path, storage_uri = model_location(run.owner, run.path, run.model_format, settings, kserve=True)
    container = runtime_container(run.owner, run.spec, path, run.model_format, image, settings, storage_uri)
    predictor = {
        "minReplicas": run.spec.min_replicas,
        "maxReplicas": run.spec.max_replicas,
        "containers": [container],
        **pod_settings(run.owner, run.spec, run.project, settings, storage_uri),
    }
    metadata = _metadata(run, settings, isvc=True)
    metadata["annotations"]["serving.kserve.io/deploymentMode"] = "RawDeployment"
    return {"apiVersion": KSERVE, "kind": "InferenceService", "metadata": metadata, "spec": {"predictor": predictor}}


def deployment_objects(run, image, settings, autoscaling="autoscaling/v2"):
    """Without KServe: [Deployment, Service] of a serving's version ``run`` (+ HorizontalPodAutoscaler
    when min < max, in the ``autoscaling`` API version the cluster serves: v2, or v2beta2 before
    Kubernetes 1.23, whose fields used here are the same)."""
    owner, spec, project = run.owner, run.spec, run.project
    container = runtime_container(owner, spec, run.path, run.model_format, image, settings)
    metadata = _metadata(run, settings)
    pod_labels = {
        **metadata["labels"],
        LABEL_GPUS: str(spec.resources.gpu.count),
        LABEL_GENERATION: str(run.generation),
    }
    pod_annotations = {"kubestudio.io/username": owner, PROJECT_ANNOTATION: project.name}
    name = metadata["name"]
    selector = {LABEL_SERVING_ID: run.id, LABEL_COMPONENT: COMPONENT}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": spec.min_replicas,
            "selector": {"matchLabels": selector},
            # a new version answers before the old one goes: never fewer ready replicas
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": {"containers": [container], **pod_settings(owner, spec, project, settings)},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {k: v for k, v in metadata.items() if k != "annotations"},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    objects = [deployment, service]
    if spec.max_replicas > spec.min_replicas:
        objects.append(
            {
                "apiVersion": autoscaling,
                "kind": "HorizontalPodAutoscaler",
                "metadata": {k: v for k, v in metadata.items() if k != "annotations"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": spec.min_replicas,
                    "maxReplicas": spec.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                        }
                    ],
                },
            }
        )
    return objects
