"""Simulated Kubeflow operators for the bench, from their documented behaviour (like the kubelet).

The Training Operator v1 (release-1.9: PyTorchJob, TFJob, MPIJob) and Trainer v2 (v2.3: TrainJob)
cannot be built here. This controller does what they document, so that real pods then run
through the real scheduler, Job controller, garbage collector and the simulated kubelet:

- **PyTorchJob / TFJob / MPIJob** (``kubeflow.org/v1``): one pod and one headless Service per
  replica, named ``<job>-<type>-<index>`` (``<job>-master-0``, ``<job>-worker-1``), labelled
  ``training.kubeflow.org/job-name``, ``operator-name``, ``replica-type`` (lower case),
  ``replica-index`` and ``job-role: master`` (PyTorch Master, TF Chief, MPI Launcher), owned by the
  job (so deleting it with foreground propagation removes them). The environment: PyTorch's
  ``MASTER_ADDR``/``MASTER_PORT``/``WORLD_SIZE``/``RANK`` and ``PET_*`` (``nprocPerNode``),
  TF's ``TF_CONFIG``, MPI's hostfile (a ConfigMap, ``OMPI_MCA_orte_default_hostfile``). Status:
  conditions Created -> Running -> Succeeded or Failed (and Restarting), ``replicaStatuses``,
  ``startTime``/``completionTime``; ``runPolicy``: ``cleanPodPolicy``, ``backoffLimit``,
  ``activeDeadlineSeconds``, ``ttlSecondsAfterFinished``; restart policies ``OnFailure`` (the
  kubelet restarts the container), ``Never``, ``ExitCode`` (retryable codes 128-255 get a new pod).
- **TrainJob** (``trainer.kubeflow.org/v1alpha1``): the referenced (Cluster)TrainingRuntime's
  replicated jobs become batch/v1 Jobs with JobSet's labels (one per node: Kubernetes 1.20 has no
  Indexed Jobs; each pod gets the completion index and the hostname JobSet would give it), a
  headless Service ``<trainjob>`` for the pods' names, the trainer's image, command, args, env and
  resources, the ``runtimePatches`` (merged into the replicated jobs' pod templates by their merge
  keys, as a strategic merge does), and torch's ``PET_*`` environment; conditions Complete or
  Failed follow the Jobs.

- **InferenceService** (``serving.kserve.io/v1beta1``, KServe's ``RawDeployment`` mode, custom
  ``predictor.containers``): a Deployment and a Service ``<isvc>-predictor`` labelled
  ``serving.kserve.io/inferenceservice``, ``component: predictor`` and ``app:
  isvc.<isvc>-predictor``, owned by the InferenceService; the predictor's pod settings, replicas
  ``minReplicas``; a ``pvc://<claim>/<path>`` storage URI (``STORAGE_URI`` of the container)
  mounted read-only at ``/mnt/models``; a new spec rolls the Deployment. Status: ``url`` and ``address.url`` (the
  Service's cluster name), conditions ``PredictorReady``, ``IngressReady`` and ``Ready`` (the
  Deployment's rollout of this generation complete and available), ``observedGeneration``.
  Serverless mode (Knative) and model formats with ServingRuntimes are not simulated: such an
  InferenceService stays not Ready with that reason.

Checked against the upstream Python SDKs (``kubeflow-training``'s TrainingClient, ``kserve``'s
KServeClient) in the tests.
"""

import asyncio
import hashlib
import json
import logging
import sys
from datetime import datetime, timezone

from .argo import ArgoController
from .client import ApiError, KubeClient, run_component
from .katib import KatibController

log = logging.getLogger("kubebench.operators")

TRAINING = "kubeflow.org/v1"
TRAINER = "trainer.kubeflow.org/v1alpha1"
JOB_NAME = "training.kubeflow.org/job-name"
OPERATOR_NAME = "training.kubeflow.org/operator-name"
REPLICA_TYPE = "training.kubeflow.org/replica-type"
REPLICA_INDEX = "training.kubeflow.org/replica-index"
JOB_ROLE = "training.kubeflow.org/job-role"
JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX = "jobset.sigs.k8s.io/job-index"
TRAINJOB_NAME = "trainer.kubeflow.org/trainjob-name"
KSERVE = "serving.kserve.io/v1beta1"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
SPEC_HASH = "kubebench.kubestudio.io/predictor-spec"
# predictor fields that are KServe's own, not the pod's
PREDICTOR_FIELDS = {
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "model",
    "containers",
    "autoScaling",
    "deploymentStrategy",
    "workerSpec",
}


