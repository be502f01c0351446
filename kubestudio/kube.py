"""Kubernetes plumbing shared by KubeStudio's services (one copy of each mechanism).

- :func:`load_client`: an API client from the in-cluster service account, else a kubeconfig;
- :func:`owned_labels` / :func:`selector`: our labels on everything we create, and the selector
  that finds it again;
- :func:`served`: API discovery, which of the kinds a service may create this cluster serves;
- :class:`Reflector`: one shared watch per kind (list once, then watch, re-list on ``410 Gone``)
  keeping the latest object of each name, so following a pod to its end costs no request: waiters
  are woken by the watch's events, never by polling the API. Core kinds come as the client's
  models, custom resources as dicts (:func:`meta` reads the metadata of both);
- :func:`stream_log`: a container's log, followed to its end, as chunks; :class:`PodLogs`: the
  logs of many pods at once (each followed from when it runs, again after a restart);
- :func:`waiting_reason` / :func:`pod_events`: why a pod is not running yet, for people;
- :class:`PullFailure`: when a container that cannot pull its image has waited long enough;
- :func:`clean_owned`: delete what we own that is older than an age, from a reflector's cache;
- :class:`WorkspaceMounts`, :class:`GpuLabels`, :class:`ImagePullGrace`, :class:`ClusterAccess`,
  :class:`PodIds`: the pod settings the Kubernetes parts share (the claims and where they mount,
  GPU labels, how long an image may fail to pull, the namespace and kubeconfig, the ids), each
  declared once and mixed into the spawner and the backends that use it.

The services' backends (kaniko builds, jobs, servings, TensorBoards) use these rather than
talking to the API themselves.
"""

import asyncio
import contextlib
import functools
import json
import time

from traitlets import Dict, Float, Integer, Unicode
from traitlets.config import Configurable

from .names import ARCHIVES_CLAIM, MANAGED_BY, WORKSPACE_CLAIM

IMAGE_PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
# a pull that may still succeed (the registry was down, the tag not pushed yet): give it time
RETRIED_PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff")


async def load_client(kubeconfig="", connections=None):
    """A ``kubernetes_asyncio`` ApiClient: in-cluster config when running in a pod, else
    ``kubeconfig`` (empty: $KUBECONFIG or ~/.kube/config). Close it when done.

    ``connections``: the most requests it has open at once (the client's default is 100). A
    followed log or a watch holds one for as long as it runs, so a client that follows many logs
    needs more, or a pool of its own, lest its other requests wait behind them."""
    from kubernetes_asyncio import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config(config_file=kubeconfig or None)
    configuration = client.Configuration.get_default_copy()
    if connections:
        configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def owned_labels(component, **extra):
    """The labels every object a KubeStudio service creates carries."""
    return {**MANAGED_BY, "kubestudio.io/component": component, **extra}


def selector(labels):
    """A label selector matching all of ``labels``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def meta(obj):
    """(name, resourceVersion, creation time as epoch seconds or None) of a model or a dict."""
    if isinstance(obj, dict):
        m = obj.get("metadata") or {}
        created = m.get("creationTimestamp")
        when = None
        if created:
            from datetime import datetime

            when = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        return m.get("name"), m.get("resourceVersion"), when
    m = obj.metadata
    return m.name, m.resource_version, m.creation_timestamp.timestamp() if m.creation_timestamp else None


async def served(api_client, kinds):
    """Which of ``kinds`` ({kind: (apiVersion, plural)}) the cluster serves: API discovery, one
    request per group version (a group the cluster lacks answers 404)."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.rest import ApiException

    custom = client.CustomObjectsApi(api_client)
    by_version = {}
    for kind, (api_version, plural) in kinds.items():
        by_version.setdefault(api_version, []).append((kind, plural))
    found = set()
    for api_version, wanted in by_version.items():
        if "/" not in api_version:  # the core group (v1) is always there
            found.update(kind for kind, _ in wanted)
            continue
        group, version = api_version.split("/")
        try:
            resources = await custom.get_api_resources(group, version)
        except ApiException as e:
            if e.status in (404, 503):  # the group is not there (or its server is away)
                continue
            raise
        plurals = {r.name for r in resources.resources or []}
        found.update(kind for kind, plural in wanted if plural in plurals)
    return found


