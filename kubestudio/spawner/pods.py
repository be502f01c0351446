"""Pure builders for workspace pods on Kubernetes: (user, request, settings) -> KubeSpawner traits.

:func:`workspace_traits` computes the KubeSpawner trait values one checked
:class:`~kubestudio.spawner.request.WorkspaceRequest` asks for (what a ``kubespawner_override``
would set), so WorkspaceSpawner reuses KubeSpawner's own ``make_pod``. :func:`pod_manifest`
runs that same ``make_pod`` directly, for tests and dry runs. Nothing here talks to a cluster.
"""

from dataclasses import dataclass, field

from kubespawner.objects import make_pod
from kubespawner.slugs import safe_slug

from ..kube import SPAWNER_POD_SETTINGS
from ..names import ARCHIVES_CLAIM, MANAGED_BY, WORKSPACE_CLAIM
from .request import SpawnRefused
from .storage import mount_name, user_slug


@dataclass(frozen=True)
class PodSettings:
    """Admin settings that shape every workspace pod (WorkspaceSpawner traits)."""

    namespace: str = "default"
    project_namespaces: bool = False
    workspace_claim: str = WORKSPACE_CLAIM
    archives_claim: str = ARCHIVES_CLAIM
    workspace_root: str = "/mnt"
    archives_root: str = "/archives"
    gpu_type_label: str = "nvidia.com/gpu.product"
    gpu_types: dict = field(default_factory=dict)  # short type -> node label values
    uid: int = 1000
    gid: int = 100
    fs_gid: int = 100
    hostpath_projects: frozenset = frozenset()
    service_account: str = None
    jupyterlab_url: str = "/lab"
    vscode_url: str = "/vscode/"


def pod_settings(owner, **overrides):
    """The :class:`PodSettings` of a configurable holding the shared pod settings (the mixins of
    :mod:`kubestudio.kube`: those of ``kube.SPAWNER_POD_SETTINGS`` it has), ``overrides`` on top."""
    values = {name: getattr(owner, name) for name in SPAWNER_POD_SETTINGS if owner.has_trait(name)}
    if "gpu_types" in values:
        values["gpu_types"] = dict(values["gpu_types"])
    return PodSettings(**{**values, **overrides})


def workspace_paths(username, settings):
    name = mount_name(username)
    return f"{settings.workspace_root.rstrip('/')}/{name}", f"{settings.archives_root.rstrip('/')}/{name}"


def namespace_for(project, settings):
    if settings.project_namespaces:
        return safe_slug(project, max_length=63)
    return settings.namespace


def _downward(field_path):
    return {"valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def _project_volumes(project, settings, taken_paths):
    volumes, mounts = [], []
    for i, mount in enumerate(project.volume_mounts):
        if mount.mount_path in taken_paths:
            raise SpawnRefused(
                f"project: {project.name!r} volume_mount {mount} would hide {mount.mount_path}; ask an admin to move it",
                status=409,
            )
        name = f"project-{i}-{mount.kind}"
        if mount.kind == "pvc":
            volume = {"persistentVolumeClaim": {"claimName": mount.source}}
        elif mount.kind == "hostpath":
            if project.name not in settings.hostpath_projects:
                raise SpawnRefused(
                    f"project: {project.name!r} mounts host folder {mount.source}, but hostPath mounts are not "
                    f"enabled for this project; ask an admin",
                    status=403,
                )
            volume = {"hostPath": {"path": mount.source, "type": "Directory"}}
        elif mount.kind == "memory":
            volume = {"emptyDir": {"medium": "Memory", "sizeLimit": str(mount.size)}}
        elif mount.kind == "configmap":
            volume = {"configMap": {"name": mount.source}}
        else:
            volume = {"secret": {"secretName": mount.source}}
        volumes.append({"name": name, **volume})
        mounts.append({"name": name, "mountPath": mount.mount_path})
    return volumes, mounts


def workspace_storage(username, project, settings, shm=None):
    """(volumes, volume mounts) of a pod of ``username`` in ``project``: the shared claims with the
    user's subPath at /mnt/<user> and /archives/<user>, shared memory, the project's mounts. Servers
    and jobs mount the same, so a script that runs in the notebook runs unchanged as a job."""
    slug = user_slug(username)
    workspace, archives = workspace_paths(username, settings)
    volumes = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": settings.workspace_claim}},
        {"name": "archives", "persistentVolumeClaim": {"claimName": settings.archives_claim}},
    ]
    mounts = [
        {"name": "workspace", "mountPath": workspace, "subPath": slug},
        {"name": "archives", "mountPath": archives, "subPath": slug},
    ]
    project_volumes, project_mounts = _project_volumes(project, settings, {workspace, archives})
    if shm and "/dev/shm" not in {m["mountPath"] for m in project_mounts}:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": str(shm)}})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    return volumes + project_volumes, mounts + project_mounts


