import shutil

import pytest

from kubestudio.testing.localhub import LocalHub

PROJECTS = {
    "vision": {
        "display_name": "Vision",
        "users": ["vic"],
        "max_gpus": 1,
        "max_servers": 1,
        "node_selector": "org=vision",
        "volume_mount": "datasets(pvc):/datasets;8G(memory):/dev/shm",
    }
}


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _needs_proxy():
    from kubestudio.hub.config import KubeStudio

    command = KubeStudio().proxy_command[0]
    if not shutil.which(command):
        pytest.fail(f"configurable-http-proxy not found ({command}): run scripts/install.sh")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A real hub on the embedded default with two configured (fake) GPUs."""
    root = tmp_path_factory.mktemp("hub")
    local = LocalHub(
        root,
        settings={"projects": PROJECTS},
        extra_config='c.LocalWorkspaceSpawner.gpus = ["0:Fake A100", "1:Fake A100"]\n',
    )
    local.start()
    yield local
    local.stop()
