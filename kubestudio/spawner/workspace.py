"""WorkspaceSpawner: KubeStudio workspaces as Kubernetes pods, on top of KubeSpawner.

KubeSpawner does the Kubernetes work (shared reflectors, ``make_pod``, slugs, progress, per-user
claims) and keeps its contract: an admin's ``profile_list``, overrides and settings work as in
KubeSpawner (precedence in docs/configuration.md). This class turns a checked
:class:`~kubestudio.spawner.request.WorkspaceRequest` into KubeSpawner trait values with the pure
:func:`~kubestudio.spawner.pods.workspace_traits`, counts quotas from
the pod reflector (no API call), words scheduling and image events plainly, and stops a spawn
early when it cannot succeed (no node with the GPU type, an image that cannot be pulled) instead
of waiting out ``start_timeout``.
"""

import asyncio
import copy
import dataclasses
import re
import time

from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner
from traitlets import Bool, List, Unicode, default

from .. import kubespawner_api
from ..kube import GpuLabels, ImagePullGrace, PullFailure, WorkspaceMounts
from ..names import LABEL_GPUS
from .base import SpawnFailed, WorkspaceSpawnerMixin, refusal
from .podindex import OwnedPodReflector, PodsByOwner, owner_of
from .pods import gpu_count, pod_settings, workspace_traits, yielding_traits
from .profiles import IDE_LABELS, Profile, load_catalog_cached, yielded_to
from .request import SpawnRefused, WorkspaceRequest, check_quota, resolve_project
from .storage import user_slug

# what a shipped catalog's profile says that an admin's c.KubeSpawner setting replaces
_SHIPPED_FIELDS = {
    "cpu_limit": "cpu_limit",
    "cpu_guarantee": "cpu_guarantee",
    "mem_limit": "mem_limit",
    "mem_guarantee": "mem_guarantee",
}

# what a profile_list entry decides (through its kubespawner_override) instead of KubeStudio
_PROFILE_LIST_DECIDES = frozenset(
    {
        "image",
        "cpu_limit",
        "cpu_guarantee",
        "mem_limit",
        "mem_guarantee",
        "extra_resource_limits",
        "extra_resource_guarantees",
    }
)


def _override_names(entry):
    """Every trait a profile_list entry (and its options' choices) may override."""
    names = set(entry.get("kubespawner_override") or {})
    for option in (entry.get("profile_options") or {}).values():
        for choice in (option.get("choices") or {}).values():
            names.update(choice.get("kubespawner_override") or {})
        names.update((option.get("unlisted_choice") or {}).get("kubespawner_override") or {})
    return names


# FailedScheduling reasons no waiting can fix (node labels and taints do not change by themselves)
_PERMANENT = re.compile(
    r"didn't match (?:node selector|Pod's node affinity|node affinity)|had taints? .* the pod didn't tolerate|had (?:un)?tolerated taint",
    re.I,
)
_MISSING_CLAIM = re.compile(r'persistentvolumeclaim "([^"]+)" not found')
_NODES = re.compile(r"0/(\d+) nodes are available: (.*)")


