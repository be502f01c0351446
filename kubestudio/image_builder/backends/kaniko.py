"""kaniko backend (Kubernetes): one pod per build, its log from ``pods/log``, its digest from the
container's termination message.

The pod mounts only the owner's folder of the workspace claim (subPath = user slug), read-only,
and builds ``--context=dir:///workspace/<folder>``; a Dockerfile sent in the request travels in a
ConfigMap instead. Registry credentials come from a Secret mounted at ``/kaniko/.docker``; the pod
has no service-account token and no hub token. After the result is stored the pod (and its
ConfigMap) is deleted; a cleaner removes build pods older than ``pod_max_age_seconds`` that no
build follows, and a restarted service re-attaches to pods still running.
"""

import asyncio
import contextlib
import re
import time

from traitlets import Bool, Dict, Integer, List, Unicode

from .base import BuildBackend, BuildFailed, BuildOutcome, LineSplitter

COMPONENT = "build"
STEP_LINE = re.compile(r"^INFO\[\d+\] (RUN|COPY|ADD|ENV|LABEL|WORKDIR|USER|EXPOSE|CMD|ENTRYPOINT|ARG|VOLUME|SHELL|"
                       r"ONBUILD|STOPSIGNAL|HEALTHCHECK|MAINTAINER)\b")
DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
CONTEXT_MOUNT = "/workspace"
GENERATED_MOUNT = "/kubestudio/context"
DOCKERFILE_KEY = "Dockerfile"
FAILING_WAITS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                 "CreateContainerError"}


def build_pod_name(build_id):
    return f"kubestudio-build-{build_id}"


def kaniko_pod(job, settings):
    """The build pod for ``job`` (a pure function of the job and the backend's settings)."""
    slug = job.owner_slug
    labels = {
        "app.kubernetes.io/managed-by": "kubestudio",
        "kubestudio.io/component": COMPONENT,
        "kubestudio.io/user": slug,
        "kubestudio.io/project": job.project or "public",
        "kubestudio.io/build-id": job.id,
        **settings["extra_labels"],
    }
    args = [f"--destination={job.image}", "--digest-file=/dev/termination-log",
            f"--snapshot-mode={settings['snapshot_mode']}",
            f"--compressed-caching={'true' if settings['compressed_caching'] else 'false'}"]
    volumes = [{"name": "registry-auth", "secret": {"secretName": settings["registry_secret"],
                                                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}}]
    mounts = [{"name": "registry-auth", "mountPath": "/kaniko/.docker", "readOnly": True}]
    # the Dockerfile always comes from the ConfigMap: the text the service checked (its FROM lines
    # included) is what kaniko builds, even if the user edits the workspace's copy meanwhile
    volumes.append({"name": "context", "configMap": {"name": build_pod_name(job.id)}})
    mounts.append({"name": "context", "mountPath": GENERATED_MOUNT, "readOnly": True})
    if job.generated:
        context = GENERATED_MOUNT
    else:
        volumes.append({"name": "workspace", "persistentVolumeClaim": {"claimName": settings["workspace_claim"],
                                                                       "readOnly": True}})
        mounts.append({"name": "workspace", "mountPath": CONTEXT_MOUNT, "subPath": slug, "readOnly": True})
        context = CONTEXT_MOUNT + ("/" + job.context_subpath if job.context_subpath not in (None, "", ".") else "")
    args += [f"--context=dir://{context}", f"--dockerfile={GENERATED_MOUNT}/{DOCKERFILE_KEY}"]
    if settings["cache"]:
        args += ["--cache=true", f"--cache-repo={settings['cache_repo']}"]
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
        "metadata": {"name": build_pod_name(job.id), "namespace": settings["namespace"], "labels": labels,
                     "annotations": {"kubestudio.io/username": job.owner, "kubestudio.io/image": job.image}},
        "spec": spec,
    }