async def forbidden(api_client, namespace, kinds, verbs=("watch", "create")):
    """Which of ``kinds`` ({kind: (apiVersion, plural)}) our own account may not ``verbs`` in
    ``namespace`` (SelfSubjectAccessReview, one per kind and verb): a kind the cluster serves but
    RBAC does not grant us is as good as missing, and is said so instead of a watch failing on."""
    from kubernetes_asyncio import client

    authorization = client.AuthorizationV1Api(api_client)
    refused = set()
    for kind, (api_version, plural) in kinds.items():
        group = api_version.split("/")[0] if "/" in api_version else ""
        for verb in verbs:
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {"namespace": namespace, "group": group, "resource": plural, "verb": verb}
                },
            }
            review = await retrying(lambda body=body: authorization.create_self_subject_access_review(body))
            if not review.status.allowed:
                refused.add(kind)
                break
    return refused


class GrantedKind:
    """Whether a cluster serves one custom kind *and* grants it to our account, looked up at most
    once a ``ttl`` (discovery, then SelfSubjectAccessReviews): an operator installed or granted
    later is found within that time, without a request per call."""

    def __init__(self, kind, api_version, plural, ttl=60):
        self.kinds = {kind: (api_version, plural)}
        self.kind = kind
        self.ttl = ttl
        self._known = None  # (loop time, whether)

    async def __call__(self, api_client, namespace):
        loop = asyncio.get_running_loop()
        if self._known is None or loop.time() - self._known[0] > self.ttl:
            found = await served(api_client, self.kinds)
            if found:  # served, but not granted to our account: as good as missing
                found -= await forbidden(api_client, namespace, self.kinds)
            self._known = (loop.time(), self.kind in found)
        return self._known[1]


TRANSIENT = (429, 500, 502, 503, 504)  # answers a request may get otherwise when tried again


async def retrying(call, tries=5, first_wait=0.2):
    """``await call()``, tried again (with a doubling wait) while the API answers 429 or 5xx; the
    last error is raised, as is any other at once."""
    from kubernetes_asyncio.client.rest import ApiException

    for attempt in range(tries):
        try:
            return await call()
        except ApiException as e:
            if e.status not in TRANSIENT or attempt == tries - 1:
                raise
            await asyncio.sleep(first_wait * 2**attempt)


