"""WorkspaceSpawner: KubeStudio workspaces as Kubernetes pods, on top of KubeSpawner.

KubeSpawner does the Kubernetes work (shared reflectors, ``make_pod``, slugs, progress); this
class turns a checked :class:`~kubestudio.spawner.request.WorkspaceRequest` into KubeSpawner
trait values with the pure :func:`~kubestudio.spawner.pods.workspace_traits`, counts quotas from
the pod reflector (no API call), words scheduling and image events plainly, and stops a spawn
early when it cannot succeed (no node with the GPU type, an image that cannot be pulled) instead
of waiting out ``start_timeout``.
"""

import asyncio
import copy
import re
import time

from kubespawner import KubeSpawner
from traitlets import Bool, Dict, Float, List, Unicode, default

from ..kube import PullFailure
from ..names import ARCHIVES_CLAIM, WORKSPACE_CLAIM
from .base import SpawnFailed, WorkspaceSpawnerMixin, refusal
from .pods import PodSettings, workspace_traits
from .profiles import IDE_LABELS
from .request import SpawnRefused, check_quota
from .storage import user_slug

# FailedScheduling reasons no waiting can fix (node labels and taints do not change by themselves)
_PERMANENT = re.compile(r"didn't match (?:node selector|Pod's node affinity|node affinity)|had taints? .* the pod didn't tolerate|had (?:un)?tolerated taint", re.I)
_MISSING_CLAIM = re.compile(r'persistentvolumeclaim "([^"]+)" not found')
_NODES = re.compile(r"0/(\d+) nodes are available: (.*)")




def _is_image_error(event):
    message = event.get("message") or ""
    return "ErrImagePull" in message or "ImagePullBackOff" in message or (
        event.get("reason") == "Failed" and "pull image" in message
    )


def permanently_unschedulable(message):
    """True when a FailedScheduling message says no node can ever take the pod."""
    match = _NODES.search(message or "")
    if not match:
        return False
    total = int(match[1])
    blocked = 0
    # reasons are "N node(s) ..." joined by ", "; a reason may hold a comma itself (taints)
    for part in re.split(r",\s*(?=\d+ )", match[2].rstrip(".")):
        count = re.match(r"\s*(\d+) (.*)", part)
        if count and _PERMANENT.search(count[2]):
            blocked += int(count[1])
    return blocked >= total


