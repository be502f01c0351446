"""The bench's simulated Katib does what Katib documents, kept honest by Katib's own Python SDK
(``kubeflow-katib``: KatibClient's create_experiment, wait_for_experiment_condition,
get_optimal_hyperparameters, list_trials, get_trial_metrics; report_metrics from the trials)."""

import json
import os
import subprocess

import pytest

from kubestudio.testing.sdkvenv import SDKUnavailable, sdk_python

NS = "katib"
SDK_VERSION = "0.19.0"
# kubernetes 37 refuses the SDK's models where it wants dicts (as kserve's), and 36 writes types as
# dict[str, str], which the SDK's deserializer cannot read (list_trials fails): the last it works with
SDK_REQUIREMENTS = [f"kubeflow-katib=={SDK_VERSION}", "kubernetes<36"]

# a trial: the Push collector's way, Katib's report_metrics to the DB manager
TRIAL = r"""
import sys
from kubeflow.katib.utils import utils
# a pod reads its namespace from its service account's files; this process is not in a pod
utils.get_current_k8s_namespace = lambda: sys.argv[1]
from kubeflow.katib import report_metrics
lr = float(sys.argv[3].split("=", 1)[1])
report_metrics({"accuracy": 0.5 - abs(lr - 0.03), "loss": lr}, db_manager_address=sys.argv[2])
print("lr", lr)
"""

SDK_SCRIPT = r"""
import json, sys
from kubeflow.katib import KatibClient, models
from kubernetes.client import V1ObjectMeta
namespace, db_manager, python, trial = sys.argv[1:5]
job = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
    "restartPolicy": "Never", "containers": [{"name": "training-container", "image": "kubestudio/train:1",
    "command": [python, "-c", trial, namespace, db_manager, "--lr=${trialParameters.learningRate}"]}]}}}}
experiment = models.V1beta1Experiment(
    api_version="kubeflow.org/v1beta1", kind="Experiment", metadata=V1ObjectMeta(name="sdk-exp", namespace=namespace),
    spec=models.V1beta1ExperimentSpec(
        objective=models.V1beta1ObjectiveSpec(type="maximize", objective_metric_name="accuracy",
                                              additional_metric_names=["loss"]),
        algorithm=models.V1beta1AlgorithmSpec(
            algorithm_name="random", algorithm_settings=[models.V1beta1AlgorithmSetting(name="random_state", value="7")]),
        parallel_trial_count=2, max_trial_count=4, max_failed_trial_count=1,
        metrics_collector_spec=models.V1beta1MetricsCollectorSpec(collector=models.V1beta1CollectorSpec(kind="Push")),
        parameters=[models.V1beta1ParameterSpec(name="lr", parameter_type="double",
                                                feasible_space=models.V1beta1FeasibleSpace(min="0.01", max="0.05"))],
        trial_template=models.V1beta1TrialTemplate(
            primary_container_name="training-container",
            trial_parameters=[models.V1beta1TrialParameterSpec(name="learningRate", reference="lr")],
            trial_spec=job)))
client = KatibClient(namespace=namespace)
client.create_experiment(experiment)
client.wait_for_experiment_condition(name="sdk-exp", timeout=150, polling_interval=1)
print("SUCCEEDED", client.is_experiment_succeeded("sdk-exp"))
best = client.get_optimal_hyperparameters("sdk-exp")
print("BEST", json.dumps(best.to_dict()))
trials = client.list_trials("sdk-exp")
print("TRIALS", json.dumps(sorted(t.metadata.name for t in trials)))
print("SUCCESS", json.dumps(sorted(t["name"] for t in client.get_success_trial_details("sdk-exp"))))
logs = client.get_trial_metrics(best.best_trial_name, db_manager_address=db_manager)
print("METRICS", json.dumps(sorted((m.metric.name, m.metric.value) for m in logs)))
print("SUGGESTION", json.dumps(client.get_suggestion("sdk-exp").status.suggestion_count))
client.delete_experiment("sdk-exp")
"""


def katib_python():
    """Katib's SDK in a venv of its own (it must not meet the product's dependencies)."""
    try:
        return sdk_python(f"kubeflow-katib-{SDK_VERSION}", SDK_REQUIREMENTS)
    except SDKUnavailable as e:
        pytest.fail(str(e))


def test_upstream_katib_client_runs_an_experiment_on_the_bench(bench, ns):
    python = katib_python()
    run = subprocess.run(
        [python, "-W", "ignore", "-c", SDK_SCRIPT, NS, bench.katib_db_manager, python, TRIAL],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KUBECONFIG": bench.kubeconfig},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + bench.log_tail("operators")
    out = {}
    for line in run.stdout.splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    assert out["SUCCEEDED"] == "True"
    trials = json.loads(out["TRIALS"])
    assert len(trials) == 4 and all(t.startswith("sdk-exp-") for t in trials), trials
    assert json.loads(out["SUCCESS"]) == trials
    assert json.loads(out["SUGGESTION"]) == 4
    best = json.loads(out["BEST"])
    assert best["best_trial_name"] in trials
    metrics = {m["name"]: m for m in best["observation"]["metrics"]}
    assert set(metrics) == {"accuracy", "loss"}
    lr = float(next(p["value"] for p in best["parameter_assignments"] if p["name"] == "lr"))
    assert 0.01 <= lr <= 0.05
    assert float(metrics["accuracy"]["latest"]) == pytest.approx(0.5 - abs(lr - 0.03))
    assert float(metrics["loss"]["latest"]) == pytest.approx(lr)
    pushed = dict(json.loads(out["METRICS"]))
    assert float(pushed["accuracy"]) == pytest.approx(0.5 - abs(lr - 0.03))
