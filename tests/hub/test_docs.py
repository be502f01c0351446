"""The configuration reference lists every option a user can set."""

import os

from kubestudio.cgroups import Containment
from kubestudio.hub.config import KubeStudio
from kubestudio.image_builder.app import ImageBuilder
from kubestudio.image_builder.backends.buildah import BuildahBackend
from kubestudio.image_builder.backends.kaniko import KanikoBackend
from kubestudio.jobs.app import JobService
from kubestudio.jobs.training.backends.local import LocalJobBackend
from kubestudio.spawner.local import LocalWorkspaceSpawner
from kubestudio.spawner.workspace import WorkspaceSpawner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_option_is_documented_with_help():
    with open(os.path.join(REPO, "docs", "configuration.md")) as f:
        reference = f.read()
    for cls in (
        KubeStudio,
        LocalWorkspaceSpawner,
        WorkspaceSpawner,
        ImageBuilder,
        BuildahBackend,
        KanikoBackend,
        JobService,
        LocalJobBackend,
        Containment,
    ):
        for name, trait in cls.class_traits(config=True).items():
            if cls is not KubeStudio and not any(
                name in k.__dict__ for k in cls.__mro__ if k.__module__.startswith("kubestudio")
            ):
                continue  # JupyterHub's and KubeSpawner's own options are documented by them
            assert trait.help.strip(), f"{cls.__name__}.{name} has no help"
            assert f"c.{cls.__name__}.{name}`" in reference, f"{cls.__name__}.{name} missing from docs"