class WorkspaceSpawner(WorkspaceSpawnerMixin, KubeSpawner):
    """Spawn KubeStudio workspaces (Jupyter or VS Code) as Kubernetes pods."""

    workspace_claim = Unicode(
        WORKSPACE_CLAIM,
        config=True,
        help="""Shared (ReadWriteMany) PersistentVolumeClaim holding every user's workspace;
        each user's pod mounts the subPath <user slug> at /mnt/<username>. KubeStudio never
        creates per-user claims.""",
    )
    archives_claim = Unicode(
        ARCHIVES_CLAIM,
        config=True,
        help="Shared claim for archives, mounted with subPath <user slug> at /archives/<username>.",
    )
    workspace_root = Unicode("/mnt", config=True, help="Where workspaces are mounted (/mnt/<username>).")
    archives_root = Unicode("/archives", config=True, help="Where archives are mounted (/archives/<username>).")
    gpu_type_label = Unicode(
        "nvidia.com/gpu.product",
        config=True,
        help="Node label a profile's GPU type is matched against (required node affinity).",
    )
    gpu_types = Dict(
        config=True,
        help="""Node label values for each GPU type a profile may name, e.g.
        {"A100": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-PCIE-40GB"]}. A type not listed here is
        matched as is.""",
    )
    hostpath_projects = List(
        Unicode(),
        config=True,
        help="Projects whose volume_mount may mount host folders (hostPath). None by default.",
    )
    project_namespaces = Bool(
        False,
        config=True,
        help="""Run each project's pods in a namespace named after the project (KubeSpawner creates
        it when missing). The pod reflector then watches every namespace. The hub needs rights on
        namespaces, and the workspace and archives claims must exist in each project's namespace.""",
    )

    @default("enable_user_namespaces")
    def _default_enable_user_namespaces(self):
        # KubeSpawner's switch for namespaces other than its own: created on demand, watched cluster-wide
        return self.project_namespaces

    image_pull_grace_seconds = Float(
        30,
        config=True,
        help="""Seconds an image may keep failing to pull (ErrImagePull / ImagePullBackOff)
        before the spawn is stopped with the reason, instead of waiting out start_timeout.""",
    )
    @default("cmd")
    def _default_cmd(self):
        return ["jupyterhub-singleuser"]

    @default("uid")
    def _default_uid(self):
        return 1000

    @default("gid")
    def _default_gid(self):
        return 100

    @default("fs_gid")
    def _default_fs_gid(self):
        return 100

    @default("start_timeout")
    def _default_start_timeout(self):
        return 300

    @property
    def settings(self):
        return PodSettings(
            namespace=self.namespace,
            project_namespaces=self.project_namespaces,
            workspace_claim=self.workspace_claim,
            archives_claim=self.archives_claim,
            workspace_root=self.workspace_root,
            archives_root=self.archives_root,
            gpu_type_label=self.gpu_type_label,
            gpu_types=dict(self.gpu_types),
            uid=self.uid if isinstance(self.uid, int) else 1000,
            gid=self.gid if isinstance(self.gid, int) else 100,
            fs_gid=self.fs_gid if isinstance(self.fs_gid, int) else 100,
            hostpath_projects=frozenset(self.hostpath_projects),
            # KubeSpawner's own trait; the token is mounted only when one is set
            service_account=self.service_account or None,
            jupyterlab_url=self.jupyterlab_url,
            vscode_url=self.vscode_url,
        )

    # ------------------------------------------------------------------ quotas from the reflector

    # spawns checked but whose pod the reflector has not shown yet, per hub process
    _inflight = {}

    def _usage(self, project_name):
        """(servers, gpus) this user holds in the project, from the pod reflector and in-flight spawns."""
        slug = user_slug(self.user.name)
        servers = gpus = 0
        seen = set()
        reflector = self.pod_reflector
        for key, pod in (reflector.pods.items() if reflector else []):
            labels = pod["metadata"].get("labels") or {}
            annotations = pod["metadata"].get("annotations") or {}
            if labels.get("kubestudio.io/user") != slug or annotations.get("kubestudio.io/project") != project_name:
                continue
            if pod["metadata"]["name"] == self.pod_name or pod["metadata"].get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            seen.add(pod["metadata"]["name"])
            servers += 1
            gpus += int(labels.get("kubestudio.io/gpus", "0") or 0)
        for (user, server), (project, pod_name, count) in self._inflight.items():
            if user == self.user.name and server != self.name and project == project_name and pod_name not in seen:
                servers += 1
                gpus += count
        return servers, gpus

    def check_capacity(self, request):
        servers, gpus = self._usage(request.project.name)
        check_quota(request.project, request.gpus, servers_in_use=servers, gpus_in_use=gpus)

    # ------------------------------------------------------------------ request -> KubeSpawner traits

    _request = None
    _workspace_traits = None

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return WorkspaceSpawner._claim

    async def _claim(self, user_options):
        """Check the request and the quotas (JupyterHub's apply_user_options hook)."""
        await self._start_watching_pods()
        try:
            request = self.resolve(user_options)
            self.check_capacity(request)
            # computing the traits here refuses bad project settings before anything starts
            traits = workspace_traits(self.user.name, self.name, request, self.settings)
        except SpawnRefused as e:
            raise refusal(e) from None
        self._request = request
        self._workspace_traits = traits
        self._inflight[(self.user.name, self.name)] = (request.project.name, self.pod_name, request.gpus)

    _configured = None

    async def load_user_options(self):
        """KubeSpawner's hook for applying user_options: apply the workspace's traits.

        Lists and mappings are merged with what the admin configured, never replaced
        (kubespawner #550): extra volumes, labels or env of the config keep the user's workspace.
        """
        if self._request is None:
            await self._claim(self.user_options)  # JupyterHub < 5.3 has no apply_user_options
        traits = self._workspace_traits
        if self._configured is None:
            # what the config said, before any spawn changed it; every spawn merges from here
            self._configured = {name: copy.deepcopy(getattr(self, name)) for name in traits}
        for name, value in traits.items():
            configured = self._configured[name]
            if isinstance(value, dict) and isinstance(configured, dict):
                value = {**configured, **value}
            elif isinstance(value, list) and isinstance(configured, list):
                value = configured + value
            setattr(self, name, value)

    # ------------------------------------------------------------------ start, fail fast

    _pull = None

    def start(self):
        self._pull = PullFailure(self.image_pull_grace_seconds)
        inner = super().start()
        self._start_future = asyncio.ensure_future(self._watch_start(inner))
        return self._start_future

    async def _watch_start(self, inner):
        try:
            while True:
                done, _ = await asyncio.wait([inner], timeout=1)
                if done:
                    return inner.result()
                reason = self._fatal_reason()
                if reason:
                    inner.cancel()
                    try:
                        await inner
                    except (asyncio.CancelledError, Exception):
                        pass
                    await self.stop(now=True)
                    raise SpawnFailed(reason, status=409)
        finally:
            self._inflight.pop((self.user.name, self.name), None)

    def _fatal_reason(self):
        """Why this spawn cannot succeed, from the pod in the reflector (a dict lookup, no scan)."""
        reflector = self.pod_reflector
        pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None
        if not pod:
            return None
        status = pod.get("status") or {}
        for condition in status.get("conditions") or []:
            # the scheduler writes its FailedScheduling message here too
            if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
                message = condition.get("message") or ""
                missing = _MISSING_CLAIM.search(message)
                if missing:
                    return (f"The volume claim {missing[1]} does not exist in namespace {self.namespace}; "
                            f"ask an admin to create it")
                if permanently_unschedulable(message):
                    return self.describe_scheduling(message)
        waiting = [(c.get("state") or {}).get("waiting") or {} for c in status.get("containerStatuses") or []]
        reasons = [w.get("reason") for w in waiting]
        if self._pull is not None and self._pull.failed(reasons):
            if self._pull.since is None:  # a name that can never be pulled: failed at once
                return (f"Image {self.image} cannot be pulled ({', '.join(r for r in reasons if r)}): "
                        f"check its name and tag")
            return (f"Image {self.image} could not be pulled for {self.image_pull_grace_seconds:g} s: "
                    f"check its name and tag, and the registry's credentials")
        return None

    # ------------------------------------------------------------------ readable progress

    def describe_event(self, event):
        """A Kubernetes event in plain words for the spawn page."""
        reason, message = event.get("reason"), event.get("message") or ""
        request = self._request
        if reason == "FailedScheduling":
            return self.describe_scheduling(message)
        if reason == "Scheduled":
            node = message.rsplit(" to ", 1)[-1]
            return f"Placed on node {node}"
        if reason == "Pulling":
            return f"Pulling the image {self.image}"
        if reason == "Pulled":
            return "Image ready"
        if reason == "Started":
            ide = IDE_LABELS.get(request.ide, "the server") if request else "the server"
            return f"Starting {ide}"
        if _is_image_error(event):
            return f"Image {self.image} cannot be pulled yet ({message}); giving up after {self.image_pull_grace_seconds:g} s"
        return message

    def describe_scheduling(self, message, gpu_capacity=None):
        """A scheduler message (FailedScheduling) in plain words."""
        request = self._request
        project = request.project.name if request else "?"
        profile = request.profile if request else None
        gpu_type = profile.gpu_type if profile else None
        if permanently_unschedulable(message):
            if gpu_type and request.gpus:
                return (f"No node has GPUs of type {gpu_type} ({self.gpu_type_label}) for project {project}; "
                        f"ask an admin, or pick another profile")
            return f"No node fits project {project}'s placement rules (node selector, affinity, taints): {message}"
        if profile and "Insufficient " + profile.gpu_resource in message:
            kind = f" of type {gpu_type}" if gpu_type else ""
            in_use = self._gpus_in_use(profile.gpu_resource)
            of = f" of {gpu_capacity}" if gpu_capacity is not None else ""
            return (f"No free GPU{kind} for project {project} right now; {in_use} in use{of}. "
                    f"Waiting for one to be freed")
        if "Insufficient cpu" in message or "Insufficient memory" in message:
            return f"Not enough free CPU or memory for this profile right now; waiting ({message})"
        return f"Waiting for a node: {message}"

    # (resource, type) -> (time, GPUs the matching nodes offer), shared by the hub's spawners
    _gpu_capacity_cache = {}

    async def gpu_capacity(self, resource, gpu_type):
        """GPUs of this resource (and type) the cluster's nodes offer; one node list per minute."""
        key = (resource, gpu_type)
        cached = self._gpu_capacity_cache.get(key)
        if cached and time.monotonic() - cached[0] < 60:
            return cached[1]
        try:
            nodes = await self.api.list_node(_request_timeout=self.k8s_api_request_timeout)
        except Exception as e:  # a progress message is not worth failing a spawn over
            self.log.warning("could not list nodes for GPU capacity: %s", e)
            return None
        values = set(self.gpu_types.get(gpu_type) or [gpu_type]) if gpu_type else None
        total = 0
        for node in nodes.items:
            labels = node.metadata.labels or {}
            if values is not None and labels.get(self.gpu_type_label) not in values:
                continue
            total += int((node.status.allocatable or {}).get(resource, 0) or 0)
        self._gpu_capacity_cache[key] = (time.monotonic(), total)
        return total

    def _gpus_in_use(self, resource):
        total = 0
        reflector = self.pod_reflector
        for pod in (reflector.pods.values() if reflector else []):
            # only pods a node holds: waiting ones (like this one) hold no GPU yet
            if not pod["spec"].get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for container in pod["spec"].get("containers", []):
                limits = (container.get("resources") or {}).get("limits") or {}
                total += int(limits.get(resource, 0) or 0)
        return total

    async def progress(self):
        async for event in super().progress():
            raw = event.get("raw_event")
            if raw is not None:
                message = self.describe_event(raw)
                profile = self._request.profile if self._request else None
                if raw.get("reason") == "FailedScheduling" and profile and "Insufficient " + profile.gpu_resource in (raw.get("message") or ""):
                    capacity = await self.gpu_capacity(profile.gpu_resource, profile.gpu_type)
                    message = self.describe_scheduling(raw["message"], capacity)
                event = dict(event, message=message)
                event.pop("raw_event", None)
            yield event

    def clear_state(self):
        super().clear_state()
        self._request = None
        self._workspace_traits = None
        # a spawn that failed before start() must not keep counting against the quota
        self._inflight.pop((self.user.name, self.name), None)
