"""kaniko backend (Kubernetes): one pod per build, its log from ``pods/log``, its digest from the
container's termination message.

The pod mounts only the owner's folder of the workspace claim (subPath = user slug), read-only,
and builds ``--context=dir:///workspace/<folder>``; a Dockerfile sent in the request travels in a
ConfigMap instead. Registry credentials come from a Secret mounted at ``/kaniko/.docker``; the pod
has no service-account token and no hub token. With the registry gate (``registry_gate``, the
chart's default) that Secret is the build's own: its grant's account, for the gate's address only,
made for the build and deleted with its pod; the pod pushes to the gate, reads every name of our
registry through it (``--registry-map``, no fallback) and keeps its layer cache in its user's own
cache repository, so what it may pull is decided by the gate, whatever the Dockerfile says. After the result is stored the pod (and its
ConfigMap) is deleted; a cleaner removes build pods older than ``pod_max_age_seconds`` that no
build follows, and a restarted service re-attaches to pods still running.

Everything Kubernetes goes through :mod:`kubestudio.kube`: one shared watch of the build pods
(:class:`~kubestudio.kube.Reflector`) tells a build when its pod runs and ends and feeds the
cleaner, so a build costs two creates, one log stream and two deletes, and no request per second.
"""

import asyncio
import base64
import contextlib
import json
import re

from traitlets import Bool, Dict, Integer, List, Unicode, default

from ... import dockerauth, imageref, kube
from ...names import LABEL_BUILD_ID, LABEL_PROJECT, LABEL_USER
from .base import BuildBackend, BuildFailed, BuildOutcome, LineSplitter

COMPONENT = "build"
STEP_LINE = re.compile(
    r"^INFO\[\d+\] (RUN|COPY|ADD|ENV|LABEL|WORKDIR|USER|EXPOSE|CMD|ENTRYPOINT|ARG|VOLUME|SHELL|"
    r"ONBUILD|STOPSIGNAL|HEALTHCHECK|MAINTAINER)\b"
)
DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
CONTEXT_MOUNT = "/workspace"
GENERATED_MOUNT = "/kubestudio/context"
DOCKERFILE_KEY = "Dockerfile"
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError"}  # no retry fixes these


def build_pod_name(build_id):
    return f"kubestudio-build-{build_id}"


def cache_repository(job, settings):
    """The build's layer cache (host/path): its user's own, so no build reads or poisons the
    layers of another user's builds."""
    return f"{settings['cache_repo']}/{job.owner_slug}" if settings["cache_repo"] else ""


def through_gate(reference, gate):
    """``reference`` (host/path[:tag]) with the gate's address for its host."""
    return f"{gate}/{reference.split('/', 1)[1]}"


