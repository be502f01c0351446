"""A real hub with one of its services, and helpers to act as its users (tests and benchmarks)."""

import os

from ..jobs import JobsClient
from ..spawner.storage import ensure_user_folders, user_folders
from ..tensorboards import TensorBoardsClient


class ServiceHub:
    """A real hub (embedded default), one of its services (``service``, its SDK ``client_class``)
    and its users: each made on first use, with a token of their own."""

    service = None
    client_class = None

    def __init__(self, hub):
        self.hub = hub
        self.url = f"{hub.url}/services/{self.service}/"
        self._tokens = {}

    def token(self, user):
        if user not in self._tokens:
            self.hub.create_user(user)
            self._tokens[user] = self.hub.user_token(user)
        return self._tokens[user]

    def client(self, user):
        return self.client_class(url=self.url, token=self.token(user))

    def workspace(self, user):
        """The user's workspace as the service sees it (on the machine: in the hub's data folder)."""
        folders = user_folders(self.hub.data_dir, user)
        ensure_user_folders(folders)
        return folders.workspace

    def write(self, user, path, text):
        full = os.path.join(self.workspace(user), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)
        self.hand_over(user)
        return full

    def hand_over(self, user):
        """Give what the test wrote into ``user``'s workspace to the account that owns it, as if the
        user had written it (a hub run as root gives each user an account of their own)."""
        hand_over(self.workspace(user))


class JobsHub(ServiceHub):
    service = "jobs"
    client_class = JobsClient


class BoardsHub(ServiceHub):
    service = "tensorboards"
    client_class = TensorBoardsClient


def hand_over(workspace):
    owner = os.stat(workspace)
    if owner.st_uid == os.geteuid():
        return
    for root, dirs, files in os.walk(workspace):
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.lstat(path).st_uid != owner.st_uid:
                os.lchown(path, owner.st_uid, owner.st_gid)