class Kind:
    def __init__(self, kind, plural, specs_key, container, port, port_name, master_types, operator):
        self.kind, self.plural, self.specs_key = kind, plural, specs_key
        self.container, self.port, self.port_name = container, port, port_name
        self.master_types = master_types  # replica types whose pods carry job-role: master
        self.operator = operator


KINDS = {
    "PyTorchJob": Kind(
        "PyTorchJob",
        "pytorchjobs",
        "pytorchReplicaSpecs",
        "pytorch",
        23456,
        "pytorchjob-port",
        ("Master",),
        "pytorchjob-controller",
    ),
    "TFJob": Kind(
        "TFJob", "tfjobs", "tfReplicaSpecs", "tensorflow", 2222, "tfjob-port", ("Chief", "Master"), "tfjob-controller"
    ),
    "MPIJob": Kind("MPIJob", "mpijobs", "mpiReplicaSpecs", "mpi", None, None, ("Launcher",), "mpijob-controller"),
}


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def condition(status, kind):
    return next((c for c in status.get("conditions") or [] if c["type"] == kind and c["status"] == "True"), None)


def set_condition(status, kind, reason, message, ends=("Succeeded", "Failed")):
    """Add (or refresh) condition ``kind``; Running goes False when the object finishes (a
    condition in ``ends``), as upstream."""
    stamp = now()
    conditions = [c for c in status.get("conditions") or [] if c["type"] != kind]
    if kind in ends:
        for c in conditions:
            if c["type"] == "Running" and c["status"] == "True":
                c.update(status="False", lastUpdateTime=stamp, lastTransitionTime=stamp)
    if kind == "Running":
        conditions = [c for c in conditions if c["type"] != "Restarting"]
    conditions.append(
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    status["conditions"] = conditions


def _knative_condition(status, kind, ok, reason, message):
    """Set a Knative-style condition (as KServe writes them); its time changes only when it does."""
    conditions = status.setdefault("conditions", [])
    wanted = {"type": kind, "status": "True" if ok else "False"}
    if reason:
        wanted["reason"] = reason
    if message:
        wanted["message"] = message
    for i, c in enumerate(conditions):
        if c.get("type") == kind:
            if {k: v for k, v in c.items() if k != "lastTransitionTime"} == wanted:
                return
            conditions[i] = {**wanted, "lastTransitionTime": now()}
            return
    conditions.append({**wanted, "lastTransitionTime": now()})


def owner_reference(obj):
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _exit_code(pod):
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if "exitCode" in terminated:
            return terminated["exitCode"]
    return None


def _restarts(pod):
    return sum(s.get("restartCount", 0) for s in (pod.get("status") or {}).get("containerStatuses") or [])


class Operators:
    def __init__(self, client):
        self.client = client
        self.objects = {}  # (kind, namespace, name) -> object
        self.pods = {}  # (namespace, name) -> pod, ours only
        self.jobs = {}  # (namespace, name) -> batch Job made for a TrainJob
        self._dirty = set()
        self._wake = asyncio.Event()
        self._recreated = {}  # (kind, ns, name) -> pods recreated (ExitCode restarts)
        self.deployments = {}  # (namespace, name) -> Deployment made for an InferenceService
        self.katib = KatibController(self)
        self.argo = ArgoController(self)

    # ------------------------------------------------------------------ watching

    async def run(self, ready_file=None):
        watches = [self._watch(f"/apis/{TRAINING}/{k.plural}", k.kind) for k in KINDS.values()]
        watches += [
            self._watch(f"/apis/{TRAINER}/trainjobs", "TrainJob"),
            self._watch_pods(),
            self._watch_batch_jobs(),
            self._watch(f"/apis/{KSERVE}/inferenceservices", "InferenceService"),
            self._watch_deployments(),
            *self.katib.watches(),
            *self.argo.watches(),
        ]
        tasks = [asyncio.ensure_future(w) for w in watches]
        tasks.append(asyncio.ensure_future(self._reconcile_loop()))
        tasks.append(asyncio.ensure_future(self._tick()))
        db_manager = await self.katib.store.start()
        if ready_file:
            with open(ready_file, "w") as f:
                json.dump({"katib_db_manager": db_manager}, f)
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await self.katib.store.stop()
            await self.client.close()

    def _mark(self, key):
        self._dirty.add(key)
        self._wake.set()

    async def _watch(self, path, kind):
        async for event, obj in self.client.watch(path):
            key = (kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
            if event == "DELETED":
                self.objects.pop(key, None)
                continue
            self.objects[key] = obj
            self._mark(key)
            self.katib.changed(obj)  # a trial's Training Operator job

    async def _watch_pods(self):
        async for event, pod in self.client.watch("/api/v1/pods", labelSelector=OPERATOR_NAME):
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            if event == "DELETED":
                self.pods.pop(key, None)
            else:
                self.pods[key] = pod
            labels = meta.get("labels") or {}
            kind = next((k.kind for k in KINDS.values() if k.operator == labels.get(OPERATOR_NAME)), None)
            if kind and labels.get(JOB_NAME):
                self._mark((kind, meta["namespace"], labels[JOB_NAME]))

    async def _watch_batch_jobs(self):
        async for event, job in self.client.watch("/apis/batch/v1/jobs", labelSelector=TRAINJOB_NAME):
            meta = job["metadata"]
            key = (meta["namespace"], meta["name"])
            if event == "DELETED":
                self.jobs.pop(key, None)
            else:
                self.jobs[key] = job
            self._mark(("TrainJob", meta["namespace"], meta["labels"][TRAINJOB_NAME]))

    async def _watch_deployments(self):
        async for event, deployment in self.client.watch("/apis/apps/v1/deployments", labelSelector=ISVC_LABEL):
            meta = deployment["metadata"]
            key = (meta["namespace"], meta["name"])
            if event == "DELETED":
                self.deployments.pop(key, None)
            else:
                self.deployments[key] = deployment
            self._mark(("InferenceService", meta["namespace"], meta["labels"][ISVC_LABEL]))

    async def _tick(self):
        """Deadlines and TTLs depend on time, not only on events."""
        while True:
            await asyncio.sleep(1)
            for key, obj in list(self.objects.items()):
                run_policy = obj.get("spec", {}).get("runPolicy") or {}
                if run_policy.get("activeDeadlineSeconds") or run_policy.get("ttlSecondsAfterFinished") is not None:
                    self._mark(key)

    async def _reconcile_loop(self):
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for key in dirty:
                obj = self.objects.get(key)
                if obj is None or obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    if key[0] == "TrainJob":
                        await self.reconcile_trainjob(obj)
                    elif key[0] == "Experiment":
                        await self.katib.reconcile_experiment(obj)
                    elif key[0] == "Trial":
                        await self.katib.reconcile_trial(obj)
                    elif key[0] == "InferenceService":
                        await self.reconcile_isvc(obj)
                    elif key[0] == "Workflow":
                        await self.argo.reconcile_workflow(obj)
                    elif key[0] == "CronWorkflow":
                        await self.argo.reconcile_cron(obj)
                    else:
                        await self.reconcile_training(KINDS[key[0]], obj)
                except ApiError as e:
                    if e.status not in (404, 409):
                        log.warning("%s %s/%s: %s", key[0], key[1], key[2], e)
                    if e.status == 409:  # someone wrote meanwhile: look again with the news
                        self._mark(key)
                except Exception:
                    log.exception("reconciling %s %s/%s", *key)

    # ------------------------------------------------------------------ Training Operator v1

    def _job_pods(self, kind, namespace, name):
        return [
            p
            for (ns, _), p in self.pods.items()
            if ns == namespace
            and (p["metadata"].get("labels") or {}).get(JOB_NAME) == name
            and (p["metadata"].get("labels") or {}).get(OPERATOR_NAME) == kind.operator
        ]

    async def reconcile_training(self, kind, job):
        meta, spec = job["metadata"], job.get("spec") or {}
        namespace, name = meta["namespace"], meta["name"]
        status = json.loads(json.dumps(job.get("status") or {}))
        before = json.dumps(status, sort_keys=True)
        run_policy = spec.get("runPolicy") or {}
        if condition(status, "Succeeded") or condition(status, "Failed"):
            await self._expire(kind, job, status, run_policy)
            return
        specs = spec.get(kind.specs_key) or {}
        if not condition(status, "Created"):
            set_condition(status, "Created", f"{kind.kind}Created", f"{kind.kind} {name} is created.")
        status.setdefault("startTime", now())
        pods = {p["metadata"]["name"]: p for p in self._job_pods(kind, namespace, name)}

        deadline = run_policy.get("activeDeadlineSeconds")
        if deadline and (datetime.now(timezone.utc) - parse_time(status["startTime"])).total_seconds() > deadline:
            await self._finish(
                kind,
                job,
                status,
                run_policy,
                "Failed",
                "DeadlineExceeded",
                f"{kind.kind} {name} has failed because it has reached the specified deadline",
            )
            return

        if kind.kind == "MPIJob":
            await self._mpi_hostfile(job, specs)
        replica_statuses, failed_types, restarting = {}, [], False
        for rtype, rspec in specs.items():
            counts = {"active": 0, "succeeded": 0, "failed": 0}
            policy = rspec.get("restartPolicy", "Never")
            for index in range(int(rspec.get("replicas", 1))):
                pod_name = f"{name}-{rtype.lower()}-{index}"
                pod = pods.get(pod_name)
                if pod is None or pod["metadata"].get("deletionTimestamp"):
                    if pod is None:
                        await self._ensure_service(kind, job, rtype, index, rspec)
                        await self._create_pod(kind, job, specs, rtype, index, rspec)
                    counts["active"] += 1
                    continue
                phase = (pod.get("status") or {}).get("phase")
                if phase == "Succeeded":
                    counts["succeeded"] += 1
                elif phase == "Failed":
                    code = _exit_code(pod)
                    if policy == "ExitCode" and code is not None and 128 <= code <= 255:
                        self._recreated[(kind.kind, namespace, name)] = (
                            self._recreated.get((kind.kind, namespace, name), 0) + 1
                        )
                        await self.client.delete(f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
                        restarting = True
                        counts["active"] += 1
                    else:
                        counts["failed"] += 1
                        failed_types.append(rtype)
                else:
                    counts["active"] += 1
            replica_statuses[rtype] = {**counts, "selector": f"{JOB_NAME}={name},{REPLICA_TYPE}={rtype.lower()}"}
        status["replicaStatuses"] = replica_statuses

        restarts = sum(_restarts(p) for p in pods.values()) + self._recreated.get((kind.kind, namespace, name), 0)
        backoff = run_policy.get("backoffLimit")
        if backoff is not None and restarts > backoff:
            await self._finish(
                kind,
                job,
                status,
                run_policy,
                "Failed",
                "BackoffLimitExceeded",
                f"{kind.kind} {name} has failed because it has reached the specified backoff limit",
            )
            return
        if failed_types:
            rtype = failed_types[0]
            await self._finish(
                kind,
                job,
                status,
                run_policy,
                "Failed",
                f"{kind.kind}Failed",
                f"{kind.kind} {name} is failed because {failed_types.count(rtype)} {rtype} replica(s) failed.",
            )
            return
        if self._succeeded(kind, specs, replica_statuses):
            await self._finish(
                kind,
                job,
                status,
                run_policy,
                "Succeeded",
                f"{kind.kind}Succeeded",
                f"{kind.kind} {name} is successfully completed.",
            )
            return
        if restarting:
            set_condition(
                status,
                "Restarting",
                f"{kind.kind}Restarting",
                f"{kind.kind} {name} is restarting because a replica exited with a retryable code.",
            )
        elif (
            pods
            and all((p.get("status") or {}).get("phase") in ("Running", "Succeeded") for p in pods.values())
            and len(pods) == sum(int(r.get("replicas", 1)) for r in specs.values())
        ):
            if not condition(status, "Running"):
                set_condition(status, "Running", f"{kind.kind}Running", f"{kind.kind} {name} is running.")
        if json.dumps(status, sort_keys=True) != before:
            await self._write_status(f"/apis/{TRAINING}/namespaces/{namespace}/{kind.plural}/{name}", status)

    @staticmethod
    def _succeeded(kind, specs, replica_statuses):
        for master in kind.master_types:
            if master in specs:  # the master's (chief's, launcher's) success is the job's
                return replica_statuses[master]["succeeded"] >= int(specs[master].get("replicas", 1))
        return all(replica_statuses[t]["succeeded"] >= int(r.get("replicas", 1)) for t, r in specs.items())

    async def _finish(self, kind, job, status, run_policy, outcome, reason, message):
        meta = job["metadata"]
        set_condition(status, outcome, reason, message)
        status["completionTime"] = now()
        for rstatus in (status.get("replicaStatuses") or {}).values():
            rstatus["active"] = 0
        await self._write_status(
            f"/apis/{TRAINING}/namespaces/{meta['namespace']}/{kind.plural}/{meta['name']}", status
        )
        clean = run_policy.get("cleanPodPolicy") or (job.get("spec") or {}).get("cleanPodPolicy") or "None"
        for pod in self._job_pods(kind, meta["namespace"], meta["name"]):
            phase = (pod.get("status") or {}).get("phase")
            if clean == "All" or (clean == "Running" and phase in ("Running", "Pending")):
                await self._delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{pod['metadata']['name']}")
        log.info("%s %s/%s %s: %s", kind.kind, meta["namespace"], meta["name"], outcome, message)

    async def _expire(self, kind, job, status, run_policy):
        ttl = run_policy.get("ttlSecondsAfterFinished")
        finished = status.get("completionTime")
        if ttl is None or not finished:
            return
        if (datetime.now(timezone.utc) - parse_time(finished)).total_seconds() >= ttl:
            meta = job["metadata"]
            await self._delete(
                f"/apis/{TRAINING}/namespaces/{meta['namespace']}/{kind.plural}/{meta['name']}",
                {"propagationPolicy": "Foreground"},
            )

    async def _write_status(self, path, status):
        await self.client.request(
            "PATCH", path + "/status", {"status": status}, content_type="application/merge-patch+json"
        )

    async def _delete(self, path, body=None):
        try:
            await self.client.delete(path, body)
        except ApiError as e:
            if e.status != 404:
                raise

    def _labels(self, kind, job, rtype, index):
        labels = {
            JOB_NAME: job["metadata"]["name"],
            OPERATOR_NAME: kind.operator,
            REPLICA_TYPE: rtype.lower(),
            REPLICA_INDEX: str(index),
        }
        if rtype in kind.master_types:
            labels[JOB_ROLE] = "master"
        return labels

    def _port(self, kind, rspec):
        for container in rspec.get("template", {}).get("spec", {}).get("containers", []):
            if container.get("name") == kind.container:
                for port in container.get("ports") or []:
                    if port.get("name") == kind.port_name:
                        return port["containerPort"]
        return kind.port

    async def _ensure_service(self, kind, job, rtype, index, rspec):
        meta = job["metadata"]
        name = f"{meta['name']}-{rtype.lower()}-{index}"
        port = self._port(kind, rspec) or 22
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": self._labels(kind, job, rtype, index),
                "ownerReferences": [owner_reference(job)],
            },
            "spec": {
                "clusterIP": "None",
                "selector": self._labels(kind, job, rtype, index),
                "ports": [{"name": kind.port_name or "ssh", "port": port, "targetPort": port}],
            },
        }
        try:
            await self.client.create(f"/api/v1/namespaces/{meta['namespace']}/services", body)
        except ApiError as e:
            if e.status != 409:
                raise

    def _env(self, kind, job, specs, rtype, index, rspec):
        name, spec = job["metadata"]["name"], job.get("spec") or {}
        env = {"PYTHONUNBUFFERED": "0"}
        if kind.kind == "PyTorchJob" and "Master" in specs:
            port = self._port(kind, specs["Master"])
            replicas = sum(int(r.get("replicas", 1)) for r in specs.values())
            rank = index + 1 if rtype == "Worker" else index
            nproc = str(spec.get("nprocPerNode") or "1")
            env.update(
                MASTER_ADDR=f"{name}-master-0",
                MASTER_PORT=str(port),
                RANK=str(rank),
                WORLD_SIZE=str(replicas * int(nproc) if nproc.isdigit() else replicas),
                PET_MASTER_ADDR=f"{name}-master-0",
                PET_MASTER_PORT=str(port),
                PET_NNODES=str(replicas),
                PET_NODE_RANK=str(rank),
                PET_NPROC_PER_NODE=nproc,
            )
        elif kind.kind == "TFJob":
            cluster = {}
            for t, r in specs.items():
                port = self._port(kind, r)
                cluster[t.lower()] = [
                    f"{name}-{t.lower()}-{i}.{job['metadata']['namespace']}.svc:{port}"
                    for i in range(int(r.get("replicas", 1)))
                ]
            env["TF_CONFIG"] = json.dumps(
                {"cluster": cluster, "task": {"type": rtype.lower(), "index": index}, "environment": "cloud"}
            )
        elif kind.kind == "MPIJob":
            env["OMPI_MCA_orte_default_hostfile"] = "/etc/mpi/hostfile"
            env["OMPI_MCA_plm_rsh_args"] = "-o ConnectionAttempts=10"
        return env

    async def _create_pod(self, kind, job, specs, rtype, index, rspec):
        meta = job["metadata"]
        template = json.loads(json.dumps(rspec.get("template") or {}))
        pod_spec = template.get("spec") or {}
        extra = self._env(kind, job, specs, rtype, index, rspec)
        for container in pod_spec.get("containers", []):
            known = {e["name"] for e in container.get("env") or []}
            container["env"] = list(container.get("env") or []) + [
                {"name": k, "value": v} for k, v in extra.items() if k not in known
            ]
        policy = rspec.get("restartPolicy", "Never")
        pod_spec["restartPolicy"] = "Never" if policy == "ExitCode" else policy
        pod_spec.setdefault("hostname", f"{meta['name']}-{rtype.lower()}-{index}")
        if kind.kind == "MPIJob":
            pod_spec.setdefault("volumes", []).append(
                {
                    "name": "mpi-job-config",
                    "configMap": {"name": f"{meta['name']}-config", "items": [{"key": "hostfile", "path": "hostfile"}]},
                }
            )
            for container in pod_spec.get("containers", []):
                container.setdefault("volumeMounts", []).append({"name": "mpi-job-config", "mountPath": "/etc/mpi"})
        labels = {**(template.get("metadata") or {}).get("labels", {}), **self._labels(kind, job, rtype, index)}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{rtype.lower()}-{index}",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": (template.get("metadata") or {}).get("annotations", {}),
                "ownerReferences": [owner_reference(job)],
            },
            "spec": pod_spec,
        }
        try:
            await self.client.create(f"/api/v1/namespaces/{meta['namespace']}/pods", body)
        except ApiError as e:
            if e.status != 409:
                raise

    async def _mpi_hostfile(self, job, specs):
        meta = job["metadata"]
        worker = specs.get("Worker") or {}
        slots = (job.get("spec") or {}).get("slotsPerWorker", 1)
        hosts = "".join(
            f"{meta['name']}-worker-{i}.{meta['namespace']}.svc slots={slots}\n"
            for i in range(int(worker.get("replicas", 0)))
        )
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{meta['name']}-config",
                "namespace": meta["namespace"],
                "labels": {JOB_NAME: meta["name"]},
                "ownerReferences": [owner_reference(job)],
            },
            "data": {"hostfile": hosts},
        }
        try:
            await self.client.create(f"/api/v1/namespaces/{meta['namespace']}/configmaps", body)
        except ApiError as e:
            if e.status != 409:
                raise

    # ------------------------------------------------------------------ KServe (RawDeployment)

    async def reconcile_isvc(self, isvc):
        meta = isvc["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        path = f"/apis/{KSERVE}/namespaces/{namespace}/inferenceservices/{name}"
        predictor = (isvc.get("spec") or {}).get("predictor") or {}
        mode = (meta.get("annotations") or {}).get("serving.kserve.io/deploymentMode", "Serverless")
        problem = None
        if mode != "RawDeployment":
            problem = (
                "ServerlessModeNotSimulated",
                "the bench simulates KServe's RawDeployment mode only (Serverless needs Knative)",
            )
        elif not predictor.get("containers"):
            problem = (
                "ModelFormatNotSimulated",
                "the bench simulates custom predictor containers only (no ServingRuntimes)",
            )
        status = json.loads(json.dumps(isvc.get("status") or {}))  # a copy: compared with what is there
        if problem:
            for kind in ("PredictorReady", "Ready"):
                _knative_condition(status, kind, False, *problem)
            status["observedGeneration"] = meta.get("generation", 1)
            if status != (isvc.get("status") or {}):
                await self._write_status(path, status)
            return
        app = f"isvc.{name}-predictor"
        labels = {**(meta.get("labels") or {}), ISVC_LABEL: name, "component": "predictor", "app": app}
        containers = [dict(c) for c in predictor["containers"]]
        containers[0].setdefault("name", "kserve-container")
        pod_spec = {k: v for k, v in predictor.items() if k not in PREDICTOR_FIELDS}
        pod_spec["containers"] = containers
        # storageUri pvc://<claim>/<path> on a custom container (its STORAGE_URI): KServe mounts that
        # folder of the claim read-only at /mnt/models, with no storage initializer
        uri = next((e.get("value", "") for e in containers[0].get("env") or [] if e.get("name") == "STORAGE_URI"), "")
        if uri.startswith("pvc://"):
            claim, _, sub_path = uri[len("pvc://") :].partition("/")
            pod_spec["volumes"] = [
                *(pod_spec.get("volumes") or []),
                {"name": "kserve-pvc-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
            ]
            containers[0]["volumeMounts"] = [
                *(containers[0].get("volumeMounts") or []),
                {"name": "kserve-pvc-source", "mountPath": "/mnt/models", "subPath": sub_path, "readOnly": True},
            ]
        template = {
            "metadata": {"labels": labels, "annotations": dict(meta.get("annotations") or {})},
            "spec": pod_spec,
        }
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]
        replicas = predictor.get("minReplicas", 1) or 1
        deployment_name = f"{name}-predictor"
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": deployment_name,
                "namespace": namespace,
                "labels": labels,
                "annotations": {SPEC_HASH: digest},
                "ownerReferences": [owner_reference(isvc)],
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app}},
                "template": template,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            },
        }
        deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        current = self.deployments.get((namespace, deployment_name))
        if current is None:
            try:
                current = await self.client.create(deployments, deployment)
            except ApiError as e:
                if e.status != 409:
                    raise
                current = await self.client.get(f"{deployments}/{deployment_name}")
        if (current["metadata"].get("annotations") or {}).get(SPEC_HASH) != digest or current["spec"].get(
            "replicas"
        ) != replicas:
            deployment["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            current = await self.client.request("PUT", f"{deployments}/{deployment_name}", deployment)
        port = next((p.get("containerPort") for p in containers[0].get("ports") or []), 8080)
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": deployment_name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [owner_reference(isvc)],
            },
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": port}]},
        }
        try:
            await self.client.create(f"/api/v1/namespaces/{namespace}/services", service)
        except ApiError as e:
            if e.status != 409:
                raise
        known = self.deployments.get((namespace, deployment_name)) or current
        dstatus = known.get("status") or {}
        rolled = (
            dstatus.get("observedGeneration", 0) >= known["metadata"].get("generation", 1)
            and (known["metadata"].get("annotations") or {}).get(SPEC_HASH) == digest
            and dstatus.get("updatedReplicas", 0) >= replicas
            and dstatus.get("availableReplicas", 0) >= replicas
            and dstatus.get("replicas", 0) == dstatus.get("updatedReplicas", 0)
        )
        url = f"http://{deployment_name}.{namespace}.svc.cluster.local"
        status["url"] = url
        status["address"] = {"url": url}
        status["components"] = {"predictor": {"url": url}}
        waiting = (
            f"the predictor's Deployment has {dstatus.get('updatedReplicas', 0)} of {replicas} replicas of "
            f"this version, {dstatus.get('availableReplicas', 0)} available"
        )
        for kind in ("PredictorReady", "IngressReady", "Ready"):
            ready = rolled or kind == "IngressReady"
            _knative_condition(status, kind, ready, "" if ready else "RolloutInProgress", "" if ready else waiting)
        status["observedGeneration"] = meta.get("generation", 1)
        if status != (isvc.get("status") or {}):
            await self._write_status(path, status)

    # ------------------------------------------------------------------ Trainer v2

    async def _runtime(self, trainjob):
        ref = (trainjob.get("spec") or {}).get("runtimeRef") or {}
        kind = ref.get("kind", "ClusterTrainingRuntime")
        namespace = trainjob["metadata"]["namespace"]
        path = (
            f"/apis/{TRAINER}/clustertrainingruntimes/{ref.get('name')}"
            if kind == "ClusterTrainingRuntime"
            else f"/apis/{TRAINER}/namespaces/{namespace}/trainingruntimes/{ref.get('name')}"
        )
        try:
            return await self.client.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def reconcile_trainjob(self, trainjob):
        meta, spec = trainjob["metadata"], trainjob.get("spec") or {}
        namespace, name = meta["namespace"], meta["name"]
        status = json.loads(json.dumps(trainjob.get("status") or {}))
        before = json.dumps(status, sort_keys=True)
        path = f"/apis/{TRAINER}/namespaces/{namespace}/trainjobs/{name}"
        if condition(status, "Complete") or condition(status, "Failed"):
            return
        runtime = await self._runtime(trainjob)
        if runtime is None:
            ref = spec.get("runtimeRef") or {}
            set_condition(
                status,
                "Failed",
                "TrainingRuntimeNotFound",
                f"{ref.get('kind', 'ClusterTrainingRuntime')} {ref.get('name')} was not found",
            )
            await self._write_status(path, status)
            return
        trainer = spec.get("trainer") or {}
        ml_policy = runtime["spec"].get("mlPolicy") or {}
        nodes = int(trainer.get("numNodes") or ml_policy.get("numNodes") or 1)
        torch = ml_policy.get("torch") or {}
        nproc = str(trainer.get("numProcPerNode") or torch.get("numProcPerNode") or "auto")
        await self._ensure_trainjob_service(trainjob)
        jobs_status = []
        for rjob in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
            counts = {"name": rjob["name"], "active": 0, "ready": 0, "succeeded": 0, "failed": 0, "suspended": 0}
            for node in range(nodes):
                job_name = f"{name}-{rjob['name']}-0-{node}"
                existing = self.jobs.get((namespace, job_name))
                if existing is None:
                    await self._create_node_job(trainjob, rjob, job_name, node, nodes, nproc, trainer)
                    counts["active"] += 1
                    continue
                job_status = existing.get("status") or {}
                for key in ("active", "succeeded", "failed"):
                    counts[key] += job_status.get(key, 0) or 0
                for c in job_status.get("conditions") or []:
                    if c.get("type") == "Failed" and c.get("status") == "True":
                        set_condition(
                            status,
                            "Failed",
                            "JobsFailed",
                            f"jobset {name} failed: job {job_name}: {c.get('message') or c.get('reason')}",
                        )
            jobs_status.append(counts)
        status["jobsStatus"] = jobs_status
        if not condition(status, "Failed") and jobs_status and all(j["succeeded"] >= nodes for j in jobs_status):
            set_condition(status, "Complete", "JobsCompleted", "TrainJob is completed")
        if json.dumps(status, sort_keys=True) != before:
            await self._write_status(path, status)

    async def _ensure_trainjob_service(self, trainjob):
        meta = trainjob["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "labels": {JOBSET_NAME: meta["name"]},
                "ownerReferences": [owner_reference(trainjob)],
            },
            "spec": {"clusterIP": "None", "selector": {JOBSET_NAME: meta["name"]}, "publishNotReadyAddresses": True},
        }
        try:
            await self.client.create(f"/api/v1/namespaces/{meta['namespace']}/services", body)
        except ApiError as e:
            if e.status != 409:
                raise

    async def _create_node_job(self, trainjob, rjob, job_name, node, nodes, nproc, trainer):
        """One node's Job: JobSet would make one Indexed Job per replicated job, but the bench's
        Kubernetes 1.20 predates Indexed Jobs, so each node's pod gets a Job of its own, with the
        completion index JobSet's pods carry (annotation, hostname) set here."""
        meta = trainjob["metadata"]
        template = json.loads(json.dumps(rjob["template"]))
        job_spec = template.get("spec") or {}
        pod_template = job_spec.get("template") or {}
        for patch in (trainjob.get("spec") or {}).get("runtimePatches") or []:
            for patched in (((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {}).get(
                "replicatedJobs"
            ) or []:
                if patched.get("name") == rjob["name"]:
                    apply_pod_patch(
                        pod_template, ((patched.get("template") or {}).get("spec") or {}).get("template") or {}
                    )
        pod_spec = pod_template.get("spec") or {}
        labels = {JOBSET_NAME: meta["name"], REPLICATED_JOB: rjob["name"], JOB_INDEX: "0", TRAINJOB_NAME: meta["name"]}
        index_annotation = "batch.kubernetes.io/job-completion-index"
        master = f"{meta['name']}-{rjob['name']}-0-0.{meta['name']}"
        for container in pod_spec.get("containers", []):
            if container.get("name") != "node":
                continue
            for key in ("image", "command", "args"):
                if trainer.get(key):
                    container[key] = trainer[key]
            if trainer.get("resourcesPerNode"):
                container["resources"] = trainer["resourcesPerNode"]
            env = [e for e in container.get("env") or []] + list(trainer.get("env") or [])
            env += [
                {"name": "PET_NNODES", "value": str(nodes)},
                {"name": "PET_NPROC_PER_NODE", "value": nproc},
                {
                    "name": "PET_NODE_RANK",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
                    },
                },
                {"name": "PET_MASTER_ADDR", "value": master},
                {"name": "PET_MASTER_PORT", "value": "29400"},
            ]
            container["env"] = env
            container.setdefault("ports", [{"containerPort": 29400}])
        pod_spec.setdefault("restartPolicy", "Never")
        pod_spec["subdomain"] = meta["name"]
        pod_spec["hostname"] = f"{meta['name']}-{rjob['name']}-0-{node}"  # what JobSet names node N's pod
        pod_template["spec"] = pod_spec
        pod_meta = pod_template.setdefault("metadata", {})
        pod_meta.setdefault("labels", {}).update(labels)
        pod_meta.setdefault("annotations", {})[index_annotation] = str(node)
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name,
                "namespace": meta["namespace"],
                "labels": {**(template.get("metadata") or {}).get("labels", {}), **labels},
                "ownerReferences": [owner_reference(trainjob)],
            },
            "spec": {
                **{k: v for k, v in job_spec.items() if k != "template"},
                "completions": 1,
                "parallelism": 1,
                "backoffLimit": job_spec.get("backoffLimit", 0),
                "template": pod_template,
            },
        }
        try:
            await self.client.create(f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs", body)
        except ApiError as e:
            if e.status != 409:
                raise


MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


def _merge(target, patch):
    """A strategic merge of ``patch`` into ``target``: maps merged, lists with a merge key merged
    item by item, other lists and values replaced."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(target.get(key), list):
            merge_key = MERGE_KEYS[key]
            for item in value:
                existing = next((t for t in target[key] if t.get(merge_key) == item.get(merge_key)), None)
                if existing is None:
                    target[key].append(json.loads(json.dumps(item)))
                else:
                    _merge(existing, item)
        else:
            target[key] = json.loads(json.dumps(value))


def apply_pod_patch(pod_template, patch):
    """A TrainJob's runtime patch of one replicated job's pod template (metadata and spec)."""
    _merge(pod_template, patch)


def main(config_file):
    with open(config_file) as f:
        config = json.load(f)
    logging.basicConfig(
        level=config.get("log_level", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    operators = Operators(KubeClient(config["server"], config["token"]))
    run_component(operators.run(config.get("ready_file")))


if __name__ == "__main__":
    main(sys.argv[1])
