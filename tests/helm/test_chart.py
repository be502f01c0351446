"""The Helm chart rendered and linted by real Helm (helm-python-sdk: Helm v4 in process), every
object validated against the Kubernetes schemas of 1.25 to 1.30, the values schema refusing bad
values with the path, and the hub's jupyterhub_config.py run on the values it renders."""

import json
import os

import kubernetes_validate
import pytest
import yaml

from kubestudio.services.declare import CONFIG_ENV

helm = pytest.importorskip("helm_python")

CHART = os.path.join(os.path.dirname(__file__), "..", "..", "helm", "kubestudio")
VERSIONS = ["1.25.0", "1.26.0", "1.27.0", "1.28.0", "1.29.0", "1.30.0"]

# every feature on: an example of each value, kept beside the chart
with open(os.path.join(CHART, "ci", "full-values.yaml"), encoding="utf-8") as f:
    FULL = yaml.safe_load(f)


def render(values, name="ks", namespace="studio"):
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name=name, namespace=namespace)
    objects = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [o for o in yaml.safe_load_all(text) if o]
    return objects, out


def by_kind(objects):
    found = {}
    for obj in objects:
        found.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    return found


def test_lint_is_clean():
    result = helm.lint(CHART)
    assert result["errors"] == []
    # severity 1 is INFO (an icon is recommended); nothing at WARNING or above
    assert [m for m in result["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("values", [{}, FULL], ids=["default", "full"])
def test_every_object_is_valid_on_kubernetes_1_25_to_1_30(values):
    objects, _ = render(values)
    assert objects
    for obj in objects:
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_default_values_make_the_hub_the_proxy_and_kept_claims():
    objects, out = render({})
    kinds = by_kind(objects)
    assert set(kinds["Deployment"]) == {"ks-kubestudio-hub", "ks-kubestudio-proxy"}
    assert set(kinds["Service"]) == {"ks-kubestudio-hub", "ks-kubestudio-proxy-api", "ks-kubestudio-proxy-public"}
    claims = kinds["PersistentVolumeClaim"]
    assert set(claims) == {"kubestudio-workspace", "kubestudio-archives", "ks-kubestudio-hub-db"}
    for claim in claims.values():
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claims["kubestudio-workspace"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "ClusterRole" not in kinds and "Ingress" not in kinds
    hub = kinds["Deployment"]["ks-kubestudio-hub"]["spec"]["template"]["spec"]
    assert hub["serviceAccountName"] == "ks-kubestudio-hub"
    assert hub["securityContext"]["runAsNonRoot"] is True
    container = hub["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {8081, 10101, 10102, 10103}
    proxy = kinds["Deployment"]["ks-kubestudio-proxy"]["spec"]["template"]["spec"]
    assert proxy["automountServiceAccountToken"] is False
    assert "--default-target=http://ks-kubestudio-hub:8081" in proxy["containers"][0]["command"]
    # the Role: no cluster-wide rights, and no operator kinds unless asked for
    role = kinds["Role"]["ks-kubestudio-hub"]
    groups = {g for rule in role["rules"] for g in rule["apiGroups"]}
    assert groups == {"", "batch", "apps", "autoscaling"}
    assert "NOTES.txt" in " ".join(out)


def test_every_feature_on():
    objects, _ = render(FULL)
    kinds = by_kind(objects)
    role = kinds["Role"]["studio-hub"]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"pytorchjobs", "tfjobs", "mpijobs", "trainjobs", "trainingruntimes", "inferenceservices"} <= resources
    assert {"experiments", "trials", "workflows", "cronworkflows"} <= resources
    # Argo's executor: an account of its own, allowed only to report a step's result
    executor = kinds["ServiceAccount"]["studio-argo-executor"]
    assert executor["automountServiceAccountToken"] is False
    assert kinds["Role"]["studio-argo-executor"]["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    ]
    assert kinds["RoleBinding"]["studio-argo-executor"]["subjects"][0]["name"] == "studio-argo-executor"
    [cluster_role] = kinds["ClusterRole"].values()
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["clustertrainingruntimes"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert set(kinds["PersistentVolumeClaim"]) == {"kubestudio-workspace"}  # the archives claim exists; no hub-db PVC
    registry = kinds["Secret"]["studio-registry"]
    assert registry["type"] == "kubernetes.io/dockerconfigjson"
    ingress = kinds["Ingress"]["studio"]
    assert ingress["spec"]["rules"][0]["host"] == "studio.example.org"
    hub = kinds["Deployment"]["studio-hub"]["spec"]["template"]
    assert hub["metadata"]["labels"]["team"] == "ml" and hub["spec"]["nodeSelector"] == {"role": "core"}
    env = {e["name"] for e in hub["spec"]["containers"][0]["env"]}
    assert {"KUBESTUDIO_DB_URL", "TZ"} <= env and "KUBESTUDIO_PASSWORD" not in env
    config = kinds["ConfigMap"]["studio-hub"]["data"]
    assert "postgresql://" not in json.dumps(config) and "pw" not in config["values.json"]  # secrets stay in Secrets
    assert yaml.safe_load(config["profiles.yaml"])["profiles"][0]["slug"] == "gpu"
    assert kinds["Service"]["studio-proxy-public"]["spec"]["ports"][0]["nodePort"] == 30080
    # the registry gate: a port of the hub pod and its Service, open to build pods only
    assert {"name": "registry-gate", "containerPort": 10104, "protocol": "TCP"} in hub["spec"]["containers"][0]["ports"]
    assert {"name": "registry-gate", "port": 10104, "targetPort": 10104, "protocol": "TCP"} in kinds["Service"][
        "studio-hub"
    ]["spec"]["ports"]
    rules = kinds["NetworkPolicy"]["studio-hub"]["spec"]["ingress"]
    gate_rule = next(r for r in rules if {"port": 10104, "protocol": "TCP"} in r["ports"])
    assert gate_rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/managed-by": "kubestudio", "kubestudio.io/component": "build"}
            }
        }
    ]


BAD_VALUES = [
    ({"hub": {"imge": {"name": "x"}}}, "/hub", "additional properties 'imge' not allowed"),
    ({"cull": {"timeout": "1h"}}, "/cull/timeout", "want integer"),
    ({"cull": {"timeout": 0}}, "/cull/timeout", "minimum"),
    ({"services": {"jobs": {"enabled": True, "port": 70000}}}, "/services/jobs/port", "maximum"),
    (
        {"kubestudio": {"profiles": [{"slug": "g", "gpu": {"count": 1, "resource": "nvidia gpu"}}]}},
        "/kubestudio/profiles/0/gpu/resource",
        "does not match pattern",
    ),
    ({"kubestudio": {"profiles": [{"slug": "g", "gpu": "one(A100)"}]}}, "/kubestudio/profiles/0/gpu", "anyOf"),
    ({"kubestudio": {"profiles": [{"slug": "Bad Slug"}]}}, "/kubestudio/profiles/0/slug", "does not match pattern"),
    ({"kubestudio": {"profiles": [{"slug": "x", "ide": "emacs"}]}}, "/kubestudio/profiles/0/ide", "anyOf"),
    (
        {"kubestudio": {"projects": {"vision": {"max_gpu": 4}}}},
        "/kubestudio/projects/vision",
        "additional properties 'max_gpu' not allowed",
    ),
    (
        {"kubestudio": {"projects": {"vision": {"max_gpus": "four"}}}},
        "/kubestudio/projects/vision/max_gpus",
        "want integer",
    ),
    ({"proxy": {"service": {"type": "Public"}}}, "/proxy/service/type", "value must be one of"),
    ({"proxy": {"service": {"nodePort": 80}}}, "/proxy/service/nodePort", "minimum"),
    ({"hub": {"db": {"type": "mysql"}}}, "/hub/db/type", "value must be one of"),
    ({"hub": {"resources": {"limits": {"memory": "lots"}}}}, "/hub/resources/limits/memory", "anyOf"),
    ({"singleuser": {"uid": 0}}, "/singleuser/uid", "minimum"),
    ({"registry": {"host": "https://registry.example.org"}}, "/registry/host", "does not match pattern"),
    ({"hub": {"cookieSecret": "not-hex"}}, "/hub/cookieSecret", "does not match pattern"),
    ({"proxy": {"image": {"name": "chp"}}}, "/proxy/image/tag", "minLength"),
    ({"operators": {"kserve": "yes"}}, "/operators/kserve", "want boolean"),
    ({"storage": {"workspace": {"size": "big"}}}, "/storage/workspace/size", "anyOf"),
]


@pytest.mark.parametrize("values,path,words", BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_the_values_schema_refuses_bad_values_with_the_path(values, path, words):
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError) as refused:
            chart.render(values, name="ks", namespace="studio")
    message = str(refused.value)
    assert f"at '{path}'" in message and words in message, message


def test_required_values_are_named():
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmError) as refused:
            chart.render({"ingress": {"enabled": True}}, name="ks", namespace="studio")
    assert "ingress.hosts" in str(refused.value)
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmError) as refused:
            chart.render({"registry": {"host": "r:5000", "username": "u"}}, name="ks", namespace="studio")
    assert "registry.password" in str(refused.value)


