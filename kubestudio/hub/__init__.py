"""Hub side of KubeStudio: ``configure(c)`` for jupyterhub_config.py and what services share."""

from .config import KubeStudio, configure

__all__ = ["KubeStudio", "configure"]
