"""The simulated kubelet: the one part of the bench that is not the real thing.

It registers Node objects, keeps their status and leases fresh (so the real node lifecycle
controller keeps them Ready), binds PersistentVolumeClaims with static volumes, and runs the
pods the real scheduler binds to its nodes, in one of three modes (per bench, or per pod with the
label ``kubebench.kubestudio.io/mode``):

- ``process``: the first container's command and args run as a local process "on" the pod's own
  loopback address (127.1.x.y for the first bench on a machine, see ``network.address_octets``); ``0.0.0.0`` in its args and env means that address. Volume mount
  paths are mapped to local folders under the bench root and the mount paths in args, env and
  workingDir are rewritten to them (a PVC + subPath is a folder; the same subPath from two pods
  is the same folder; a ``readOnly`` mount is bind-mounted read-only in the container's mount
  namespace, so even root cannot write there). Exit code and termination message land in the container status; stdout
  and stderr are kept for ``pods/log``.
- ``responder``: an HTTP server on the pod address and container ports answering 200 (for scale).
- ``status``: only the phases move (Running; with the bench's ``status_exit_after``, Succeeded
  with exit code 0 that many seconds later, for scale tests of things that end).

In process mode a container's memory limit is kept as the kernel's cgroup would keep it: a
process group whose resident memory passes the limit is killed (exit 137, reason ``OOMKilled``).
A container's ``readinessProbe`` decides when it is Ready (:mod:`.probes`), it
reaches Services by name (:mod:`.network`), and ``kubectl exec`` runs commands in its
environment. The kubelet API the apiserver calls serves ``/containerLogs`` (``kubectl logs``) and
``/exec`` (:mod:`.execstream`).
"""

import asyncio
import base64
import datetime
import json
import logging
import os
import re
import signal
import ssl
import sys

from aiohttp import web

from ...processgroup import descendants, kill_known, process_start_time, rss_by_group, signal_group
from ...quantities import parse_bytes
from . import execstream
from .client import ApiError, KubeClient, run_component
from .controlplane import write_kubeconfig
from .network import ServiceNetwork, address_octets, isolated_argv
from .probes import run_readiness

log = logging.getLogger("kubebench.kubelet")

MODE_LABEL = "kubebench.kubestudio.io/mode"
SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
MODES = ("process", "responder", "status")
# seconds between a container's Started event and its Running status: a real kubelet reports the
# status on its next relist, and a test of start progress needs the events seen before "ready"
STATUS_DELAY_LABEL = "kubebench.kubestudio.io/status-delay"
KUBELET_VERSION = "v1.20.2-kubebench"


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _safe_join(base, *parts):
    """Join and make sure the result stays inside ``base`` (subPaths come from pod specs)."""
    path = os.path.normpath(os.path.join(base, *[p.lstrip("/") for p in parts if p]))
    if os.path.commonpath([path, base]) != base:
        raise ValueError(f"path {parts} leaves {base}")
    return path


class PodIPs:
    """Pod addresses from the bench's block, 127.1.0.0/16 for the first bench on a machine:
    routed to lo on Linux with no setup."""

    def __init__(self, octet=1):
        self.octet = octet
        self._next = 1
        self._free = []

    def take(self):
        if self._free:
            return self._free.pop()
        n = self._next
        self._next += 1
        if n >= 254 * 256:
            raise RuntimeError("out of pod IPs")
        return f"127.{self.octet}.{n // 254}.{n % 254 + 1}"

    def give_back(self, ip):
        self._free.append(ip)


class PodRuntime:
    """What the kubelet knows about one pod it runs."""

    def __init__(self, pod, ip, folder):
        self.uid = pod["metadata"]["uid"]
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.pod = pod
        self.ip = ip
        self.folder = folder
        self.task = None
        self.proc = None
        self.servers = []
        self.started_at = None
        self.finished = asyncio.Event()
        self.deleting = False
        self.exec_context = None  # (env, working dir, translate, hosts file, read-only folders) of a running process
        self.ready = False
        self.probe = None
        self.oom_killed = False
        self.runs = 0  # container runs started (restarts + 1)
        self.tree = {}  # {pid: start time} of what the container started, as last seen

    @property
    def path(self):
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"

    def log_file(self, container):
        return os.path.join(self.folder, f"{container}.log")


