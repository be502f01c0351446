"""The TensorBoard service as the hub sees it: name, scopes, roles, config sections and defaults.

Light on purpose: the hub imports this module only (never the service's app or handlers).
"""

import os

from ..kube import shared_pod_settings
from ..names import TENSORBOARDS_ADMIN_SCOPE, TENSORBOARDS_SERVICE, TENSORBOARDS_USE_SCOPE
from ..services.declare import ServiceDeclaration
from ..spawner.serverimage import default_server_image


def roles(admin_users):
    access = f"access:services!service={TENSORBOARDS_SERVICE}"
    find = f"read:services!service={TENSORBOARDS_SERVICE}"  # the SDK finds the service through the hub
    return [
        {"name": "user", "scopes": ["self", access, find, TENSORBOARDS_USE_SCOPE]},
        # a server's own token opens its owner's boards (the SDK, the CLI, the %tensorboard URL)
        {
            "name": "server",
            "scopes": ["users:activity!user", "access:servers!server", access, find, TENSORBOARDS_USE_SCOPE],
        },
        {
            "name": "kubestudio-tensorboards-admin",
            "scopes": [TENSORBOARDS_ADMIN_SCOPE, access],
            "users": list(admin_users),
        },
        # the service reads projects (groups): a board's pod is scheduled in its project
        {"name": "kubestudio-tensorboards-service", "scopes": ["read:groups"], "services": [TENSORBOARDS_SERVICE]},
    ]


def defaults(studio, c, data):
    def setdefault(section, key, value):
        if key not in c[section]:
            c[section][key] = value

    setdefault("TensorBoardService", "data_dir", data)
    setdefault("TensorBoardService", "stop_boards_on_exit", not studio.keep_servers_running)
    # TensorBoard's page asks for its fonts at the root (/font-roboto/...): the hub serves them
    from .fonts import FONT_ROUTE, FontHandler

    handlers = list(c.JupyterHub.get("extra_handlers", []))
    if not any(pattern == FONT_ROUTE for pattern, *_ in handlers):
        c.JupyterHub.extra_handlers = handlers + [(FONT_ROUTE, FontHandler)]
    if studio.spawner == "local":
        setdefault("LocalBoardBackend", "work_dir", os.path.join(data, "tensorboards"))
    else:
        setdefault(
            "TensorBoardService", "backend_class", "kubestudio.tensorboards.backends.kubernetes.KubernetesBoardBackend"
        )


TENSORBOARDS = ServiceDeclaration(
    store="tensorboards",
    name=TENSORBOARDS_SERVICE,
    module="kubestudio.tensorboards",
    config_sections=(
        "TensorBoardService",
        "UserAccounts",
        "Containment",
        "LocalBoardBackend",
        "KubernetesBoardBackend",
        "ServiceApp",
    ),
    scopes={
        TENSORBOARDS_USE_SCOPE: "Open TensorBoards on your own log folders, and see and stop them.",
        TENSORBOARDS_ADMIN_SCOPE: "See and stop every user's TensorBoards.",
    },
    roles=roles,
    defaults=defaults,
    oauth_scopes=[TENSORBOARDS_USE_SCOPE, TENSORBOARDS_ADMIN_SCOPE],
    # on Kubernetes the boards' pods mount and run as the servers' pods do (KubeSpawner's
    # namespace first, WorkspaceSpawner's settings win), in the servers' image unless an admin
    # names one (it has tensorboard)
    shared=(*shared_pod_settings("KubernetesBoardBackend"),),
    derived=(("KubernetesBoardBackend", "image", default_server_image),),
)
