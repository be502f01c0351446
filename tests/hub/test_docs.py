"""The configuration reference lists every option a user can set."""

import os

from kubestudio.hub.config import KubeStudio
from kubestudio.spawner.local import LocalWorkspaceSpawner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_option_is_documented_with_help():
    with open(os.path.join(REPO, "docs", "configuration.md")) as f:
        reference = f.read()
    for cls in (KubeStudio, LocalWorkspaceSpawner):
        for name, trait in cls.class_traits(config=True).items():
            if cls is LocalWorkspaceSpawner and name not in cls.__dict__:
                continue  # JupyterHub's own Spawner options are documented by JupyterHub
            assert trait.help.strip(), f"{cls.__name__}.{name} has no help"
            assert f"c.{cls.__name__}.{name}`" in reference, f"{cls.__name__}.{name} missing from docs"