def gpu_placement(count, gpu_type, resource, settings):
    """({resource: count} limits, required node-affinity terms) for ``count`` GPUs of ``gpu_type``."""
    if not count:
        return {}, []
    affinity = []
    if gpu_type:
        values = list(settings.gpu_types.get(gpu_type) or [gpu_type])
        affinity.append({"matchExpressions": [{"key": settings.gpu_type_label, "operator": "In", "values": values}]})
    return {resource: str(count)}, affinity


def container_resources(resources, settings):
    """A container's ``resources`` from a job's or a serving's: cpu and memory requested and capped
    alike, the GPUs as the extended resource the node offers (empty parts left out)."""
    limits, _ = gpu_placement(resources.gpu.count, resources.gpu.type, resources.gpu.resource, settings)
    requests = {}
    for key in ("cpu", "memory"):
        value = getattr(resources, key)
        if value:
            requests[key] = limits[key] = value
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def project_scheduling(project, affinity=()):
    """The pod spec fields that place a pod of ``project`` (its node selector and tolerations) and
    of its GPUs (required node-affinity terms, from :func:`gpu_placement`): for jobs', boards' and
    servings' pods, which KubeSpawner does not build."""
    fields = {}
    if project.node_selector:
        fields["nodeSelector"] = dict(project.node_selector)
    if project.tolerations:
        fields["tolerations"] = [dict(t) for t in project.tolerations]
    if affinity:
        fields["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(affinity)}}
        }
    return fields


def workspace_traits(username, server_name, request, settings):
    """KubeSpawner trait values for one workspace request. Raises SpawnRefused on bad settings."""
    profile, project = request.profile, request.project
    slug = user_slug(username)
    workspace, archives = workspace_paths(username, settings)

    volumes, mounts = workspace_storage(username, project, settings, shm=profile.shm)

    # GPUs: the profile's resource, its type as required node affinity; none visible otherwise
    env = {
        "KUBESTUDIO_USER": username,
        "KUBESTUDIO_USER_SLUG": slug,
        "KUBESTUDIO_PROJECT": project.name,
        "KUBESTUDIO_PROFILE": profile.slug,
        "KUBESTUDIO_IDE": request.ide,
        "KUBESTUDIO_WORKSPACE": workspace,
        "KUBESTUDIO_ARCHIVES": archives,
        "K8S_NODE_NAME": _downward("spec.nodeName"),
        "K8S_POD_NAMESPACE": _downward("metadata.namespace"),
        "K8S_POD_NAME": _downward("metadata.name"),
        "K8S_POD_IP": _downward("status.podIP"),
        "K8S_HOST_IP": _downward("status.hostIP"),
    }
    extra_limits, affinity = gpu_placement(request.gpus, profile.gpu_type, profile.gpu_resource, settings)
    if not request.gpus:
        # the NVIDIA runtime would otherwise expose every GPU of the node to this pod
        env["NVIDIA_VISIBLE_DEVICES"] = "none"
    if request.ide == "vscode":
        env["CODE_WORKINGDIR"] = workspace

    if request.image:
        env["KUBESTUDIO_IMAGE"] = request.image.image  # jobs submitted from the server run in its image
    labels = {
        **MANAGED_BY,
        "kubestudio.io/component": "notebook",
        "kubestudio.io/user": slug,
        "kubestudio.io/project": safe_slug(project.name, max_length=63),
        "kubestudio.io/profile": profile.slug,
        "kubestudio.io/gpus": str(request.gpus),
    }
    annotations = {
        "kubestudio.io/username": username,
        "kubestudio.io/server-name": server_name,
        "kubestudio.io/project": project.name,
    }

    traits = {
        "namespace": namespace_for(project.name, settings),
        "image": request.image.image if request.image else None,
        "cpu_limit": profile.cpu_limit,
        "cpu_guarantee": profile.cpu_guarantee,
        "mem_limit": profile.mem_limit,
        "mem_guarantee": profile.mem_guarantee,
        "extra_resource_limits": extra_limits,
        "extra_resource_guarantees": dict(extra_limits),
        "node_selector": dict(project.node_selector),
        "tolerations": [dict(t) for t in project.tolerations],
        "node_affinity_required": affinity,
        "volumes": volumes,
        "volume_mounts": mounts,
        "working_dir": workspace,
        "notebook_dir": workspace,
        "default_url": settings.vscode_url if request.ide == "vscode" else settings.jupyterlab_url,
        "environment": env,
        "extra_labels": labels,
        "extra_annotations": annotations,
        "uid": settings.uid,
        "gid": settings.gid,
        "fs_gid": settings.fs_gid,
        "allow_privilege_escalation": False,
        "privileged": False,
        "service_account": settings.service_account,
        "automount_service_account_token": bool(settings.service_account),
    }
    return {k: v for k, v in traits.items() if v is not None}


