"""The jobs service's Kubernetes backend on the bench, end to end through a real hub and the
service: every kind (a plain Job, PyTorchJob, TFJob, TrainJob, MPIJob) runs with the user's
workspace, logs per rank, failures with their exit code or OOMKilled, why a job waits, cancel
leaving nothing behind, a kind the cluster lacks refused with 409, injected API faults and a
service restart mid-job."""

import json
import os
import signal
import time

import pytest
import requests
import yaml

from kubestudio.jobs import JobFailed
from kubestudio.spawner.storage import user_slug
from kubestudio.testing.imageshub import ensure_claims
from kubestudio.testing.kubebench.bench import default_crds_dir
from kubestudio.testing.localhub import LocalHub
from kubestudio.testing.servicehub import JobsHub

from .conftest import MISSING_IMAGE

pytestmark = pytest.mark.e2e

NS = "default"
PATHS = [
    "/api/v1/namespaces/default/pods",
    "/api/v1/namespaces/default/services",
    "/api/v1/namespaces/default/configmaps",
    "/apis/batch/v1/namespaces/default/jobs",
    *(f"/apis/kubeflow.org/v1/namespaces/default/{p}" for p in ("pytorchjobs", "tfjobs", "mpijobs")),
    "/apis/trainer.kubeflow.org/v1alpha1/namespaces/default/trainjobs",
]

RANKS = """import json, os, sys
rank = os.environ.get("RANK") or os.environ.get("PET_NODE_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or "0"
if "TF_CONFIG" in os.environ:  # TensorFlow's ranks: the chief, then the workers
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    rank = str(0 if task["type"] == "chief" else task["index"] + 1)
os.makedirs("ranks", exist_ok=True)
keys = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "PET_NNODES", "PET_NODE_RANK", "TF_CONFIG", "KUBESTUDIO_JOB",
        "OMPI_COMM_WORLD_SIZE", "HOSTNAME")
with open(f"ranks/{os.environ['KUBESTUDIO_JOB']}-{rank}.json", "w") as f:
    json.dump({k: os.environ[k] for k in keys if k in os.environ}, f)
print("rank", rank, "wrote its file", *sys.argv[1:])
"""


class K8sJobsHub(JobsHub):
    """A hub whose jobs run on the bench: the users' workspaces are the bench's claim."""

    def __init__(self, hub, bench):
        super().__init__(hub)
        self.bench = bench

    def workspace(self, user):
        path = self.bench.volume_folder(NS, "kubestudio-workspace", user_slug(user))
        os.makedirs(path, exist_ok=True)
        return path

    def ranks(self, user, job):
        folder = os.path.join(self.workspace(user), "ranks")
        return {
            name.removeprefix(f"{job}-").removesuffix(".json"): json.load(open(os.path.join(folder, name)))
            for name in sorted(os.listdir(folder))
            if name.startswith(f"{job}-")
        }

    def leftovers(self, record):
        """What a job left in the cluster: its object and anything named after it (pods, Services,
        the Jobs of a TrainJob)."""
        name = record["refs"].get("name") if record.get("refs") else None
        found = []
        for path in PATHS:
            r = self.bench.api("GET", path)
            if r.status_code != 200:
                continue
            for item in r.json()["items"]:
                item_name = item["metadata"]["name"]
                labels = item["metadata"].get("labels") or {}
                if labels.get("kubestudio.io/job-id") == record["id"] or (
                    name and (item_name == name or item_name.startswith(name + "-"))
                ):
                    found.append(f"{path.rsplit('/', 1)[1]}/{item_name}")
        return found

    def wait_gone(self, record, timeout=60):
        deadline = time.monotonic() + timeout
        while self.leftovers(record):
            assert time.monotonic() < deadline, self.leftovers(record)
            time.sleep(0.5)


def ensure_runtime(bench):
    with open(os.path.join(default_crds_dir(), "runtimes", "torch_distributed.yaml")) as f:
        runtime = yaml.safe_load(f)
    r = bench.api("POST", "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes", json=runtime)
    assert r.status_code in (201, 409), r.text


def start_k8s_jobs_hub(root, bench, keep=False, registry=None, extra_config=""):
    ensure_claims(bench)
    ensure_runtime(bench)
    extra = extra_config + (
        ""
        if registry is None
        else f"""
c.KubernetesJobBackend.registry_host = {registry.host!r}
c.KubernetesJobBackend.registry_insecure = True
c.KubernetesJobBackend.registry_auth_file = {registry.auth!r}
"""
    )
    extra += f"""
c.JobService.backend_class = "kubestudio.jobs.training.backends.kubernetes.KubernetesJobBackend"
c.JobService.max_running_jobs_per_user = 3
c.KubernetesJobBackend.kubeconfig = {bench.proxy_kubeconfig!r}
c.KubernetesJobBackend.uid = {os.getuid()}
c.KubernetesJobBackend.gid = {os.getgid()}
c.KubernetesJobBackend.default_image = "kubestudio/notebook:1"
c.KubernetesJobBackend.image_pull_grace_seconds = 2
c.KubernetesJobBackend.pending_events_seconds = 2
c.KubernetesJobBackend.discovery_seconds = 1
c.JobService.katib_db_manager = {bench.katib_db_manager or ""!r}
c.JobService.argo_executor_service_account = "argo-executor"
"""
    settings = {
        "images_service": False,
        "tensorboards_service": False,
        "keep_servers_running": keep,
        "projects": {"vision": {"users": ["vic"], "max_gpus": 1}},
    }
    return K8sJobsHub(LocalHub(root, settings=settings, extra_config=extra).start(), bench)


