"""A real hub with its jobs service, and helpers to act as its users (tests and benchmarks)."""

import os

from ..jobs import JobsClient
from ..spawner.storage import ensure_user_folders, user_folders


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
        """The user's workspace as this hub's jobs see it (on the machine: the hub's data folder)."""
        folders = user_folders(self.hub.data_dir, user)
        ensure_user_folders(folders)
        return folders.workspace

    def write(self, user, path, text):
        full = os.path.join(self.workspace(user), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)
        return full
