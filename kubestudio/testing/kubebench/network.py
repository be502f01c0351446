"""Service names and addresses for process-mode pods: the bench's stand-in for cluster DNS and
kube-proxy.

Each Service gets a loopback address of its own (127.2.x.y on the first bench, like a ClusterIP) and, for every
port, a TCP forwarder there to a ready endpoint (``targetPort`` on the pod's 127.1.x.y). The
endpoints are computed here as the endpoints controller does (the pods the selector matches that
are Ready; a named ``targetPort`` looked up in each pod's container ports): the real controller
cannot write them, because the apiserver refuses loopback addresses in Endpoints. A headless Service (``clusterIP: None``) resolves to its
endpoints' addresses, and ``<hostname>.<service>`` names to each pod, as the Training Operator's
per-replica Services expect.

Names reach the pod's process through its own ``/etc/hosts``: the kubelet starts the container
in a private mount namespace with a hosts file bind-mounted over ``/etc/hosts`` (root only; the
bench runs as root), and rewrites that file in place whenever a Service or its endpoints change.
A pod resolves ``<svc>``, ``<svc>.<ns>``, ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local``
for its own namespace, and the qualified names for the others.
"""

import asyncio
import ipaddress
import itertools
import logging
import os
import shlex

from ...image_builder.backends.netfwd import splice

log = logging.getLogger("kubebench.network")

CLUSTER_DOMAIN = "cluster.local"
ADDRESS_BLOCKS = 63  # 127.1-126.x.y: two /16 per bench


def address_octets(block):
    """(pods, Services) second octets of address block ``block``: the first bench on a machine
    has pods on 127.1.x.y and Services on 127.2.x.y, the next 127.3 and 127.4, and so on, so
    benches side by side (test workers, two test runs) never hand out the same address."""
    if not 0 <= block < ADDRESS_BLOCKS:
        raise ValueError(f"address block must be 0-{ADDRESS_BLOCKS - 1}, not {block}")
    return 2 * block + 1, 2 * block + 2


