# The embedded default: KubeStudio on this machine, no Kubernetes.
#   jupyterhub -f jupyterhub_config.py
# Log in at http://127.0.0.1:8000 with any username and the password printed at start
# (or the one in $KUBESTUDIO_PASSWORD). Data lives in ./data (ignored by git).
# A second hub on the same machine needs only its own KUBESTUDIO_DATA_DIR and KUBESTUDIO_BIND_URL:
# its internal ports (hub, proxy API, image and jobs services, registry) are chosen free and remembered
# in <data dir>/ports.json, unless set with the KUBESTUDIO_*_PORT variables below.
import os

from kubestudio.hub import configure

here = os.path.dirname(os.path.abspath(__file__))


def port(name):
    return int(os.environ.get(name) or 0)


configure(
    c,  # noqa: F821 (JupyterHub provides `c`)
    data_dir=os.environ.get("KUBESTUDIO_DATA_DIR", os.path.join(here, "data")),
    profiles_file=os.environ.get("KUBESTUDIO_PROFILES", os.path.join(here, "profiles", "default.yaml")),
    bind_url=os.environ.get("KUBESTUDIO_BIND_URL", "http://127.0.0.1:8000"),
    hub_port=port("KUBESTUDIO_HUB_PORT"),
    proxy_api_port=port("KUBESTUDIO_PROXY_API_PORT"),
    images_port=port("KUBESTUDIO_IMAGES_PORT"),
    jobs_port=port("KUBESTUDIO_JOBS_PORT"),
    tensorboards_port=port("KUBESTUDIO_TENSORBOARDS_PORT"),
    local_registry_port=port("KUBESTUDIO_REGISTRY_PORT"),
)
