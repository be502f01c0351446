#!/usr/bin/env python3
"""Regenerate the option lists of docs/configuration.md from the traits (run from the repository root)."""

import sys

sys.path.insert(0, ".")
from kubestudio.accounts import UserAccounts
from kubestudio.cgroups import Containment
from kubestudio.extensions.bridge import KubeStudioBridge
from kubestudio.hub.config import KubeStudio
from kubestudio.image_builder.app import ImageBuilder
from kubestudio.image_builder.backends.buildah import BuildahBackend
from kubestudio.image_builder.backends.kaniko import KanikoBackend
from kubestudio.jobs.app import JobService
from kubestudio.jobs.serving.backends.kubernetes import KubernetesServingBackend
from kubestudio.jobs.serving.backends.local import LocalServingBackend
from kubestudio.jobs.training.backends.kubernetes import KubernetesJobBackend
from kubestudio.jobs.training.backends.local import LocalJobBackend
from kubestudio.spawner.imagerun import ImageRunner
from kubestudio.spawner.local import LocalWorkspaceSpawner
from kubestudio.spawner.workspace import WorkspaceSpawner
from kubestudio.tensorboards.app import TensorBoardService
from kubestudio.tensorboards.backends.kubernetes import KubernetesBoardBackend
from kubestudio.tensorboards.backends.local import LocalBoardBackend

NOTES = {
    ("LocalWorkspaceSpawner", "gpus"): "`None` (detect)",
    ("WorkspaceSpawner", "user_images_prefix"): "(set by configure() from the registry)",
    ("LocalWorkspaceSpawner", "user_images_prefix"): "(set by configure() from the registry)",
    ("LocalWorkspaceSpawner", "server_image"): "(set by configure(): the offline base)",
    ("LocalJobBackend", "gpus"): "`None` (detect; configure() copies LocalWorkspaceSpawner.gpus)",
    ("LocalJobBackend", "python"): "(the hub's own Python)",
}


def section(cls):
    out = [f"### `{cls.__name__}`", ""]
    for name, trait in sorted(cls.class_traits(config=True).items()):
        if cls is not KubeStudio and not any(
            name in k.__dict__ for k in cls.__mro__ if k.__module__.startswith("kubestudio")
        ):
            continue
        dynamic = any(
            name in k.__dict__.get("_trait_default_generators", {})
            for k in cls.__mro__
            if k.__module__.startswith("kubestudio")
        )
        try:
            dv = "(computed)" if dynamic else trait.default_value_repr()
        except Exception:
            dv = "(computed)"
        if dv in ("traitlets.Undefined", "<traitlets.Undefined>") or "Undefined" in dv:
            dv = "(computed)"
        default = NOTES.get((cls.__name__, name)) or (f"`{dv}`" if dv != "(computed)" else dv)
        if dv == "''" and name in ("user_images_prefix",):
            default = NOTES[(cls.__name__, name)]
        help_ = " ".join(trait.help.split())
        out.append(f"- **`c.{cls.__name__}.{name}`** ({type(trait).__name__}, default {default}): {help_}")
    return "\n".join(out) + "\n"


doc = open("docs/configuration.md").read()
start = doc.index("### `KubeStudio`")
end = doc.index("WorkspaceSpawner also sets")
doc = (
    doc[:start]
    + "\n".join(
        section(c)
        for c in (KubeStudio, LocalWorkspaceSpawner, ImageRunner, UserAccounts, Containment, WorkspaceSpawner)
    )
    + "\n"
    + doc[end:]
)


def service_block(key, title, classes, intro):
    """A marked block of the reference for one service's options (replaced on each run)."""
    global doc
    start, end = f"<!-- {key}-options -->", f"<!-- /{key}-options -->"
    options = "\n".join(section(c) for c in classes)
    block = f"{start}\n### {title}\n\n{intro}\n\n{options}{end}\n"
    if start in doc:
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end) + 1 :]
    else:
        at = doc.index("## Profile catalog")
        doc = doc[:at] + block + "\n" + doc[at:]


SERVICE_INTRO = """Set them in `jupyterhub_config.py` as for the hub; the service never runs that file:
`configure(c)` fills in the embedded hub's defaults where an option is not set and hands the
service its sections in a config file of its own (`<data_dir>/{name}-service.json`, written again
when the hub starts the service, so settings made after `configure()` count)."""
service_block(
    "image-service",
    "Image service (`c.ImageBuilder`, `c.BuildahBackend`, `c.KanikoBackend`)",
    (ImageBuilder, BuildahBackend, KanikoBackend),
    SERVICE_INTRO.format(name="images"),
)
service_block(
    "jobs-service",
    "Jobs service (`c.JobService`, `c.LocalJobBackend`, `c.KubernetesJobBackend`, `c.LocalServingBackend`, "
    "`c.KubernetesServingBackend`)",
    (JobService, LocalJobBackend, KubernetesJobBackend, LocalServingBackend, KubernetesServingBackend),
    SERVICE_INTRO.format(name="jobs"),
)
service_block(
    "tensorboards-service",
    "TensorBoard service (`c.TensorBoardService`, `c.LocalBoardBackend`, `c.KubernetesBoardBackend`)",
    (TensorBoardService, LocalBoardBackend, KubernetesBoardBackend),
    SERVICE_INTRO.format(name="tensorboards"),
)
service_block(
    "lab-extension",
    "JupyterLab extension, in each server (`c.KubeStudioBridge`)",
    (KubeStudioBridge,),
    """The lab extension's handlers run in every single-user server (the server extension
`kubestudio.extensions`), not in the hub: set these in the server's Jupyter config (a
`jupyter_server_config.py` in the image) or on its command line, e.g.
`c.Spawner.args = ["--KubeStudioBridge.idle_poll_seconds=30"]` in `jupyterhub_config.py`.""",
)
open("docs/configuration.md", "w").write(doc)