def api_message(error):
    """The message of an ApiException, for people."""
    try:
        return json.loads(error.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return str(getattr(error, "reason", error))


@functools.lru_cache(maxsize=None)
def _raw_watch_class():
    """Made on first use: importing the client is left to the backends that talk to a cluster."""
    from kubernetes_asyncio import watch

    class RawWatch(watch.Watch):
        """A watch whose objects stay the API's JSON: decoding a pod into the client's models (its
        timestamps parsed one by one) is most of a busy watch's CPU."""

        def get_return_type(self, func):
            return None

    return RawWatch


class Reflector:
    """The objects of one kind, namespace and label selector, kept current by one watch.

    ``list_method`` is a namespaced list call of ``kubernetes_asyncio`` (e.g.
    ``CoreV1Api(...).list_namespaced_pod``), called with ``list_args`` (default: the namespace);
    :meth:`custom` makes one for a custom resource. Start it once; read :attr:`objects` or
    :meth:`get`, or :meth:`wait_for` a condition on one object. ``on_change(name, object or
    None)`` is called for every change the watch brings.
    """

    def __init__(
        self,
        list_method,
        namespace,
        label_selector,
        log,
        resync_seconds=300,
        retry_seconds=1.0,
        list_args=None,
        on_change=None,
        raw=False,
    ):
        self.raw = raw  # objects as the API's JSON (dicts), never turned into the client's models
        self.list_method = list_method
        self.list_args = tuple(list_args) if list_args is not None else (namespace,)
        self.on_change = on_change
        self.namespace = namespace
        self.label_selector = label_selector
        self.log = log
        self.resync_seconds = resync_seconds
        self.retry_seconds = retry_seconds
        self.objects = {}
        self.resource_version = None
        self._changed = asyncio.Condition()
        self._task = None

    @classmethod
    def custom(cls, custom_api, api_version, plural, namespace, label_selector, log, **kwargs):
        """A reflector of a custom resource (objects are dicts) through ``CustomObjectsApi``."""
        group, version = api_version.split("/")
        return cls(
            custom_api.list_namespaced_custom_object,
            namespace,
            label_selector,
            log,
            list_args=(group, version, namespace, plural),
            raw=True,
            **kwargs,
        )

    async def start(self):
        await self._list()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self):
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def get(self, name):
        return self.objects.get(name)

    async def wait_for(self, name, predicate, timeout=None, recheck_seconds=1.0):
        """Wait until ``predicate(object or None)`` is true; return the object. The predicate is
        checked on every event of the watch and every ``recheck_seconds`` (for conditions that
        depend on time, such as a grace period), never by asking the API."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self._changed:
            while not predicate(self.objects.get(name)):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise asyncio.TimeoutError()
                wait = recheck_seconds if left is None else min(recheck_seconds, left)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
            return self.objects.get(name)

    async def _notify(self):
        async with self._changed:
            self._changed.notify_all()

    async def _list(self):
        if self.raw:
            response = await self.list_method(
                *self.list_args, label_selector=self.label_selector, _preload_content=False
            )
            try:
                result = json.loads(await response.read())
            finally:
                response.release()
        else:
            result = await self.list_method(*self.list_args, label_selector=self.label_selector)
        if isinstance(result, dict):
            items, version = result.get("items") or [], (result.get("metadata") or {}).get("resourceVersion")
        else:
            items, version = result.items, result.metadata.resource_version
        before = self.objects
        self.objects = {meta(item)[0]: item for item in items}
        self.resource_version = version
        if self.on_change is not None:
            for name in set(before) | set(self.objects):
                if before.get(name) is not self.objects.get(name):
                    self.on_change(name, self.objects.get(name))
        await self._notify()

    async def _run(self):
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.rest import ApiException

        while True:
            try:
                # the server ends the watch after resync_seconds; a connection that went silent
                # (a proxy or load balancer lost it) is given up a little later
                stream = (_raw_watch_class()() if self.raw else watch.Watch()).stream(
                    self.list_method,
                    *self.list_args,
                    label_selector=self.label_selector,
                    resource_version=self.resource_version,
                    timeout_seconds=self.resync_seconds,
                    _request_timeout=self.resync_seconds + 30,
                )
                async for event in stream:
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        raise ApiException(status=getattr(obj, "code", None) or obj.get("code", 500))
                    if kind == "BOOKMARK":
                        continue
                    name, self.resource_version, _ = meta(obj)
                    if kind == "DELETED":
                        self.objects.pop(name, None)
                    else:
                        self.objects[name] = obj
                    if self.on_change is not None:
                        self.on_change(name, self.objects.get(name))
                    await self._notify()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a dropped watch, 410 Gone, the API away: list again, then watch
                gone = isinstance(e, ApiException) and e.status == 410
                if not gone:
                    self.log.warning(
                        "watch of %s in %s failed (%s: %s); listing again",
                        self.label_selector,
                        self.namespace,
                        type(e).__name__,
                        e,
                    )
                    await asyncio.sleep(self.retry_seconds)
                try:
                    await self._list()
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.log.warning("could not list %s in %s: %s", self.label_selector, self.namespace, e)
                    await asyncio.sleep(self.retry_seconds)


async def stream_log(core, name, namespace, on_chunk, container=None, previous=False):
    """Follow the log of pod ``name`` to its end, handing each chunk of bytes to ``on_chunk``
    (``previous``: the log of the container's run before its last restart, as it is)."""
    kwargs = {"container": container} if container else {}
    if previous:
        kwargs["previous"] = True
    response = await core.read_namespaced_pod_log(
        name, namespace, follow=not previous, _preload_content=False, **kwargs
    )
    try:
        async for chunk in response.content.iter_any():
            on_chunk(chunk)
    finally:
        response.release()


class PodLogs:
    """The logs of many pods at once, as lines: each pod's main container is followed from when it
    runs to its end, and again after each restart (the run before it is read with ``previous``
    when the follower missed its end). Feed it every pod the watch shows (:meth:`update`); lines
    reach ``on_lines(pod name, [line, ...])``.
    """

    def __init__(self, core, namespace, on_lines, log, splitter):
        self.core = core
        self.namespace = namespace
        self.on_lines = on_lines
        self.log = log
        self.splitter = splitter  # () -> a LineSplitter
        self.followed = {}  # pod name -> (restart count, task)

    def update(self, pod):
        """``pod``: a pod as the API's JSON (a dict)."""
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses")
        if not statuses:
            return
        status = statuses[0]
        restarts = status.get("restartCount") or 0  # the run in progress (or about to start) counts its restarts
        state = status.get("state") or {}
        has_run = bool(state.get("running") or state.get("terminated"))
        name = pod["metadata"]["name"]
        seen = self.followed.get(name, (-1, None))[0]  # the last run whose log was (or is being) read
        if has_run and seen < restarts:
            # a new run; the one before it is read first when it was missed
            self._start(name, restarts, previous=seen < restarts - 1 and restarts > 0, current=True)
        elif not has_run and restarts > 0 and seen < restarts - 1:
            # between two runs (back-off) and the run that just ended was never read
            self._start(name, restarts - 1, previous=True, current=False)

    def _start(self, name, run, previous, current):
        earlier = self.followed.get(name, (None, None))[1]
        if earlier is not None and not earlier.done():
            earlier.cancel()
        self.followed[name] = (run, asyncio.ensure_future(self._follow(name, previous, current)))

    async def _follow(self, name, previous, current):
        from kubernetes_asyncio.client.rest import ApiException

        for use_previous in [flag for flag, wanted in ((True, previous), (False, current)) if wanted]:
            lines = self.splitter()

            def on_chunk(chunk, lines=lines):
                out = lines.feed(chunk)
                if out:
                    self.on_lines(name, out)

            try:
                await stream_log(self.core, name, self.namespace, on_chunk, previous=use_previous)
            except asyncio.CancelledError:
                raise
            except ApiException as e:
                if e.status not in (400, 404):  # 400: the container is not running (yet or any more)
                    self.log.warning("log of pod %s/%s: %s %s", self.namespace, name, e.status, api_message(e))
            except Exception as e:  # the connection dropped: what was read is kept
                self.log.warning("log of pod %s/%s ended early: %s", self.namespace, name, e)
            rest = lines.close()
            if rest:
                self.on_lines(name, rest)

    async def wait(self, timeout=None):
        """Until every followed log has been read to its end."""
        tasks = [task for _, task in self.followed.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def stop(self):
        for _, task in self.followed.values():
            task.cancel()
        await asyncio.gather(*[task for _, task in self.followed.values()], return_exceptions=True)
        self.followed.clear()


def container_state(pod, index=0):
    """The state of a pod's container (a V1ContainerState, or a dict for a pod as JSON), or None
    before it has one."""
    if isinstance(pod, dict):
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return statuses[index].get("state") if len(statuses) > index else None
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    return statuses[index].state if len(statuses) > index else None


def is_ready(obj):
    """Whether an object's status has the condition ``Ready`` true (a pod, an InferenceService)."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def waiting_reason(pod):
    """Why a scheduled pod's container is not running (``ImagePullBackOff: ...``), or ""."""
    state = container_state(pod)
    waiting = (state or {}).get("waiting") if isinstance(pod, dict) else getattr(state, "waiting", None)
    if isinstance(waiting, dict):
        reason, message = waiting.get("reason"), waiting.get("message")
    else:
        reason, message = (waiting.reason, waiting.message) if waiting is not None else (None, None)
    if not reason or reason == "ContainerCreating":
        return ""
    return f"{reason}: {message}" if message else reason


async def pod_events(core, namespace, name, types=("Warning",)):
    """The messages of a pod's Events of ``types`` (FailedScheduling, Failed pull, ...), oldest
    first: one list request, for a pod that stays Pending."""
    result = await core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    events = [e for e in result.items if not types or e.type in types]
    events.sort(key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
    return [f"{e.reason}: {e.message}" for e in events]


def pending_reason(pod):
    """Why a pod is not scheduled yet (the scheduler's message), as ": <message>", or ""."""
    if isinstance(pod, dict):
        conditions = [
            (c.get("type"), c.get("status"), c.get("message"))
            for c in (pod.get("status") or {}).get("conditions") or []
        ]
    else:
        conditions = [
            (c.type, c.status, c.message)
            for c in (pod.status.conditions if pod is not None and pod.status else None) or []
        ]
    for kind, status, message in conditions:
        if kind == "PodScheduled" and status != "True" and message:
            return f": {message}"
    return ""


class PullFailure:
    """Whether a container that cannot pull its image has failed for good.

    A pull that may still work (ErrImagePull, ImagePullBackOff: the registry was away, the tag is
    being pushed) gets ``grace_seconds`` from the first time it was seen; a name that can never
    be pulled (InvalidImageName, ErrImageNeverPull) fails at once.
    """

    def __init__(self, grace_seconds):
        self.grace_seconds = grace_seconds
        self.since = None

    def failed(self, reasons):
        pulls = [r for r in reasons if r in IMAGE_PULL_ERRORS]
        if not pulls:
            self.since = None
            return False
        if any(r not in RETRIED_PULL_ERRORS for r in pulls):
            return True
        if self.since is None:
            self.since = time.monotonic()
        return time.monotonic() - self.since >= self.grace_seconds


async def clean_owned(reflector, delete, max_age_seconds, keep=()):
    """Delete (``await delete(name)``) the reflector's objects older than ``max_age_seconds`` that
    are not in ``keep``; their names. Reads the watch's cache: no list request."""
    now = time.time()
    removed = []
    for name, obj in list(reflector.objects.items()):
        _, _, created = meta(obj)
        if name not in keep and created is not None and now - created > max_age_seconds:
            await delete(name)
            removed.append(name)
    return removed


class WorkspaceMounts(Configurable):
    """Where a user's files are in the pods KubeStudio makes: declared once, for WorkspaceSpawner
    and the jobs', boards' and builds' backends (the hub shares WorkspaceSpawner's values with its
    services)."""

    workspace_claim = Unicode(
        WORKSPACE_CLAIM,
        config=True,
        help="""Shared (ReadWriteMany) PersistentVolumeClaim holding every user's workspace; each
        user's pod mounts the subPath <user slug> at <workspace_root>/<username>. Per-user claims
        (z2jh's dynamic storage) are KubeSpawner's storage_pvc_ensure and work beside it.""",
    )
    archives_claim = Unicode(
        ARCHIVES_CLAIM,
        config=True,
        help="Shared claim for archives, mounted with subPath <user slug> at <archives_root>/<username>.",
    )
    workspace_root = Unicode("/mnt", config=True, help="Where workspaces are mounted in pods (/mnt/<username>).")
    archives_root = Unicode("/archives", config=True, help="Where archives are mounted in pods (/archives/<username>).")


class GpuLabels(Configurable):
    """How a GPU type is found among the nodes (WorkspaceSpawner and the jobs' backend)."""

    gpu_type_label = Unicode(
        "nvidia.com/gpu.product",
        config=True,
        help="Node label a GPU type is matched against (required node affinity).",
    )
    gpu_types = Dict(
        config=True,
        help="""Node label values for each GPU type a profile or job may name, e.g.
        {"A100": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-PCIE-40GB"]}. A type not listed here is
        matched as is.""",
    )


class ImagePullGrace(Configurable):
    """How long an image may fail to pull before a start gives up with the reason."""

    image_pull_grace_seconds = Float(
        120,
        config=True,
        help="""Seconds an image may keep failing to pull (ErrImagePull / ImagePullBackOff) before
        the start fails with the reason. Defaults: 30 for servers (someone is waiting at the
        page), 60 for builds' and boards' pods, 120 for jobs' and servings' (large images).""",
    )


class ClusterAccess(Configurable):
    """Where a service's backend makes its objects, and how it reaches the cluster."""

    namespace = Unicode("default", config=True, help="Namespace of the pods (as WorkspaceSpawner.namespace).")
    kubeconfig = Unicode(
        "", config=True, help="kubeconfig file; empty: in-cluster config, else $KUBECONFIG / ~/.kube/config."
    )


class PodIds(Configurable):
    """The ids a backend's containers run as (WorkspaceSpawner has KubeSpawner's own; the hub
    shares their values)."""

    uid = Integer(1000, config=True, help="User id the pods' containers run as (as WorkspaceSpawner.uid); never 0.")
    gid = Integer(100, config=True, help="Group id the pods' containers run as (as WorkspaceSpawner.gid).")
    fs_gid = Integer(100, config=True, help="fsGroup of the pods (as WorkspaceSpawner.fs_gid).")


# what a service's Kubernetes backend takes from the hub's spawner settings (not the image pull
# grace, whose default differs per part, nor the kubeconfig)
SPAWNER_POD_SETTINGS = (
    "namespace",
    "workspace_claim",
    "archives_claim",
    "workspace_root",
    "archives_root",
    "gpu_type_label",
    "gpu_types",
    "uid",
    "gid",
    "fs_gid",
)


def shared_pod_settings(target):
    """The ``shared`` tuples of a service declaration whose backend section ``target`` must agree
    with the hub's pods: KubeSpawner's namespace, then WorkspaceSpawner's pod settings (a value
    set on WorkspaceSpawner wins over one set on KubeSpawner: it comes later)."""
    return (
        ("KubeSpawner", "namespace", target),
        *(("WorkspaceSpawner", trait, target) for trait in SPAWNER_POD_SETTINGS),
    )
