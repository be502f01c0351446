"""Kubernetes backend of the jobs service: one object per attempt (a batch Job, a PyTorchJob,
TFJob or MPIJob of the Kubeflow Training Operator, a Trainer v2 TrainJob), from the pure builders
in :mod:`kubestudio.jobs.training.manifests`.

Everything Kubernetes goes through :mod:`kubestudio.kube`: API discovery says which kinds the
cluster serves (a kind whose operator is missing is refused with a 409 before anything is made);
one shared watch per kind follows every job's object to its end, and one watch of the jobs' pods
gives each rank's state, exit code and reason (OOMKilled), the reasons a pod waits (unschedulable,
image pulls; its Events once when it stays Pending) and when to read its log. A job costs its
create, one log stream per pod and its delete: no request per job while it runs.

Cancel (and the end of a job without ``ttl_after_finished``) deletes the object with foreground
propagation, so its pods and Services go with it. After a restart of the service the watches
list what is there and each running job is followed again from its record.
"""

import asyncio
import contextlib
import time

from traitlets import Bool, Integer, Unicode

from .... import kube
from ....names import (
    LABEL_ATTEMPT,
    LABEL_GPUS,
    LABEL_JOB_ID,
    LABEL_USER,
    MANAGED_BY,
    PROJECT_ANNOTATION,
)
from ....services.livelog import LineSplitter
from ....spawner.request import check_gpu_quota
from ...spec import SpecError
from .base import JobBackend, Outcome

COMPONENT = "train"
# kind -> (condition that means success, condition that means failure)
ENDS = {
    "Job": ("Complete", "Failed"),
    "PyTorchJob": ("Succeeded", "Failed"),
    "TFJob": ("Succeeded", "Failed"),
    "MPIJob": ("Succeeded", "Failed"),
    "TrainJob": ("Complete", "Failed"),
}
REPLICA_TYPE = "training.kubeflow.org/replica-type"
REPLICA_INDEX = "training.kubeflow.org/replica-index"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
FOLLOW_RECHECK_SECONDS = 2.0
CREATE_TRIES = 5  # a create or delete answered 5xx or 429 is tried this often (kube.retrying)


def replica_of(kind, pod):
    """The replica a pod runs, as the log prefix: ``master-0``, ``worker-1``, ``launcher``,
    ``node-1``, ``rank-0``."""
    labels = _labels(pod)
    if kind == "Job":
        return "rank-0"
    if kind == "TrainJob":
        return f"node-{(pod['metadata'].get('annotations') or {}).get(COMPLETION_INDEX, '0')}"
    replica_type = labels.get(REPLICA_TYPE, "pod")
    if replica_type == "launcher":
        return "launcher"
    return f"{replica_type}-{labels.get(REPLICA_INDEX, '0')}"


def _labels(obj):
    """The labels of an object (as the API's JSON: every watch here keeps them so)."""
    return (obj.get("metadata") or {}).get("labels") or {}


def _condition(obj, kind):
    """The condition ``kind`` when it is True, as {"type", "status", "reason", "message"}; else None."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def _exit_of(pod):
    """{"code", "reason"} of a pod's ended main container, or None while it runs."""
    terminated = (kube.container_state(pod) or {}).get("terminated")
    if terminated is None:
        return None
    return {"code": terminated.get("exitCode"), "reason": terminated.get("reason") or ""}


def _phase(pod):
    return (pod.get("status") or {}).get("phase") or "Pending"


def _may_still_exit(pod):
    """Whether a pod with no exit yet is running or placed on a node (so an exit is coming)."""
    if _exit_of(pod) is not None:
        return False
    phase = _phase(pod)
    return phase == "Running" or (phase == "Pending" and bool((pod.get("spec") or {}).get("nodeName")))


