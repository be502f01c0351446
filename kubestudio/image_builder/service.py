"""The image service as the hub sees it: name, scopes, roles, config sections and defaults.

Light on purpose: the hub imports this module only (never the service's app or handlers).
"""

import os

from ..names import (
    HUB_CLIENT_SERVICE,
    IMAGES_ADMIN_SCOPE,
    IMAGES_BUILD_SCOPE,
    IMAGES_SERVICE,
    LOCAL_PYTHON_BASE,
    WORKSPACE_CLAIM,
)
from ..serverimage import REPOSITORY, server_image_tag
from ..services.declare import ServiceDeclaration


def roles(admin_users):
    access = f"access:services!service={IMAGES_SERVICE}"
    find = f"read:services!service={IMAGES_SERVICE}"  # the client finds the service's address through the hub
    return [
        {"name": "user", "scopes": ["self", access, find, IMAGES_BUILD_SCOPE]},
        # a notebook server's own token may call the service for its owner (the `kubestudio` CLI)
        {
            "name": "server",
            "scopes": ["users:activity!user", "access:servers!server", access, find, IMAGES_BUILD_SCOPE],
        },
        {"name": "kubestudio-images-admin", "scopes": [IMAGES_ADMIN_SCOPE, access], "users": list(admin_users)},
        # the service reads users' servers and groups, and asks a server for its packages (from_server)
        {
            "name": "kubestudio-images-service",
            "scopes": ["read:users", "read:servers", "read:groups", "access:servers"],
            "services": [IMAGES_SERVICE],
        },
        # the hub lists a user's built images on the spawn form
        {"name": "kubestudio-hub-images", "scopes": [IMAGES_ADMIN_SCOPE, access], "services": [HUB_CLIENT_SERVICE]},
    ]


def local_base_images(server=True):
    """The images the embedded default's image service makes itself: a Python base from Debian
    packages, so the first builds need no internet (its Python is the one local servers run,
    Debian 12's 3.11), and on it, with ``server``, KubeStudio's local single-user image that servers
    run in."""
    bases = [
        {
            "image": LOCAL_PYTHON_BASE,
            "suite": "bookworm",
            "packages": ["python3", "python3-pip", "python3-venv", "ca-certificates"],
            "description": "Debian 12 with Python 3.11 and pip, made on this machine",
        }
    ]
    if server:
        bases.append(
            {
                "image": f"{REPOSITORY}:{server_image_tag()}",
                "from": LOCAL_PYTHON_BASE,
                "server": True,
                "python": "3.11.2",
                "description": "KubeStudio's single-user image: the base with JupyterLab "
                "and jupyterhub at this hub's versions",
            }
        )
    return bases


def defaults(studio, c, data):
    """Fill in the image service's settings where c.ImageBuilder etc. do not set them."""

    def setdefault(section, key, value):
        if key not in c[section]:
            c[section][key] = value

    setdefault("ImageBuilder", "registry_host", studio.registry_host())
    if not studio.registry:
        setdefault("ImageBuilder", "registry_insecure", True)
        # the local registry's gate lets only this account push
        setdefault("ImageBuilder", "registry_auth_file", studio.local_registry_auth(data, "push"))
        setdefault("ImageBuilder", "registry_grants_dir", studio.local_registry_grants(data))
    elif studio.registry_gate():
        # build pods pull and push through the gate, each with the account of its grant; the gate's
        # address is one more name of the registry (a Dockerfile may spell it)
        gate = studio.registry_gate()
        setdefault("ImageBuilder", "registry_grants_dir", studio.local_registry_grants(data))
        aliases = list(c.ImageBuilder.get("registry_aliases", []))
        c.ImageBuilder.registry_aliases = aliases + ([gate] if gate not in aliases else [])
        setdefault("KanikoBackend", "registry_gate", gate)
    setdefault("ImageBuilder", "work_dir", os.path.join(data, "build-contexts"))
    setdefault("ImageBuilder", "proxy_url", studio.bind_url)
    if studio.spawner == "local":
        setdefault("ImageBuilder", "base_images", local_base_images())
        setdefault("ImageBuilder", "workspaces_root", os.path.join(data, "users"))
        setdefault("ImageBuilder", "workspace_pattern", "{root}/{user_slug}/mnt")
        setdefault("BuildahBackend", "storage_root", os.path.join(data, "buildah", "storage"))
        setdefault("BuildahBackend", "run_root", os.path.join(data, "buildah", "run"))
    else:
        setdefault("ImageBuilder", "backend_class", "kubestudio.image_builder.backends.kaniko.KanikoBackend")
        setdefault("ImageBuilder", "workspaces_root", "/srv/workspaces")
        # build pods mount the same workspace claim as the servers
        setdefault("KanikoBackend", "workspace_claim", c.WorkspaceSpawner.get("workspace_claim", WORKSPACE_CLAIM))


IMAGES = ServiceDeclaration(
    store="images",
    name=IMAGES_SERVICE,
    module="kubestudio.image_builder",
    config_sections=("ImageBuilder", "BuildahBackend", "KanikoBackend", "ServiceApp"),
    scopes={
        IMAGES_BUILD_SCOPE: "Build images, and see and cancel your own builds and images.",
        IMAGES_ADMIN_SCOPE: "See and cancel every user's builds; push to any repository.",
    },
    roles=roles,
    defaults=defaults,
    oauth_scopes=[IMAGES_BUILD_SCOPE, IMAGES_ADMIN_SCOPE],
)
