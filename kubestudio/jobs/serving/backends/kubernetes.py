"""Servings on Kubernetes: the objects of :mod:`..manifests`, made and followed.

API discovery decides: with KServe (``inferenceservices`` in ``serving.kserve.io/v1beta1``) a
serving is an InferenceService (RawDeployment); without it a Deployment + Service (+ HPA).
``KubernetesServingBackend.use_kserve`` forces either way (``always`` refuses with 409 where
KServe is missing). A new version replaces the object's spec: the cluster rolls it (maxUnavailable
0), and the version counts as ready only once the object's status says that generation is (the
InferenceService's ``Ready`` and ``observedGeneration``; the Deployment's rollout complete, as
``kubectl rollout status`` judges it) and a pod of that version is ready. The hub reaches a
serving at its ready pods' IPs, in turn, newest version first, as KubeSpawner reaches servers;
the pods come from the jobs backend's one watch of our pods (no request per call).
"""

import asyncio
import itertools
import time
from dataclasses import dataclass, field, replace

from traitlets import Enum, Float

from .... import kube
from ....spawner.request import SpawnRefused, check_gpu_quota
from ...spec import SpecError
from ...training.backends.kubernetes import KubernetesJobBackend
from ..manifests import KSERVE, LABEL_GENERATION, LABEL_SERVING_ID, PORT, deployment_objects, inference_service
from .base import ServingBackend, ServingFailed