class Follower:
    """One attempt followed to its end: its pods (from the shared pod watch), their logs and what
    the user is told while it waits."""

    def __init__(self, backend, run, kind, name):
        self.backend = backend
        self.run = run
        self.kind = kind
        self.name = name
        self.pods = {}  # pod name -> pod
        self.replicas = {}  # pod name -> replica
        self.logs = kube.PodLogs(backend.log_core, backend.namespace, self._on_lines, backend.log, LineSplitter)
        self.pending_since = {}
        self.events_read = set()
        self.told = None
        self.pull = kube.PullFailure(backend.image_pull_grace_seconds)
        self.problem = None  # why the attempt cannot go on (an image that cannot be pulled)
        self.changed = asyncio.Event()

    def _on_lines(self, pod_name, lines):
        if self.run.on_lines:
            self.run.on_lines(self.replicas.get(pod_name, pod_name), lines)

    def pod_changed(self, name, pod):
        if pod is None:
            self.pods.pop(name, None)
        else:
            self.pods[name] = pod
            self.replicas[name] = replica_of(self.kind, pod)
            self.logs.update(pod)
        self.changed.set()

    def status(self):
        """Tell the user why the attempt waits, or that it runs; note an image that cannot be pulled."""
        waiting = []
        reasons = []
        running = 0
        for name, pod in sorted(self.pods.items()):
            phase = _phase(pod)
            replica = self.replicas[name]
            if phase == "Running":
                running += 1
                self.pending_since.pop(name, None)
                continue
            if phase != "Pending":
                continue
            self.pending_since.setdefault(name, time.monotonic())
            reason = kube.pending_reason(pod).removeprefix(": ") or kube.waiting_reason(pod)
            waiting_state = (kube.container_state(pod) or {}).get("waiting") or {}
            if waiting_state.get("reason"):
                reasons.append(waiting_state["reason"])
            if not reason and name in self.events_read:
                reason = self.backend.events.get(name, "")
            if (
                not reason
                and time.monotonic() - self.pending_since[name] > self.backend.pending_events_seconds
                and name not in self.events_read
            ):
                self.events_read.add(name)
                asyncio.ensure_future(self._read_events(name))
            waiting.append(f"{replica}: {reason}" if reason else f"{replica}: pending")
        if self.pull.failed(reasons):
            self.problem = "the image cannot be pulled: " + "; ".join(waiting)
        if waiting:
            message = "waiting for " + "; ".join(waiting)
            status = "starting"
        elif running:
            message = f"{running} {'pod' if running == 1 else 'pods'} running on Kubernetes"
            status = "running"
        else:
            return
        if (status, message) != self.told and self.run.on_status:
            self.told = (status, message)
            self.run.on_status(status, message)

    async def _read_events(self, name):
        try:
            messages = await kube.pod_events(self.backend.core, self.backend.namespace, name)
        except Exception as e:  # the message stays "pending"
            self.backend.log.warning("events of pod %s: %s", name, e)
            return
        if messages:
            self.backend.events[name] = messages[-1][:500]
            self.changed.set()

    def outcome(self, obj):
        """How the attempt ended, from the object's conditions and its pods' exits."""
        succeeded, failed = ENDS[self.kind]
        exits = {}
        for name, pod in self.pods.items():
            ended = _exit_of(pod)
            if ended is not None:
                exits[self.replicas[name]] = ended
        if _condition(obj, succeeded):
            return Outcome("succeeded", "", exits)
        condition = _condition(obj, failed) or {}
        bad = sorted((replica, e) for replica, e in exits.items() if e["code"] != 0)
        if bad:
            replica, e = bad[0]
            if e["reason"] == "OOMKilled":
                memory = self.run.spec.resources.memory
                message = f"{replica} ran out of memory (OOMKilled, exit code {e['code']}" + (
                    f"; limit {memory} per node)" if memory else ")"
                )
            else:
                message = f"{replica} exited with code {e['code']}" + (
                    f" ({e['reason']})" if e["reason"] and e["reason"] != "Error" else ""
                )
            others = len(bad) - 1
            if others:
                message += f"; {others} more {'replica' if others == 1 else 'replicas'} failed"
        else:
            message = condition.get("message") or condition.get("reason") or f"the {self.kind} failed"
        return Outcome("failed", message, exits)