@pytest.fixture(scope="module")
def k8s(bench, registry, tmp_path_factory):
    if bench.crds_missing:
        pytest.skip(bench.crds_missing)
    jobs_hub = start_k8s_jobs_hub(tmp_path_factory.mktemp("k8s-jobs-hub"), bench, registry=registry)
    try:
        yield jobs_hub
    finally:
        jobs_hub.hub.stop()


def faults(bench, rules=(), drop_watch_after_s=None):
    r = requests.put(
        bench.proxy_url + "/_kubebench/faults",
        verify=False,
        timeout=10,
        json={"rules": list(rules), "drop_watch_after_s": drop_watch_after_s},
    )
    assert r.status_code == 200, r.text


def test_a_two_node_pytorchjob_runs_in_the_users_workspace(k8s):
    client = k8s.client("kate")
    k8s.write("kate", "ranks.py", RANKS)
    job = client.create(name="ddp", script="ranks.py", args=["--lr", "0.1"], nodes=2, framework="pytorch")
    assert job["backend"] == "kubernetes" and job["image"] == "kubestudio/notebook:1"
    done = client.wait("ddp", timeout=120)
    assert done["status"] == "succeeded", done
    name = done["refs"]["name"]
    assert done["refs"]["kind"] == "PyTorchJob" and name.startswith("ddp-")
    seen = k8s.ranks("kate", "ddp")
    assert {r: (e["RANK"], e["WORLD_SIZE"], e["MASTER_ADDR"]) for r, e in seen.items()} == {
        "0": ("0", "2", f"{name}-master-0"),
        "1": ("1", "2", f"{name}-master-0"),
    }
    log = client.logs("ddp").splitlines()
    assert "[master-0] rank 0 wrote its file --lr 0.1" in log and "[worker-0] rank 1 wrote its file --lr 0.1" in log
    assert done["exit"] == {
        "master-0": {"code": 0, "reason": "Completed"},
        "worker-0": {"code": 0, "reason": "Completed"},
    }
    # the record keeps the log; the cluster keeps nothing
    k8s.wait_gone(done)


TUNED = """\
import argparse, os
from kubestudio import trial
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
x = parser.parse_args().x
trial.report(0, score=-abs(x - 2) - 1)
trial.report(score=-abs(x - 2))  # rank 0's report counts; the other rank's is not sent
print("rank", os.environ.get("RANK", "0"), "x", x)
"""


def test_an_experiments_trials_are_the_clusters_jobs(k8s):
    """Each trial a PyTorchJob of two pods on the cluster, reporting from its pod to the service."""
    from kubestudio.jobs.experiments.client import ExperimentsClient

    k8s.write("tess", "tuned.py", TUNED)
    experiments = ExperimentsClient(url=k8s.url, token=k8s.token("tess"))
    created = experiments.create(
        {
            "name": "k8s",
            "objective": {"metric": "score"},
            "space": {"x": {"type": "choice", "values": [1, 2, 4]}},
            "algorithm": "grid",
            "max_trials": 3,
            "parallel_trials": 3,
            "trial": {"script": "tuned.py", "nodes": 2, "framework": "pytorch"},
        }
    )
    done = experiments.wait(created["id"], timeout=180)
    assert done["status"] == "succeeded" and done["trials"] == {"complete": 3}, experiments.trials("k8s")
    assert done["best"]["params"] == {"x": 2} and done["best"]["value"] == 0.0
    client = k8s.client("tess")
    for trial in experiments.trials("k8s"):
        job = client.get(trial["job"])
        assert job["backend"] == "kubernetes" and job["refs"]["kind"] == "PyTorchJob", job
        assert trial["intermediate"] == {"0": -abs(trial["params"]["x"] - 2) - 1}
        log = client.logs(job["id"])
        assert "[master-0] rank 0 x" in log and "[worker-0] rank 1 x" in log, log
        k8s.wait_gone(job)


