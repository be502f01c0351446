"""Former path of :class:`kubestudio.jobs.training.backends.local.LocalJobBackend` (see the package)."""

from ..training.backends.local import LocalJobBackend

__all__ = ["LocalJobBackend"]
