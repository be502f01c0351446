"""TensorBoard as a pod + Service per board (``spawner="kubernetes"``).

The pod and Service come from the pure builders in :mod:`..manifests`. One shared watch of our
board pods (``kube.Reflector``) says when a board answers (its readiness probe), why it does not
yet (the scheduler's message, an image that cannot be pulled, a crash), and whether a running
board is still there, so the proxy's look on each request costs no API call. The proxy reaches
the pod at its IP, as KubeSpawner reaches servers; the Service names the board in the cluster
(``tensorboard-<id>.<namespace>``). A board's record keeps the pod's name and uid, so a restarted
service finds the pod still running or knows it is gone.
"""

import asyncio
import contextlib
import fnmatch
import os
import time
from dataclasses import dataclass
from types import SimpleNamespace

from traitlets import Bool, Float, Integer, List, Unicode, default

from ... import kube
from ...quantities import parse_bytes, parse_cpu
from ...spawner.projects import Project
from ..logdirs import LogdirError, resolve
from ..manifests import COMPONENT, PORT, board_pod, board_service, object_name
from .base import BoardBackend, BoardFailed

STDERR_TAIL_LINES = 200
STOP_WAIT_SECONDS = 30
FAILED_STATES = ("CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


@dataclass
class PodBoard:
    """Where a board's TensorBoard runs on Kubernetes (kept in the board's record)."""

    name: str
    uid: str
    url: str  # http://<pod IP>:6006<prefix>

    def to_json(self):
        return {"pod": self.name, "uid": self.uid, "url": self.url}

    @classmethod
    def from_json(cls, data):
        return cls(data["pod"], data["uid"], data["url"]) if data and data.get("pod") else None


def _terminated(pod):
    """The container's last end (``{"exitCode", "reason", "message"}``), or None."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses:
        return None
    return (statuses[0].get("state") or {}).get("terminated") or (statuses[0].get("lastState") or {}).get("terminated")


class KubernetesBoardBackend(BoardBackend, kube.ClusterAccess, kube.PodIds, kube.WorkspaceMounts, kube.ImagePullGrace):
    name = "kubernetes"
    uses_projects = True  # a board's pod is scheduled with its project's node selector and tolerations

    @default("image_pull_grace_seconds")
    def _default_image_pull_grace_seconds(self):
        return 60.0

    image = Unicode(
        "",
        config=True,
        help="""Image of the boards' pods: any image with `sh` and `tensorboard` on its PATH, e.g. the
        single-user image. Unset: the image a server gets when its user picks nothing (a
        profile_list's default entry, else the catalog's default profile's first image, else
        KubeSpawner.image), worked out by the hub when it starts the service.""",
    )
    allowed_images = List(
        Unicode(),
        config=True,
        help="""Images a user may ask for per board (`image` in the request), as glob patterns, e.g.
        `registry.example.org/kubestudio/*`. Empty: only `image`.""",
    )
    tensorboard_command = List(Unicode(), ["tensorboard"], config=True, help="TensorBoard's command in the image.")
    reload_interval = Integer(
        30, config=True, help="TensorBoard's --reload_interval: seconds between looks for new events."
    )
    cpu_request = Unicode("100m", config=True, help="CPU a board's pod requests unless the request asks for more.")
    memory_request = Unicode("256Mi", config=True, help="Memory a board's pod requests unless the request names it.")
    memory_limit = Unicode("2Gi", config=True, help="Memory limit of a board's pod unless the request names it.")
    max_cpu = Unicode("2", config=True, help="Most CPU a user may ask for one board (`resources.cpu`).")
    max_memory = Unicode("8Gi", config=True, help="Most memory a user may ask for one board (`resources.memory`).")
    start_timeout = Float(
        300, config=True, help="Seconds a board's pod may take to answer (scheduling and the image pull included)."
    )
    check_folders = Bool(
        None,
        allow_none=True,
        config=True,
        help="""Check that a board's folders exist (404 naming the folder) and lead nowhere outside
        the user's folders, through `workspaces_view` and `archives_view` (the claims mounted in the
        hub's pod, as the Helm chart does). None: when `workspaces_view` is a folder. Off: folders
        are checked by their text only, and a missing one shows an empty board that fills in when
        the folder appears.""",
    )
    workspaces_view = Unicode(
        "/srv/workspaces", config=True, help="Where the hub's pod mounts the workspace claim (for check_folders)."
    )
    archives_view = Unicode(
        "/srv/archives", config=True, help="Where the hub's pod mounts the archives claim (for check_folders)."
    )

    def settings(self):
        from ...spawner.pods import pod_settings

        return pod_settings(self)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self):
        from kubernetes_asyncio import client

        self._api_client = await kube.load_client(self.kubeconfig)
        self.core = client.CoreV1Api(self._api_client)
        self.changed = {}  # board id -> asyncio.Event set when its pod changes
        self.pods = kube.Reflector(
            self.core.list_namespaced_pod,
            self.namespace,
            kube.selector(kube.owned_labels(COMPONENT)),
            self.log,
            on_change=self._pod_changed,
            raw=True,
        )
        await self.pods.start()

    async def close(self):
        if "pods" in self.__dict__:
            await self.pods.stop()
        if "_api_client" in self.__dict__:
            await self._api_client.close()

    def _pod_changed(self, name, pod):
        board_id = name[len("tensorboard-") :]
        event = self.changed.get(board_id)
        if event is not None:
            event.set()

    # ------------------------------------------------------------------ opening

    def resolve(self, owner, logdirs):
        """The folders as the board's pod sees them (/mnt/<user>/..., /archives/<user>/...),
        checked by their text; and, with ``check_folders``, to exist."""
        from ...spawner.pods import workspace_paths
        from ...spawner.storage import user_slug

        workspace, archives = workspace_paths(owner, self.settings())
        folders = SimpleNamespace(workspace=workspace, archives=archives)
        resolved = resolve(logdirs, folders, (workspace, archives), lexical=True)
        check = self.check_folders if self.check_folders is not None else os.path.isdir(self.workspaces_view)
        if check:
            slug = user_slug(owner)
            views = {
                "workspace": (workspace, os.path.join(self.workspaces_view, slug)),
                "archives": (archives, os.path.join(self.archives_view, slug)),
            }
            for i, (_, path) in enumerate(resolved):
                where = "archives" if path == archives or path.startswith(archives + "/") else "workspace"
                mount, view = views[where]
                relative = path[len(mount) :].lstrip("/")
                # the folder as the hub sees it, links followed: still inside the user's own?
                root = os.path.realpath(view)
                real = os.path.realpath(os.path.join(view, relative))
                if real != root and not real.startswith(root + os.sep):
                    raise LogdirError(f"logdirs[{i}]: {path!r} leads outside your {where}")
                if not os.path.isdir(real):
                    raise LogdirError(f"logdirs[{i}]: no folder {relative or '.'!r} in your {where}", 404)
        return resolved

    def check_options(self, options):
        image = options.get("image")
        if (
            image is not None
            and image != self.image
            and not any(fnmatch.fnmatchcase(image, pattern) for pattern in self.allowed_images)
        ):
            allowed = ", ".join(self.allowed_images) or "none besides the default"
            raise LogdirError(
                f"image: {image!r} is not an image boards may use (allowed: {allowed}; "
                "KubernetesBoardBackend.allowed_images)",
                403,
            )
        resources = options.get("resources") or {}
        for key, parse, most in (("cpu", parse_cpu, self.max_cpu), ("memory", parse_bytes, self.max_memory)):
            if key in resources and parse(resources[key]) > parse(most):
                raise LogdirError(f"resources.{key}: {resources[key]} is more than a board may have ({most})", 403)

    def from_refs(self, refs):
        return PodBoard.from_json(refs)

    def _resources(self, options):
        asked = options.get("resources") or {}
        requests = {"cpu": asked.get("cpu", self.cpu_request), "memory": asked.get("memory", self.memory_request)}
        limits = {"memory": asked.get("memory", self.memory_limit)}
        if "cpu" in asked:
            limits["cpu"] = asked["cpu"]
        return {"requests": {k: v for k, v in requests.items() if v}, "limits": {k: v for k, v in limits.items() if v}}

    # ------------------------------------------------------------------ running

    async def start(self, board_id, owner, resolved, prefix, options=None, project=None, progress=None):
        """Create the board's Service and pod, and wait until TensorBoard answers (Ready); a
        :class:`PodBoard`, else :class:`BoardFailed` with the reason (the pod is removed)."""
        from kubernetes_asyncio.client.rest import ApiException

        options = options or {}
        project = project or Project(name=options.get("project") or "public")
        image = options.get("image") or self.image
        if not image:
            raise BoardFailed("no image for TensorBoard: set KubernetesBoardBackend.image")
        settings = self.settings()
        pod = board_pod(board_id, owner, resolved, prefix, settings, project, image, self._resources(options), self)
        service = board_service(board_id, owner, project, settings)
        name = object_name(board_id)
        self.changed[board_id] = event = asyncio.Event()
        try:
            try:
                await kube.retrying(lambda: self.core.create_namespaced_service(self.namespace, service))
            except ApiException as e:
                if e.status != 409:  # 409: kept from an earlier run of this board
                    raise BoardFailed(f"Kubernetes refused the board's Service: {e.status} {kube.api_message(e)}")
            created = await self._create_pod(name, pod)
            uid = created.metadata.uid
            running = await self._wait_ready(board_id, name, uid, prefix, event, progress)
        except BaseException:
            await self.stop(board_id, None)
            raise
        finally:
            self.changed.pop(board_id, None)
        return running

    async def _create_pod(self, name, pod):
        from kubernetes_asyncio.client.rest import ApiException

        for attempt in range(2):
            try:
                return await kube.retrying(lambda: self.core.create_namespaced_pod(self.namespace, pod))
            except ApiException as e:
                if e.status == 409 and attempt == 0:  # the board's pod of before is still going away
                    with contextlib.suppress(asyncio.TimeoutError):
                        await self.pods.wait_for(name, lambda found: found is None, timeout=STOP_WAIT_SECONDS)
                    continue
                raise BoardFailed(f"Kubernetes refused the board's pod: {e.status} {kube.api_message(e)}")

    async def _wait_ready(self, board_id, name, uid, prefix, event, progress):
        deadline = time.monotonic() + self.start_timeout
        pull = kube.PullFailure(self.image_pull_grace_seconds)
        said = None
        while True:
            pod = self.pods.get(name)
            if pod is not None and pod["metadata"].get("uid") == uid:
                status = pod.get("status") or {}
                if kube.is_ready(pod) and status.get("podIP"):
                    ip = status["podIP"]
                    host = f"[{ip}]" if ":" in ip else ip
                    return PodBoard(name, uid, f"http://{host}:{PORT}{prefix.rstrip('/')}")
                waiting = kube.waiting_reason(pod)
                reason = waiting.split(":", 1)[0]
                if pull.failed([reason]):
                    raise BoardFailed(f"the image of TensorBoard cannot be pulled: {waiting}")
                if reason in FAILED_STATES or status.get("phase") in ("Failed", "Succeeded"):
                    raise BoardFailed(
                        f"TensorBoard stopped ({waiting or status.get('phase')}): "
                        f"{self.why_stopped(board_id, PodBoard(name, uid, ''))}"
                    )
                now = waiting or (f"waiting for a node{kube.pending_reason(pod)}" if kube.pending_reason(pod) else "")
                if now and now != said and progress is not None:
                    progress(now)
                    said = now
            if time.monotonic() > deadline:
                raise BoardFailed(
                    f"TensorBoard did not answer in {self.start_timeout:g} s" + (f" ({said})" if said else "")
                )
            event.clear()
            try:  # woken by the watch; the timeout is for the deadline and the pull grace
                await asyncio.wait_for(event.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass

    def alive(self, running):
        """Whether the board's pod (that very pod) is still there and answering."""
        if running is None:
            return False
        pod = self.pods.get(running.name)
        return (
            pod is not None
            and pod["metadata"].get("uid") == running.uid
            and not pod["metadata"].get("deletionTimestamp")
            and kube.is_ready(pod)
        )

    def why_stopped(self, board_id, running):
        pod = self.pods.get(object_name(board_id))
        if pod is None or (running is not None and pod["metadata"].get("uid") != running.uid):
            return "its pod is gone (deleted, or its node went away)"
        ended = _terminated(pod)
        if ended:
            text = f"exit code {ended.get('exitCode')}" + (f" ({ended['reason']})" if ended.get("reason") else "")
            message = (ended.get("message") or "").strip().splitlines()
            return text + (f": {' | '.join(message[-5:])}" if message else "")
        return kube.waiting_reason(pod) or "its pod does not answer its readiness probe"

    async def stop(self, board_id, running):
        """Delete the board's pod and Service; idempotent (a missing one is fine)."""
        from kubernetes_asyncio.client.rest import ApiException

        name = object_name(board_id)
        for delete in (self.core.delete_namespaced_pod, self.core.delete_namespaced_service):
            try:
                await kube.retrying(lambda: delete(name, self.namespace))
            except ApiException as e:
                if e.status != 404:
                    self.log.warning(
                        "board %s: could not delete %s: %s %s", board_id, name, e.status, kube.api_message(e)
                    )
        # gone before a new pod of the same name is made (the board starting again)
        try:
            await self.pods.wait_for(name, lambda pod: pod is None, timeout=STOP_WAIT_SECONDS)
        except asyncio.TimeoutError:
            self.log.warning("board %s: pod %s still there %d s after its deletion", board_id, name, STOP_WAIT_SECONDS)

    async def logs(self, board_id, running):
        """TensorBoard's output (its pod's log), the last part; the run before a restart too."""
        from kubernetes_asyncio.client.rest import ApiException

        name = object_name(board_id)
        parts = []
        pod = self.pods.get(name)
        restarted = pod is not None and any(
            s.get("restartCount") for s in (pod.get("status") or {}).get("containerStatuses") or []
        )
        for previous in (True, False) if restarted else (False,):
            try:
                text = await self.core.read_namespaced_pod_log(
                    name, self.namespace, tail_lines=STDERR_TAIL_LINES, previous=previous
                )
            except ApiException as e:
                if e.status in (400, 404):  # no pod, or no container run yet
                    continue
                raise
            if text:
                parts.append(("[previous run]\n" if previous else "") + text)
        return "\n".join(parts)