CRASHED = ("CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
LOG_TAIL_LINES = 300


@dataclass
class PodsRuntime:
    """Where a serving runs on Kubernetes: its object, and the ready pods behind it."""

    backend: object = field(repr=False, compare=False)
    serving_id: str
    kind: str  # InferenceService or Deployment
    name: str
    generation: int  # the serving's version it was made for

    @property
    def url(self):
        return self.backend.pick(self.serving_id, self.generation)

    @property
    def cluster_url(self):
        """Where other services in the cluster call it: the Service's name."""
        service = f"{self.name}-predictor" if self.kind == "InferenceService" else self.name
        return f"http://{service}.{self.backend.jobs.namespace}.svc.cluster.local"  # port 80 either way

    def to_json(self):
        return {
            "kind": self.kind,
            "name": self.name,
            "generation": self.generation,
            "serving_id": self.serving_id,
            "cluster_url": self.cluster_url,
        }


def _generation(pod):
    return (pod["metadata"].get("labels") or {}).get(LABEL_GENERATION)


class KubernetesServingBackend(ServingBackend):
    name = "kubernetes"
    job_backend_class = KubernetesJobBackend  # its cluster client, pod watch, settings and GPU count
    rolls_itself = True  # a new version is the cluster's rollout of the same object
    outlives_the_service = True  # the objects stay when the service stops; its next start adopts them

    use_kserve = Enum(
        ["auto", "always", "never"],
        "auto",
        config=True,
        help="""InferenceServices (KServe) or Deployments: auto uses KServe where the cluster
                      serves InferenceServices; always refuses servings where it does not (409).""",
    )
    start_timeout = Float(
        600, config=True, help="Seconds a new version may take to be ready (image pull and model load)."
    )

    def __init__(self, jobs, **kwargs):
        super().__init__(jobs, **kwargs)
        self._turns = {}  # serving id -> which ready pod answers next
        self._logs = {}  # serving id -> the newest pod's log, as last read
        self.deployments = None
        self._autoscaling = None  # the HorizontalPodAutoscaler API version the cluster serves

    async def connect(self):
        """One watch of the servings' Deployments (KServe's predictor Deployments carry the
        InferenceService's labels): whether a serving's object is still there costs no request."""
        from kubernetes_asyncio import client

        from ....names import LABEL_COMPONENT
        from ..manifests import COMPONENT

        apps = client.AppsV1Api(self.jobs._api_client)
        self.deployments = kube.Reflector(
            apps.list_namespaced_deployment,
            self.jobs.namespace,
            kube.selector({LABEL_COMPONENT: COMPONENT}),
            self.log,
            raw=True,
        )
        await self.deployments.start()

    async def close(self):
        if self.deployments is not None:
            await self.deployments.stop()

    # ------------------------------------------------------------------ checking

    async def _kserve(self):
        """Whether this serving is an InferenceService (KServe found and granted to us, or forced)."""
        if self.use_kserve == "never":
            return False  # no discovery for a kind never used
        kinds = {"InferenceService": (KSERVE, "inferenceservices")}
        served = await kube.served(self.jobs._api_client, kinds)
        found = "InferenceService" in served
        if found and await kube.forbidden(self.jobs._api_client, self.jobs.namespace, kinds):
            found = False  # KServe is there, but not granted to our account: Deployments then
            if self.use_kserve == "always":
                raise SpecError(
                    "kserve: this cluster has KServe, but the jobs service's account may not create and "
                    "watch inferenceservices (the Helm chart grants it with operators.kserve)",
                    409,
                )
        if self.use_kserve == "always" and not found:
            raise SpecError(
                "kserve: this cluster has no KServe (no inferenceservices in serving.kserve.io/v1beta1), "
                "and KubernetesServingBackend.use_kserve is 'always'",
                409,
            )
        return found

    async def _autoscaling_version(self):
        """``autoscaling/v2`` (Kubernetes 1.23+), else ``autoscaling/v2beta2``: found once."""
        if self._autoscaling is None:
            served = await kube.served(self.jobs._api_client, {"v2": ("autoscaling/v2", "horizontalpodautoscalers")})
            self._autoscaling = "autoscaling/v2" if "v2" in served else "autoscaling/v2beta2"
        return self._autoscaling

    async def check(self, owner, spec):
        """(the model's path in the pod, format): paths are checked by their text (the files are
        on the claim, read by the pod); KServe, when it must be there, is looked up."""
        await self._kserve()
        from ....spawner.pods import workspace_paths

        workspace, archives = workspace_paths(owner, self.jobs.settings())
        text = spec.model.strip()
        if text.startswith("/"):
            if not any(text == m or text.startswith(m + "/") for m in (workspace, archives)):
                raise SpecError(f"model: {text!r} is outside your workspace ({workspace}) and archives ({archives})")
            path = text
        else:
            path = f"{workspace}/{text}".rstrip("/")
        parts = path.split("/")
        if ".." in parts:
            raise SpecError(f"model: {text!r} leads outside your workspace")
        if spec.max_replicas > spec.min_replicas and not spec.resources.cpu:
            raise SpecError("resources.cpu: autoscaling between replicas.min and replicas.max needs a CPU request")
        if not (spec.image or self.jobs.default_image):
            raise SpecError(
                "image: name the serving's image (no server image was sent and the service has no "
                "default: KubernetesJobBackend.default_image)"
            )
        return path, spec.format

    # ------------------------------------------------------------------ GPUs (counted from the pods)

    def reserve(self, serving_id, owner, project, spec):
        from ....spawner.storage import user_slug

        count = spec.resources.gpu.count * spec.max_replicas
        if count:
            try:
                check_gpu_quota(project, count, self.jobs._gpus_held(user_slug(owner), project.name))
            except SpawnRefused as e:
                raise SpecError(f"resources.gpu: {e}", e.status) from None
        return []

    def restore(self, serving_id, owner, project, gpus):
        pass  # the pods carry their GPUs: the count reads them

    def release(self, serving_id, owner):
        pass

    # ------------------------------------------------------------------ running

    async def launch(self, run):
        from ....spawner.projects import Project

        if run.project is None:
            run = replace(run, project=Project(name=run.spec.project))
        kserve = await self._kserve()
        image = run.spec.image or self.jobs.default_image
        settings = self.jobs.settings()
        if kserve:
            objects = [inference_service(run, image, settings)]
        else:
            objects = deployment_objects(run, image, settings, autoscaling=await self._autoscaling_version())
        applied = [await self._apply(obj) for obj in objects]
        kind, name = objects[0]["kind"], objects[0]["metadata"]["name"]
        await self._wait_ready(run.id, kind, name, applied[0]["metadata"]["generation"], run.generation)
        return PodsRuntime(self, run.id, kind, name, run.generation)

    def _api(self, kind):
        """(create, read, replace, delete) of a kind in the servings' namespace."""
        from kubernetes_asyncio import client

        api = self.jobs._api_client
        ns = self.jobs.namespace
        if kind in ("InferenceService", "HorizontalPodAutoscaler"):
            # the HPA's version depends on the cluster (the typed client knows v2 only)
            api_version, plural = (
                (KSERVE, "inferenceservices")
                if kind == "InferenceService"
                else (self._autoscaling or "autoscaling/v2", "horizontalpodautoscalers")
            )
            group, version = api_version.split("/")
            custom = client.CustomObjectsApi(api)
            return (
                lambda body: custom.create_namespaced_custom_object(group, version, ns, plural, body),
                lambda name: custom.get_namespaced_custom_object(group, version, ns, plural, name),
                lambda name, body: custom.replace_namespaced_custom_object(group, version, ns, plural, name, body),
                lambda name: custom.delete_namespaced_custom_object(
                    group, version, ns, plural, name, propagation_policy="Foreground"
                ),
            )
        if kind == "Deployment":
            apps = client.AppsV1Api(api)
            return (
                lambda body: apps.create_namespaced_deployment(ns, body),
                lambda name: apps.read_namespaced_deployment(name, ns),
                lambda name, body: apps.replace_namespaced_deployment(name, ns, body),
                lambda name: apps.delete_namespaced_deployment(name, ns, propagation_policy="Foreground"),
            )
        if kind == "Service":
            core = client.CoreV1Api(api)
            return (
                lambda body: core.create_namespaced_service(ns, body),
                lambda name: core.read_namespaced_service(name, ns),
                None,  # a Service of a serving never changes
                lambda name: core.delete_namespaced_service(name, ns),
            )
        raise ValueError(f"no API for {kind}")

    async def _json(self, result):
        """An API answer as the API's JSON (custom objects come so; core kinds as the client's models)."""
        return result if isinstance(result, dict) else self.jobs._api_client.sanitize_for_serialization(result)

    async def _apply(self, obj):
        """Create ``obj``, or replace the spec of the one there; the object as the API has it."""
        from kubernetes_asyncio.client.rest import ApiException

        create, read, replace, _ = self._api(obj["kind"])
        name = obj["metadata"]["name"]
        try:
            return await self._json(await kube.retrying(lambda: create(obj)))
        except ApiException as e:
            if e.status != 409:
                raise ServingFailed(
                    f"Kubernetes refused the {obj['kind']}: {e.status} {kube.api_message(e)}",
                    load_error=e.status in (400, 403, 422),
                ) from None
        current = await self._json(await read(name))
        if replace is None:
            return current
        body = dict(obj)
        body["metadata"] = {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
        try:
            return await self._json(await replace(name, body))
        except ApiException as e:
            raise ServingFailed(
                f"Kubernetes refused the new {obj['kind']}: {e.status} {kube.api_message(e)}",
                load_error=e.status in (400, 403, 422),
            ) from None

    def _pods(self, serving_id):
        return [
            p
            for p in list(self.jobs.pods.objects.values())
            if (p["metadata"].get("labels") or {}).get(LABEL_SERVING_ID) == serving_id
            and not p["metadata"].get("deletionTimestamp")
        ]

    async def _wait_ready(self, serving_id, kind, name, object_generation, generation):
        """Until the object's rollout of ``object_generation`` is done and a pod of the serving's
        ``generation`` is ready (a ready pod of the old version is not enough)."""
        _, read, _, _ = self._api(kind)
        deadline = time.monotonic() + self.start_timeout
        pull = kube.PullFailure(self.jobs.image_pull_grace_seconds)  # the jobs backend's: one setting for both
        while True:
            obj = await self._json(await read(name))
            status = obj.get("status") or {}
            if kind == "InferenceService":
                done = status.get("observedGeneration", 0) >= object_generation and kube.is_ready(obj)
            else:
                wanted = obj["spec"].get("replicas", 1)  # kubectl rollout status's test: only new pods, all available
                updated = status.get("updatedReplicas", 0)
                done = (
                    status.get("observedGeneration", 0) >= object_generation
                    and updated >= wanted
                    and status.get("replicas", 0) <= updated
                    and status.get("availableReplicas", 0) >= updated
                )
            if done and any(kube.is_ready(p) and _generation(p) == str(generation) for p in self._pods(serving_id)):
                return
            for pod in self._pods(serving_id):
                reason = kube.waiting_reason(pod)
                if pull.failed([reason.split(":", 1)[0]]):
                    raise ServingFailed(f"the serving's image cannot be pulled: {reason}", load_error=True)
                if reason.split(":", 1)[0] in CRASHED:
                    ended = self._ended(pod)
                    raise ServingFailed(f"the model runtime stopped{ended}", load_error=": exit code 3" in ended)
            if time.monotonic() > deadline:
                raise ServingFailed(f"version not ready in {self.start_timeout:g} s: {status.get('conditions')}")
            await asyncio.sleep(0.5)

    @staticmethod
    def _ended(pod):
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        last = (statuses[0].get("lastState") or {}).get("terminated") if statuses else None
        if not last:
            return ""
        message = (last.get("message") or "").strip().splitlines()
        return f": exit code {last.get('exitCode')}" + (f": {message[-1]}" if message else "")

    def pick(self, serving_id, generation=None):
        """A ready pod of the serving, each in turn (None while none is ready). Pods of
        ``generation`` first: once a new version is ready, the old one's pods, which the rollout
        removes a little later, get no more requests."""
        pods = [p for p in self._pods(serving_id) if kube.is_ready(p) and (p.get("status") or {}).get("podIP")]
        current = [p for p in pods if _generation(p) == str(generation)]
        ready = sorted(p["status"]["podIP"] for p in current or pods)
        if not ready:
            return None
        turn = self._turns.setdefault(serving_id, itertools.count())
        ip = ready[next(turn) % len(ready)]
        return f"http://[{ip}]:{PORT}" if ":" in ip else f"http://{ip}:{PORT}"

    def from_refs(self, refs):
        if not refs or not refs.get("kind"):
            return None
        serving_id = refs.get("serving_id", "")
        return PodsRuntime(self, serving_id, refs["kind"], refs["name"], refs["generation"])

    def alive(self, runtime):
        """The serving's Deployment (its own, or KServe's predictor) is there: Kubernetes restarts
        its pods itself; a deleted one is made again by the manager."""
        if runtime is None or self.deployments is None:
            return False
        return any(
            (d["metadata"].get("labels") or {}).get(LABEL_SERVING_ID) == runtime.serving_id
            and not d["metadata"].get("deletionTimestamp")
            for d in list(self.deployments.objects.values())
        )

    async def stop(self, runtime):
        """Delete the serving's objects (foreground: its pods go with them); idempotent."""
        from kubernetes_asyncio.client.rest import ApiException

        if runtime is None:
            return
        kinds = (
            ["InferenceService"]
            if runtime.kind == "InferenceService"
            else ["HorizontalPodAutoscaler", "Service", "Deployment"]
        )
        if runtime.kind != "InferenceService":
            await self._autoscaling_version()
        for kind in kinds:
            delete = self._api(kind)[3]
            try:
                await kube.retrying(lambda: delete(runtime.name))
            except ApiException as e:
                if e.status != 404:
                    self.log.warning(
                        "serving %s: could not delete %s %s: %s",
                        runtime.serving_id,
                        kind,
                        runtime.name,
                        kube.api_message(e),
                    )

    def last_lines(self, serving_id, count=3):
        for pod in self._pods(serving_id):
            ended = self._ended(pod)
            if ended:
                return ended.lstrip(": ")
        return "its pods are gone"

    def log_tail(self, serving_id, size=None):
        return self._logs.get(serving_id, "")

    async def logs(self, serving_id, size=None):
        """The newest pod's log (the run before a restart too), kept for :meth:`log_tail`."""
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.rest import ApiException

        core = client.CoreV1Api(self.jobs._api_client)
        pods = sorted(self._pods(serving_id), key=lambda p: p["metadata"].get("creationTimestamp") or "")
        parts = []
        for pod in pods[-1:]:
            for previous in (True, False):
                try:
                    text = await core.read_namespaced_pod_log(
                        pod["metadata"]["name"], self.jobs.namespace, tail_lines=LOG_TAIL_LINES, previous=previous
                    )
                except ApiException:
                    continue
                if text:
                    parts.append(f"[{pod['metadata']['name']}{' previous run' if previous else ''}]\n{text}")
        self._logs[serving_id] = "\n".join(parts)
        return self._logs[serving_id]