class SimKubelet:
    def __init__(
        self,
        server,
        token,
        root,
        nodes,
        mode="process",
        missing_images=(),
        kubelet_port=0,
        events=True,
        start_delay=0.0,
        path_prepend=(),
        address_block=0,
        status_exit_after=None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.client = KubeClient(server, token, limit=200)
        self.server = server
        self.root = os.path.abspath(root)
        self.nodes = {n["name"]: n for n in nodes}
        self.mode = mode
        self.missing_images = set(missing_images)
        self.kubelet_port = kubelet_port
        self.events = events
        self.start_delay = start_delay
        self.status_exit_after = status_exit_after  # seconds a status-mode container runs; None: on
        self.path_prepend = list(path_prepend)
        pod_octet, service_octet = address_octets(address_block)
        self.ips = PodIPs(pod_octet)
        self.pods = {}  # uid -> PodRuntime
        self.by_name = {}  # (namespace, name) -> uid, kept after the pod ends for logs
        self.status_lock = asyncio.Semaphore(100)
        self.network = ServiceNetwork(self._running_pods, service_octet)

    # ------------------------------------------------------------------ nodes

    def _node_status(self, spec):
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        capacity.update({k: str(v) for k, v in (spec.get("capacity") or {}).items()})
        allocatable = dict(capacity)
        allocatable.update({k: str(v) for k, v in (spec.get("allocatable") or {}).items()})
        stamp = now()
        conditions = [
            {
                "type": t,
                "status": "False",
                "reason": f"KubeletHas{r}",
                "message": m,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
            for t, r, m in (
                ("MemoryPressure", "SufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "NoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "SufficientPID", "kubelet has sufficient PID available"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubebench simulated kubelet is posting ready status",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        )
        return {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": spec["name"]},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": "kubebench",
                "systemUUID": spec["name"],
                "bootID": "kubebench",
                "kernelVersion": os.uname().release,
                "osImage": "kubebench",
                "containerRuntimeVersion": "kubebench://1",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def register_nodes(self):
        for name, spec in self.nodes.items():
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "kubebench",
                "type": "kubebench",
            }
            labels.update(spec.get("labels") or {})
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": spec.get("taints") or []},
            }
            try:
                await self.client.create("/api/v1/nodes", body)
            except ApiError as e:
                if e.status != 409:
                    raise
                await self.client.merge_patch(
                    f"/api/v1/nodes/{name}",
                    {"metadata": {"labels": labels}, "spec": {"taints": spec.get("taints") or []}},
                )
            await self.client.merge_patch(f"/api/v1/nodes/{name}/status", {"status": self._node_status(spec)})
            await self._renew_lease(name)

    async def _renew_lease(self, name):
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        body = {"spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}}
        try:
            await self.client.merge_patch(path, body)
        except ApiError as e:
            if e.status != 404:
                raise
            await self.client.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {"metadata": {"name": name}, **body}
            )

    async def heartbeat(self):
        beats = 0
        while True:
            await asyncio.sleep(10)
            beats += 1
            for name, spec in self.nodes.items():
                try:
                    await self._renew_lease(name)
                    if beats % 3 == 0:
                        await self.client.merge_patch(
                            f"/api/v1/nodes/{name}/status", {"status": self._node_status(spec)}
                        )
                except Exception as e:  # keep beating whatever happens
                    log.warning("heartbeat of %s failed: %s", name, e)

    # ------------------------------------------------------------------ volumes

    async def bind_claims(self):
        async for kind, claim in self.client.watch("/api/v1/persistentvolumeclaims"):
            if kind == "DELETED" or claim.get("status", {}).get("phase") == "Bound" or claim["spec"].get("volumeName"):
                continue
            meta = claim["metadata"]
            folder = _safe_join(self.root, "volumes", "pvc", meta["namespace"], meta["name"])
            os.makedirs(folder, exist_ok=True)
            storage = claim["spec"].get("resources", {}).get("requests", {}).get("storage", "1Gi")
            pv = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"kubebench-{meta['uid']}", "labels": {"kubebench.kubestudio.io/static": "true"}},
                "spec": {
                    "capacity": {"storage": storage},
                    "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
                    "hostPath": {"path": folder},
                    "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                    "storageClassName": claim["spec"].get("storageClassName") or "",
                    "persistentVolumeReclaimPolicy": "Retain",
                },
            }
            if claim["spec"].get("volumeMode"):
                pv["spec"]["volumeMode"] = claim["spec"]["volumeMode"]
            try:
                await self.client.create("/api/v1/persistentvolumes", pv)
            except ApiError as e:
                if e.status != 409:
                    log.warning("static volume for %s/%s: %s", meta["namespace"], meta["name"], e)

    def claim_folder(self, namespace, claim):
        return _safe_join(self.root, "volumes", "pvc", namespace, claim)

    async def _volume_folder(self, runtime, volume):
        name = volume["name"]
        if "persistentVolumeClaim" in volume:
            return self.claim_folder(runtime.namespace, volume["persistentVolumeClaim"]["claimName"])
        if "hostPath" in volume:
            return _safe_join(self.root, "volumes", "hostpath", volume["hostPath"]["path"])
        folder = _safe_join(runtime.folder, "volumes", name)
        os.makedirs(folder, exist_ok=True)
        source = None
        if "configMap" in volume:
            source = ("configmaps", volume["configMap"])
        elif "secret" in volume:
            source = ("secrets", {**volume["secret"], "name": volume["secret"].get("secretName")})
        if source:
            kind, ref = source
            try:
                obj = await self.client.get(f"/api/v1/namespaces/{runtime.namespace}/{kind}/{ref['name']}")
            except ApiError:
                if not ref.get("optional"):
                    raise
                obj = {}
            data = dict(obj.get("data") or {})
            if kind == "secrets":
                data = {k: base64.b64decode(v) for k, v in data.items()}
            items = ref.get("items")
            targets = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
            for key, rel in targets:
                value = data.get(key, b"")
                with open(_safe_join(folder, rel), "wb") as f:
                    f.write(value if isinstance(value, bytes) else value.encode())
        return folder

    # ------------------------------------------------------------------ env

    def _field(self, runtime, path):
        pod = runtime.pod
        meta = pod["metadata"]
        match = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
        if match:
            return (meta.get(match[1]) or {}).get(match[2], "")
        return {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
            "status.podIP": runtime.ip,
            "status.hostIP": "127.0.0.1",
            "status.podIPs": runtime.ip,
        }.get(path, "")

    async def _env(self, runtime, container):
        env = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if key in source:
                    try:
                        obj = await self.client.get(
                            f"/api/v1/namespaces/{runtime.namespace}/{kind}/{source[key]['name']}"
                        )
                    except ApiError:
                        if source[key].get("optional"):
                            continue
                        raise
                    for k, v in (obj.get("data") or {}).items():
                        env[prefix + k] = base64.b64decode(v).decode() if kind == "secrets" else v
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            ref = item.get("valueFrom") or {}
            if "fieldRef" in ref:
                env[item["name"]] = self._field(runtime, ref["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in ref:
                resource = ref["resourceFieldRef"]["resource"]
                kind, _, what = resource.partition(".")
                env[item["name"]] = str((container.get("resources", {}).get(kind) or {}).get(what, "0"))
            else:
                for kind, key in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                    if key in ref:
                        try:
                            obj = await self.client.get(
                                f"/api/v1/namespaces/{runtime.namespace}/{kind}/{ref[key]['name']}"
                            )
                            value = (obj.get("data") or {})[ref[key]["key"]]
                            env[item["name"]] = base64.b64decode(value).decode() if kind == "secrets" else value
                        except (ApiError, KeyError):
                            if not ref[key].get("optional"):
                                raise
            # $(VAR) references to earlier variables, as the kubelet expands them
        return {k: re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), v) for k, v in env.items()}

    # ------------------------------------------------------------------ pod status and events

    async def event(self, runtime, reason, message, kind="Normal", field_path=None):
        if not self.events:
            return
        stamp = now()
        body = {
            "metadata": {"generateName": f"{runtime.name}.", "namespace": runtime.namespace},
            "involvedObject": {
                "kind": "Pod",
                "namespace": runtime.namespace,
                "name": runtime.name,
                "uid": runtime.uid,
                "apiVersion": "v1",
                **({"fieldPath": field_path} if field_path else {}),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": runtime.pod["spec"].get("nodeName", "")},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.client.create(f"/api/v1/namespaces/{runtime.namespace}/events", body)
        except ApiError as e:
            log.debug("event %s for %s: %s", reason, runtime.name, e)

    async def set_status(self, runtime, phase, container_states, ready, message=None, reason=None):
        if runtime.ready != bool(ready and phase == "Running"):
            runtime.ready = bool(ready and phase == "Running")
            self.network.write_hosts_files()  # a headless Service's names follow its ready pods
        containers = runtime.pod["spec"]["containers"]
        stamp = now()
        statuses = []
        for i, container in enumerate(containers):
            state, restarts = container_states[i] if i < len(container_states) else container_states[-1]
            statuses.append(
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": f"kubebench://{container.get('image', '')}",
                    "containerID": f"kubebench://{runtime.uid}-{i}",
                    "ready": ready and "running" in state,
                    "started": "running" in state,
                    "restartCount": restarts,
                    "state": state,
                }
            )
        init = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "state": {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": stamp, "finishedAt": stamp}
                },
            }
            for c in runtime.pod["spec"].get("initContainers") or []
        ]
        all_ready = "True" if ready else "False"
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": runtime.ip,
            "podIPs": [{"ip": runtime.ip}],
            "startTime": runtime.started_at or stamp,
            "qosClass": _qos(runtime.pod),
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "Ready", "status": all_ready, "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": all_ready, "lastTransitionTime": stamp},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            ],
            "containerStatuses": statuses,
            "initContainerStatuses": init,
            "message": message,
            "reason": reason,
        }
        async with self.status_lock:
            try:
                await self.client.merge_patch(runtime.path + "/status", {"status": status})
            except ApiError as e:
                if e.status not in (404, 409):
                    raise

    # ------------------------------------------------------------------ running pods

    async def watch_pods(self):
        async for kind, pod in self.client.watch("/api/v1/pods", fieldSelector="spec.nodeName!="):
            if pod["spec"].get("nodeName") not in self.nodes:
                continue
            uid = pod["metadata"]["uid"]
            runtime = self.pods.get(uid)
            if kind == "DELETED":
                if runtime:
                    await self._kill(runtime, grace=0)
                    self._forget(runtime)
                continue
            if runtime is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    if pod["metadata"].get("deletionTimestamp"):
                        await self._final_delete(pod["metadata"]["namespace"], pod["metadata"]["name"], uid)
                    continue
                runtime = PodRuntime(pod, self.ips.take(), os.path.join(self.root, "pods", uid))
                os.makedirs(runtime.folder, exist_ok=True)
                self.pods[uid] = runtime
                self.by_name[(runtime.namespace, runtime.name)] = uid
                runtime.task = asyncio.create_task(self._run_pod(runtime))
            else:
                runtime.pod = pod
            if pod["metadata"].get("deletionTimestamp") and not runtime.deleting:
                runtime.deleting = True
                asyncio.create_task(self._delete_pod(runtime, pod["metadata"].get("deletionGracePeriodSeconds", 30)))

    def _forget(self, runtime):
        self.network.remove_hosts_file(os.path.join(runtime.folder, "hosts"))
        runtime.ready = False
        if self.pods.pop(runtime.uid, None) is not None:
            self.ips.give_back(runtime.ip)

    async def _final_delete(self, namespace, name, uid):
        try:
            await self.client.delete(
                f"/api/v1/namespaces/{namespace}/pods/{name}", {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
            )
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("final delete of %s/%s: %s", namespace, name, e)

    async def _delete_pod(self, runtime, grace):
        await self.event(runtime, "Killing", f"Stopping container {runtime.pod['spec']['containers'][0]['name']}")
        await self._kill(runtime, grace)
        await self._final_delete(runtime.namespace, runtime.name, runtime.uid)
        self._forget(runtime)

    async def _kill(self, runtime, grace):
        runtime.deleting = True
        if runtime.task and not runtime.task.done() and runtime.proc is None:
            runtime.task.cancel()
        for server in runtime.servers:
            server.close()
        runtime.servers = []
        proc = runtime.proc
        if proc is not None and proc.returncode is None:
            runtime.tree.update(descendants(proc.pid))
            signal_group(proc.pid, signal.SIGTERM)
            kill_known(runtime.tree, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=max(grace or 0, 0.1))
            except asyncio.TimeoutError:
                signal_group(proc.pid)
                await proc.wait()
            # a container ends with its main process: nothing it started outlives it, also not
            # what left its process group (a cgroup holds them all on a real node)
            signal_group(proc.pid)
            kill_known(runtime.tree)

    def pod_mode(self, pod):
        mode = (pod["metadata"].get("labels") or {}).get(MODE_LABEL, self.mode)
        return mode if mode in MODES else self.mode

    @staticmethod
    def status_delay(pod):
        try:
            return max(0.0, min(float((pod["metadata"].get("labels") or {}).get(STATUS_DELAY_LABEL, 0)), 30.0))
        except ValueError:
            return 0.0

    async def _run_pod(self, runtime):
        try:
            if self.start_delay:
                await asyncio.sleep(self.start_delay)
            runtime.started_at = now()
            container = runtime.pod["spec"]["containers"][0]
            image = container.get("image", "")
            await self.event(
                runtime, "Pulling", f'Pulling image "{image}"', field_path=f"spec.containers{{{container['name']}}}"
            )
            if image in self.missing_images:
                await self._image_missing(runtime, image)
                return
            await self.event(
                runtime,
                "Pulled",
                f'Successfully pulled image "{image}" in 0s',
                field_path=f"spec.containers{{{container['name']}}}",
            )
            mode = self.pod_mode(runtime.pod)
            if mode == "process":
                await self._run_process(runtime)
            else:
                if mode == "responder":
                    await self._start_responder(runtime)
                await self.event(runtime, "Created", f"Created container {container['name']}")
                await self.event(runtime, "Started", f"Started container {container['name']}")
                await asyncio.sleep(self.status_delay(runtime.pod))
                started = now()
                await self.set_status(runtime, "Running", [({"running": {"startedAt": started}}, 0)], ready=True)
                if mode == "status" and self.status_exit_after is not None:
                    await asyncio.sleep(self.status_exit_after)
                    done = {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now()}
                    await self.set_status(runtime, "Succeeded", [({"terminated": done}, 0)], ready=False)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("pod %s/%s failed in the kubelet", runtime.namespace, runtime.name)
            await self.set_status(
                runtime,
                "Failed",
                [
                    (
                        {
                            "terminated": {
                                "exitCode": 128,
                                "reason": "StartError",
                                "message": str(e)[:1000],
                                "finishedAt": now(),
                            }
                        },
                        0,
                    )
                ],
                ready=False,
                message=str(e)[:1000],
                reason="StartError",
            )

    async def _image_missing(self, runtime, image):
        container = runtime.pod["spec"]["containers"][0]
        field = f"spec.containers{{{container['name']}}}"
        message = f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found'
        await self.event(runtime, "Failed", f'Failed to pull image "{image}": {message}', "Warning", field)
        await self.event(runtime, "Failed", "Error: ErrImagePull", "Warning", field)
        await self.set_status(
            runtime, "Pending", [({"waiting": {"reason": "ErrImagePull", "message": message}}, 0)], ready=False
        )
        await asyncio.sleep(1)
        backoff = f'Back-off pulling image "{image}"'
        await self.event(runtime, "BackOff", backoff, "Normal", field)
        await self.event(runtime, "Failed", "Error: ImagePullBackOff", "Warning", field)
        await self.set_status(
            runtime, "Pending", [({"waiting": {"reason": "ImagePullBackOff", "message": backoff}}, 0)], ready=False
        )

    async def _start_responder(self, runtime):
        ports = [p["containerPort"] for c in runtime.pod["spec"]["containers"] for p in c.get("ports") or []] or [8888]
        body = json.dumps({"pod": runtime.name, "namespace": runtime.namespace}).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + _HUB_VERSION_HEADER

        async def answer(reader, writer):
            try:
                while True:
                    line = await reader.readline()
                    if not line:
                        break
                    length = 0
                    while True:
                        header = await reader.readline()
                        if header in (b"\r\n", b"\n", b""):
                            break
                        if header.lower().startswith(b"content-length:"):
                            length = int(header.split(b":", 1)[1])
                    if length:
                        await reader.readexactly(length)
                    writer.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                pass
            finally:
                writer.close()

        for port in ports:
            runtime.servers.append(await asyncio.start_server(answer, runtime.ip, port))

    async def _service_account(self, runtime):
        """The pod's service-account token, as a kubelet projects it, in a folder of the pod: a
        bound token from the TokenRequest API (``token``, ``namespace``) and a ``kubeconfig``
        using it. A process cannot read /var/run/secrets/..., and in-cluster clients need
        KUBERNETES_SERVICE_HOST to reach this API server, so the process gets $KUBECONFIG
        instead (clients fall back to it); paths under the mount point are translated. None when
        the pod or its account says automountServiceAccountToken: false, or the account is
        missing."""
        spec, meta = runtime.pod["spec"], runtime.pod["metadata"]
        account = spec.get("serviceAccountName") or "default"
        if spec.get("automountServiceAccountToken") is False:
            return None
        try:
            sa = await self.client.get(f"/api/v1/namespaces/{runtime.namespace}/serviceaccounts/{account}")
            if sa.get("automountServiceAccountToken") is False and spec.get("automountServiceAccountToken") is None:
                return None
            answer = await self.client.create(
                f"/api/v1/namespaces/{runtime.namespace}/serviceaccounts/{account}/token",
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {
                        "expirationSeconds": 24 * 3600,
                        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
                    },
                },
            )
        except ApiError as e:
            log.warning("pod %s/%s: no token for service account %s: %s", runtime.namespace, runtime.name, account, e)
            return None
        folder = _safe_join(runtime.folder, "serviceaccount")
        os.makedirs(folder, exist_ok=True)
        token = answer["status"]["token"]
        with open(os.path.join(folder, "token"), "w") as f:
            f.write(token)
        with open(os.path.join(folder, "namespace"), "w") as f:
            f.write(runtime.namespace)
        write_kubeconfig(os.path.join(folder, "kubeconfig"), self.server, token, namespace=runtime.namespace)
        return folder

    async def _run_process(self, runtime):
        container = runtime.pod["spec"]["containers"][0]
        name = container["name"]
        field = f"spec.containers{{{name}}}"
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if not command:
            raise ValueError(f"container {name} has no command: process mode runs the container's command and args")
        # mount paths -> local folders, longest first so /mnt/a/b wins over /mnt/a
        volumes = {v["name"]: v for v in runtime.pod["spec"].get("volumes") or []}
        mapping = {}
        read_only = []
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ValueError(f"volumeMount {mount['name']} has no volume")
            base = await self._volume_folder(runtime, volume)
            local = _safe_join(base, mount.get("subPath", "")) if mount.get("subPath") else base
            if not os.path.isfile(local):  # a ConfigMap or Secret item mounted as one file stays a file
                os.makedirs(local, exist_ok=True)
            mapping[mount["mountPath"].rstrip("/") or "/"] = local
            if mount.get("readOnly") and os.path.isdir(local):
                read_only.append(local)
        account = await self._service_account(runtime)
        if account:
            mapping[SERVICE_ACCOUNT_PATH] = account
        termination_path = container.get("terminationMessagePath") or "/dev/termination-log"
        termination_local = os.path.join(runtime.folder, f"{name}.termination-log")
        open(termination_local, "w").close()
        mapping[termination_path] = termination_local
        # one pass over all mount paths, longest first (/mnt/a/b wins over /mnt/a): a local folder
        # put in by one mount (the bench lives under /tmp) is never translated again by another
        # (a pod mounting /tmp)
        ordered = sorted(mapping, key=len, reverse=True)
        mount_paths = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(m) for m in ordered) + r")(?=/|$|[\s\"',:;])")

        def translate(value):
            value = mount_paths.sub(lambda match: mapping[match.group(1)], value)
            return value.replace("0.0.0.0", runtime.ip)

        env = await self._env(runtime, container)
        base_env = {
            k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV") if k in os.environ
        }
        # the bench's "image" is this machine with the bench's Python environment first on PATH
        base_env["PATH"] = os.pathsep.join(
            self.path_prepend + [os.path.dirname(sys.executable), base_env.get("PATH", "/usr/bin:/bin")]
        )
        home = os.path.join(runtime.folder, "home")
        os.makedirs(home, exist_ok=True)
        full_env = {
            **base_env,
            "HOME": home,
            "HOSTNAME": runtime.name,
            "KUBEBENCH_POD_IP": runtime.ip,
            "KUBEBENCH_MOUNTS": json.dumps(mapping),
        }
        if account:  # the process reaches the API server as the pod's service account
            full_env["KUBECONFIG"] = os.path.join(account, "kubeconfig")
        full_env.update({k: translate(v) for k, v in env.items()})
        workdir = translate(container.get("workingDir") or "") or home
        os.makedirs(workdir, exist_ok=True)
        hosts = os.path.join(runtime.folder, "hosts")
        spec = runtime.pod["spec"]
        hostname = spec.get("hostname") or runtime.name
        own_names = [hostname] + (
            [f"{hostname}.{spec['subdomain']}.{runtime.namespace}.svc.cluster.local"] if spec.get("subdomain") else []
        )
        self.network.add_hosts_file(hosts, runtime.namespace, runtime.ip, own_names)
        full_env["HOSTNAME"] = hostname
        argv = isolated_argv(hosts, [translate(a) for a in command], read_only)
        runtime.exec_context = (full_env, workdir, translate, hosts, read_only)
        probe = container.get("readinessProbe")

        restart_policy = runtime.pod["spec"].get("restartPolicy", "Always")
        restarts = 0
        while True:
            current = runtime.log_file(name)
            if restarts and os.path.exists(current):
                # the run before is what `kubectl logs --previous` reads (the kubelet keeps one)
                os.replace(current, current + ".previous")
            runtime.runs += 1
            log_file = open(current, "ab")
            await self.event(runtime, "Created", f"Created container {name}", field_path=field)
            try:
                runtime.proc = await asyncio.create_subprocess_exec(
                    *argv,
                    env=full_env,
                    cwd=workdir,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as e:
                log_file.close()
                message = f"failed to start {argv[0]!r}: {e}"
                await self.event(runtime, "Failed", f"Error: {message}", "Warning", field)
                await self.set_status(
                    runtime,
                    "Failed",
                    [
                        (
                            {
                                "terminated": {
                                    "exitCode": 127,
                                    "reason": "StartError",
                                    "message": message,
                                    "finishedAt": now(),
                                }
                            },
                            restarts,
                        )
                    ],
                    ready=False,
                    reason="StartError",
                    message=message,
                )
                return
            log_file.close()
            started = now()
            runtime.oom_killed = False
            memory_limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            guard = (
                asyncio.create_task(self._memory_guard(runtime, parse_bytes(memory_limit))) if memory_limit else None
            )
            await self.event(runtime, "Started", f"Started container {name}", field_path=field)
            await self.set_status(
                runtime, "Running", [({"running": {"startedAt": started}}, restarts)], ready=not probe
            )
            if probe:
                runtime.probe = asyncio.create_task(self._probe(runtime, container, probe, started, restarts, field))
            tracker = asyncio.create_task(self._track_tree(runtime))
            code = await runtime.proc.wait()
            tracker.cancel()
            if guard is not None:
                guard.cancel()
            if runtime.probe:
                runtime.probe.cancel()
                runtime.probe = None
            signal_group(runtime.proc.pid)  # nothing the container started outlives it
            kill_known(runtime.tree)  # also not what left its process group (a hub's services)
            if runtime.deleting:
                return
            with open(termination_local, errors="replace") as f:
                message = f.read(4096)
            if not message and code and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
                with open(runtime.log_file(name), errors="replace") as f:
                    message = "".join(f.readlines()[-80:])[-4096:]
            if runtime.oom_killed:
                code = 137
                await self.event(
                    runtime,
                    "OOMKilling",
                    f"Memory cgroup out of memory: killed container {name} (limit {memory_limit})",
                    "Warning",
                    field,
                )
            terminated = {
                "exitCode": code,
                "reason": "OOMKilled" if runtime.oom_killed else "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": now(),
                "containerID": f"kubebench://{runtime.uid}-0",
            }
            if message:
                terminated["message"] = message
            again = restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0)
            if not again:
                phase = "Succeeded" if code == 0 else "Failed"
                await self.set_status(runtime, phase, [({"terminated": terminated}, restarts)], ready=False)
                return
            restarts += 1
            delay = min(10 * 2 ** (restarts - 1), 300) / 10  # faster than the real 10 s .. 5 min
            await self.event(runtime, "BackOff", f"Back-off restarting failed container {name}", "Warning", field)
            await self.set_status(
                runtime,
                "Running",
                [
                    (
                        {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": f"back-off {delay:g}s restarting failed container",
                            }
                        },
                        restarts,
                    )
                ],
                ready=False,
            )
            await asyncio.sleep(delay)

    async def _track_tree(self, runtime, interval=0.5):
        """What the container starts, kept up to date: a process that leaves the container's
        process group (its own session) and outlives its parent is still the container's."""
        try:
            while runtime.proc.returncode is None:
                runtime.tree = {
                    pid: started for pid, started in runtime.tree.items() if process_start_time(pid) == started
                }
                runtime.tree.update(descendants(runtime.proc.pid))
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            pass

    async def _memory_guard(self, runtime, limit, interval=0.05):
        """The cgroup's memory limit: the container's processes (its process group) together may
        hold ``limit`` bytes resident; past it they are all killed."""
        pgid = runtime.proc.pid
        while runtime.proc.returncode is None:
            if rss_by_group().get(pgid, 0) > limit:
                runtime.oom_killed = True
                signal_group(pgid, signal.SIGKILL)
                return
            await asyncio.sleep(interval)

    async def _probe(self, runtime, container, probe, started, restarts, field):
        async def set_ready(ready):
            await self.set_status(runtime, "Running", [({"running": {"startedAt": started}}, restarts)], ready=ready)

        async def warn(message):
            await self.event(runtime, "Unhealthy", message, "Warning", field)

        async def run_exec(argv, timeout):
            proc = await self.start_in_pod(runtime, argv, stdin=False)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout)
            except asyncio.TimeoutError:
                signal_group(proc.pid)
                raise
            return proc.returncode, (out or b"").decode(errors="replace")

        try:
            await run_readiness(probe, container, runtime.ip, run_exec, set_ready, warn)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("readiness probe of %s/%s", runtime.namespace, runtime.name)

    async def start_in_pod(self, runtime, argv, stdin):
        """A process in the pod's environment (env, working dir, mounts, /etc/hosts), as exec runs it."""
        if runtime.exec_context is None or runtime.proc is None or runtime.proc.returncode is not None:
            raise ValueError(f"container not found or not running in pod {runtime.namespace}/{runtime.name}")
        if not argv:
            raise ValueError("no command given")
        env, workdir, translate, hosts, read_only = runtime.exec_context
        return await asyncio.create_subprocess_exec(
            *isolated_argv(hosts, [translate(a) for a in argv], read_only),
            env=env,
            cwd=workdir,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

    async def container_exec(self, request):
        namespace, pod = request.match_info["ns"], request.match_info["pod"]
        runtime = self.pods.get(self.by_name.get((namespace, pod)))
        if runtime is None:
            return web.Response(status=404, text=f"pod {namespace}/{pod} is not running on this kubelet")

        async def start(argv, stdin):
            return await self.start_in_pod(runtime, argv, stdin)

        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade == "websocket":
            return await execstream.serve_websocket(request, start)
        if upgrade.startswith("spdy/"):
            from .spdy import serve_spdy

            return await serve_spdy(request, start)
        return web.Response(status=400, text="exec needs a WebSocket or SPDY/3.1 upgrade")

    # ------------------------------------------------------------------ kubelet API (pods/log)

    async def container_logs(self, request):
        namespace, pod, container = request.match_info["ns"], request.match_info["pod"], request.match_info["container"]
        uid = self.by_name.get((namespace, pod))
        path = os.path.join(self.root, "pods", uid, f"{container}.log") if uid else None
        if request.query.get("previous") in ("true", "1"):
            # the container's run before its last restart, as it ended
            if not path or not os.path.exists(path + ".previous"):
                return web.json_response(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "code": 400,
                        "message": f'previous terminated container "{container}" in pod "{pod}" not found',
                        "reason": "BadRequest",
                    },
                    status=400,
                )
            path += ".previous"
            with open(path, "rb") as f:
                return web.Response(body=f.read(), content_type="text/plain")
        if not path or not os.path.exists(path):
            return web.Response(status=404, text=f"no logs for {namespace}/{pod}/{container}")
        tail = request.query.get("tailLines")
        follow = request.query.get("follow") in ("true", "1")
        log = open(path, "rb")  # followed as this handle: a restart starts a new file, this one ends
        try:
            data = log.read()
            if tail is not None:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(tail) :]) if int(tail) > 0 else b""
            limit = request.query.get("limitBytes")
            if limit:
                data = data[: int(limit)]
            if not follow:
                return web.Response(body=data, content_type="text/plain")
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            await response.write(data)
            runtime = self.pods.get(uid)
            run = runtime.runs if runtime else None
            while True:
                chunk = log.read()
                if chunk:
                    await response.write(chunk)
                    continue
                runtime = self.pods.get(uid)
                if (
                    runtime is None
                    or runtime.runs != run
                    or runtime.proc is None
                    or runtime.proc.returncode is not None
                ):
                    chunk = log.read()  # what the run wrote just before it ended
                    if chunk:
                        await response.write(chunk)
                    break
                await asyncio.sleep(0.2)
            return response
        finally:
            log.close()

    async def serve_kubelet_api(self, cert, key):
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        app.router.add_route("*", "/exec/{ns}/{pod}/{container}", self.container_exec)
        app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.kubelet_port, ssl_context=context)
        await site.start()
        return runner

    # ------------------------------------------------------------------ main

    async def run(self, cert, key, ready_file=None):
        _raise_fd_limit()
        runner = await self.serve_kubelet_api(cert, key)
        await self.register_nodes()
        tasks = [
            asyncio.create_task(self.heartbeat()),
            asyncio.create_task(self.watch_pods()),
            asyncio.create_task(self.bind_claims()),
            asyncio.create_task(self.watch_services()),
        ]
        if ready_file:
            with open(ready_file, "w") as f:
                f.write(str(os.getpid()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for runtime in list(self.pods.values()):
                await self._kill(runtime, grace=1)
            self.network.close()
            await runner.cleanup()
            await self.client.close()

    async def watch_services(self):
        async for kind, service in self.client.watch("/api/v1/services"):
            await self.network.service_changed(kind, service)

    def _running_pods(self):
        for runtime in list(self.pods.values()):
            if runtime.ready and not runtime.deleting:
                yield runtime.pod, runtime.ip, True


def _hub_version_header():
    # a responder stands in for jupyterhub-singleuser, which tells the hub its version
    try:
        from jupyterhub import __version__
    except ImportError:
        return b""
    return f"X-JupyterHub-Version: {__version__}\r\n".encode()


_HUB_VERSION_HEADER = _hub_version_header()


def _qos(pod):
    containers = pod["spec"]["containers"]
    requests = [c.get("resources", {}).get("requests") or {} for c in containers]
    limits = [c.get("resources", {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    if all(
        limit.get("cpu")
        and limit.get("memory")
        and (not r or (r.get("cpu") == limit.get("cpu") and r.get("memory") == limit.get("memory")))
        for r, limit in zip(requests, limits)
    ):
        return "Guaranteed"
    return "Burstable"


def _raise_fd_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(config_file):
    with open(config_file) as f:
        config = json.load(f)
    logging.basicConfig(
        level=config.get("log_level", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    kubelet = SimKubelet(
        config["server"],
        config["token"],
        config["root"],
        config["nodes"],
        mode=config.get("mode", "process"),
        missing_images=config.get("missing_images", ()),
        kubelet_port=config["kubelet_port"],
        events=config.get("events", True),
        path_prepend=config.get("path_prepend", ()),
        address_block=config.get("address_block", 0),
        status_exit_after=config.get("status_exit_after"),
    )
    run_component(kubelet.run(config["cert"], config["key"], config.get("ready_file")))


if __name__ == "__main__":
    main(sys.argv[1])
