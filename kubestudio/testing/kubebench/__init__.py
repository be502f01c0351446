"""The Kubernetes test bench: real control plane (Debian's 1.20.2 sources), simulated kubelet."""

from .bench import Bench, ExternalCluster, bench_from_env, load_nodes
from .controlplane import binaries_present, build, default_cache_dir

__all__ = ["Bench", "ExternalCluster", "bench_from_env", "load_nodes", "binaries_present", "build", "default_cache_dir"]
