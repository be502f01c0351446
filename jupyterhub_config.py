# The embedded default: KubeStudio on this machine, no Kubernetes.
#   jupyterhub -f jupyterhub_config.py
# Log in at http://127.0.0.1:8000 with any username and the password printed at start
# (or the one in $KUBESTUDIO_PASSWORD). Data lives in ./data (ignored by git).
import os

from kubestudio.hub import configure

here = os.path.dirname(os.path.abspath(__file__))

configure(
    c,  # noqa: F821 (JupyterHub provides `c`)
    data_dir=os.environ.get("KUBESTUDIO_DATA_DIR", os.path.join(here, "data")),
    profiles_file=os.environ.get("KUBESTUDIO_PROFILES", os.path.join(here, "profiles", "default.yaml")),
    bind_url=os.environ.get("KUBESTUDIO_BIND_URL", "http://127.0.0.1:8000"),
)