def hub_config(tmp_path, values, monkeypatch):
    """The chart's jupyterhub_config.py, run by traitlets as the hub runs it, on the rendered values."""
    from traitlets.config.loader import PyFileConfigLoader

    objects, _ = render(values)
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    folder = tmp_path / "etc"
    folder.mkdir()
    for name, text in config_map["data"].items():
        (folder / name).write_text(text)
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "t" * 64)
    monkeypatch.setenv("KUBESTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KUBESTUDIO_PASSWORD", "pw-from-the-secret")
    monkeypatch.setenv("KUBESTUDIO_DB_URL", "postgresql://hub:pw@db/hub")
    monkeypatch.setenv("PATH", os.environ["PATH"])  # configure() prepends tool folders
    monkeypatch.setenv("POD_IP", "10.1.2.3")
    loader = PyFileConfigLoader("jupyterhub_config.py", path=str(folder))
    return loader.load_config()


def service_config(entry):
    """What the hub writes for a service when it starts it."""
    with open(entry["environment"][CONFIG_ENV](None), encoding="utf-8") as f:
        return json.load(f)


def test_the_hub_config_runs_on_the_default_values(tmp_path, monkeypatch):
    c = hub_config(tmp_path, {}, monkeypatch)
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://ks-kubestudio-proxy-api:8001"
    assert c.JupyterHub.hub_connect_url == "http://ks-kubestudio-hub:8081"
    assert c.KubeSpawner.namespace == "studio"
    assert c.KubeSpawner.image == "ghcr.io/kubestudio/singleuser:0.1.0"
    assert c.DummyAuthenticator.password == "pw-from-the-secret"
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["jobs"]["url"] == "http://10.1.2.3:10102"  # the hub pod's own address
    assert services["jobs"]["environment"]["KUBESTUDIO_SERVICE_BIND_HOST"] == "0.0.0.0"
    assert services["tensorboards"]["url"] == "http://10.1.2.3:10103"
    assert "images" not in services  # no registry: no builds
    assert "registry" not in services  # the embedded default's local registry never runs here
    assert "--timeout=3600" in services["idle-culler"]["command"]
    # no catalog of the admin's: the page's jobs and the boards run in the servers' image
    assert service_config(services["jobs"])["KubernetesJobBackend"]["default_image"] == c.KubeSpawner.image
    assert service_config(services["tensorboards"])["KubernetesBoardBackend"]["image"] == c.KubeSpawner.image


