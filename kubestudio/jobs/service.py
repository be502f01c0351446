"""The jobs service as the hub sees it: name, scopes, roles, config sections and defaults.

Light on purpose: the hub imports this module only (never the service's app or handlers).
"""

from ..kube import shared_pod_settings
from ..names import JOBS_ADMIN_SCOPE, JOBS_RUN_SCOPE, JOBS_SERVICE, SERVE_PREDICT_SCOPE
from ..services.declare import ServiceDeclaration
from ..spawner.serverimage import default_server_image


def roles(admin_users):
    access = f"access:services!service={JOBS_SERVICE}"
    find = f"read:services!service={JOBS_SERVICE}"  # the SDK finds the service's address through the hub
    # a user calls their own servings, and may grant a token of theirs just that
    predict = f"{SERVE_PREDICT_SCOPE}!user"
    return [
        {"name": "user", "scopes": ["self", access, find, JOBS_RUN_SCOPE, predict]},
        # a notebook server's own token submits and follows its owner's jobs (SDK and CLI)
        {
            "name": "server",
            "scopes": ["users:activity!user", "access:servers!server", access, find, JOBS_RUN_SCOPE, predict],
        },
        {"name": "kubestudio-jobs-admin", "scopes": [JOBS_ADMIN_SCOPE, access], "users": list(admin_users)},
        # the service reads users' groups (projects and their quotas) and servers (their image)
        {
            "name": "kubestudio-jobs-service",
            "scopes": ["read:users", "read:servers", "read:groups"],
            "services": [JOBS_SERVICE],
        },
    ]


def defaults(studio, c, data):
    """Fill in the jobs service's settings where c.JobService etc. do not set them."""

    def setdefault(section, key, value):
        if key not in c[section]:
            c[section][key] = value

    # Ctrl-C on the hub stops what it started, unless servers are kept running across restarts
    setdefault("JobService", "stop_jobs_on_exit", not studio.keep_servers_running)
    if studio.spawner == "local":
        setdefault("LocalJobBackend", "data_dir", data)
    else:
        setdefault("JobService", "backend_class", "kubestudio.jobs.training.backends.kubernetes.KubernetesJobBackend")


JOBS = ServiceDeclaration(
    store="jobs",
    name=JOBS_SERVICE,
    module="kubestudio.jobs",
    config_sections=(
        "JobService",
        "UserAccounts",
        "Containment",
        "ImageRunner",
        "LocalJobBackend",
        "KubernetesJobBackend",
        "LocalServingBackend",
        "KubernetesServingBackend",
        "ServiceApp",
    ),
    scopes={
        JOBS_RUN_SCOPE: "Submit training jobs, and see, follow and cancel your own.",
        JOBS_ADMIN_SCOPE: "See and cancel every user's jobs.",
        SERVE_PREDICT_SCOPE: "Call models served from the notebook (filtered: !user=<owner> for one user's).",
    },
    roles=roles,
    defaults=defaults,
    oauth_scopes=[JOBS_RUN_SCOPE, JOBS_ADMIN_SCOPE, SERVE_PREDICT_SCOPE],
    # the same GPUs as the local servers, also when jupyterhub_config.py sets them after configure()
    # on Kubernetes the jobs' pods mount and run as the servers' pods do (KubeSpawner's
    # namespace first, WorkspaceSpawner's settings win)
    shared=(
        ("LocalWorkspaceSpawner", "gpus", "LocalJobBackend"),
        ("LocalWorkspaceSpawner", "gpu_detect_command", "LocalJobBackend"),
        *shared_pod_settings("KubernetesJobBackend"),
        *(
            ("ImageBuilder", trait, "KubernetesJobBackend")
            for trait in ("registry_host", "registry_insecure", "registry_auth_file")
        ),
    ),
    # a job that names no image (from the jobs page) runs in the image a server gets by default
    derived=(("KubernetesJobBackend", "default_image", default_server_image),),
)
