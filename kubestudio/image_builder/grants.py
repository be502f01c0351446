"""A build's own registry account on the embedded default: what it may pull is decided by the
registry gate, by the repository each request names, never by a parse of the Dockerfile.

Before a build starts, the service writes a grant for it into the gate's grants folder
(:func:`kubestudio.registry_grants.write_grant`): a fresh ``build-<id>`` account allowed to pull
what the build's user may read (:meth:`BuildManager.readable`: their own images, the shared bases,
their projects' images) and to push its own repository only, and a Docker auth file for buildah
holding that account for every name of our registry (the admin's credentials for other registries
are kept). However a Dockerfile spells ``FROM``, ``COPY --from`` or ``RUN --mount=from``, another
user's private image is a 403 from the gate, and the build fails saying so (the gate notes what it
refused: buildah does not always say why a pull failed). Both files go when the build ends; a grant
left by a killed service expires on its own.
"""

import os
import secrets

from .. import dockerauth
from ..registry_grants import refusals, remove_grant, write_grant


class BuildGrant:
    """``with BuildGrant(...) as auth_file:`` the build's Docker auth file, its grant in force."""

    def __init__(self, grants_dir, build_id, readable, push_repositories, hosts, work_dir, base_auth_file="", ttl=3600):
        self.grants_dir = grants_dir
        self.user = f"build-{build_id}"
        self.readable = list(readable)
        self.push = list(push_repositories)
        self.hosts = list(hosts)
        self.auth_file = os.path.join(work_dir, f"auth-{build_id}.json")
        self.base_auth_file = base_auth_file
        self.ttl = ttl

    def __enter__(self):
        password = secrets.token_urlsafe(24)
        write_grant(self.grants_dir, self.user, password, self.readable, self.push, self.ttl)
        auths = {}
        if self.base_auth_file:
            # other registries' credentials stay the admin's; ours are this build's alone
            ours = {key for host in self.hosts for key in (host, f"https://{host}", f"http://{host}")}
            auths = {k: v for k, v in dockerauth.read_auths(self.base_auth_file).items() if k not in ours}
        auths.update({host: dockerauth.entry(self.user, password) for host in self.hosts})
        os.makedirs(
            os.path.dirname(self.auth_file), mode=0o700, exist_ok=True
        )  # kaniko's service snapshots nothing there
        dockerauth.write_auths(self.auth_file, auths)
        return self.auth_file

    def refusals(self):
        """What the gate refused this build, first first."""
        return refusals(self.grants_dir, self.user)

    def __exit__(self, *exc):
        remove_grant(self.grants_dir, self.user)
        try:
            os.unlink(self.auth_file)
        except FileNotFoundError:
            pass
