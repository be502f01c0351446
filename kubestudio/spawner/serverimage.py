"""The image a server gets on Kubernetes when its user picks nothing, read from the hub's
configuration alone.

The jobs and TensorBoard services run what a user starts outside a server (the jobs page, a
board) in that same image, so the page, the terminal and the notebook see one environment. The
services never load the spawner: the hub works the image out here when it writes their config.
It follows what :class:`WorkspaceSpawner` does with an empty form, in its order:

1. a KubeSpawner ``profile_list``: its default entry's ``kubespawner_override.image`` (a callable
   one is evaluated only at a spawn, so rule 3 applies to it);
2. else KubeStudio's catalog: the default profile's first image (the shipped example catalog
   yields to an image the admin set on KubeSpawner, as the spawn form shows);
3. else ``KubeSpawner.image`` (WorkspaceSpawner's setting wins), else KubeSpawner's own default.
"""

from .profiles import load_catalog_cached, yielded_to

# sections an admin may set the servers' settings in; the later one wins, as traitlets merges them
SECTIONS = ("KubeSpawner", "WorkspaceSpawner")


def spawner_settings(c):
    """The servers' settings from ``c`` (traitlets Config), WorkspaceSpawner's over KubeSpawner's."""
    settings = {}
    for section in SECTIONS:
        if section in c:
            settings.update(c[section])
    return settings


def default_profile_entry(profile_list):
    """The entry KubeSpawner starts with when the form names none: the one marked default, else the first."""
    for entry in profile_list:
        if entry.get("default"):
            return entry
    return profile_list[0]


def default_server_image(c):
    """The image of a server started with an empty form on Kubernetes; None on the embedded default."""
    from kubespawner import KubeSpawner  # the hub's spawner: already loaded where this runs

    spawner_class = c.JupyterHub.get("spawner_class") if "JupyterHub" in c else None
    if not (isinstance(spawner_class, type) and issubclass(spawner_class, KubeSpawner)):
        return None
    settings = spawner_settings(c)
    configured = settings.get("image")
    profile_list = settings.get("profile_list")
    if profile_list:
        # a profile_list decides when the form names nothing; a callable one only the hub can ask
        override = {} if callable(profile_list) else default_profile_entry(profile_list).get("kubespawner_override")
        if isinstance((override or {}).get("image"), str):
            return override["image"]
    elif settings.get("profiles_file"):
        catalog = load_catalog_cached(settings["profiles_file"])
        if settings.get("shipped_catalog"):
            catalog = yielded_to(catalog, configured)
        if catalog.default.images:
            return catalog.default.images[0].image
    return configured or KubeSpawner.class_traits()["image"].default_value