def test_the_hub_config_runs_with_every_feature_on(tmp_path, monkeypatch):
    c = hub_config(tmp_path, FULL, monkeypatch)
    assert c.JupyterHub.authenticator_class == "github"
    assert c.GitHubOAuthenticator.client_id == "id"
    assert c.JupyterHub.db_url == "postgresql://hub:pw@db/hub"
    assert c.JupyterHub.template_vars == {"banner": "hi"}  # hub.extraConfig ran
    assert c.WorkspaceSpawner.archives_claim == "team-archives"
    assert c.WorkspaceSpawner.gpu_types == {"A100": "NVIDIA-A100-SXM4-80GB"}
    assert c.ImageBuilder.registry_host == "registry.example.org:5000"
    assert c.ImageBuilder.registry_auth_file.endswith("/registry/.dockerconfigjson")
    assert c.KubeSpawner.image_pull_secrets == ["pull-secret"]
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert {"images", "jobs", "tensorboards"} <= set(services)
    # the default profile's first image, as a server started with an empty form gets
    assert service_config(services["jobs"])["KubernetesJobBackend"]["default_image"] == "ghcr.io/x/torch:1"
    assert {g for g in c.JupyterHub.load_groups} >= {"vision"}
    # the registry gate in front of the admin's registry, for kaniko's build pods
    gate = services["registry"]["command"]
    assert gate[gate.index("--listen") + 1] == "0.0.0.0:10104"
    assert gate[gate.index("--upstream") + 1] == "https://registry.example.org:5000"
    assert gate[gate.index("--upstream-auth") + 1] == c.ImageBuilder.registry_auth_file
    assert service_config(services["jobs"])["JobService"]["argo_executor_service_account"] == "studio-argo-executor"
    images = service_config(services["images"])
    assert images["KanikoBackend"]["registry_gate"] == "studio-hub:10104"
    assert "studio-hub:10104" in images["ImageBuilder"]["registry_aliases"]
    assert images["ImageBuilder"]["registry_grants_dir"] == gate[gate.index("--grants") + 1]


def test_the_gate_can_be_turned_off(tmp_path, monkeypatch):
    values = {**FULL, "registry": {**FULL["registry"], "gate": {"enabled": False}}}
    c = hub_config(tmp_path, values, monkeypatch)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert "registry" not in services
    assert "registry_gate" not in service_config(services["images"]).get("KanikoBackend", {})
    objects, _ = render(values)
    kinds = by_kind(objects)
    ports = {p["name"] for p in kinds["Service"]["studio-hub"]["spec"]["ports"]}
    assert "registry-gate" not in ports
