"""KubeSpawner's ``safe_slug``, the one rule for Kubernetes names and subPaths of usernames
(loaded by :func:`kubestudio.kubespawner_api.slugs_module` without importing the spawner)."""

from .kubespawner_api import slugs_module

safe_slug = slugs_module().safe_slug
