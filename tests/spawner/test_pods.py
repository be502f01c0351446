"""Pure workspace pod manifests: every profile x project x IDE of the default catalog."""

import itertools
import os

import kubernetes_validate
import pytest

from kubestudio.spawner.pods import PodSettings, mount_name, pod_manifest, workspace_traits
from kubestudio.spawner.profiles import load_catalog, parse_catalog
from kubestudio.spawner.projects import parse_project
from kubestudio.spawner.request import SpawnRefused, resolve_request
from kubestudio.spawner.storage import user_slug

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CATALOG = load_catalog(os.path.join(REPO, "profiles", "default.yaml"))
K8S_VERSION = "1.30.0"

PROJECTS = {
    "public": parse_project("public", {}),
    "vision": parse_project(
        "vision",
        {
            "node_selector": "org=vision",
            "tolerations": "dedicated=vision:NoSchedule",
            "volume_mount": "vision-data(pvc):/data;train-config(configmap):/etc/train;registry(secret):/secrets/registry;16G(memory):/dev/shm",
        },
    ),
    "lab": parse_project("lab", {"volume_mount": "data/aidata(hostpath):/aidata"}),
}
SETTINGS = PodSettings(hostpath_projects=frozenset({"lab"}), gpu_types={"A100": ["NVIDIA-A100-SXM4-80GB"]})


def combinations():
    for profile, project in itertools.product(CATALOG.profiles, PROJECTS):
        for ide, gpus in itertools.product(profile.ides, profile.gpu_counts):
            yield profile.slug, project, ide, gpus


def request_for(profile, project, ide="jupyterlab", gpus=None, catalog=CATALOG):
    options = {"profile": profile, "project": project, "ide": ide}
    if gpus is not None:
        options["gpus"] = gpus
    return resolve_request(options, catalog, PROJECTS)


def env_of(manifest):
    return {e["name"]: e for e in manifest["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("profile, project, ide, gpus", list(combinations()))
def test_every_combination_gives_a_valid_pod(profile, project, ide, gpus):
    request = request_for(profile, project, ide, gpus)
    manifest = pod_manifest("alice", "", request, SETTINGS)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    container = manifest["spec"]["containers"][0]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    # the workspace and archives are always there, whatever the project adds
    assert mounts["/mnt/alice"]["subPath"] == "alice" and mounts["/archives/alice"]["subPath"] == "alice"
    assert container["workingDir"] == "/mnt/alice"
    env = env_of(manifest)
    assert env["JUPYTERHUB_ROOT_DIR"]["value"] == "/mnt/alice"
    assert env["JUPYTERHUB_DEFAULT_URL"]["value"] == ("/vscode/" if ide == "vscode" else "/lab")
    assert env["KUBESTUDIO_PROJECT"]["value"] == project and env["KUBESTUDIO_PROFILE"]["value"] == profile
    assert env["K8S_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    limits = container["resources"].get("limits", {})
    if gpus:
        assert limits["nvidia.com/gpu"] == str(gpus)
        assert "NVIDIA_VISIBLE_DEVICES" not in env
    else:
        assert "nvidia.com/gpu" not in limits
        assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "none"
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["runAsUser"] == 1000
    assert manifest["spec"]["automountServiceAccountToken"] is False
    labels = manifest["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "kubestudio"
    assert labels["kubestudio.io/component"] == "notebook" and labels["kubestudio.io/project"] == project
    if project == "vision":
        assert manifest["spec"]["nodeSelector"] == {"org": "vision"}
        assert {"key": "dedicated", "operator": "Equal", "value": "vision", "effect": "NoSchedule"} in manifest["spec"][
            "tolerations"
        ]
        assert {"/data", "/etc/train", "/secrets/registry"} <= set(mounts)
        shm = [v for v in manifest["spec"]["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
        assert len(shm) == 1 and shm[0]["emptyDir"]["sizeLimit"] == str(16 * 1024**3)  # the project's wins
    if project == "lab":
        assert any(v.get("hostPath", {}).get("path") == "/data/aidata" for v in manifest["spec"]["volumes"])


def test_gpu_type_becomes_required_node_affinity_and_cube_studio_form():
    catalog = parse_catalog(
        {
            "profiles": [
                {"slug": "a100", "gpu": {"count": 1, "type": "A100"}},
                {"slug": "v100", "gpu": "1(V100)", "images": ["img:1"]},
                {"slug": "mig", "gpu": {"count": 2, "resource": "nvidia.com/mig-1g.10gb"}},
            ]
        }
    )
    manifest = pod_manifest("bob", "", request_for("a100", "public", catalog=catalog), SETTINGS)
    terms = manifest["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]}]}
    ]
    manifest = pod_manifest("bob", "", request_for("v100", "public", catalog=catalog), SETTINGS)
    terms = manifest["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms[0]["matchExpressions"][0]["values"] == ["V100"]
    manifest = pod_manifest("bob", "", request_for("mig", "public", catalog=catalog), SETTINGS)
    assert manifest["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "2"
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_hostpath_only_where_the_admin_allows_it():
    request = request_for("cpu-small", "lab")
    with pytest.raises(SpawnRefused) as e:
        workspace_traits("alice", "", request, PodSettings())
    assert "hostPath mounts are not enabled for this project" in str(e.value) and e.value.status == 403
    assert workspace_traits("alice", "", request, SETTINGS)["volumes"]


def test_project_cannot_hide_the_workspace():
    projects = {"public": parse_project("public", {"volume_mount": "other(pvc):/mnt/alice"})}
    request = resolve_request({"profile": "cpu-small"}, CATALOG, projects)
    with pytest.raises(SpawnRefused, match="would hide /mnt/alice"):
        workspace_traits("alice", "", request, SETTINGS)


@pytest.mark.parametrize(
    "name", ["first.last", "someone@example.org", "ünïcödé", "..", "../../etc", "a/b", "x" * 250, "Alice"]
)
def test_tricky_usernames(name):
    manifest = pod_manifest(name, "gpu-box", request_for("cpu-small", "public"), SETTINGS)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert len(manifest["metadata"]["name"]) <= 63
    mounts = {m["name"]: m for m in manifest["spec"]["containers"][0]["volumeMounts"]}
    for volume in ("workspace", "archives"):
        sub_path = mounts[volume]["subPath"]
        assert sub_path == user_slug(name) and "/" not in sub_path and ".." not in sub_path
        folder = mounts[volume]["mountPath"].rsplit("/", 1)[1]
        assert folder == mount_name(name) and folder not in ("..", ".") and "/" not in folder
    assert manifest["metadata"]["annotations"]["kubestudio.io/username"] == name
    # same name, same folder
    again = pod_manifest(name, "", request_for("cpu-small", "public"), SETTINGS)
    assert again["spec"]["containers"][0]["volumeMounts"][0] == manifest["spec"]["containers"][0]["volumeMounts"][0]


def test_safe_usernames_keep_their_name_in_the_path():
    assert mount_name("alice") == "alice" and mount_name("first.last") == "first.last"
    assert mount_name("..") != ".." and mount_name("a/b") != "a/b"


def test_project_namespaces():
    settings = PodSettings(project_namespaces=True)
    assert workspace_traits("a", "", request_for("cpu-small", "vision"), settings)["namespace"] == "vision"