class KubernetesJobBackend(
    JobBackend, kube.ClusterAccess, kube.PodIds, kube.WorkspaceMounts, kube.GpuLabels, kube.ImagePullGrace
):
    name = "kubernetes"
    serving_backend = "kubestudio.jobs.serving.backends.kubernetes.KubernetesServingBackend"

    default_image = Unicode(
        "",
        config=True,
        help="""Image of a job that names none and is not submitted from a server (which sends its
        own image, KUBESTUDIO_IMAGE), e.g. one from the jobs page. Unset: the image a server gets
        when its user picks nothing (a profile_list's default entry, else the catalog's default
        profile's first image, else KubeSpawner.image), worked out by the hub when it starts the
        service. Empty: such a job is refused with a message naming `image`.""",
    )
    registry_host = Unicode(
        "",
        config=True,
        help="""The registry of built images (as ImageBuilder.registry_host). A job naming an image
        there that the registry does not have is refused at submit (400, naming `image`).""",
    )
    registry_insecure = Bool(False, config=True, help="Talk to registry_host over plain HTTP (as ImageBuilder).")
    registry_auth_file = Unicode(
        "", config=True, help="Docker config.json with credentials for registry_host (as ImageBuilder)."
    )
    pending_events_seconds = Integer(
        10,
        config=True,
        help="A pod Pending this long without a reason has its Events read once, for the job's message.",
    )
    discovery_seconds = Integer(
        60, config=True, help="A kind refused as missing is looked up again (API discovery) after this many seconds."
    )
    logs_grace_seconds = Integer(10, config=True, help="Seconds to finish reading the pods' logs after a job ends.")
    max_log_streams = Integer(
        2000,
        config=True,
        help="""Pod logs followed at once (one connection each, apart from the connections that create,
        delete and watch, so a thousand running pods never hold those up). Pods past it are read
        when a stream frees up.""",
    )

    def settings(self):
        from ....spawner.pods import pod_settings

        return pod_settings(self)

    # ------------------------------------------------------------------ lifecycle

    async def start(self):
        from kubernetes_asyncio import client

        from ..manifests import KINDS

        self._api_client = await kube.load_client(self.kubeconfig)
        self._log_client = await kube.load_client(self.kubeconfig, connections=self.max_log_streams)
        self.core = client.CoreV1Api(self._api_client)
        self.log_core = client.CoreV1Api(self._log_client)
        self.batch = client.BatchV1Api(self._api_client)
        self.custom = client.CustomObjectsApi(self._api_client)
        self.kinds = {kind: (api_version, plural) for kind, (api_version, plural, _) in KINDS.items()}
        self.followers = {}  # (job id, attempt) -> Follower
        self.reserved = {}  # job id -> (owner slug, project, GPUs) not yet seen as pods
        self.events = {}  # pod name -> its latest Warning event
        self.objects = {}
        self.served = set()
        self.forbidden = set()  # kinds the cluster serves that our account may not use
        self._discovered = 0.0
        # every pod of ours: the jobs' pods for their followers, and servers' too for the GPUs a
        # user holds in a project
        self.pods = kube.Reflector(
            self.core.list_namespaced_pod,
            self.namespace,
            kube.selector(MANAGED_BY),
            self.log,
            on_change=self._pod_changed,
            raw=True,
        )
        await self.pods.start()
        await self._discover()

    async def stop(self):
        for follower in list(self.followers.values()):
            await follower.logs.stop()
        for reflector in [self.__dict__.get("pods"), *self.__dict__.get("objects", {}).values()]:
            if reflector is not None:
                await reflector.stop()
        for api_client in (self.__dict__.get("_api_client"), self.__dict__.get("_log_client")):
            if api_client is not None:
                await api_client.close()

    async def _discover(self):
        """Which kinds the cluster serves; one watch per kind served, started once."""
        served = await kube.served(self._api_client, self.kinds)
        # served, but not granted to our account (the Helm chart's operators.* values): no watch
        self.forbidden = await kube.forbidden(
            self._api_client, self.namespace, {k: self.kinds[k] for k in served if k != "Job"}
        )
        self.served = served - self.forbidden
        self._discovered = time.monotonic()
        for kind in sorted(set(self.objects) - self.served):  # an operator was removed: its watch goes
            await self.objects.pop(kind).stop()
        for kind in sorted(self.served):
            if kind in self.objects:
                continue
            api_version, plural = self.kinds[kind]
            selector = kube.selector(kube.owned_labels(COMPONENT))
            # each change goes to the follower of its job: no waiter looks at every change
            changed = self._object_changed
            if kind == "Job":
                reflector = kube.Reflector(
                    self.batch.list_namespaced_job, self.namespace, selector, self.log, on_change=changed, raw=True
                )
            else:
                reflector = kube.Reflector.custom(
                    self.custom, api_version, plural, self.namespace, selector, self.log, on_change=changed
                )
            await reflector.start()
            self.objects[kind] = reflector

    def _object_changed(self, name, obj):
        if obj is None:
            for follower in self.followers.values():
                if follower.name == name:
                    follower.changed.set()
            return
        labels = _labels(obj)
        follower = self.followers.get((labels.get(LABEL_JOB_ID), labels.get(LABEL_ATTEMPT)))
        if follower is not None:
            follower.changed.set()

    def _pod_changed(self, name, pod):
        if pod is None:
            for follower in self.followers.values():
                if name in follower.pods:
                    follower.pod_changed(name, None)
            self.events.pop(name, None)
            return
        labels = _labels(pod)
        follower = self.followers.get((labels.get(LABEL_JOB_ID), labels.get(LABEL_ATTEMPT)))
        if follower is not None:
            follower.pod_changed(name, pod)

    # ------------------------------------------------------------------ checks

    async def runtimes(self):
        from kubernetes_asyncio.client.rest import ApiException

        from ..manifests import TRAINER

        if "TrainJob" not in self.served:
            return []
        group, version = TRAINER.split("/")
        found = []
        for plural, scope in (("clustertrainingruntimes", "cluster"), ("trainingruntimes", "namespace")):
            try:
                if scope == "cluster":
                    items = (await self.custom.list_cluster_custom_object(group, version, plural))["items"]
                else:
                    items = (await self.custom.list_namespaced_custom_object(group, version, self.namespace, plural))[
                        "items"
                    ]
            except ApiException as e:
                if e.status in (403, 404):
                    continue
                raise
            for item in items:
                labels = item["metadata"].get("labels") or {}
                found.append(
                    {
                        "name": item["metadata"]["name"],
                        "scope": scope,
                        "framework": labels.get("trainer.kubeflow.org/framework", ""),
                    }
                )
        return found

    def image_of(self, run):
        return run.image or run.spec.image or self.default_image

    async def check(self, run):
        from ..manifests import KINDS, kind_of

        kind = kind_of(run.spec)
        if time.monotonic() - self._discovered > self.discovery_seconds:
            await self._discover()  # an operator may have been installed or removed since
        if kind in self.forbidden:
            api_version, plural, _ = KINDS[kind]
            raise SpecError(
                f"framework: this cluster has {plural} ({api_version}), but the jobs service's account "
                f"may not create and watch them (the Helm chart grants it with operators.*)",
                409,
            )
        if kind not in self.served:
            _, plural, operator = KINDS[kind]
            raise SpecError(
                f"framework: a {kind} needs {operator}, which this cluster does not have "
                f"(no {plural} in {KINDS[kind][0]})",
                409,
            )
        if kind == "TrainJob":
            names = [r["name"] for r in await self.runtimes() if r["scope"] == "cluster"]
            if run.spec.runtime not in names:
                raise SpecError(
                    f"runtime: this cluster has no ClusterTrainingRuntime {run.spec.runtime!r} "
                    f"(it has: {', '.join(sorted(names)) or 'none'})",
                    409,
                )
        image = self.image_of(run)
        if not image:
            raise SpecError(
                "image: name the job's image (no server image was sent and the service has no "
                "default: KubernetesJobBackend.default_image)"
            )
        await self._check_image(image)

    async def _check_image(self, image):
        """An image of our registry must be there (a typo, or a build that has not finished);
        other registries are left to the pull, whose failure the job reports."""
        from .... import imageref
        from ....registry import RegistryClient, RegistryError

        parsed = imageref.parse(image)
        if parsed is None:
            raise SpecError(f"image: {image!r} is not a valid image reference")
        if not self.registry_host or imageref.registry_of(image) != self.registry_host:
            return
        repository = parsed["name"].split("/", 1)[1]
        client = RegistryClient(self.registry_host, self.registry_auth_file, insecure=self.registry_insecure)
        try:
            found = await client.manifest(repository, parsed["digest"] or parsed["tag"] or "latest")
        except RegistryError as e:  # the registry is away: the pull will say whether the image is there
            self.log.warning("could not check image %s: %s", image, e)
            return
        if found is None:
            raise SpecError(
                f"image: the registry {self.registry_host} has no image {image} (build it first, or name one it has)"
            )

    # ------------------------------------------------------------------ GPUs

    def _gpus_held(self, slug, project, but=None):
        held = 0
        seen = set()
        for pod in list(self.pods.objects.values()):
            labels = _labels(pod)
            if labels.get(LABEL_USER) != slug or pod["metadata"].get("deletionTimestamp"):
                continue
            if _phase(pod) in ("Succeeded", "Failed"):
                continue
            pod_project = (pod["metadata"].get("annotations") or {}).get(PROJECT_ANNOTATION)
            if pod_project != project:
                continue
            job = labels.get(LABEL_JOB_ID)
            if job is not None:
                seen.add(job)
            held += int(labels.get(LABEL_GPUS, "0") or 0)
        for job, (owner, job_project, count) in self.reserved.items():
            if owner == slug and job_project == project and job not in seen and job != but:
                held += count
        return held

    def reserve(self, run):
        gpu = run.spec.resources.gpu
        total = gpu.count * run.spec.nodes
        if not total:
            return
        check_gpu_quota(run.project, total, self._gpus_held(run.slug, run.project.name, but=run.id))
        self.reserved[run.id] = (run.slug, run.project.name, total)

    def release(self, run):
        self.reserved.pop(run.id, None)

    # ------------------------------------------------------------------ running

    def object_of(self, run):
        """(kind, the object) that runs ``run`` here: what :meth:`run` creates, and what an
        experiment Katib runs gives Katib as its trial template."""
        from ..manifests import job_manifest, kind_of

        return kind_of(run.spec), job_manifest(run, self.settings(), self.image_of(run))

    async def run(self, run):
        from kubernetes_asyncio.client.rest import ApiException

        from ..manifests import KINDS, object_name

        await self.check(run)
        name = object_name(run)
        run.image = self.image_of(run)
        kind, manifest = self.object_of(run)
        api_version, plural, _ = KINDS[kind]
        follower = self._follower(run, kind, name)
        try:
            try:
                await kube.retrying(lambda: self._create(kind, api_version, plural, manifest), CREATE_TRIES)
            except ApiException as e:
                # a 409 of our own object: an earlier try was made although its answer was lost
                if e.status != 409 or not self._ours(kind, name, run):
                    return Outcome("failed", f"Kubernetes refused the {kind}: {e.status} {kube.api_message(e)}")
            run.refs.update({"kind": kind, "name": name, "namespace": self.namespace, "image": run.image})
            if run.on_refs:
                run.on_refs(dict(run.refs))
            if run.on_lines:
                run.on_lines("kubestudio", [f"{kind} {self.namespace}/{name} created (image {run.image})"])
            return await self._follow(follower)
        finally:
            await self._done(follower)

    def _ours(self, kind, name, run):
        obj = self.objects[kind].get(name)
        if obj is None:
            return True  # not seen by the watch yet: only this service makes objects of this name
        return _labels(obj).get(LABEL_JOB_ID) == run.id

    async def _create(self, kind, api_version, plural, manifest):
        if kind == "Job":
            await self.batch.create_namespaced_job(self.namespace, manifest)
        else:
            group, version = api_version.split("/")
            await self.custom.create_namespaced_custom_object(group, version, self.namespace, plural, manifest)

    def _follower(self, run, kind, name):
        follower = Follower(self, run, kind, name)
        self.followers[(run.id, str(run.attempt))] = follower
        for pod_name, pod in list(self.pods.objects.items()):  # pods already there (a resumed job)
            labels = _labels(pod)
            if labels.get(LABEL_JOB_ID) == run.id and labels.get(LABEL_ATTEMPT) == str(run.attempt):
                follower.pod_changed(pod_name, pod)
        return follower

    async def _done(self, follower):
        self.followers.pop((follower.run.id, str(follower.run.attempt)), None)
        await follower.logs.stop()

    async def _follow(self, follower):
        """Until the object says the attempt ended (or is deleted); then its logs are read to the
        end, the outcome is taken from its conditions and pods, and it is deleted unless a TTL
        keeps it."""
        kind, name = follower.kind, follower.name
        reflector = self.objects[kind]
        succeeded, failed = ENDS[kind]
        seen = False
        while True:
            obj = reflector.get(name)
            if obj is None and seen:
                return Outcome("failed", f"the {kind} {self.namespace}/{name} was deleted while it ran")
            seen = seen or obj is not None
            if obj is not None and (_condition(obj, succeeded) or _condition(obj, failed)):
                break
            follower.status()
            if follower.problem:
                await self._delete(kind, name)
                return Outcome("failed", follower.problem)
            follower.changed.clear()
            # woken by a change of the object or its pods; the timeout is for what depends on time
            # (how long an image has failed to pull, when to read a Pending pod's Events)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(follower.changed.wait(), FOLLOW_RECHECK_SECONDS)
        # the pods' last states and logs reach us just after the object's condition (the pod watch
        # can lag the object's: a worker still seen as Pending may long have run), so wait for the
        # exit of every pod that is or may be running; an unscheduled one never will
        deadline = time.monotonic() + self.logs_grace_seconds
        while time.monotonic() < deadline and any(_may_still_exit(p) for p in follower.pods.values()):
            follower.changed.clear()
            try:
                await asyncio.wait_for(follower.changed.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        await follower.logs.wait(timeout=max(deadline - time.monotonic(), 1.0))
        outcome = follower.outcome(obj)
        if follower.run.spec.ttl_after_finished is None:
            await self._delete(kind, name)
        return outcome

    async def resume(self, run):
        kind, name = run.refs.get("kind"), run.refs.get("name")
        if not kind or not name:
            return Outcome(
                "failed", "the job's Kubernetes object was never recorded (the service stopped while creating it)"
            )
        if kind not in self.objects:
            return Outcome("failed", f"this cluster no longer serves {kind}")
        if self.objects[kind].get(name) is None:
            return Outcome(
                "failed", f"the {kind} {self.namespace}/{name} is gone (deleted while the jobs service was down)"
            )
        run.image = run.refs.get("image", run.image)
        follower = self._follower(run, kind, name)
        try:
            if run.on_lines:
                run.on_lines(
                    "kubestudio",
                    [f"following {kind} {self.namespace}/{name} again after a restart of the jobs service"],
                )
            return await self._follow(follower)
        finally:
            await self._done(follower)

    async def cancel(self, run):
        from ..manifests import kind_of, object_name

        kind = run.refs.get("kind") or kind_of(run.spec)
        name = run.refs.get("name") or object_name(run)
        if kind in self.objects:
            await self._delete(kind, name)

    async def _delete(self, kind, name):
        """Delete with foreground propagation: the object goes once its pods and Services have."""
        from kubernetes_asyncio.client.rest import ApiException

        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
        api_version, plural = self.kinds[kind]
        group, version = api_version.split("/")

        async def delete():
            if kind == "Job":
                await self.batch.delete_namespaced_job(name, self.namespace, body=body)
            else:
                await self.custom.delete_namespaced_custom_object(
                    group, version, self.namespace, plural, name, body=body
                )

        try:
            await kube.retrying(delete, CREATE_TRIES)
        except ApiException as e:
            if e.status != 404:
                self.log.warning(
                    "could not delete %s %s/%s: %s %s", kind, self.namespace, name, e.status, kube.api_message(e)
                )