class KanikoBackend(BuildBackend):
    name = "kaniko"
    replays_log = True  # re-attaching streams the pod's whole log again

    namespace = Unicode("default", config=True, help="Namespace of the build pods (and their ConfigMaps).")
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
    workspace_claim = Unicode(
        "kubestudio-workspace",
        config=True,
        help="The shared workspace claim (as WorkspaceSpawner.workspace_claim); the pod mounts the owner's subPath read-only.",
    )
    registry_secret = Unicode(
        "kubestudio-registry",
        config=True,
        help="Secret of type kubernetes.io/dockerconfigjson with the push credentials, mounted at /kaniko/.docker.",
    )
    cache = Bool(True, config=True, help="Use kaniko's layer cache (--cache=true) in `cache_repo`.")
    cache_repo = Unicode("", config=True, help="Repository for cached layers. Empty: <registry>/<prefix>/cache.")
    snapshot_mode = Unicode("redo", config=True, help="kaniko --snapshot-mode (full, redo or time).")
    compressed_caching = Bool(False, config=True, help="kaniko --compressed-caching (false saves memory on big images).")
    insecure_registry = Bool(False, config=True, help="Push and pull over plain HTTP (set from ImageBuilder.registry_insecure).")
    extra_args = List(Unicode(), config=True, help="More executor arguments, e.g. ['--build-arg=PIP_INDEX_URL=...'].")
    extra_labels = Dict(Unicode(), config=True, help="More labels on build pods.")
    resources = Dict(
        {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        config=True,
        help="Resources of the build container (requests and limits).",
    )
    node_selector = Dict(Unicode(), config=True, help="Node selector of build pods.")
    tolerations = List(Dict(), config=True, help="Tolerations of build pods.")
    kubeconfig = Unicode("", config=True, help="kubeconfig file; empty: in-cluster config, else $KUBECONFIG / ~/.kube/config.")
    pod_max_age_seconds = Integer(4 * 3600, config=True, help="The cleaner deletes build pods older than this that no build follows.")
    cleanup_interval_seconds = Integer(300, config=True, help="Seconds between two runs of the cleaner.")
    start_timeout_seconds = Integer(
        300, config=True, help="Seconds a build pod may stay Pending (unschedulable, pulling) before the build fails."
    )

    def settings(self):
        cache_repo = self.cache_repo
        if not cache_repo and self.parent is not None:
            cache_repo = "/".join(p for p in (self.parent.registry_host, self.parent.registry_prefix, "cache") if p)
        return {
            "namespace": self.namespace, "executor_image": self.executor_image, "executor_command": self.executor_command,
            "workspace_claim": self.workspace_claim, "registry_secret": self.registry_secret, "cache": self.cache,
            "cache_repo": cache_repo, "snapshot_mode": self.snapshot_mode, "compressed_caching": self.compressed_caching,
            "insecure_registry": self.insecure_registry, "extra_args": self.extra_args, "extra_labels": self.extra_labels,
            "resources": self.resources, "node_selector": self.node_selector, "tolerations": self.tolerations,
        }

    # ------------------------------------------------------------------ client

    async def start(self):
        from kubernetes_asyncio import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config(config_file=self.kubeconfig or None)
        self._api_client = client.ApiClient()
        self.core = client.CoreV1Api(self._api_client)
        self.followed = set()
        self._cleaner = asyncio.ensure_future(self._clean_loop())

    async def stop(self):
        if getattr(self, "_cleaner", None):
            self._cleaner.cancel()
        if getattr(self, "_api_client", None):
            await self._api_client.close()

    # ------------------------------------------------------------------ builds

    async def build(self, job, emit):
        from kubernetes_asyncio.client.rest import ApiException

        name = build_pod_name(job.id)
        async with self._tracked(name):
            configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kubestudio",
                                                               "kubestudio.io/component": COMPONENT,
                                                               "kubestudio.io/build-id": job.id}},
                         "data": {DOCKERFILE_KEY: job.dockerfile_text}}
            await self.core.create_namespaced_config_map(self.namespace, configmap)
            try:
                await self.core.create_namespaced_pod(self.namespace, kaniko_pod(job, self.settings()))
            except ApiException as e:
                raise BuildFailed(f"Kubernetes refused the build pod: {e.status} {_api_message(e)}") from None
            job.set_ref(name)
            emit(f"Build pod {self.namespace}/{name} created")
            return await self._follow(name, emit)

    async def recover(self, job, record, emit):
        name = record.get("backend_ref") or build_pod_name(job.id)
        from kubernetes_asyncio.client.rest import ApiException

        try:
            await self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                raise BuildFailed(f"interrupted: the build pod {name} is gone (the service restarted meanwhile)") from None
            raise
        async with self._tracked(name):
            emit(f"Re-attached to build pod {self.namespace}/{name} after a restart of the image service")
            return await self._follow(name, emit)

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
        started = time.monotonic()
        # wait for the container to start (or end, or get stuck)
        while True:
            pod = await self.core.read_namespaced_pod(name, self.namespace)
            state = _container_state(pod)
            if pod.status.phase in ("Running", "Succeeded", "Failed"):
                break
            waiting = state.waiting if state else None
            if waiting and waiting.reason in FAILING_WAITS and (
                    waiting.reason != "ImagePullBackOff" or time.monotonic() - started > 60):
                raise BuildFailed(f"the build pod cannot start: {waiting.reason}: {waiting.message or ''}".strip())
            if time.monotonic() - started > self.start_timeout_seconds:
                reason = _pending_reason(pod)
                raise BuildFailed(f"the build pod did not start in {self.start_timeout_seconds} s{reason}")
            await asyncio.sleep(0.5)
        await self._stream_log(name, emit)
        while True:
            pod = await self.core.read_namespaced_pod(name, self.namespace)
            state = _container_state(pod)
            if state and state.terminated:
                break
            await asyncio.sleep(0.5)
        terminated = state.terminated
        message = (terminated.message or "").strip()
        if terminated.exit_code != 0:
            detail = f": {message[-500:]}" if message else "; see the build log"
            raise BuildFailed(f"kaniko exited with {terminated.exit_code}{detail}")
        match = DIGEST.search(message)
        if not match:
            raise BuildFailed(f"kaniko finished but wrote no image digest to its termination message ({message[:200]!r})")
        return BuildOutcome(digest=match.group(0))

    async def _stream_log(self, name, emit):
        response = await self.core.read_namespaced_pod_log(name, self.namespace, follow=True, _preload_content=False)
        try:
            lines = LineSplitter()
            async for chunk in response.content.iter_any():
                for line in lines.feed(chunk):
                    emit(line)
            for line in lines.close():
                emit(line)
        finally:
            response.release()

    async def _delete(self, name):
        from kubernetes_asyncio.client.rest import ApiException

        for call in (self.core.delete_namespaced_pod, self.core.delete_namespaced_config_map):
            try:
                await call(name, self.namespace, grace_period_seconds=0)
            except ApiException as e:
                if e.status != 404:
                    self.log.warning("could not delete %s/%s: %s", self.namespace, name, e.status)

    async def clean(self):
        """Delete build pods past their age that no build follows; returns their names."""
        pods = await self.core.list_namespaced_pod(
            self.namespace, label_selector=f"app.kubernetes.io/managed-by=kubestudio,kubestudio.io/component={COMPONENT}")
        now = time.time()
        removed = []
        for pod in pods.items:
            name = pod.metadata.name
            age = now - pod.metadata.creation_timestamp.timestamp()
            if name not in self.followed and age > self.pod_max_age_seconds:
                await self._delete(name)
                removed.append(name)
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


def _container_state(pod):
    statuses = pod.status.container_statuses or []
    return statuses[0].state if statuses else None


def _pending_reason(pod):
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status != "True" and condition.message:
            return f": {condition.message}"
    return ""


def _api_message(e):
    import json

    try:
        return json.loads(e.body).get("message", "")
    except (TypeError, ValueError):
        return str(e.reason)