def kaniko_pod(job, settings):
    """The build pod for ``job`` (a pure function of the job and the backend's settings)."""
    slug = job.owner_slug
    labels = {
        **kube.owned_labels(
            COMPONENT, **{LABEL_USER: slug, LABEL_PROJECT: job.project or "public", LABEL_BUILD_ID: job.id}
        ),
        **settings["extra_labels"],
    }
    gate = settings["registry_gate"]
    destination = through_gate(job.image, gate) if gate else job.image
    args = [
        f"--destination={destination}",
        "--digest-file=/dev/termination-log",
        f"--snapshot-mode={settings['snapshot_mode']}",
        f"--compressed-caching={'true' if settings['compressed_caching'] else 'false'}",
    ]
    if gate:
        # every name of our registry is read through the gate, never straight (no fallback): the
        # pod's credentials are the build's account, which only the gate knows
        args += [f"--registry-map={host}={gate}" for host in settings["registry_hosts"] if host != gate]
        args += ["--skip-default-registry-fallback", f"--insecure-registry={gate}"]
    secret = build_pod_name(job.id) if gate else settings["registry_secret"]
    volumes = [
        {
            "name": "registry-auth",
            "secret": {"secretName": secret, "items": [{"key": ".dockerconfigjson", "path": "config.json"}]},
        }
    ]
    mounts = [{"name": "registry-auth", "mountPath": "/kaniko/.docker", "readOnly": True}]
    # the Dockerfile always comes from the ConfigMap: the text the service checked (its FROM lines
    # included) is what kaniko builds, even if the user edits the workspace's copy meanwhile
    volumes.append({"name": "context", "configMap": {"name": build_pod_name(job.id)}})
    mounts.append({"name": "context", "mountPath": GENERATED_MOUNT, "readOnly": True})
    if job.generated:
        context = GENERATED_MOUNT
    else:
        volumes.append(
            {"name": "workspace", "persistentVolumeClaim": {"claimName": settings["workspace_claim"], "readOnly": True}}
        )
        mounts.append({"name": "workspace", "mountPath": CONTEXT_MOUNT, "subPath": slug, "readOnly": True})
        context = CONTEXT_MOUNT + ("/" + job.context_subpath if job.context_subpath not in (None, "", ".") else "")
    args += [f"--context=dir://{context}", f"--dockerfile={GENERATED_MOUNT}/{DOCKERFILE_KEY}"]
    if settings["cache"] and settings["cache_repo"]:
        cache = cache_repository(job, settings)
        args += ["--cache=true", f"--cache-repo={through_gate(cache, gate) if gate else cache}"]
    if settings["insecure_registry"]:
        args += ["--insecure", "--skip-tls-verify", "--insecure-pull", "--skip-tls-verify-pull"]
    for key, value in sorted(job.labels.items()):
        args.append(f"--label={key}={value}")
    args += list(settings["extra_args"])
    container = {
        "name": "kaniko",
        "image": settings["executor_image"],
        "args": args,
        "env": [{"name": "DOCKER_CONFIG", "value": "/kaniko/.docker"}],
        "volumeMounts": mounts,
        "resources": settings["resources"],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if settings["executor_command"]:
        container["command"] = list(settings["executor_command"])
    spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": volumes,
    }
    if settings["node_selector"]:
        spec["nodeSelector"] = dict(settings["node_selector"])
    if settings["tolerations"]:
        spec["tolerations"] = list(settings["tolerations"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": build_pod_name(job.id),
            "namespace": settings["namespace"],
            "labels": labels,
            "annotations": {"kubestudio.io/username": job.owner, "kubestudio.io/image": job.image},
        },
        "spec": spec,
    }


