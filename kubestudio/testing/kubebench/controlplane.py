"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, scheduler, controller-manager.

The binaries come from ``build.sh`` (Debian's kubernetes 1.20.2 source, built offline) in the
cache folder. Everything listens on free 127.0.0.1 ports; state lives in a root folder that
:meth:`ControlPlane.stop` can remove.
"""

import os
import secrets
import signal
import ssl
import subprocess
import time
import urllib.request

import yaml

from ..ports import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_SCRIPT = os.path.join(HERE, "build.sh")


def default_cache_dir():
    return os.environ.get("KUBESTUDIO_KUBEBENCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "kubestudio", "kubebench"
    )


def build(cache_dir=None):
    """Build the control plane into the cache (skipped when cached); returns the bin folder."""
    cache_dir = cache_dir or default_cache_dir()
    subprocess.run(["bash", BUILD_SCRIPT, cache_dir], check=True)
    return os.path.join(cache_dir, "bin")


def binaries_present(cache_dir=None):
    bin_dir = os.path.join(cache_dir or default_cache_dir(), "bin")
    names = ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "etcd", "kubectl")
    return all(os.access(os.path.join(bin_dir, n), os.X_OK) for n in names)


def write_kubeconfig(path, server, token, namespace="default"):
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubebench", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {"name": "kubebench", "context": {"cluster": "kubebench", "user": "admin", "namespace": namespace}}
        ],
        "current-context": "kubebench",
    }
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def self_signed_cert(cert, key, common_name):
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            f"/CN={common_name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )


class ControlPlane:
    def __init__(self, root, bin_dir=None):
        self.root = os.path.abspath(root)
        self.bin_dir = bin_dir or os.path.join(default_cache_dir(), "bin")
        self.token = secrets.token_hex(16)
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig = os.path.join(self.root, "kubeconfig.yaml")
        self.procs = {}

    def _bin(self, name):
        path = os.path.join(self.bin_dir, name)
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(
                f"{path} is missing: build the bench with `python -m kubestudio.testing.kubebench build`"
            )
        return path

    def _spawn(self, name, args):
        log = open(os.path.join(self.root, "logs", f"{name}.log"), "ab")
        self.procs[name] = subprocess.Popen(
            [self._bin(name)] + args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def log_tail(self, name, lines=30):
        try:
            with open(os.path.join(self.root, "logs", f"{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    def start(self, timeout=60):
        certs = os.path.join(self.root, "certs")
        for folder in ("etcd", "logs", "certs"):
            os.makedirs(os.path.join(self.root, folder), exist_ok=True)
        sa_key = os.path.join(certs, "sa.key")
        sa_pub = os.path.join(certs, "sa.pub")
        subprocess.run(["openssl", "genrsa", "-out", sa_key, "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", sa_key, "-pubout", "-out", sa_pub], check=True, capture_output=True)
        tokens = os.path.join(self.root, "tokens.csv")
        with open(tokens, "w") as f:
            f.write(f"{self.token},admin,admin-uid,system:masters\n")
        write_kubeconfig(self.kubeconfig, self.server, self.token)

        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self._spawn(
            "etcd",
            [
                "--data-dir",
                os.path.join(self.root, "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{self.etcd_peer_port}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes",
                str(4 * 1024**3),
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                "--insecure-port=0",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={certs}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--kubelet-preferred-address-types=InternalIP",
                "--max-requests-inflight=2000",
                "--max-mutating-requests-inflight=1000",
                "--event-ttl=2h",
            ],
        )
        self.wait_ready(timeout)
        common = [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--port=0",
            "--leader-elect=false",
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
        ]
        self._spawn("kube-scheduler", common)
        self._spawn(
            "kube-controller-manager",
            common
            + [
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={sa_key}",
                "--controllers=*,-serviceaccount-token",
                "--node-monitor-period=2s",
                "--concurrent-gc-syncs=50",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
            ],
        )
        return self

    def wait_ready(self, timeout=60):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in ("etcd", "kube-apiserver"):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
            request = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"kube-apiserver not ready in {timeout}s:\n{self.log_tail('kube-apiserver')}")

    def pids(self):
        return {name: p.pid for name, p in self.procs.items() if p.poll() is None}

    def stop(self):
        for name in ("kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = {}