def test_katib_runs_an_experiment_whose_trials_report_through_the_service(k8s, bench):
    """backend: katib: one Katib Experiment (Push collector) whose trials are the jobs backend's
    Jobs; the trials report to the service as ever, the service pushes to Katib's DB manager,
    Katib picks the best, and the experiment reads as any other."""
    from kubestudio.jobs.experiments.client import ExperimentsClient

    k8s.write("tess", "tuned.py", TUNED)
    experiments = ExperimentsClient(url=k8s.url, token=k8s.token("tess"))
    created = experiments.create(
        {
            "name": "by-katib",
            "backend": "katib",
            "objective": {"metric": "score"},
            "space": {"x": {"type": "choice", "values": [1, 2, 4]}},
            "algorithm": "grid",
            "max_trials": 3,
            "parallel_trials": 2,
            "trial": {"script": "tuned.py"},
        }
    )
    assert created["backend"] == "katib", created
    path = f"/apis/kubeflow.org/v1beta1/namespaces/{NS}/experiments/exp-{created['id']}"
    katib = bench.api("GET", path).json()
    assert katib["spec"]["metricsCollectorSpec"] == {"collector": {"kind": "Push"}}
    assert katib["spec"]["algorithm"]["algorithmName"] == "grid"
    assert katib["spec"]["parameters"] == [
        {"name": "x", "parameterType": "discrete", "feasibleSpace": {"list": ["1", "2", "4"]}}
    ]
    done = experiments.wait(created["id"], status=("succeeded", "failed", "cancelled"), timeout=180)
    trials = experiments.trials(created["id"])
    assert done["status"] == "succeeded" and done["trials"] == {"complete": 3}, json.dumps([done, trials], indent=1)
    assert done["message"].startswith("Katib: Experiment has succeeded because max trial count"), done
    assert done["best"]["params"] == {"x": 2} and done["best"]["value"] == 0.0
    assert sorted(t["params"]["x"] for t in trials) == [1, 2, 4]
    for trial in trials:
        assert trial["katib_trial"].startswith(f"exp-{created['id']}-") and trial["job"] is None
        assert trial["intermediate"] == {"0": -abs(trial["params"]["x"] - 2) - 1}, trial
    assert "rank 0 x 2.0" in experiments.logs(created["id"], done["best"]["number"])
    katib = bench.api("GET", path).json()
    best = next(t for t in trials if t["number"] == done["best"]["number"])
    assert katib["status"]["currentOptimalTrial"]["bestTrialName"] == best["katib_trial"]
    # the experiment's token and no other reports for its trials
    url = f"{k8s.url}api/experiments/{created['id']}/katib/{best['katib_trial']}/report"
    refused = requests.post(url, json={"metrics": {"score": 9}}, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert refused.status_code == 403 and "another experiment" in refused.json()["message"]
    # the experiment's own token reports for its trials alone, not another experiment's
    env = katib["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(e["value"] for e in env if e["name"] == "KUBESTUDIO_TRIAL_TOKEN")
    elsewhere = f"{k8s.url}api/experiments/{created['id']}/katib/exp-0123456789ab-abcdefgh/report"
    refused = requests.post(
        elsewhere, json={"metrics": {"score": 9}}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert refused.status_code == 403 and "is not a trial of this experiment" in refused.json()["message"], refused.text
    # forgetting it removes Katib's Experiment, its Trials and their Jobs
    experiments.delete(created["id"], forget=True)
    deadline = time.monotonic() + 60
    while bench.api("GET", path).status_code != 404:
        assert time.monotonic() < deadline, "Katib's Experiment was not deleted"
        time.sleep(0.5)


def test_a_pipelines_tasks_are_the_clusters_jobs(k8s):
    """Where Argo is absent the service runs the DAG itself: each task a job of the backend's
    kinds (here a Job, then a PyTorchJob of two pods), outputs passed downstream through the
    workspace they share."""
    from kubestudio.jobs.pipelines.client import PipelinesClient

    k8s.write("tess", "ranks.py", RANKS)
    pipelines = PipelinesClient(url=k8s.url, token=k8s.token("tess"))
    run = pipelines.run(
        {
            "name": "k8s",
            "tasks": {
                "prepare": {
                    "job": {"command": ["sh", "-c", "echo 7 > {{outputs.seed}}"]},
                    "outputs": {"seed": "seed-{{run}}.txt"},
                },
                "train": {
                    "depends": ["prepare"],
                    "job": {
                        "script": "ranks.py",
                        "args": ["{{tasks.prepare.outputs.seed}}"],
                        "nodes": 2,
                        "framework": "pytorch",
                    },
                },
            },
        }
    )
    done = pipelines.wait(run, timeout=180)
    tasks = {t["name"]: t for t in done["tasks"]}
    client = k8s.client("tess")
    assert client.get(tasks["train"]["job"])["refs"]["kind"] == "PyTorchJob"
    log = pipelines.logs(run, "train")
    assert f"[master-0] rank 0 wrote its file seed-{run['id']}.txt" in log, log
    assert open(os.path.join(k8s.workspace("tess"), f"seed-{run['id']}.txt")).read() == "7\n"
    for task in tasks.values():
        k8s.wait_gone(client.get(task["job"]))
    # the service cannot read a cluster's workspaces, so it cannot key a task by its inputs: said
    cached = {"name": "k8s", "cache": "auto", "tasks": {"a": {"job": {"command": "true"}}}}
    with pytest.raises(Exception, match="tasks.a.cache: auto keys a task by the content of its inputs"):
        pipelines.run(cached)


ARGO_API = "/apis/argoproj.io/v1alpha1"


def test_a_pipeline_of_single_pod_tasks_is_one_argo_workflow(k8s, bench):
    """Where the cluster has Argo Workflows, a run whose tasks are each one pod is a Workflow: each
    task a container template with its job's pod (workspace, no token, our labels), depends, when
    and retries kept; the run's tasks, attempts, logs and end read from the Workflow's nodes;
    cancel shuts it down, forget deletes it and its pods."""
    from kubestudio.jobs.pipelines.client import PipelinesClient

    k8s.write(
        "wren",
        "flaky.py",
        "import os, sys\nn = int(open('n').read()) if os.path.exists('n') else 0\n"
        "open('n', 'w').write(str(n + 1))\nsys.exit(0 if n else 'first attempt fails')\n",
    )
    pipelines = PipelinesClient(url=k8s.url, token=k8s.token("wren"))
    spec = {
        "name": "wf",
        "params": {"deploy": {"type": "bool", "default": False}},
        "tasks": {
            "prepare": {
                "job": {"command": ["sh", "-c", "echo 7 > {{outputs.seed}} && echo prepared"]},
                "outputs": {"seed": "seed-{{run}}.txt"},
            },
            "flaky": {"depends": ["prepare"], "job": {"script": "flaky.py"}, "retries": 1},
            "report": {
                "depends": "flaky.Succeeded && prepare",
                "job": {"command": ["sh", "-c", "echo seed=$(cat {{tasks.prepare.outputs.seed}})"]},
            },
            "deploy": {"depends": ["report"], "when": "{{params.deploy}} == true", "job": {"command": ["true"]}},
            "alert": {"depends": "flaky.Failed", "job": {"command": ["echo", "alert"]}},
        },
    }
    run = pipelines.run(spec)
    assert run["backend"] == "argo", run
    try:
        done = pipelines.wait(run, timeout=120)
    except TimeoutError:
        workflow = bench.api("GET", f"{ARGO_API}/namespaces/default/workflows/wf-{run['id']}").json()
        raise AssertionError(
            json.dumps(workflow.get("status"), indent=1)[:4000] + bench.log_tail("operators")
        ) from None
    tasks = {t["name"]: t for t in done["tasks"]}
    assert done["status"] == "succeeded" and done["message"] == "3 tasks succeeded, 2 skipped", done
    assert done["workflow"] == f"wf-{run['id']}"  # what the page and `pipelines show` name
    assert tasks["flaky"]["attempts"] == 2 and tasks["prepare"]["attempts"] == 1
    assert (
        tasks["deploy"]["status"] == "skipped"
        and tasks["deploy"]["message"] == "when '{{params.deploy}} == true' was false"
    )
    assert (
        tasks["alert"]["status"] == "skipped" and tasks["alert"]["message"] == "its depends (flaky.Failed) did not hold"
    )
    assert "seed=7" in pipelines.logs(done, "report") and "prepared" in pipelines.logs(done, "prepare")
    workflow = bench.api("GET", f"{ARGO_API}/namespaces/default/workflows/wf-{run['id']}").json()
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    assert templates["flaky"]["retryStrategy"]["limit"] == "1"
    assert templates["prepare"]["automountServiceAccountToken"] is False
    # the one token in a task's pod is Argo's executor's (init and wait containers), as the chart grants it
    assert workflow["spec"]["executor"] == {"serviceAccountName": "argo-executor"}
    assert workflow["spec"]["automountServiceAccountToken"] is False
    assert "fsGroup" in templates["prepare"]["securityContext"]  # the pod's, as its Job's
    assert templates["prepare"]["container"]["securityContext"]["allowPrivilegeEscalation"] is False
    assert any(m.get("subPath") for m in templates["prepare"]["container"]["volumeMounts"])
    assert {t["name"]: t.get("depends") for t in templates["dag"]["dag"]["tasks"]}[
        "report"
    ] == "flaky.Succeeded && prepare"
    # exported for argo submit: the same templates, {{workflow.name}} where the run's id was, valid
    # by Argo's own CRD schema, and it runs on the cluster as it is
    import jsonschema

    from kubestudio.testing import crds
    from kubestudio.testing.kubebench.bench import default_crds_dir

    exported = pipelines.export_argo(spec)["workflow"]
    assert exported["metadata"]["generateName"] == "wf-" and "name" not in exported["metadata"]
    prepare = {t["name"]: t for t in exported["spec"]["templates"]}["prepare"]
    assert "seed-{{workflow.name}}.txt" in json.dumps(prepare["container"])
    schema = crds.schema(os.path.join(default_crds_dir(), "argo", "argoproj.io_workflows.yaml"), "v1alpha1")
    jsonschema.validate(exported, schema)
    exported["metadata"]["namespace"] = "default"
    made = bench.api("POST", f"{ARGO_API}/namespaces/default/workflows", json=exported).json()
    name = made["metadata"]["name"]
    deadline = time.monotonic() + 120
    while (bench.api("GET", f"{ARGO_API}/namespaces/default/workflows/{name}").json().get("status") or {}).get(
        "phase"
    ) not in ("Succeeded", "Failed", "Error"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    finished = bench.api("GET", f"{ARGO_API}/namespaces/default/workflows/{name}").json()
    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    assert os.path.exists(os.path.join(k8s.workspace("wren"), f"seed-{name}.txt"))
    bench.api("DELETE", f"{ARGO_API}/namespaces/default/workflows/{name}")
    # no job records: the tasks are Argo's pods
    assert not [j for j in k8s.client("wren").list() if j["name"].startswith("wf-")]
    # cancel: the Workflow is shut down, its pod stopped; forget: it is deleted
    slow = {"name": "slow", "tasks": {"a": {"job": {"command": ["sleep", "60"]}}}}
    run = pipelines.run(slow)
    deadline = time.monotonic() + 60
    while pipelines.get(run)["tasks"][0]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    cancelled = pipelines.cancel(run, forget=True)
    assert cancelled["status"] == "cancelled"
    deadline = time.monotonic() + 60
    while bench.api("GET", f"{ARGO_API}/namespaces/default/workflows/slow-{run['id']}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    selector = f"kubestudio.io/pipeline-run={run['id']}"
    while bench.api("GET", "/api/v1/namespaces/default/pods", params={"labelSelector": selector}).json()["items"]:
        assert time.monotonic() < deadline
        time.sleep(0.3)


def fire_now(bench, schedule_id):
    """Make the CronWorkflow of schedule ``schedule_id`` fire at once: Argo fires the first time
    after its status.lastScheduledTime, and a per-minute schedule's last time 90 s ago is due now
    (a suspended one is resumed)."""
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 90))
    patch_cron(bench, schedule_id, {"spec": {"suspend": False}, "status": {"lastScheduledTime": past}})


def suspend(bench, schedule_id):
    """Keep a per-minute CronWorkflow from firing until :func:`fire_now`."""
    patch_cron(bench, schedule_id, {"spec": {"suspend": True}})


def patch_cron(bench, schedule_id, patch):
    r = bench.api(
        "PATCH",
        f"{ARGO_API}/namespaces/default/cronworkflows/ks-{schedule_id}",
        data=json.dumps(patch),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text


def test_a_schedule_on_argo_is_a_cron_workflow_whose_runs_are_recorded(k8s, bench):
    """Where the cluster has Argo Workflows, a schedule is a CronWorkflow: Argo fires it, and each
    Workflow it makes is recorded as a run of the schedule (its id the Workflow's name, {{run}} in
    the paths the same), followed like any run Argo runs; a schedule Argo cannot keep (catchup)
    stays the service's; unscheduling removes the CronWorkflow and keeps the runs."""
    from kubestudio.jobs.pipelines.client import PipelinesClient

    pipelines = PipelinesClient(url=k8s.url, token=k8s.token("wren"))
    spec = {
        "name": "nightly",
        "schedule": {"cron": "* * * * *", "timezone": "Europe/Paris"},
        "tasks": {
            "prepare": {
                "job": {"command": ["sh", "-c", "echo prepared > {{outputs.data}}"]},
                "outputs": {"data": "nightly/{{run}}.txt"},
            },
            "train": {"depends": ["prepare"], "job": {"command": ["cat", "{{tasks.prepare.outputs.data}}"]}},
        },
    }
    k8s.write("wren", "nightly/.keep", "")
    schedule = pipelines.schedule(spec)
    assert schedule["backend"] == "argo" and "CronWorkflow ks-" in schedule["message"], schedule
    cron_path = f"{ARGO_API}/namespaces/default/cronworkflows/ks-{schedule['id']}"
    cron = bench.api("GET", cron_path).json()
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and cron["spec"]["timezone"] == "Europe/Paris"
    assert cron["spec"]["workflowMetadata"]["labels"]["kubestudio.io/pipeline-schedule"] == schedule["id"]
    # each run Argo makes is checked as a run the service fires: a project's limit lowered after
    # the schedule was made refuses it (once the service's 30 s cache of the hub's groups has
    # passed, which the steps below use), and its Workflow is stopped
    vic = PipelinesClient(url=k8s.url, token=k8s.token("vic"))
    gpu_job = {"command": ["sleep", "30"], "project": "vision", "resources": {"gpu": 1}}
    in_vision = vic.schedule({"name": "in-vision", "schedule": spec["schedule"], "tasks": {"g": {"job": gpu_job}}})
    assert in_vision["backend"] == "argo", in_vision
    suspend(bench, in_vision["id"])  # fired by the test alone, once the cache has passed
    assert k8s.hub.api("PUT", "/groups/vision/properties", json={"max_gpus": 0}).status_code == 200
    lowered = time.monotonic()
    try:
        _nightly_runs_on_argo(k8s, bench, pipelines, spec, schedule)
        time.sleep(max(0.0, 31 - (time.monotonic() - lowered)))
        fire_now(bench, in_vision["id"])
        deadline = time.monotonic() + 60
        while (
            not (refused := [r for r in vic.runs() if r["pipeline"] == "in-vision"])
            or refused[0]["status"] == "running"
        ):
            assert time.monotonic() < deadline, refused
            time.sleep(0.3)
        refused = refused[-1]  # the first (a later minute may fire again)
        assert refused["status"] == "failed", refused
        assert refused["message"].startswith("refused when its schedule fired: tasks.g.job:"), refused
        workflow = bench.api("GET", f"{ARGO_API}/namespaces/default/workflows/{refused['id']}").json()
        assert workflow["spec"].get("shutdown") == "Terminate", workflow["spec"]
    finally:
        k8s.hub.api("PUT", "/groups/vision/properties", json={"max_gpus": 1})
        vic.unschedule("in-vision")


def _nightly_runs_on_argo(k8s, bench, pipelines, spec, schedule):
    """The first schedule's run: Argo fires it, the service records and follows it."""
    cron_path = f"{ARGO_API}/namespaces/default/cronworkflows/ks-{schedule['id']}"
    fire_now(bench, schedule["id"])
    deadline = time.monotonic() + 60
    while not (runs := [r for r in pipelines.runs() if r["pipeline"] == "nightly"]):
        assert time.monotonic() < deadline, bench.log_tail("operators")
        time.sleep(0.3)
    [run] = runs
    assert run["id"].startswith(f"ks-{schedule['id']}-") and run["schedule"] == schedule["id"], run
    done = pipelines.wait(run, timeout=120)
    assert done["status"] == "succeeded" and done["backend"] == "argo" and done["workflow"] == run["id"], done
    assert done["scheduled_for"] is not None
    assert "prepared" in pipelines.logs(done, "train")
    assert os.path.exists(os.path.join(k8s.workspace("wren"), "nightly", f"{run['id']}.txt"))
    listed = {s["pipeline"]: s for s in pipelines.schedules()}
    assert listed["nightly"]["last_fire"] is not None and run["id"] in listed["nightly"]["message"]
    # a Workflow with the schedule's labels that its CronWorkflow did not make is no run of it
    made = bench.api("GET", f"{ARGO_API}/namespaces/default/workflows/{run['id']}").json()
    labels = {k: v for k, v in made["metadata"]["labels"].items() if k != "workflows.argoproj.io/cron-workflow"}
    forged = {**made, "metadata": {"name": f"forged-{schedule['id']}", "labels": labels}}
    forged.pop("status", None)
    assert bench.api("POST", f"{ARGO_API}/namespaces/default/workflows", json=forged).status_code == 201
    time.sleep(3)  # the watch has seen it (it wakes runs within a second)
    assert [r["id"] for r in pipelines.runs() if r["pipeline"] == "nightly"] == [run["id"]]
    bench.api("DELETE", f"{ARGO_API}/namespaces/default/workflows/forged-{schedule['id']}")
    # a schedule Argo cannot keep is the service's: its CronWorkflow goes
    spec["schedule"]["catchup"] = True
    spec["schedule"]["start"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 86400))
    replaced = pipelines.schedule(spec)
    assert replaced["id"] == schedule["id"] and replaced["backend"] == "kubestudio"
    assert bench.api("GET", cron_path).status_code == 404
    pipelines.unschedule("nightly")
    # and back on Argo, then unscheduled: the CronWorkflow goes, the runs stay
    del spec["schedule"]["catchup"], spec["schedule"]["start"]
    again = pipelines.schedule(spec)
    assert again["backend"] == "argo"
    cron_path = f"{ARGO_API}/namespaces/default/cronworkflows/ks-{again['id']}"
    assert bench.api("GET", cron_path).status_code == 200
    pipelines.unschedule("nightly")
    assert bench.api("GET", cron_path).status_code == 404
    assert pipelines.get(run["id"])["status"] == "succeeded"


@pytest.mark.parametrize(
    "framework,nodes,kind,replicas",
    [
        ("python", 1, "Job", ["rank-0"]),
        ("tensorflow", 2, "TFJob", ["chief-0", "worker-0"]),
        ("trainjob", 2, "TrainJob", ["node-0", "node-1"]),
    ],
)
def test_every_kind_runs_its_ranks(k8s, framework, nodes, kind, replicas):
    client = k8s.client("kate")
    k8s.write("kate", "ranks.py", RANKS)
    name = f"kind-{framework}"
    body = {"name": name, "script": "ranks.py", "nodes": nodes, "framework": framework}
    if framework == "trainjob":
        body["runtime"] = "torch-distributed"
    client.create(body)
    done = client.wait(name, timeout=120)
    assert done["status"] == "succeeded" and done["refs"]["kind"] == kind, done
    log = client.logs(name)
    for replica in replicas:
        assert f"[{replica}] rank " in log, log
    seen = k8s.ranks("kate", name)
    assert len(seen) == nodes, seen
    if kind == "TFJob":
        config = json.loads(seen["0"]["TF_CONFIG"])
        assert set(config["cluster"]) == {"chief", "worker"}
    if kind == "TrainJob":
        assert sorted(e["PET_NODE_RANK"] for e in seen.values()) == ["0", "1"]
        assert all(e["PET_NNODES"] == "2" for e in seen.values())
    k8s.wait_gone(done)


def test_an_mpijob_starts_its_ranks_in_the_workers(k8s, bench):
    """The launcher's mpirun (the bench's stand-in: kubectl exec into the workers, as the MPI
    Operator's launcher does) finds the workers in the operator's hostfile."""
    client = k8s.client("kate")
    k8s.write("kate", "ranks.py", RANKS)
    kubeconfig = os.path.join(k8s.workspace("kate"), ".kubeconfig")
    with open(bench.kubeconfig) as src, open(kubeconfig, "w") as dst:
        dst.write(src.read())
    env = {"KUBECONFIG": "/mnt/kate/.kubeconfig", "KUBEBENCH_KUBECTL": bench.kubectl_bin}
    client.create(name="hvd", script="ranks.py", nodes=2, procs_per_node=2, framework="mpi", env=env)
    done = client.wait("hvd", timeout=120)
    assert done["status"] == "succeeded" and done["refs"]["kind"] == "MPIJob", done
    seen = k8s.ranks("kate", "hvd")
    name = done["refs"]["name"]
    assert {r: (e["OMPI_COMM_WORLD_SIZE"], e["HOSTNAME"]) for r, e in seen.items()} == {
        "0": ("4", f"{name}-worker-0"),
        "1": ("4", f"{name}-worker-0"),
        "2": ("4", f"{name}-worker-1"),
        "3": ("4", f"{name}-worker-1"),
    }
    log = client.logs("hvd")
    assert all(f"[launcher] rank {r} wrote its file" in log for r in range(4)), log
    k8s.wait_gone(done)


def test_exit_code_and_oom_are_reported(k8s):
    client = k8s.client("olga")
    k8s.write("olga", "fail.py", "import sys\nprint('giving up', flush=True)\nsys.exit(3)\n")
    k8s.write(
        "olga",
        "hog.py",
        "import time\nblocks = []\nfor _ in range(60):\n"
        "    blocks.append(bytearray(16 * 1024 * 1024))\n    time.sleep(0.02)\nprint('survived')\n",
    )
    client.create(name="fails", script="fail.py", nodes=2, framework="pytorch")
    client.create(name="hog", script="hog.py", resources={"memory": "200Mi"})
    with pytest.raises(JobFailed) as failed:
        client.wait("fails", timeout=120)
    record = failed.value.job
    assert "exited with code 3" in record["message"], record
    assert "[master-0] giving up" in client.logs("fails")
    with pytest.raises(JobFailed) as oom:
        client.wait("hog", timeout=120)
    assert "ran out of memory (OOMKilled, exit code 137; limit 200Mi per node)" in oom.value.job["message"]
    assert oom.value.job["exit"]["rank-0"] == {"code": 137, "reason": "OOMKilled"}


def test_a_waiting_job_says_why_and_cancel_leaves_nothing(k8s):
    client = k8s.client("walt")
    k8s.write("walt", "sleep.py", "import time\nprint('up', flush=True)\ntime.sleep(300)\n")
    # more CPU than any node has: the scheduler says so, and the job's message with it
    client.create(name="huge", script="sleep.py", resources={"cpu": "64"})
    deadline = time.monotonic() + 60
    while "Insufficient cpu" not in (client.get("huge")["message"] or ""):
        assert time.monotonic() < deadline, client.get("huge")
        time.sleep(0.5)
    assert client.get("huge")["status"] == "starting"
    client.delete("huge")
    assert client.get("huge")["status"] == "cancelled"
    k8s.wait_gone(client.get("huge"))
    # a running two-node job: cancel removes the PyTorchJob, its pods and Services
    client.create(name="long", script="sleep.py", nodes=2, framework="pytorch")
    client.wait("long", status="running", timeout=120)
    deadline = time.monotonic() + 30
    while "[worker-0] up" not in client.logs("long"):
        assert time.monotonic() < deadline, client.logs("long")
        time.sleep(0.3)
    deadline = time.monotonic() + 30
    while len(k8s.leftovers(client.get("long"))) < 5:  # the PyTorchJob, 2 pods, 2 Services
        assert time.monotonic() < deadline, k8s.leftovers(client.get("long"))
        time.sleep(0.3)
    cancelled = client.delete("long")
    assert cancelled["status"] == "cancelled" and cancelled["message"] == "cancelled by walt"
    k8s.wait_gone(client.get("long"))


def test_an_image_that_cannot_be_pulled_fails_with_the_reason(k8s):
    client = k8s.client("ivan")
    k8s.write("ivan", "ranks.py", RANKS)
    client.create(name="noimage", script="ranks.py", image=MISSING_IMAGE)
    with pytest.raises(JobFailed) as failed:
        client.wait("noimage", timeout=60)
    assert "the image cannot be pulled" in failed.value.job["message"]
    assert "ImagePullBackOff" in failed.value.job["message"] or "ErrImagePull" in failed.value.job["message"]
    k8s.wait_gone(failed.value.job)


def test_an_image_our_registry_lacks_is_refused_at_submit(k8s, registry):
    client = k8s.client("ivan")
    k8s.write("ivan", "ranks.py", RANKS)
    missing = f"{registry.host}/kubestudio/ivan/missing:1"
    r = requests.post(
        k8s.url + "api/jobs",
        headers={"Authorization": f"token {client.token}"},
        json={"name": "typo", "script": "ranks.py", "image": missing},
    )
    assert r.status_code == 400, r.text
    assert r.json()["message"] == (
        f"image: the registry {registry.host} has no image {missing} (build it first, or name one it has)"
    )
    assert not [j for j in client.list() if j["name"] == "typo"]
    client.create(name="built", script="ranks.py", image=registry.base)  # one it has
    assert client.wait("built", timeout=120)["image"] == registry.base


def test_a_kind_the_cluster_lacks_is_refused_with_409(k8s, bench):
    client = k8s.client("kate")
    k8s.write("kate", "ranks.py", RANKS)
    crd = bench.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/tfjobs.kubeflow.org").json()
    crd = {k: crd[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": crd["metadata"]["name"]}}
    assert bench.api("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/tfjobs.kubeflow.org").ok
    try:
        deadline = time.monotonic() + 30
        while bench.api("GET", "/apis/kubeflow.org/v1/namespaces/default/tfjobs").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        time.sleep(1.2)  # the service looks again after discovery_seconds
        r = requests.post(
            k8s.url + "api/jobs",
            headers={"Authorization": f"token {client.token}"},
            json={"name": "tf-missing", "script": "ranks.py", "nodes": 2, "framework": "tensorflow"},
        )
        assert r.status_code == 409, r.text
        assert r.json()["message"] == (
            "framework: a TFJob needs the Kubeflow Training Operator, which this cluster "
            "does not have (no tfjobs in kubeflow.org/v1)"
        )
        assert not [j for j in client.list() if j["name"] == "tf-missing"]
    finally:
        r = bench.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
        assert r.status_code in (201, 409), r.text
        deadline = time.monotonic() + 30
        while bench.api("GET", "/apis/kubeflow.org/v1/namespaces/default/tfjobs").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def test_api_faults_end_in_success_with_nothing_orphaned(k8s, bench):
    """20% of creates answered 500 and every watch dropped after 2 s: the jobs still succeed."""
    client = k8s.client("fay")
    k8s.write("fay", "ranks.py", RANKS)
    faults(bench, [{"verb": "create", "resource": "*", "rate": 0.2, "error": 500}], drop_watch_after_s=2)
    try:
        names = [f"faulty-{i}" for i in range(6)]
        for name in names:
            client.create(name=name, script="ranks.py", nodes=2, framework="pytorch")
        records = [client.wait(name, timeout=180) for name in names]
    finally:
        faults(bench)
    assert [r["status"] for r in records] == ["succeeded"] * len(names), [(r["name"], r["message"]) for r in records]
    for record in records:
        k8s.wait_gone(record)


def test_api_faults_leave_pipelines_ended_and_nothing_orphaned(k8s, bench):
    """20% of the service's creates, patches and deletes answered 500, every watch dropped after
    2 s: a pipeline Argo runs and one the service runs both succeed; forgotten, they leave no
    Workflow, no job and no pod."""
    from kubestudio.jobs.pipelines.client import PipelinesClient

    pipelines = PipelinesClient(url=k8s.url, token=k8s.token("faye"))
    chain = {
        "a": {"job": {"command": ["sh", "-c", "echo a > {{outputs.mark}}"]}, "outputs": {"mark": "mark-{{run}}"}},
        "b": {"depends": ["a"], "job": {"command": ["sh", "-c", "cat {{tasks.a.outputs.mark}}"]}},
        "c": {"depends": ["a"], "job": {"command": ["true"]}},
    }
    rules = [{"verb": verb, "resource": "*", "rate": 0.2, "error": 500} for verb in ("create", "patch", "delete")]
    faults(bench, rules, drop_watch_after_s=2)
    try:
        runs = [
            pipelines.run({"name": "chaos", "tasks": chain}),
            pipelines.run({"name": "chaos2", "backend": "kubestudio", "tasks": chain}),
        ]
        done = [pipelines.wait(run, timeout=180) for run in runs]
    finally:
        faults(bench)
    assert [r["backend"] for r in done] == ["argo", "kubestudio"]
    assert [r["status"] for r in done] == ["succeeded", "succeeded"], [(r["message"], r["tasks"]) for r in done]
    assert "a" in pipelines.logs(done[0], "b") and "a" in pipelines.logs(done[1], "b")
    for run in done:
        pipelines.cancel(run, forget=True)
    deadline = time.monotonic() + 60
    while True:
        left = [
            bench.api("GET", f"{ARGO_API}/namespaces/default/workflows", params={"labelSelector": selector}).json()[
                "items"
            ]
            + bench.api("GET", "/apis/batch/v1/namespaces/default/jobs", params={"labelSelector": selector}).json()[
                "items"
            ]
            + bench.api("GET", "/api/v1/namespaces/default/pods", params={"labelSelector": selector}).json()["items"]
            for selector in ("kubestudio.io/user=faye",)
        ][0]
        if not left:
            break
        assert time.monotonic() < deadline, [o["metadata"]["name"] for o in left]
        time.sleep(0.5)


def test_a_service_restart_mid_job_loses_nothing(bench, crds, tmp_path):
    restarting = start_k8s_jobs_hub(tmp_path / "hub", bench, keep=True)
    hub = restarting.hub
    try:
        client = restarting.client("rex")
        restarting.write(
            "rex",
            "slow.py",
            "import os, time\nprint('before', os.environ['RANK'], flush=True)\n"
            "time.sleep(5)\nprint('after', os.environ['RANK'], flush=True)\n",
        )
        client.create(name="slow", script="slow.py", nodes=2, framework="pytorch")
        # and a pipeline Argo runs: its Workflow goes on while the service is away, and is found again
        from kubestudio.jobs.pipelines.client import PipelinesClient

        pipelines = PipelinesClient(url=restarting.url, token=restarting.token("rex"))
        flow = {
            "name": "away",
            "tasks": {
                "a": {"job": {"command": ["sleep", "4"]}},
                "b": {"depends": ["a"], "job": {"command": ["echo", "after the restart"]}},
            },
        }
        run = pipelines.run(flow)
        assert run["backend"] == "argo"
        # and a schedule Argo fires: a run it makes while the service is away is recorded after
        nightly = {
            "name": "away-nightly",
            "schedule": {"cron": "* * * * *"},
            "tasks": {"t": {"job": {"command": ["true"]}}},
        }
        schedule = pipelines.schedule(nightly)
        assert schedule["backend"] == "argo", schedule
        client.wait("slow", status="running", timeout=120)
        os.kill(hub.service_pid("kubestudio.jobs"), signal.SIGKILL)
        fire_now(bench, schedule["id"])
        selector = f"kubestudio.io/pipeline-schedule={schedule['id']}"
        deadline = time.monotonic() + 60
        while not (
            fired := bench.api(
                "GET", f"{ARGO_API}/namespaces/default/workflows", params={"labelSelector": selector}
            ).json()["items"]
        ):
            assert time.monotonic() < deadline, bench.log_tail("operators")
            time.sleep(0.3)
        # JupyterHub does not restart a managed service that died: the hub restarts with it
        hub.stop(stop_servers=False)
        hub.start()
        deadline = time.monotonic() + 60
        while fired[0]["metadata"]["name"] not in {r["id"] for r in pipelines.runs()}:
            assert time.monotonic() < deadline, hub.log_tail()
            time.sleep(0.3)
        adopted = pipelines.wait(fired[0]["metadata"]["name"], timeout=120)
        assert adopted["status"] == "succeeded" and adopted["schedule"] == schedule["id"], adopted
        pipelines.unschedule("away-nightly")
        pipelines.cancel(adopted, forget=True)
        done = client.wait("slow", timeout=120)
        log = client.logs("slow").splitlines()
        assert {"[master-0] before 0", "[master-0] after 0", "[worker-0] before 1", "[worker-0] after 1"} <= set(log)
        assert done["status"] == "succeeded"
        restarting.wait_gone(done)
        finished = pipelines.wait(run, timeout=120)
        assert [t["status"] for t in finished["tasks"]] == ["succeeded", "succeeded"], finished
        assert "after the restart" in pipelines.logs(finished, "b")
        pipelines.cancel(finished, forget=True)
    finally:
        hub.stop()
