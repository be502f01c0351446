"""The servings' Kubernetes objects (pure builders): an InferenceService checked against KServe's
real CRD schema (../shared/crds), the Deployment fallback's objects by kubernetes-validate
(strict, Kubernetes 1.25 to 1.30); what every pod gets (read-only model, project scheduling, GPU
type, labels, no token, non-root)."""

import os

import jsonschema
import kubernetes_validate
import pytest

from kubestudio.jobs.serving.backends.base import ServingRun
from kubestudio.jobs.serving.manifests import deployment_objects, inference_service, object_name
from kubestudio.jobs.serving.spec import parse_serve_spec
from kubestudio.spawner.pods import PodSettings
from kubestudio.spawner.projects import parse_project
from kubestudio.testing import crds
from kubestudio.testing.kubebench.bench import default_crds_dir

VISION = parse_project("vision", {"node_selector": "org=vision", "tolerations": "gpu=true:NoSchedule"})
SETTINGS = PodSettings(namespace="ml", gpu_types={"A100": ["NVIDIA-A100-SXM4-80GB"]})


def isvc_schema():
    path = os.path.join(default_crds_dir(), "serving.kserve.io_inferenceservices.yaml")
    if not os.path.exists(path):
        pytest.skip(f"no CRD at {path}")
    return crds.schema(path, "v1beta1")


def version(owner, spec, path, model_format, generation=1):
    return ServingRun("0123456789ab", owner, spec, path, model_format, generation, project=VISION)


def as_pod(pod_fields, containers):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "check"},
        "spec": {**pod_fields, "containers": containers},
    }


def test_a_plain_model_is_kserves_to_mount_from_the_claim():
    spec = parse_serve_spec({"name": "iris", "model": "models/iris", "resources": {"cpu": 1, "memory": "2Gi"}})
    isvc = inference_service(version("alice", spec, "/mnt/alice/models/iris", "sklearn"), "img:1", SETTINGS)
    jsonschema.validate(isvc, isvc_schema())
    assert isvc["metadata"]["name"] == object_name("alice", "iris") and len(object_name("alice", "iris")) <= 47
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    predictor = isvc["spec"]["predictor"]
    container = predictor["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_URI"] == "pvc://kubestudio-workspace/alice/models/iris"
    assert container["command"][:6] == ["python", "-m", "kubestudio.jobs.serve", "--model", "/mnt/models", "--name"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}  # the model: KServe's mount
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    pod_fields = {k: v for k, v in predictor.items() if k not in ("minReplicas", "maxReplicas", "containers")}
    kubernetes_validate.validate(as_pod(pod_fields, predictor["containers"]), "1.30.0", strict=True)
    assert predictor["automountServiceAccountToken"] is False and predictor["nodeSelector"] == {"org": "vision"}
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["runAsUser"] == 1000
    assert isvc["metadata"]["labels"]["kubestudio.io/component"] == "serve"
    assert isvc["metadata"]["labels"]["kubestudio.io/project"] == "vision"
    assert isvc["metadata"]["labels"]["kubestudio.io/serving-generation"] == "1"  # KServe gives it to the pods


def test_a_model_class_reads_the_workspace_read_only_and_a_gpu_type_places_it():
    spec = parse_serve_spec(
        {
            "name": "seldon",
            "model": "models/seldon",
            "class": "IrisModel",
            "resources": {"gpu": "1(A100)"},
            "packages": ["rich"],
            "env": {"MODE": "fast"},
        }
    )
    isvc = inference_service(version("bob", spec, "/mnt/bob/models/seldon", "custom", 3), "img:1", SETTINGS)
    jsonschema.validate(isvc, isvc_schema())
    predictor = isvc["spec"]["predictor"]
    container = predictor["containers"][0]
    assert "--class" in container["command"] and "IrisModel" in container["command"]
    assert container["command"][container["command"].index("--package") + 1] == "rich"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert (
        mounts["/mnt/bob"]["readOnly"]
        and mounts["/mnt/bob"]["subPath"] == "bob"
        and mounts["/archives/bob"]["readOnly"]
    )
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][
        0
    ]["matchExpressions"][0]["values"] == ["NVIDIA-A100-SXM4-80GB"]
    assert isvc["metadata"]["labels"]["kubestudio.io/gpus"] == "1"
    assert isvc["metadata"]["labels"]["kubestudio.io/serving-generation"] == "3"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODE"] == "fast" and "NVIDIA_VISIBLE_DEVICES" not in env


@pytest.mark.parametrize("kubernetes_version", ["1.25.0", "1.27.0", "1.30.0"])
def test_without_kserve_a_deployment_service_and_autoscaler(kubernetes_version):
    spec = parse_serve_spec(
        {"name": "iris", "model": "models/iris", "replicas": {"min": 2, "max": 5}, "resources": {"cpu": "500m"}}
    )
    iris = version("alice", spec, "/mnt/alice/models/iris", "sklearn")
    objects = deployment_objects(iris, "img:1", SETTINGS)
    assert [o["kind"] for o in objects] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    deployment, service, hpa = objects
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["kubestudio.io/serving-id"] == "0123456789ab"
    # the version a pod serves: requests go to the newest version's pods during a rollout
    assert pod["metadata"]["labels"]["kubestudio.io/serving-generation"] == "1"
    assert "kubestudio.io/serving-generation" not in deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    container = pod["spec"]["containers"][0]
    assert container["command"][container["command"].index("--model") + 1] == "/mnt/alice/models/iris"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/mnt/alice", "/archives/alice"}
    # a cluster before 1.23 serves autoscaling/v2beta2 only: the same fields, valid there too
    old = deployment_objects(iris, "img:1", SETTINGS, autoscaling="autoscaling/v2beta2")[2]
    assert old["apiVersion"] == "autoscaling/v2beta2" and old["spec"] == hpa["spec"]
    kubernetes_validate.validate(old, "1.25.0", strict=True)
    one = parse_serve_spec({"name": "iris", "model": "models/iris"})
    assert [
        o["kind"]
        for o in deployment_objects(version("alice", one, "/mnt/alice/models/iris", "sklearn"), "img:1", SETTINGS)
    ] == ["Deployment", "Service"]
