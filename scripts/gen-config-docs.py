#!/usr/bin/env python3
"""Regenerate the option lists of docs/configuration.md from the traits (run from the repository root)."""
import sys
sys.path.insert(0, ".")
from kubestudio.hub.config import KubeStudio
from kubestudio.spawner.local import LocalWorkspaceSpawner
from kubestudio.spawner.workspace import WorkspaceSpawner
from kubestudio.image_builder.app import ImageBuilder
from kubestudio.image_builder.backends.buildah import BuildahBackend
from kubestudio.image_builder.backends.kaniko import KanikoBackend

NOTES = {("LocalWorkspaceSpawner", "gpus"): "`None` (detect)", ("WorkspaceSpawner", "user_images_prefix"): "(set by configure() from the registry)",
         ("LocalWorkspaceSpawner", "user_images_prefix"): "(set by configure() from the registry)",
         ("LocalWorkspaceSpawner", "server_image"): "(set by configure(): the offline base)"}

def section(cls):
    out = [f"### `{cls.__name__}`", ""]
    for name, trait in sorted(cls.class_traits(config=True).items()):
        if cls is not KubeStudio and not any(name in k.__dict__ for k in cls.__mro__ if k.__module__.startswith("kubestudio")):
            continue
        dynamic = any(name in k.__dict__.get("_trait_default_generators", {}) for k in cls.__mro__
                      if k.__module__.startswith("kubestudio"))
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
doc = doc[:start] + "\n".join(section(c) for c in (KubeStudio, LocalWorkspaceSpawner, WorkspaceSpawner)) + "\n" + doc[end:]
images = "\n".join(section(c) for c in (ImageBuilder, BuildahBackend, KanikoBackend))
marker_start = "<!-- image-service-options -->"
marker_end = "<!-- /image-service-options -->"
block = f"""{marker_start}
### Image service (`c.ImageBuilder`, `c.BuildahBackend`, `c.KanikoBackend`)

The image service reads the same `jupyterhub_config.py` as the hub; `configure(c)` fills in the
defaults of the embedded hub (registry, store, workspace folders, buildah storage under
`data_dir`) wherever these options are not set.

{images}{marker_end}
"""
if marker_start in doc:
    doc = doc[:doc.index(marker_start)] + block + doc[doc.index(marker_end) + len(marker_end) + 1:]
else:
    at = doc.index("## Profile catalog")
    doc = doc[:at] + block + "\n" + doc[at:]
open("docs/configuration.md", "w").write(doc)
