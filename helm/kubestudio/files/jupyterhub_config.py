# KubeStudio's hub on Kubernetes, from the Helm chart's values (values.json beside this file).
# The hub runs the spawner and its services; configurable-http-proxy runs in its own pod.
import glob
import json
import os

from kubestudio.hub import configure

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "values.json"), encoding="utf-8") as f:
    values = json.load(f)

hub = values["hubService"]
services = values["services"]
registry = values["registry"]
singleuser = values["singleuser"]
studio = values["kubestudio"]
cull = values["cull"]

# the proxy is its own Deployment: the hub only manages its routes
c.ConfigurableHTTPProxy.should_start = False  # noqa: F821 (JupyterHub provides `c`)
c.ConfigurableHTTPProxy.api_url = f"http://{values['proxyApiService']}:8001"
c.ConfigurableHTTPProxy.auth_token = os.environ["CONFIGPROXY_AUTH_TOKEN"]
# servers and the proxy reach the hub at its Service
c.JupyterHub.hub_bind_url = os.environ.get("KUBESTUDIO_HUB_BIND_URL", "http://0.0.0.0:8081")
c.JupyterHub.hub_connect_url = f"http://{hub}:8081"
# the cookie secret comes from the chart's Secret ($JPY_COOKIE_SECRET), kept across upgrades

c.KubeSpawner.namespace = values["namespace"]
c.WorkspaceSpawner.workspace_claim = values["workspaceClaim"]
c.WorkspaceSpawner.archives_claim = values["archivesClaim"]
c.WorkspaceSpawner.uid = singleuser["uid"]
c.WorkspaceSpawner.gid = singleuser["gid"]
c.WorkspaceSpawner.fs_gid = singleuser["fsGid"]
c.KubeSpawner.image = f"{singleuser['image']['name']}:{singleuser['image']['tag']}"
c.KubeSpawner.image_pull_secrets = [s["name"] if isinstance(s, dict) else s for s in values["imagePullSecrets"]]
if studio.get("gpuTypeLabel"):
    c.WorkspaceSpawner.gpu_type_label = studio["gpuTypeLabel"]
if studio.get("gpuTypes"):
    c.WorkspaceSpawner.gpu_types = studio["gpuTypes"]

if registry.get("host"):
    c.ImageBuilder.registry_host = registry["host"]
    c.ImageBuilder.registry_insecure = bool(registry.get("insecure"))
    if values["registryAuth"]:
        c.ImageBuilder.registry_auth_file = os.path.join(HERE, "registry", ".dockerconfigjson")

service_host = os.environ.get("POD_IP") or hub
profiles = os.path.join(HERE, "profiles.yaml")
settings = {}
if os.path.exists(profiles):
    settings["profiles_file"] = profiles
if values["authenticatorClass"] != "dummy":
    settings["authenticator_class"] = values["authenticatorClass"]
gate = registry.get("gate") or {}
if registry.get("host") and services["images"]["enabled"] and gate.get("enabled"):
    # build pods reach the gate at the hub's Service; it listens on every address of the pod
    settings.update(registry_gate_port=gate["port"], registry_gate_host=f"{hub}:{gate['port']}")

configure(
    c,  # noqa: F821
    spawner="kubernetes",
    data_dir=os.environ.get("KUBESTUDIO_DATA_DIR", "/srv/jupyterhub"),  # the hub's PVC
    bind_url="http://:8000",
    keep_servers_running=True,  # servers are pods: they outlive a hub restart or upgrade
    admin_users=values["adminUsers"],
    projects=studio["projects"],
    registry=registry.get("host") or "",
    images_service=bool(services["images"]["enabled"] and registry.get("host")),
    jobs_service=services["jobs"]["enabled"],
    tensorboards_service=services["tensorboards"]["enabled"],
    # the proxy reaches the services at the hub pod's own address (the hub's Service sends to
    # ready hubs only, and the hub checks its services before it is ready); they listen on
    # every address of the pod
    images_url=f"http://{service_host}:{services['images']['port']}",
    jobs_url=f"http://{service_host}:{services['jobs']['port']}",
    tensorboards_url=f"http://{service_host}:{services['tensorboards']['port']}",
    services_bind_host=os.environ.get("KUBESTUDIO_SERVICE_BIND_HOST", "0.0.0.0"),
    cull_idle_servers=cull["enabled"],
    cull_timeout=cull["timeout"],
    cull_every=cull["every"],
    cull_max_age=cull["maxAge"],
    cull_users=cull["users"],
    **settings,
)
# an experiment's trials (pods) report to the jobs service through the hub's Service, whose name
# stays when a new hub pod takes over (the pod's own address would not)
c.JobService.trial_report_url = f"http://{hub}:{services['jobs']['port']}/services/jobs/"  # noqa: F821
c.JobService.katib_db_manager = values["operators"].get("katibDbManager", "katib-db-manager.kubeflow:6789")
if values["operators"].get("argo"):  # the chart made it (templates/argo-executor.yaml)
    c.JobService.argo_executor_service_account = values["argoExecutor"]
if values["db"]["type"] == "url":
    c.JupyterHub.db_url = os.environ["KUBESTUDIO_DB_URL"]

# hub.config: z2jh's {Section: {trait: value}}, applied last
for section, traits in values["config"].items():
    for trait, value in traits.items():
        setattr(c[section], trait, value)

for path in sorted(glob.glob(os.path.join(HERE, "extra-*.py"))):
    with open(path, encoding="utf-8") as f:
        exec(compile(f.read(), path, "exec"))  # hub.extraConfig, as z2jh runs it
