import pytest

from kubestudio.testing.localhub import LocalHub
from kubestudio.testing.servicehub import JobsHub

GPUS = ["0:NVIDIA A100", "1:NVIDIA A100"]
JOBS_HUB_CONFIG = f"""
c.LocalWorkspaceSpawner.gpus = {GPUS!r}
c.JobService.max_running_jobs_per_user = 1
c.JobService.max_running_jobs = 3
"""


def start_jobs_hub(root, extra="", settings=None):
    settings = {
        "images_service": False,
        "tensorboards_service": False,  # no test here opens a board
        "projects": {"vision": {"users": ["vic"], "max_gpus": 1}},
        **(settings or {}),
    }
    return JobsHub(LocalHub(root, settings=settings, extra_config=JOBS_HUB_CONFIG + extra).start())


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    jobs_hub = start_jobs_hub(tmp_path_factory.mktemp("jobs-hub"))
    try:
        yield jobs_hub
    finally:
        jobs_hub.hub.stop()
