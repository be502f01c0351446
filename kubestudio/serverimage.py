"""The embedded default's local single-user image: the offline Debian base with JupyterLab,
jupyterhub and KubeStudio's server extension, at this hub's own versions.

The image service makes it in the background (:mod:`kubestudio.image_builder.bases`) and the local
spawner runs servers in it (:mod:`kubestudio.spawner.imagerun`). Both name it with
:func:`server_image_tag`: the KubeStudio version plus a hash of what goes into the image (the
package versions and KubeStudio's own files), so a hub whose code changed makes a new image instead
of running servers on a stale extension.

It is made in two steps, so that a change to KubeStudio's code (every upgrade, every commit of a
developer) remakes only a small top layer: ``kubestudio/singleuser-deps`` is the base with the
server's packages (JupyterLab, jupyterhub, ...; named by their versions alone, :func:`deps_tag`),
and the single-user image is that with KubeStudio's own wheel on top.
"""

import functools
import hashlib
import importlib.metadata
import os

import kubestudio

REPOSITORY = "kubestudio/singleuser"
DEPS_REPOSITORY = "kubestudio/singleuser-deps"
# what a server needs in the image; pinned to the versions this hub runs
# (tensorboard: the %tensorboard magic and `tensorboard` in a terminal, as the user guide says)
# jsonschema as the hub has it: 4.24+ makes every server start compile rfc3987-syntax's parsers (pyproject.toml)
SERVER_PACKAGES = (
    "jupyterhub",
    "jupyterlab",
    "jupyter_server",
    "ipykernel",
    "requests",
    "pyyaml",
    "tensorboard",
    "jsonschema",
)
PACKAGE_ROOT = os.path.dirname(os.path.abspath(kubestudio.__file__))
SOURCE_ROOT = os.path.dirname(PACKAGE_ROOT)


def server_requirements():
    """``name==version`` of each package a server needs, as installed beside this hub."""
    pins = []
    for name in SERVER_PACKAGES:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def kubestudio_source():
    """The folder KubeStudio is built from (a checkout: pyproject.toml beside the package), or None
    when it was installed from a wheel."""
    return SOURCE_ROOT if os.path.exists(os.path.join(SOURCE_ROOT, "pyproject.toml")) else None


def deps_tag(python):
    """The tag of the image with the server's packages for ``python``: a hash of their versions and
    of how they are installed."""
    digest = hashlib.sha256("\n".join([python, *server_requirements(), deps_dockerfile("base")]).encode())
    return f"{python}-{digest.hexdigest()[:10]}"


@functools.lru_cache(maxsize=1)
def server_image_tag():
    digest = hashlib.sha256("\n".join(server_requirements()).encode())
    roots = [PACKAGE_ROOT] + ([os.path.join(SOURCE_ROOT, "jupyter-config")] if kubestudio_source() else [])
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return f"{kubestudio.__version__}-{digest.hexdigest()[:10]}"


def server_image(registry_host):
    return f"{registry_host}/{REPOSITORY}:{server_image_tag()}"


# The wheels are copied in, installed and removed. The image service builds its own images in one
# commit (no --layers), so the copy never lands in a layer of its own (76 MB of dead weight in
# every pull otherwise). (Not a RUN --mount=type=bind: the build sandbox's user namespace cannot
# bind its folders read-only.)
INSTALL_WHEELS = (
    "COPY wheels /tmp/kubestudio-wheels\n"
    "RUN python3 -m pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check "
    "--root-user-action=ignore /tmp/kubestudio-wheels/*.whl && rm -rf /tmp/kubestudio-wheels"
)


def deps_dockerfile(base_reference):
    """The server's packages on ``base_reference``: they go into the system Python (not a virtual
    environment), so a user's own ``pip install`` in a server defaults to their home (``~/.local``).
    The wheels are the set the hub's pip resolved: installed as they are."""
    # `python` is Python 3, as in every Jupyter image
    return f"FROM {base_reference}\n{INSTALL_WHEELS} && ln -sf /usr/bin/python3 /usr/local/bin/python\n"


def server_dockerfile(deps_reference):
    """The single-user image: KubeStudio's own wheel on the image of :func:`deps_dockerfile`. Its
    wheel needs nothing else there: without extras it is the notebook side (SDK, CLI, server
    extension, the prebuilt lab extension), whose few dependencies a server has already."""
    return f'FROM {deps_reference}\n{INSTALL_WHEELS}\nENV PYTHONUNBUFFERED=1\nCMD ["jupyterhub-singleuser"]\n'
