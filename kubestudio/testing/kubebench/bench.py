"""The Kubernetes test bench: a real control plane, the CRDs, a simulated kubelet, a fault proxy.

    with Bench(tmp_path).start() as bench:
        subprocess.run(["kubectl", "--kubeconfig", bench.kubeconfig, "get", "nodes"])

``KUBESTUDIO_TEST_KUBECONFIG`` points the same tests at a real cluster instead
(:func:`bench_from_env`); then there is no simulated kubelet and no fault proxy.
"""

import copy
import fcntl
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import requests
import urllib3
import yaml

from ...portclaims import shared_folder
from .. import crds
from ..ports import free_port
from .controlplane import (
    ControlPlane,
    default_cache_dir,
    self_signed_cert,
    write_kubeconfig,
)
from .network import ADDRESS_BLOCKS, address_octets

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEFAULT_NODES = os.path.join(HERE, "nodes-default.yaml")

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def claim_address_block():
    """(open lock file, block number) of a loopback address block no other bench on this machine
    uses (network.address_octets): its lock is held until the file is closed or the process ends."""
    folder = shared_folder("kubestudio-kubebench-addresses")
    if folder is None:
        raise RuntimeError(
            f"{tempfile.gettempdir()}/kubestudio-kubebench-addresses is not a folder this bench can trust"
        )
    try:
        return _claim_block(folder)
    finally:
        os.close(folder)