def _is_image_error(event):
    message = event.get("message") or ""
    return (
        "ErrImagePull" in message
        or "ImagePullBackOff" in message
        or (event.get("reason") == "Failed" and "pull image" in message)
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


class WorkspaceSpawner(WorkspaceSpawnerMixin, KubeSpawner, WorkspaceMounts, GpuLabels, ImagePullGrace):
    """Spawn KubeStudio workspaces (Jupyter or VS Code) as Kubernetes pods."""

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

    @default("image_pull_grace_seconds")
    def _default_image_pull_grace_seconds(self):
        return 30.0  # someone is waiting at the spawn page

    @default("enable_user_namespaces")
    def _default_enable_user_namespaces(self):
        # KubeSpawner's switch for namespaces other than its own: created on demand, watched cluster-wide
        return self.project_namespaces

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

    _workspace_env = None  # KubeStudio's variables of this start (the workspace, K8S_*, the image)
    _profile_env = ()  # the ones a profile_list override set itself, which win over ours

    def get_env(self):
        """KubeSpawner's environment (JupyterHub's, then the admin's and a profile's
        `environment`), with KubeStudio's own variables of this start added (a profile's override
        of one of them wins) and the notebook's links."""
        env = super().get_env()
        env.update({k: v for k, v in (self._workspace_env or {}).items() if k not in self._profile_env})
        env.update(self.notebook_links_env())
        return env

    @property
    def settings(self):
        return pod_settings(
            self,
            project_namespaces=self.project_namespaces,
            # KubeSpawner's uid, gid and fs_gid may be callables: the defaults then
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
        owner = (user_slug(self.user.name), project_name)
        servers = gpus = 0
        seen = set()
        reflector = self.pod_reflector
        pods = reflector.pods if reflector else {}
        # our reflector indexes pods by owner; another one (a KubeSpawner started it) is scanned
        mine = (
            pods.owned.get(owner, {})
            if isinstance(pods, PodsByOwner)
            else {key: pod for key, pod in pods.items() if owner_of(pod) == owner}
        )
        for pod in list(mine.values()):
            labels = pod["metadata"].get("labels") or {}
            if pod["metadata"]["name"] == self.pod_name or pod["metadata"].get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            seen.add(pod["metadata"]["name"])
            if labels.get("component") == self.component_label:
                servers += 1
            # a training job's pods hold GPUs of the same quota (the jobs service's pods)
            gpus += int(labels.get(LABEL_GPUS, "0") or 0)
        for (user, server), (project, pod_name, count) in self._inflight.items():
            if user == self.user.name and server != self.name and project == project_name and pod_name not in seen:
                servers += 1
                gpus += count
        return servers, gpus

    async def _start_watching_pods(self, replace=False):
        # KubeSpawner's own call with our reflector class (pods indexed by owner for quotas), which
        # watches every pod KubeStudio made for a user: servers, and the training jobs' pods whose
        # GPUs count in the same quota
        return await kubespawner_api.start_pod_reflector(
            self,
            OwnedPodReflector,
            labels={"component": self.component_label},
            omit_namespace=self.enable_user_namespaces,
            replace=replace,
        )

    def check_capacity(self, request):
        servers, gpus = self._usage(request.project.name)
        check_quota(request.project, request.gpus, servers_in_use=servers, gpus_in_use=gpus)

    # ------------------------------------------------------------------ where profiles come from

    shipped_catalog = Bool(
        False,
        config=True,
        help="""True when profiles_file is the example catalog shipped with KubeStudio, not one the
        admin wrote (configure() sets it when KubeStudio.profiles_file is not set). A shipped
        catalog yields to KubeSpawner configuration: with a profile_list it is not shown at all,
        and an image, cpu_limit, cpu_guarantee, mem_limit or mem_guarantee set on
        c.KubeSpawner / c.WorkspaceSpawner replaces its profiles' values (the form shows them).""",
    )

    @property
    def admin_settings(self):
        """Names of the traits the admin set on this class or one it derives from (KubeSpawner,
        Spawner): those win over KubeStudio's defaults."""
        if self._admin_settings is None:
            names = set()
            for section in self.section_names():
                if section in self.config:
                    names.update(self.config[section])
            self._admin_settings = frozenset(names)
        return self._admin_settings

    _admin_settings = None
    _shipped_cache = {}

    @property
    def catalog(self):
        """The KubeStudio catalog shown beside KubeSpawner's profile_list; None without one."""
        if not self.profiles_file or (self.shipped_catalog and self.profile_list):
            return None
        catalog = load_catalog_cached(self.profiles_file)
        if not self.shipped_catalog:
            return catalog
        admin = self.admin_settings
        image = self.image if "image" in admin else None
        sizes = {field: getattr(self, trait) for trait, field in _SHIPPED_FIELDS.items() if trait in admin}
        if not (image or sizes):
            return catalog
        key = (id(catalog), image, tuple(sorted(sizes.items())))
        if key not in self._shipped_cache:
            self._shipped_cache[key] = yielded_to(catalog, image, sizes)
        return self._shipped_cache[key]

    async def kubespawner_profiles(self):
        """KubeSpawner's profile_list as KubeSpawner itself prepares it (callables evaluated,
        slugs and defaults filled in); [] when none is configured."""
        profile_list = self.profile_list
        if callable(profile_list):
            profile_list = await maybe_future(profile_list(self))
        return kubespawner_api.initialized_profiles(self, profile_list)

    async def other_profiles_form(self):
        """KubeSpawner's own form for profile_list, shown in the same form as the catalog."""
        profile_list = await self.kubespawner_profiles()
        if not profile_list:
            return "", False
        previous = (self.orm_spawner.user_options if self.orm_spawner else None) or {}
        catalog = self.catalog
        theirs = previous.get("profile") in {p["slug"] for p in profile_list}
        mine = bool(catalog and catalog.get(previous.get("profile")))
        html = kubespawner_api.render_profiles_form(self, profile_list, previous if theirs else {})
        return html, not mine

    def options_from_form(self, formdata):
        slug = (formdata.get("profile") or [""])[0]
        catalog = self.catalog
        if self.profile_list and not (catalog and catalog.get(slug)):
            ours = {k: v for k, v in formdata.items() if k == "profile" or k.startswith("profile-option-")}
            options = kubespawner_api.options_from_profiles_form(self, ours)
            project = (formdata.get("project") or [""])[0].strip()
            if project:
                options["project"] = project
            return options
        return super().options_from_form(formdata)

    async def resolve_any(self, options):
        """(checked request, whether KubeSpawner's profile_list supplies the profile)."""
        options = dict(options or {})
        slug = options.get("profile")
        catalog = self.catalog
        profile_list = await self.kubespawner_profiles()
        if catalog and (catalog.get(slug) or not (slug or profile_list)):
            return self.resolve(options), False
        if not profile_list:
            if catalog:
                return self.resolve(options), False  # refuses the unknown profile, naming the choices
            # neither a catalog nor a profile_list: KubeSpawner's configuration as it stands
            unknown = sorted(set(options) - {"project"})
            if unknown:
                raise SpawnRefused(f"{unknown[0]}: unknown option (no profiles are configured; expected: project)")
            entry = {"slug": "default", "display_name": "Default"}
        else:
            try:
                entry = kubespawner_api.profile_for(self, options, profile_list)
            except (ValueError, StopIteration) as e:
                raise SpawnRefused(f"profile: {e or 'profile_list has no default profile'}") from None
        project = resolve_project(options, self.projects())
        if not project.allows_profile(entry["slug"]):
            raise SpawnRefused(f"profile: {entry['slug']!r} is not available in project {project.name!r}", status=403)
        profile = Profile(slug=entry["slug"], display_name=entry.get("display_name") or entry["slug"])
        return WorkspaceRequest(profile=profile, project=project, ide="jupyterlab", image=None, gpus=0), bool(
            profile_list
        )

    # ------------------------------------------------------------------ request -> KubeSpawner traits

    _request = None
    _workspace_traits = None
    _from_profile_list = False

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return WorkspaceSpawner._check_and_reserve

    async def _check_and_reserve(self, user_options):
        """Check the request and the quotas (JupyterHub's apply_user_options hook)."""
        await self._start_watching_pods()
        try:
            request, from_profile_list = await self.resolve_any(user_options)
            self.check_capacity(request)
            # computing the traits here refuses bad project settings before anything starts
            traits = workspace_traits(self.user.name, self.name, request, self.settings)
        except SpawnRefused as e:
            raise refusal(e) from None
        self._request, self._workspace_traits, self._from_profile_list = request, traits, from_profile_list
        self._inflight[(self.user.name, self.name)] = (request.project.name, self.pod_name, request.gpus)

    _configured = None

    def _restore(self, names):
        """Put back what the config said for ``names`` before this spawn changes them (a spawner
        object serves every start of its server; KubeSpawner's overrides change dicts in place)."""
        if self._configured is None:
            self._configured = {}
        for name in names:
            if name not in self._configured:
                self._configured[name] = copy.deepcopy(getattr(self, name))
            setattr(self, name, copy.deepcopy(self._configured[name]))

    async def load_user_options(self):
        """Apply the request: the workspace's traits, then (for a profile_list profile)
        KubeSpawner's own kubespawner_override and profile_options, exactly as KubeSpawner does.

        Precedence: what a chosen profile sets > what the admin configured > KubeStudio's
        defaults. Lists and mappings are merged with the configuration, never replaced
        (kubespawner #550): extra volumes, labels or env of the config keep the user's workspace.
        """
        if self._request is None:
            await self._check_and_reserve(self.user_options)  # JupyterHub < 5.3 has no apply_user_options
        request, traits = self._request, dict(self._workspace_traits)
        # KubeStudio's own variables go into the pod through get_env(), never into the admin's
        # `environment` trait: a hook reading it sees what was configured (and a profile's override)
        self._workspace_env = dict(traits.pop("environment", {}))
        self._profile_env = set()
        profile_list = await self.kubespawner_profiles() if self._from_profile_list else []
        overridden = {name for entry in profile_list for name in _override_names(entry)}
        self._restore(set(traits) | overridden | {"environment"})
        # what the admin set wins over our defaults; a profile_list entry decides the image and
        # the size (the workspace stays ours)
        keep = yielding_traits(request) & self.admin_settings
        if self._from_profile_list:
            keep |= _PROFILE_LIST_DECIDES
        for name, value in traits.items():
            if name in keep:
                continue
            configured = getattr(self, name)
            if isinstance(value, dict) and isinstance(configured, dict):
                value = {**configured, **value}
            elif isinstance(value, list) and isinstance(configured, list):
                value = configured + value
            setattr(self, name, value)
        if self._from_profile_list:
            configured_env = dict(self.environment)
            try:
                await super().load_user_options()
            except ValueError as e:
                raise refusal(SpawnRefused(f"profile: {e}")) from None
            # what the profile's override set wins over ours, as it wins over the admin's
            self._profile_env = {
                k for k, v in self.environment.items() if k not in configured_env or configured_env[k] != v
            }
            self._count_profile_gpus(request)

    def _count_profile_gpus(self, request):
        """GPUs a profile_list profile asks for (extra_resource_limits): labelled, visible to the
        container, and counted against the project's quota."""
        gpus = gpu_count(self.extra_resource_limits)
        if not gpus:
            return
        self.environment = {k: v for k, v in self.environment.items() if k != "NVIDIA_VISIBLE_DEVICES"}
        self._workspace_env.pop("NVIDIA_VISIBLE_DEVICES", None)
        self.extra_labels = {**self.extra_labels, LABEL_GPUS: str(gpus)}
        try:
            self.check_capacity(dataclasses.replace(request, gpus=gpus))
        except SpawnRefused as e:
            raise refusal(e) from None
        self._inflight[(self.user.name, self.name)] = (request.project.name, self.pod_name, gpus)

    # ------------------------------------------------------------------ start, fail fast

    _pull = None
    _fatal = None
    # spawners whose start is watched for a reason it cannot succeed: one task for the hub
    _starting = set()
    _fatal_checker = None

    def start(self):
        self._pull = PullFailure(self.image_pull_grace_seconds)
        self._fatal = asyncio.get_running_loop().create_future()
        inner = asyncio.ensure_future(super().start())
        self._start_future = asyncio.ensure_future(self._watch_start(inner))
        return self._start_future

    async def _watch_start(self, inner):
        WorkspaceSpawner._starting.add(self)
        checker = WorkspaceSpawner._fatal_checker
        if checker is None or checker.done():
            WorkspaceSpawner._fatal_checker = asyncio.ensure_future(WorkspaceSpawner._check_starting())
        try:
            await asyncio.wait([inner, self._fatal], return_when=asyncio.FIRST_COMPLETED)
            if inner.done():
                return inner.result()
            reason = self._fatal.result()
            inner.cancel()
            try:
                await inner
            except (asyncio.CancelledError, Exception):
                pass
            await self.stop(now=True)
            raise SpawnFailed(reason, status=409)
        finally:
            WorkspaceSpawner._starting.discard(self)
            self._inflight.pop((self.user.name, self.name), None)

    @staticmethod
    async def _check_starting():
        """Once a second, ask every starting spawner's pod (in the reflector) whether it can
        still succeed; ends when nothing is starting. One timer for a burst, not one per spawn."""
        while WorkspaceSpawner._starting:
            await asyncio.sleep(1)
            for spawner in list(WorkspaceSpawner._starting):
                if spawner._fatal is None or spawner._fatal.done():
                    continue
                try:
                    reason = spawner._fatal_reason()
                except Exception:  # a malformed object must not stop the checks of other spawns
                    spawner.log.exception("could not check %s's pod", spawner._log_name)
                    continue
                if reason:
                    spawner._fatal.set_result(reason)

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
                    return (
                        f"The volume claim {missing[1]} does not exist in namespace {self.namespace}; "
                        f"ask an admin to create it"
                    )
                if permanently_unschedulable(message):
                    return self.describe_scheduling(message)
        waiting = [(c.get("state") or {}).get("waiting") or {} for c in status.get("containerStatuses") or []]
        reasons = [w.get("reason") for w in waiting]
        if self._pull is not None and self._pull.failed(reasons):
            if self._pull.since is None:  # a name that can never be pulled: failed at once
                return (
                    f"Image {self.image} cannot be pulled ({', '.join(r for r in reasons if r)}): "
                    f"check its name and tag"
                )
            return (
                f"Image {self.image} could not be pulled for {self.image_pull_grace_seconds:g} s: "
                f"check its name and tag, and the registry's credentials"
            )
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
                return (
                    f"No node has GPUs of type {gpu_type} ({self.gpu_type_label}) for project {project}; "
                    f"ask an admin, or pick another profile"
                )
            return f"No node fits project {project}'s placement rules (node selector, affinity, taints): {message}"
        if profile and "Insufficient " + profile.gpu_resource in message:
            kind = f" of type {gpu_type}" if gpu_type else ""
            in_use = self._gpus_in_use(profile.gpu_resource)
            of = f" of {gpu_capacity}" if gpu_capacity is not None else ""
            return (
                f"No free GPU{kind} for project {project} right now; {in_use} in use{of}. Waiting for one to be freed"
            )
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
        for pod in reflector.pods.values() if reflector else []:
            # only pods a node holds: waiting ones (like this one) hold no GPU yet
            if not pod["spec"].get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for container in pod["spec"].get("containers", []):
                limits = (container.get("resources") or {}).get("limits") or {}
                total += int(limits.get(resource, 0) or 0)
        return total

    async def progress(self):
        """KubeSpawner's progress, each Kubernetes event's own text kept (admins grep for it)
        with our plain-words reading after it when that says something more."""
        async for event in super().progress():
            raw = event.pop("raw_event", None)
            if raw is not None:
                plain = self.describe_event(raw)
                profile = self._request.profile if self._request else None
                if (
                    raw.get("reason") == "FailedScheduling"
                    and profile
                    and "Insufficient " + profile.gpu_resource in (raw.get("message") or "")
                ):
                    capacity = await self.gpu_capacity(profile.gpu_resource, profile.gpu_type)
                    plain = self.describe_scheduling(raw["message"], capacity)
                if plain and plain != (raw.get("message") or ""):
                    event = dict(event, message=f"{event['message']} · {plain}")
            yield event

    def clear_state(self):
        super().clear_state()
        self._request = None
        self._workspace_traits = None
        # a spawn that failed before start() must not keep counting against the quota
        self._inflight.pop((self.user.name, self.name), None)