class KanikoBackend(BuildBackend, kube.ClusterAccess, kube.WorkspaceMounts, kube.ImagePullGrace):
    name = "kaniko"
    replays_log = True  # re-attaching streams the pod's whole log again

    @default("image_pull_grace_seconds")
    def _default_image_pull_grace_seconds(self):
        return 60.0  # the executor image: small, and pulled on most nodes already

    executor_image = Unicode(
        "ghcr.io/osscontainertools/kaniko:latest",
        config=True,
        help="""kaniko executor image. The original GoogleContainerTools project is archived; the
        default is a maintained fork. Pin a version in production.""",
    )
    executor_command = List(
        Unicode(),
        config=True,
        help="Command of the executor container. Empty: the image's entrypoint (/kaniko/executor).",
    )
    registry_secret = Unicode(
        "kubestudio-registry",
        config=True,
        help="Secret of type kubernetes.io/dockerconfigjson with the push credentials, mounted at /kaniko/.docker.",
    )
    cache = Bool(True, config=True, help="Use kaniko's layer cache (--cache=true) in `cache_repo`.")
    cache_repo = Unicode(
        "",
        config=True,
        help="""Where kaniko keeps cached layers: each user's builds use <cache_repo>/<user slug>, so
        no build reads or overwrites the layers of another user's. Empty: <registry>/<prefix>/cache.""",
    )
    registry_gate = Unicode(
        "",
        config=True,
        help="""host:port of the registry gate in front of the registry, as build pods reach it
        (set from KubeStudio.registry_gate_host). Each build pod then gets a Secret of its own
        with its grant's account for the gate only (not `registry_secret`), pushes to the gate and
        reads every name of the registry through it (kaniko's --registry-map, with
        --skip-default-registry-fallback). Empty: pods mount `registry_secret`.""",
    )
    snapshot_mode = Unicode("redo", config=True, help="kaniko --snapshot-mode (full, redo or time).")
    compressed_caching = Bool(
        False, config=True, help="kaniko --compressed-caching (false saves memory on big images)."
    )
    insecure_registry = Bool(
        False, config=True, help="Push and pull over plain HTTP (set from ImageBuilder.registry_insecure)."
    )
    extra_args = List(Unicode(), config=True, help="More executor arguments, e.g. ['--build-arg=PIP_INDEX_URL=...'].")
    extra_labels = Dict(Unicode(), config=True, help="More labels on build pods.")
    resources = Dict(
        {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        config=True,
        help="Resources of the build container (requests and limits).",
    )
    node_selector = Dict(Unicode(), config=True, help="Node selector of build pods.")
    tolerations = List(Dict(), config=True, help="Tolerations of build pods.")
    pod_max_age_seconds = Integer(
        4 * 3600, config=True, help="The cleaner deletes build pods older than this that no build follows."
    )
    cleanup_interval_seconds = Integer(300, config=True, help="Seconds between two runs of the cleaner.")
    start_timeout_seconds = Integer(
        300, config=True, help="Seconds a build pod may stay Pending (unschedulable, pulling) before the build fails."
    )

    def settings(self):
        cache_repo = self.cache_repo
        hosts = []
        if self.parent is not None:
            if not cache_repo:
                cache_repo = "/".join(p for p in (self.parent.registry_host, self.parent.registry_prefix, "cache") if p)
            hosts = imageref.registry_names(self.parent.registry_host, self.parent.registry_aliases)
        return {
            "registry_gate": self.registry_gate,
            "registry_hosts": hosts,
            "namespace": self.namespace,
            "executor_image": self.executor_image,
            "executor_command": self.executor_command,
            "workspace_claim": self.workspace_claim,
            "registry_secret": self.registry_secret,
            "cache": self.cache,
            "cache_repo": cache_repo,
            "snapshot_mode": self.snapshot_mode,
            "compressed_caching": self.compressed_caching,
            "insecure_registry": self.insecure_registry,
            "extra_args": self.extra_args,
            "extra_labels": self.extra_labels,
            "resources": self.resources,
            "node_selector": self.node_selector,
            "tolerations": self.tolerations,
        }

    def repositories(self, job):
        """Besides the image's own, what a build pushes to and reads (its grant says so): its
        user's layer cache."""
        settings = self.settings()
        if not (settings["cache"] and settings["cache_repo"]):
            return []
        return [cache_repository(job, settings).split("/", 1)[1]]

    # ------------------------------------------------------------------ client

    async def start(self):
        from kubernetes_asyncio import client

        self._api_client = await kube.load_client(self.kubeconfig)
        self.core = client.CoreV1Api(self._api_client)
        self.followed = set()
        self.pods = kube.Reflector(
            self.core.list_namespaced_pod, self.namespace, kube.selector(kube.owned_labels(COMPONENT)), self.log
        )
        await self.pods.start()
        self._cleaner = asyncio.ensure_future(self._clean_loop())

    async def stop(self):
        if getattr(self, "_cleaner", None):
            self._cleaner.cancel()
        if getattr(self, "pods", None):
            await self.pods.stop()
        if getattr(self, "_api_client", None):
            await self._api_client.close()

    # ------------------------------------------------------------------ builds

    async def build(self, job, emit):
        from kubernetes_asyncio.client.rest import ApiException

        name = build_pod_name(job.id)
        async with self._tracked(name):
            configmap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": kube.owned_labels(COMPONENT, **{LABEL_BUILD_ID: job.id})},
                "data": {DOCKERFILE_KEY: job.dockerfile_text},
            }
            await self.core.create_namespaced_config_map(self.namespace, configmap)
            if self.registry_gate:
                await self._create_build_secret(name, job)
            try:
                await self.core.create_namespaced_pod(self.namespace, kaniko_pod(job, self.settings()))
            except ApiException as e:
                raise BuildFailed(f"Kubernetes refused the build pod: {e.status} {kube.api_message(e)}") from None
            job.set_ref(name)
            emit(f"Build pod {self.namespace}/{name} created")
            return await self._follow(name, emit)

    async def recover(self, job, record, emit):
        name = record.get("backend_ref") or build_pod_name(job.id)
        if self.pods.get(name) is None:  # the watch listed every build pod when the service started
            raise BuildFailed(f"interrupted: the build pod {name} is gone (the service restarted meanwhile)")
        async with self._tracked(name):
            emit(f"Re-attached to build pod {self.namespace}/{name} after a restart of the image service")
            return await self._follow(name, emit)

    async def _create_build_secret(self, name, job):
        """The pod's registry credentials: the build's own account (its grant at the gate)."""
        if not job.auth_file:
            raise BuildFailed(
                "the registry gate is on (KanikoBackend.registry_gate) but this build has no account "
                "of its own: set ImageBuilder.registry_grants_dir (KubeStudio.registry_gate_port does)"
            )
        # the gate's address only: the registry's own names are mapped to it, other registries
        # keep the admin's credentials
        ours = set(self.settings()["registry_hosts"]) - {self.registry_gate}
        auths = dockerauth.read_auths(job.auth_file)
        config = {
            "auths": {k: v for k, v in auths.items() if k.removeprefix("https://").removeprefix("http://") not in ours}
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "labels": kube.owned_labels(COMPONENT, **{LABEL_BUILD_ID: job.id})},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
        }
        await self.core.create_namespaced_secret(self.namespace, secret)

    @contextlib.asynccontextmanager
    async def _tracked(self, name):
        """While a build follows its pod the cleaner leaves it alone; afterwards pod and ConfigMap go."""
        self.followed.add(name)
        try:
            yield
        finally:
            await self._delete(name)
            self.followed.discard(name)

    async def _follow(self, name, emit):
        """Wait (on the watch) for the pod to run, stream its log, wait for its end, read the digest."""
        pull = kube.PullFailure(self.image_pull_grace_seconds)
        seen = []

        def started_or_stuck(pod):
            if pod is None:
                if seen:
                    raise BuildFailed(f"the build pod {self.namespace}/{name} was deleted")
                return False
            seen.append(True)
            if pod.status.phase in ("Running", "Succeeded", "Failed"):
                return True
            waiting = getattr(kube.container_state(pod), "waiting", None)
            reason = waiting.reason if waiting else None
            return reason in CONFIG_ERRORS or pull.failed([reason] if reason else [])

        try:
            pod = await self.pods.wait_for(name, started_or_stuck, timeout=self.start_timeout_seconds)
        except asyncio.TimeoutError:
            reason = kube.pending_reason(self.pods.get(name))
            raise BuildFailed(f"the build pod did not start in {self.start_timeout_seconds} s{reason}") from None
        if pod.status.phase not in ("Running", "Succeeded", "Failed"):
            waiting = kube.container_state(pod).waiting
            raise BuildFailed(f"the build pod cannot start: {waiting.reason}: {waiting.message or ''}".strip())
        lines = LineSplitter()

        def on_chunk(chunk):
            for line in lines.feed(chunk):
                emit(line)

        await kube.stream_log(self.core, name, self.namespace, on_chunk)
        for line in lines.close():
            emit(line)

        def terminated(pod):
            if pod is None:
                raise BuildFailed(f"the build pod {self.namespace}/{name} was deleted before it finished")
            return getattr(kube.container_state(pod), "terminated", None) is not None

        terminated = kube.container_state(await self.pods.wait_for(name, terminated)).terminated
        message = (terminated.message or "").strip()
        if terminated.exit_code != 0:
            detail = f": {message[-500:]}" if message else "; see the build log"
            raise BuildFailed(f"kaniko exited with {terminated.exit_code}{detail}")
        match = DIGEST.search(message)
        if not match:
            raise BuildFailed(
                f"kaniko finished but wrote no image digest to its termination message ({message[:200]!r})"
            )
        return BuildOutcome(digest=match.group(0))

    async def _delete(self, name):
        from kubernetes_asyncio.client.rest import ApiException

        calls = [self.core.delete_namespaced_pod, self.core.delete_namespaced_config_map]
        if self.registry_gate:
            calls.append(self.core.delete_namespaced_secret)
        for call in calls:
            try:
                await call(name, self.namespace, grace_period_seconds=0)
            except ApiException as e:
                if e.status != 404:
                    self.log.warning("could not delete %s/%s: %s", self.namespace, name, e.status)

    async def clean(self):
        """Delete build pods past their age that no build follows; returns their names."""
        removed = await kube.clean_owned(self.pods, self._delete, self.pod_max_age_seconds, keep=self.followed)
        if removed:
            self.log.info("removed %d old build pods: %s", len(removed), ", ".join(removed))
        return removed

    async def _clean_loop(self):
        while True:
            await asyncio.sleep(self.cleanup_interval_seconds)
            try:
                await self.clean()
            except Exception:
                self.log.exception("build pod cleaner failed")

    def step_of(self, line):
        return ("next", None) if STEP_LINE.match(line) else None