class ServiceNetwork:
    """Service addresses, forwarders and the hosts files of the pods that use them."""

    def __init__(self, pods, octet=2):
        """``pods()`` yields the pods running now as (pod object, address, ready); Services get
        addresses from 127.<octet>.0.0/16."""
        self.pods = pods
        net = ipaddress.ip_network(f"127.{octet}.0.0/16")
        self._free = (str(ip) for ip in itertools.islice(net.hosts(), 1, None))
        self.services = {}  # (namespace, name) -> Service object
        self.addresses = {}  # (namespace, name) -> bench ClusterIP
        self.forwarders = {}  # (namespace, name) -> {port: asyncio.Server}
        self.hosts_files = {}  # path -> (namespace, pod address, pod names)
        self._turn = itertools.count()

    # ------------------------------------------------------------------ what the watch says

    async def service_changed(self, kind, service):
        key = (service["metadata"]["namespace"], service["metadata"]["name"])
        if kind == "DELETED":
            self.services.pop(key, None)
            await self._close_forwarders(key)
        else:
            self.services[key] = service
            if not self.headless(service):
                await self._open_forwarders(key, service)
        self.write_hosts_files()

    @staticmethod
    def headless(service):
        return (service.get("spec") or {}).get("clusterIP") == "None"

    # ------------------------------------------------------------------ names

    def endpoints(self, key, port_spec=None):
        """[(address, port, pod)] of the ready pods behind a Service (port: the target of
        ``port_spec``, None without one)."""
        service = self.services.get(key)
        selector = ((service or {}).get("spec") or {}).get("selector")
        if not selector:
            return []
        found = []
        for pod, address, ready in self.pods():
            labels = pod["metadata"].get("labels") or {}
            if (
                not ready
                or pod["metadata"]["namespace"] != key[0]
                or any(labels.get(k) != v for k, v in selector.items())
            ):
                continue
            port = _target_port(pod, port_spec) if port_spec else None
            if port_spec and port is None:
                continue
            found.append((address, port, pod))
        return found

    def entries(self, namespace):
        """(address, names) lines for a pod in ``namespace``."""
        lines = []
        for (ns, name), service in sorted(self.services.items()):
            short = [name, f"{name}.{ns}"] if ns == namespace else [f"{name}.{ns}"]
            names = short + [f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"]
            if not self.headless(service):
                if (ns, name) in self.addresses:
                    lines.append((self.addresses[(ns, name)], names))
                continue
            for address, _, pod in self.endpoints((ns, name)):
                lines.append((address, names))
                spec = pod["spec"]
                if spec.get("hostname") and spec.get("subdomain") == name:
                    lines.append((address, [f"{spec['hostname']}.{n}" for n in names]))
        return lines

    def hosts_text(self, namespace, pod_ip=None, pod_names=()):
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if pod_ip and pod_names:
            lines.append(f"{pod_ip}\t{' '.join(pod_names)}")
        lines += [f"{address}\t{' '.join(names)}" for address, names in self.entries(namespace)]
        return "\n".join(lines) + "\n"

    def add_hosts_file(self, path, namespace, pod_ip, pod_names):
        self.hosts_files[path] = (namespace, pod_ip, tuple(pod_names))
        with open(path, "w") as f:
            f.write(self.hosts_text(namespace, pod_ip, pod_names))

    def remove_hosts_file(self, path):
        self.hosts_files.pop(path, None)

    def write_hosts_files(self):
        for path, (namespace, pod_ip, pod_names) in list(self.hosts_files.items()):
            text = self.hosts_text(namespace, pod_ip, pod_names)
            try:
                # in place: the pod's /etc/hosts is a bind mount of this very file (same inode)
                with open(path, "r+") as f:
                    f.seek(0)
                    f.write(text)
                    f.truncate()
            except FileNotFoundError:
                self.hosts_files.pop(path, None)

    # ------------------------------------------------------------------ forwarding (kube-proxy)

    async def _open_forwarders(self, key, service):
        if key not in self.addresses:
            self.addresses[key] = next(self._free)
        address = self.addresses[key]
        wanted = {
            p["port"]: p for p in (service.get("spec") or {}).get("ports") or [] if p.get("protocol", "TCP") == "TCP"
        }
        servers = self.forwarders.setdefault(key, {})
        for port in set(servers) - set(wanted):
            servers.pop(port).close()
        for port, spec in wanted.items():
            if port in servers:
                continue
            try:
                servers[port] = await asyncio.start_server(
                    lambda r, w, key=key, spec=spec: self._forward(key, spec, r, w), address, port
                )
            except OSError as e:
                log.warning("service %s/%s port %s: cannot listen on %s: %s", *key, port, address, e)

    async def _close_forwarders(self, key):
        for server in (self.forwarders.pop(key, None) or {}).values():
            server.close()
        self.addresses.pop(key, None)

    def _target(self, key, spec):
        """A ready endpoint (address, port) for the service port ``spec``, round robin."""
        choices = [(address, port) for address, port, _ in self.endpoints(key, spec)]
        return choices[next(self._turn) % len(choices)] if choices else None

    async def _forward(self, key, spec, reader, writer):
        target = self._target(key, spec)
        if target is None:  # no ready endpoint: refused, as kube-proxy's REJECT rule does
            writer.close()
            return
        # both ways until both ends are done, as the build sandbox's forwards do
        await splice(reader, writer, lambda: asyncio.open_connection(*target))

    def close(self):
        for servers in self.forwarders.values():
            for server in servers.values():
                server.close()
        self.forwarders.clear()


def _target_port(pod, port_spec):
    """The pod port a service port sends to: ``targetPort`` (a number or a container port's name),
    else the service port itself."""
    target = port_spec.get("targetPort", port_spec.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return port["containerPort"]
    return None


def isolated_argv(hosts_file, argv, read_only=()):
    """``argv`` run in a private mount namespace whose /etc/hosts is ``hosts_file``, and where the
    folders ``read_only`` (a pod's ``readOnly`` volume mounts) cannot be written to, by root either."""
    if os.geteuid() != 0:
        return argv  # without root there is no mount namespace: names resolve as on the machine
    steps = ['mount --bind "$0" /etc/hosts']
    for folder in read_only:
        quoted = shlex.quote(folder)
        steps.append(f"mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted}")
    script = " && ".join(steps) + ' && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, hosts_file, *argv]