def _claim_block(folder):
    for block in range(ADDRESS_BLOCKS):
        fd = os.open(f"block-{block}.lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=folder)
        lock = os.fdopen(fd, "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return lock, block
    raise RuntimeError(f"all {ADDRESS_BLOCKS} loopback address blocks are taken by other benches on this machine")


ARGO_CRDS = ("argoproj.io_workflows.yaml", "argoproj.io_cronworkflows.yaml")


def default_crds_dir():
    return os.environ.get("KUBESTUDIO_CRDS_DIR") or os.path.join(os.path.dirname(REPO_ROOT), "shared", "crds")


def crds_missing_reason(crds_dir=None):
    """Why the upstream CRD schemas cannot be installed, or None when they are there."""
    crds_dir = crds_dir or default_crds_dir()
    if glob.glob(os.path.join(crds_dir, "*.yaml")):
        return None
    return (
        f"the upstream CRD schemas (Kubeflow, KServe) are not here: no *.yaml in {crds_dir} "
        f"(put them in ../shared/crds beside the repository or set KUBESTUDIO_CRDS_DIR)"
    )


def load_nodes(path_or_list=None):
    if path_or_list is None:
        path_or_list = DEFAULT_NODES
    if isinstance(path_or_list, str):
        with open(path_or_list) as f:
            data = yaml.safe_load(f) or {}
        path_or_list = data.get("nodes", data if isinstance(data, list) else [])
    nodes = []
    for spec in path_or_list:
        count = int(spec.get("count", 1))
        for i in range(count):
            node = {k: v for k, v in spec.items() if k != "count"}
            if count > 1:
                node["name"] = f"{spec['name']}-{i}"
            nodes.append(node)
    names = [n["name"] for n in nodes]
    if len(set(names)) != len(names):
        raise ValueError(f"node names must be unique: {names}")
    return nodes


# Kubernetes 1.20 does not know these schema fields (CEL rules came in 1.23/1.25); the apiserver
# would drop them silently, so we drop them ourselves and say so.
UNSUPPORTED_SCHEMA_FIELDS = ("x-kubernetes-validations",)


def adapt_crd_for_1_20(crd, empty_defaults=True):
    """Remove schema fields 1.20 cannot take; returns (crd, {field: count}).

    With ``empty_defaults``, also drop ``default: ""`` on strings (some of which 1.20's
    defaulting validation reads as null and refuses), making list-map keys required instead.
    """
    crd = copy.deepcopy(crd)
    removed = {}

    def strip(node):
        if isinstance(node, dict):
            for field in UNSUPPORTED_SCHEMA_FIELDS:
                if field in node:
                    del node[field]
                    removed[field] = removed.get(field, 0) + 1
            items = node.get("items") if isinstance(node.get("items"), dict) else {}
            for key in (node.get("x-kubernetes-list-map-keys") or []) if empty_defaults else []:
                if (items.get("properties", {}).get(key) or {}).get("default") == "":
                    # a list-map key needs a default or to be required; without the default, required
                    required = items.setdefault("required", [])
                    if key not in required:
                        required.append(key)
                        removed["list-map key made required"] = removed.get("list-map key made required", 0) + 1
            if empty_defaults and node.get("default") == "" and node.get("type") == "string":
                # 1.20's defaulting validation reads an empty-string default as null and refuses
                # the CRD; an empty default and no default read the same for these fields
                del node["default"]
                removed['default: ""'] = removed.get('default: ""', 0) + 1
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    for version in crd.get("spec", {}).get("versions", []):
        strip(version.get("schema"))
    return crd, removed


def run_kubectl(kubectl, kubeconfig, *args, check=True, timeout=60, **kwargs):
    return subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        **kwargs,
    )


class Bench:
    def __init__(
        self,
        root,
        nodes=None,
        mode="process",
        missing_images=(),
        crds=True,
        fault_proxy=True,
        events=True,
        cache_dir=None,
        path_prepend=(),
        operators=True,
        status_exit_after=None,
    ):
        self.root = os.path.abspath(root)
        self.nodes = load_nodes(nodes)
        self.mode = mode
        self.missing_images = list(missing_images)
        self.install_crds = crds
        self.with_fault_proxy = fault_proxy
        self.events = events
        self.path_prepend = list(path_prepend)
        self.with_operators = operators
        self.status_exit_after = status_exit_after  # status mode: containers end (exit 0) after this
        self.control_plane = ControlPlane(
            os.path.join(self.root, "control-plane"), os.path.join(cache_dir or default_cache_dir(), "bin")
        )
        self.kubectl_bin = os.path.join(self.control_plane.bin_dir, "kubectl")
        self.kubelet_proc = None
        self.operators_proc = None
        self.proxy_proc = None
        self.proxy_url = None
        self.proxy_kubeconfig = None
        self.crd_report = {}
        self.crds_missing = None  # why the CRDs were not installed, when they could not be
        self.katib_db_manager = None  # host:port of the simulated Katib's DB manager (gRPC)
        self._address_lock = None
        self.address_block = None
        self.pod_net_prefix = None  # "127.1." on the first bench of a machine: pods' addresses start so

    # ------------------------------------------------------------------ lifecycle

    @property
    def kubeconfig(self):
        return self.control_plane.kubeconfig

    @property
    def server(self):
        return self.control_plane.server

    @property
    def token(self):
        return self.control_plane.token

    def start(self, timeout=120):
        os.makedirs(self.root, exist_ok=True)
        self._address_lock, self.address_block = claim_address_block()
        self.pod_net_prefix = f"127.{address_octets(self.address_block)[0]}."
        try:
            self.control_plane.start()
            if self.install_crds:
                # the bench always starts: without the upstream schemas only the tests of the
                # custom resources are skipped (they say why)
                self.crds_missing = crds_missing_reason()
                if not self.crds_missing:
                    self.crd_report = self.apply_crds()
            self._start_kubelet()
            if self.install_crds and not self.crds_missing and self.with_operators:
                # the simulated Training Operator and Trainer act on the custom resources
                self.operators_proc, ready = self._python_component(
                    "operators", "kubestudio.testing.kubebench.operators", {"server": self.server, "token": self.token}
                )
                self.katib_db_manager = json.loads(ready)["katib_db_manager"]
            if self.with_fault_proxy:
                self._start_fault_proxy()
            self.wait_nodes_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _python_component(self, name, module, config):
        config_file = os.path.join(self.root, f"{name}.json")
        ready_file = os.path.join(self.root, f"{name}.ready")
        if os.path.exists(ready_file):
            os.unlink(ready_file)
        with open(config_file, "w") as f:
            json.dump({**config, "ready_file": ready_file}, f)
        log = open(os.path.join(self.root, f"{name}.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", module, config_file], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 30
        while not os.path.exists(ready_file):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{self.log_tail(name)}")
            time.sleep(0.05)
        with open(ready_file) as f:
            return proc, f.read().strip()

    def _start_kubelet(self):
        cert = os.path.join(self.root, "kubelet.crt")
        key = os.path.join(self.root, "kubelet.key")
        self_signed_cert(cert, key, "kubebench-kubelet")
        self.kubelet_port = free_port()
        self.kubelet_proc, _ = self._python_component(
            "kubelet",
            "kubestudio.testing.kubebench.kubelet",
            {
                "server": self.server,
                "token": self.token,
                "root": os.path.join(self.root, "kubelet"),
                "nodes": self.nodes,
                "mode": self.mode,
                "missing_images": self.missing_images,
                "kubelet_port": self.kubelet_port,
                "cert": cert,
                "key": key,
                "events": self.events,
                "path_prepend": self.path_prepend,
                "address_block": self.address_block,
                "status_exit_after": self.status_exit_after,
            },
        )

    def _start_fault_proxy(self):
        self.proxy_proc, port = self._python_component(
            "faultproxy",
            "kubestudio.testing.kubebench.faultproxy",
            {
                "upstream": self.server,
                "port": free_port(),
                "cert": os.path.join(self.root, "kubelet.crt"),
                "key": os.path.join(self.root, "kubelet.key"),
            },
        )
        self.proxy_url = f"https://127.0.0.1:{port}"
        self.proxy_kubeconfig = write_kubeconfig(
            os.path.join(self.root, "kubeconfig-proxy.yaml"), self.proxy_url, self.token
        )

    def stop(self):
        for proc in (self.proxy_proc, self.operators_proc, self.kubelet_proc):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.proxy_proc = self.operators_proc = self.kubelet_proc = None
        self.control_plane.stop()
        if self._address_lock is not None:  # the kubelet that used the block is gone
            self._address_lock.close()
            self._address_lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, name, lines=40):
        try:
            with open(os.path.join(self.root, f"{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return self.control_plane.log_tail(name, lines)

    def pids(self):
        pids = dict(self.control_plane.pids())
        for name, proc in (
            ("kubelet", self.kubelet_proc),
            ("operators", self.operators_proc),
            ("faultproxy", self.proxy_proc),
        ):
            if proc is not None and proc.poll() is None:
                pids[name] = proc.pid
        return pids

    # ------------------------------------------------------------------ API helpers

    def api(self, method, path, **kwargs):
        kwargs.setdefault("timeout", 30)
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.server + path, headers=headers, verify=False, **kwargs)

    def wait_nodes_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        names = {n["name"] for n in self.nodes}
        while time.monotonic() < deadline:
            if self.kubelet_proc is not None and self.kubelet_proc.poll() is not None:
                raise RuntimeError(f"simulated kubelet exited:\n{self.log_tail('kubelet')}")
            items = self.api("GET", "/api/v1/nodes").json().get("items", [])
            ready = set()
            for node in items:
                conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
                taints = [t["key"] for t in node.get("spec", {}).get("taints") or []]
                if conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
                    ready.add(node["metadata"]["name"])
            if names <= ready:
                return
            time.sleep(0.5)
        raise TimeoutError(f"nodes not Ready in {timeout}s")

    def apply_crds(self, crds_dir=None):
        """Install every CRD in ``crds_dir``; returns what had to be changed for 1.20."""
        crds_dir = crds_dir or default_crds_dir()
        paths = sorted(glob.glob(os.path.join(crds_dir, "*.yaml")))
        # Katib's and Argo's are in folders of their own; of Argo's, the kinds the bench's controller runs
        paths += sorted(glob.glob(os.path.join(crds_dir, "katib", "*.yaml")))
        argo = [os.path.join(crds_dir, "argo", name) for name in ARGO_CRDS]
        paths += [path for path in argo if os.path.exists(path)]
        if not paths:
            raise FileNotFoundError(
                f"no CRDs in {crds_dir}: the bench expects ../shared/crds beside the repository "
                f"(or set KUBESTUDIO_CRDS_DIR, or crds=False)"
            )
        report = {}
        names = []
        for path in paths:
            # parsed once per process, with libyaml (kubestudio.testing.crds)
            for doc in crds.load_documents(path):
                if doc.get("kind") != "CustomResourceDefinition":
                    continue
                # as close to the original as 1.20 takes: first without CEL rules only
                crd, removed = adapt_crd_for_1_20(doc, empty_defaults=False)
                crd["metadata"].pop("annotations", None)
                r = self.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd, timeout=60)
                if r.status_code == 422 and "].default: Invalid value" in r.text:
                    crd, removed = adapt_crd_for_1_20(doc)
                    crd["metadata"].pop("annotations", None)
                    r = self.api(
                        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd, timeout=60
                    )
                if r.status_code not in (201, 409):
                    raise RuntimeError(
                        f"CRD {crd['metadata']['name']} from {path} refused: {r.status_code} {r.text[:500]}"
                    )
                report[crd["metadata"]["name"]] = removed
                names.append(crd["metadata"]["name"])
        deadline = time.monotonic() + 60
        for name in names:
            while True:
                crd = self.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
                conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
                if conditions.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not Established")
                time.sleep(0.2)
        return report

    # ------------------------------------------------------------------ faults and counters

    def set_faults(self, rules=None, latency_ms=0, drop_watch_after_s=None):
        r = requests.put(
            f"{self.proxy_url}/_kubebench/faults",
            json={"rules": rules or [], "latency_ms": latency_ms, "drop_watch_after_s": drop_watch_after_s},
            timeout=10,
            verify=False,
        )
        r.raise_for_status()
        return r.json()

    def counts(self, reset=False):
        r = requests.request(
            "DELETE" if reset else "GET", f"{self.proxy_url}/_kubebench/counts", timeout=10, verify=False
        )
        r.raise_for_status()
        return r.json()

    # ------------------------------------------------------------------ tools

    def kubectl(self, *args, through_proxy=False, **kwargs):
        config = self.proxy_kubeconfig if through_proxy else self.kubeconfig
        return run_kubectl(self.kubectl_bin, config, *args, **kwargs)

    def pod_log(self, namespace, pod, container=None):
        """The kept output of a pod's container, read from the simulated kubelet's files."""
        obj = self.api("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}").json()
        uid = obj["metadata"]["uid"]
        container = container or obj["spec"]["containers"][0]["name"]
        with open(os.path.join(self.root, "kubelet", "pods", uid, f"{container}.log"), errors="replace") as f:
            return f.read()

    def volume_folder(self, namespace, claim, sub_path=""):
        """Where a PVC (+ subPath) lives on this machine in process mode."""
        base = os.path.join(self.root, "kubelet", "volumes", "pvc", namespace, claim)
        return os.path.join(base, sub_path) if sub_path else base


class ExternalCluster:
    """A real cluster named by KUBESTUDIO_TEST_KUBECONFIG, for the same tests."""

    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig
        self.proxy_kubeconfig = None
        self.kubectl_bin = "kubectl"

    def start(self):
        return self

    def stop(self):
        pass

    def kubectl(self, *args, **kwargs):
        return run_kubectl(self.kubectl_bin, self.kubeconfig, *args, **kwargs)


def bench_from_env(root, **kwargs):
    kubeconfig = os.environ.get("KUBESTUDIO_TEST_KUBECONFIG")
    if kubeconfig:
        return ExternalCluster(kubeconfig)
    return Bench(root, **kwargs)
