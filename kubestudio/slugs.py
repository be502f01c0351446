"""KubeSpawner's ``safe_slug``, the one rule for Kubernetes names and subPaths of usernames.

Loaded from kubespawner's own ``slugs.py`` without importing the ``kubespawner`` package, whose
``__init__`` imports the whole spawner and the Kubernetes client: seconds at every start of a
hub service that only needs a user's folder name. Where the package is imported already (the
hub), its module is used.
"""

import importlib.util
import os
import sys


def _kubespawner_slugs():
    if "kubespawner.slugs" in sys.modules:
        return sys.modules["kubespawner.slugs"]
    package = importlib.util.find_spec("kubespawner")  # finds the package, does not run it
    path = os.path.join(os.path.dirname(package.origin), "slugs.py")
    spec = importlib.util.spec_from_file_location("kubestudio._kubespawner_slugs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


safe_slug = _kubespawner_slugs().safe_slug
