"""Notebook side of KubeStudio: the Python client, the `kubestudio` CLI and the Jupyter server extension."""


def _jupyter_server_extension_points():
    return [{"module": "kubestudio.extensions.server"}]
