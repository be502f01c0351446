import os

import pytest

from kubestudio.jobs import JobsClient
from kubestudio.spawner.storage import ensure_user_folders, user_folders
from kubestudio.testing.localhub import LocalHub

GPUS = ["0:NVIDIA A100", "1:NVIDIA A100"]
JOBS_HUB_CONFIG = f"""
c.LocalWorkspaceSpawner.gpus = {GPUS!r}
c.JobService.max_running_jobs_per_user = 1
c.JobService.max_running_jobs = 3
"""


class JobsHub:
    """A real hub (embedded default) with its jobs service, and helpers to act as its users."""

    def __init__(self, hub):
        self.hub = hub
        self.url = f"{hub.url}/services/jobs/"
        self._tokens = {}

    def token(self, user):
        if user not in self._tokens:
            self.hub.create_user(user)
            self._tokens[user] = self.hub.user_token(user)
        return self._tokens[user]

    def client(self, user):
        return JobsClient(url=self.url, token=self.token(user))

    def workspace(self, user):
        folders = user_folders(self.hub.data_dir, user)
        ensure_user_folders(folders)
        return folders.workspace

    def write(self, user, path, text):
        full = os.path.join(self.workspace(user), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)
        return full


def start_jobs_hub(root, extra="", settings=None):
    settings = {"images_service": False, "projects": {"vision": {"users": ["vic"], "max_gpus": 1}}, **(settings or {})}
    return JobsHub(LocalHub(root, settings=settings, extra_config=JOBS_HUB_CONFIG + extra).start())


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    jobs_hub = start_jobs_hub(tmp_path_factory.mktemp("jobs-hub"))
    try:
        yield jobs_hub
    finally:
        jobs_hub.hub.stop()
