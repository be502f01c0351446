"""Former path of :class:`kubestudio.jobs.training.backends.kubernetes.KubernetesJobBackend` (see the
package)."""

from ..training.backends.kubernetes import KubernetesJobBackend

__all__ = ["KubernetesJobBackend"]
