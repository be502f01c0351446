"""Names KubeStudio's parts share, each in one place: services, scopes, ports, claims, labels,
the registry prefix. A part that needs one imports it from here; nothing here imports KubeStudio."""

# our managed hub services, and the hub's own client of them
IMAGES_SERVICE = "images"
JOBS_SERVICE = "jobs"
TENSORBOARDS_SERVICE = "tensorboards"
HUB_CLIENT_SERVICE = "kubestudio-hub"  # the hub reads users' images for the spawn form with its token
IDLE_CULLER_SERVICE = "idle-culler"  # jupyterhub-idle-culler, when KubeStudio.cull_idle_servers is on

# JupyterHub custom scopes of the image service
IMAGES_BUILD_SCOPE = "custom:kubestudio:images:build"  # build, see and cancel your own builds and images
IMAGES_ADMIN_SCOPE = "custom:kubestudio:images:admin"  # everyone's builds, push to any repository

# JupyterHub custom scopes of the jobs service
JOBS_RUN_SCOPE = "custom:kubestudio:jobs:run"  # submit, see, follow and cancel your own jobs
JOBS_ADMIN_SCOPE = "custom:kubestudio:jobs:admin"  # everyone's jobs
SERVE_PREDICT_SCOPE = "custom:kubestudio:serve:predict"  # call a serving (filtered: !user=<owner>)

# JupyterHub custom scopes of the TensorBoard service
TENSORBOARDS_USE_SCOPE = "custom:kubestudio:tensorboards:use"  # open, see and stop your own boards
TENSORBOARDS_ADMIN_SCOPE = "custom:kubestudio:tensorboards:admin"  # everyone's boards

# internal ports a hub uses when they are free (else it chooses free ones and remembers them)
CONVENTIONAL_PORTS = {
    "hub": 8081,
    "proxy_api": 8001,
    "images": 10101,
    "jobs": 10102,
    "tensorboards": 10103,
    "registry": 5000,
}

# a local backend (a serving's model runtime, a board's TensorBoard) answers only callers that send
# its secret, given to it in its environment; the service's proxy sends it after the hub's check
RUNTIME_SECRET_ENV = "KUBESTUDIO_RUNTIME_SECRET"
RUNTIME_SECRET_HEADER = "X-KubeStudio-Runtime-Secret"

# the address the services listen on when their URL's host is a name they cannot bind
SERVICE_BIND_HOST_ENV = "KUBESTUDIO_SERVICE_BIND_HOST"

# the shared workspace and archives claims of the Kubernetes spawner (and of build pods)
WORKSPACE_CLAIM = "kubestudio-workspace"
ARCHIVES_CLAIM = "kubestudio-archives"

# images KubeStudio builds go to <registry>/<REGISTRY_PREFIX>/<user slug>/<name>:<tag>
REGISTRY_PREFIX = "kubestudio"

# the Python base the embedded default makes from Debian packages (what local servers run)
LOCAL_PYTHON_BASE = "base/python:3.11"

# labels on every Kubernetes object KubeStudio makes
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubestudio"}
LABEL_COMPONENT = "kubestudio.io/component"
LABEL_USER = "kubestudio.io/user"
LABEL_PROJECT = "kubestudio.io/project"
LABEL_BUILD_ID = "kubestudio.io/build-id"
LABEL_JOB_ID = "kubestudio.io/job-id"
LABEL_BOARD_ID = "kubestudio.io/board-id"
LABEL_ATTEMPT = "kubestudio.io/attempt"  # a job's try: the manager retries by making the next object
LABEL_GPUS = "kubestudio.io/gpus"  # GPUs a pod holds (servers and jobs: the project's quota counts both)
PROJECT_ANNOTATION = "kubestudio.io/project"