# Traits whose value above is KubeStudio's safe default, not something the chosen profile asks
# for: a value the admin set on c.KubeSpawner / c.WorkspaceSpawner keeps winning over them.
YIELDING_TRAITS = frozenset(
    {
        "uid",
        "gid",
        "fs_gid",
        "privileged",
        "allow_privilege_escalation",
        "service_account",
        "automount_service_account_token",
        "working_dir",
        "notebook_dir",
    }
)


def yielding_traits(request):
    """The traits of ``request`` that yield to the admin's configuration (JupyterLab's URL too;
    a VS Code server must open VS Code, so its URL is the profile's choice)."""
    return YIELDING_TRAITS | ({"default_url"} if request.ide != "vscode" else set())


def to_manifest(obj):
    """A Kubernetes client model as the plain dict the API takes (camelCase keys, no nulls)."""
    if isinstance(obj, list):
        return [to_manifest(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_manifest(v) for k, v in obj.items()}
    if hasattr(obj, "openapi_types"):
        return {
            obj.attribute_map[attr]: to_manifest(getattr(obj, attr))
            for attr in obj.openapi_types
            if getattr(obj, attr) is not None
        }
    return obj


def pod_manifest(username, server_name, request, settings, pod_name=None, cmd=("jupyterhub-singleuser",), port=8888):
    """The pod KubeSpawner's ``make_pod`` builds for this request, as a plain dict."""
    traits = workspace_traits(username, server_name, request, settings)
    name = pod_name or f"jupyter-{safe_slug(username)}" + (f"--{safe_slug(server_name)}" if server_name else "")
    env = dict(traits["environment"])
    env["JUPYTERHUB_ROOT_DIR"] = traits["notebook_dir"]
    env["JUPYTERHUB_DEFAULT_URL"] = traits["default_url"]
    pod = make_pod(
        name=name,
        cmd=list(cmd),
        port=port,
        image=traits.get("image", "quay.io/jupyterhub/k8s-singleuser-sample:4.1.0"),
        cpu_limit=traits.get("cpu_limit"),
        cpu_guarantee=traits.get("cpu_guarantee"),
        mem_limit=traits.get("mem_limit"),
        mem_guarantee=traits.get("mem_guarantee"),
        extra_resource_limits=traits["extra_resource_limits"],
        extra_resource_guarantees=traits["extra_resource_guarantees"],
        node_selector=traits["node_selector"],
        tolerations=traits["tolerations"],
        node_affinity_required=traits["node_affinity_required"],
        volumes=traits["volumes"],
        volume_mounts=traits["volume_mounts"],
        working_dir=traits["working_dir"],
        env=env,
        labels={**traits["extra_labels"], "component": "singleuser-server"},
        annotations=traits["extra_annotations"],
        uid=traits["uid"],
        gid=traits["gid"],
        fs_gid=traits["fs_gid"],
        allow_privilege_escalation=False,
        service_account=traits.get("service_account"),
        automount_service_account_token=traits["automount_service_account_token"],
    )
    manifest = to_manifest(pod)
    manifest.setdefault("apiVersion", "v1")
    manifest.setdefault("kind", "Pod")
    manifest["metadata"]["namespace"] = traits["namespace"]
    return manifest


def gpu_count(resources):
    """GPUs in a resource mapping: any extended resource named like one (``nvidia.com/gpu``,
    ``amd.com/gpu``, MIG slices such as ``nvidia.com/mig-1g.10gb``)."""
    total = 0
    for name, value in (resources or {}).items():
        kind = name.rsplit("/", 1)[-1]
        if kind == "gpu" or kind.startswith("mig-"):
            try:
                total += int(value)
            except (TypeError, ValueError):
                continue
    return total
