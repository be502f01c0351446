"""A pipeline run as an Argo Workflow (``argoproj.io/v1alpha1``): pure builders and readers.

Each task is a container template carrying the pod its job would have (the jobs backend's batch
Job's pod template: image, command, workspace and archives subPaths, project scheduling,
tolerations, GPU type affinity, our labels, no token, non-root), in one DAG template whose tasks
keep the pipeline's ``depends`` (Argo's own expression), ``when``, ``retries``
(``retryStrategy``) and ``timeout`` (the template's ``activeDeadlineSeconds``). The Workflow is
built for one run, its parameters and paths filled in, so it holds no scripts and no
parameters of its own (etcd keeps an object under 1.5 MB: one over :data:`MAX_BYTES` is refused).

What a Workflow cannot carry (an experiment or serve task, a task of several nodes, a cache, an
output's ``.value``) raises :class:`ArgoRefused` naming the field; with ``backend: auto`` the
service then runs the DAG itself.
"""

import json
import re

from ... import kube
from .spec import DEPENDS_TOKEN, WHEN_RE

ARGO = "argoproj.io/v1alpha1"
GROUP, VERSION = ARGO.split("/")
PLURAL = "workflows"
RUN_LABEL = "kubestudio.io/pipeline-run"
SCHEDULE_LABEL = "kubestudio.io/pipeline-schedule"  # on the Workflows a schedule's CronWorkflow makes
CRON_PLURAL = "cronworkflows"
SCHEDULED_TIME = "workflows.argoproj.io/scheduled-time"  # Argo's annotation: the time a cron run is for
CRON_LABEL = "workflows.argoproj.io/cron-workflow"  # Argo's label: the CronWorkflow that made a Workflow
PIPELINE_LABEL = "kubestudio.io/pipeline"
COMPONENT = "pipeline"
MAX_BYTES = 512 * 1024
TEMPLATE_FIELDS = ("nodeSelector", "tolerations", "affinity", "securityContext", "volumes", "serviceAccountName")


class ArgoRefused(Exception):
    """Why a pipeline cannot run as an Argo Workflow; its message names the field."""


def cron_name(schedule_id):
    """The CronWorkflow of a schedule: short, since Argo names each Workflow it makes
    ``<CronWorkflow>-<unix time>`` and that name is the run's id."""
    return f"ks-{schedule_id}"


def workflow_name(pipeline, run_id):
    """The name of the Workflow of run ``run_id`` of ``pipeline``."""
    return f"{pipeline}-{run_id}"


def fnv32a(text):
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def pod_name(workflow, template, node_name):
    """The pod Argo makes for a node (pod names v2: ``<workflow>-<template>-<FNV-1a of the node>``)."""
    return f"{workflow}-{template}-{fnv32a(node_name)}"[:253]


def check_fits(spec, kinds):
    """Raise ArgoRefused unless every task can be a container template (``kinds``: task -> the
    kind of object its job would be)."""
    for name, task in spec.tasks.items():
        if task.kind != "job":
            raise ArgoRefused(f"tasks.{name}.{task.kind}: an Argo Workflow runs jobs only")
        if kinds.get(name) != "Job":
            raise ArgoRefused(
                f"tasks.{name}.job: a {kinds.get(name)} (several nodes or a framework's operator) is not one pod"
            )
        if task.cache == "auto":
            raise ArgoRefused(f"tasks.{name}.cache: the service keeps the cache, Argo does not")
        if ".value}}" in json.dumps([task.job, task.when]).replace(" ", ""):
            raise ArgoRefused(f"tasks.{name}: an output's .value is read by the service")


def argo_depends(task):
    """The task's ``depends`` as Argo reads it: a list becomes ``a && b`` (each succeeded or was
    skipped); in an expression our ``.Skipped`` is Argo's Skipped or Omitted, ``.Completed``
    succeeded or failed."""
    if not task.condition:
        return " && ".join(task.depends)
    words = []
    for operator, name, result in DEPENDS_TOKEN.findall(task.condition):
        if operator:
            words.append(operator)
        elif result in ("Skipped", "Omitted"):
            words.append(f"({name}.Skipped || {name}.Omitted)")
        elif result == "Completed":
            words.append(f"({name}.Succeeded || {name}.Failed)")
        else:
            words.append(f"{name}.{result}" if result else name)
    return re.sub(r"\s+", " ", " ".join(words)).replace("( ", "(").replace(" )", ")").replace("! ", "!")


def argo_when(filled):
    """A filled-in ``when`` as Argo's expression: numbers bare, anything else quoted."""
    left, operator, right = WHEN_RE.match(filled).groups()

    def side(word):
        word = word.strip()
        if word[:1] in ("'", '"') and word[-1:] == word[:1] and len(word) > 1:
            word = word[1:-1]
        else:
            try:
                float(word)
                return word
            except ValueError:
                pass
        return "'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return f"{side(left)} {operator} {side(right)}"


def task_template(name, task, job_object):
    """The container template of task ``name``: the pod of its batch Job."""
    pod = job_object["spec"]["template"]
    pod_spec = pod["spec"]
    container = dict(pod_spec["containers"][0])
    container.pop("name", None)  # Argo names it main
    template = {
        "name": name,
        "container": container,
        "metadata": {
            "labels": dict((pod.get("metadata") or {}).get("labels") or {}),
            "annotations": dict((pod.get("metadata") or {}).get("annotations") or {}),
        },
    }
    for key in TEMPLATE_FIELDS:
        if pod_spec.get(key):
            template[key] = pod_spec[key]
    if "automountServiceAccountToken" in pod_spec:
        template["automountServiceAccountToken"] = pod_spec["automountServiceAccountToken"]
    if task.retries:
        template["retryStrategy"] = {"limit": str(task.retries), "retryPolicy": "OnFailure"}
    deadline = task.timeout or job_object["spec"].get("activeDeadlineSeconds")
    if deadline:
        template["activeDeadlineSeconds"] = deadline
    return template


def workflow(spec, run_id, namespace, owner_slug, jobs, whens, executor_account=""):
    """The Workflow of run ``run_id``: ``jobs`` maps each task to its job's batch Job (filled in
    for this run), ``whens`` each task with a ``when`` to its filled-in text; ``executor_account``:
    the service account of Argo's executor, the only container of a task's pod given a token."""
    labels = kube.owned_labels(
        COMPONENT, **{RUN_LABEL: run_id, PIPELINE_LABEL: spec.name, "kubestudio.io/user": owner_slug}
    )
    tasks = []
    for name in spec.order():
        task = spec.tasks[name]
        entry = {"name": name, "template": name}
        depends = argo_depends(task)
        if depends:
            entry["depends"] = depends
        if name in whens:
            entry["when"] = argo_when(whens[name])
        tasks.append(entry)
    templates = [{"name": "dag", "dag": {"tasks": tasks}}]
    templates += [task_template(name, spec.tasks[name], jobs[name]) for name in spec.order()]
    body = {
        "apiVersion": ARGO,
        "kind": "Workflow",
        "metadata": {"name": workflow_name(spec.name, run_id), "namespace": namespace, "labels": labels},
        "spec": {"entrypoint": "dag", "templates": templates, "podMetadata": {"labels": {RUN_LABEL: run_id}}},
    }
    if spec.parallelism:
        body["spec"]["parallelism"] = spec.parallelism
    if executor_account:
        body["spec"]["executor"] = {"serviceAccountName": executor_account}
        body["spec"]["automountServiceAccountToken"] = False
    size = len(json.dumps(body))
    if size > MAX_BYTES:
        raise ArgoRefused(
            f"tasks: the Workflow would be {size // 1024} KiB, more than {MAX_BYTES // 1024} KiB "
            "(etcd keeps objects small): fewer tasks, or functions shipped as files"
        )
    return body


def for_any_run(body, placeholder):
    """A run's Workflow ``body`` (built with the run id ``placeholder``) made fit for any number of
    runs: ``{{workflow.name}}`` where the id was, and no name or label that holds one."""
    body = json.loads(json.dumps(body).replace(placeholder, "{{workflow.name}}"))
    meta = body["metadata"]
    meta.pop("name", None)
    meta["labels"].pop(RUN_LABEL, None)
    body["spec"].pop("podMetadata", None)
    for template in body["spec"]["templates"]:  # a job's labels hold its (placeholder) id
        labels = (template.get("metadata") or {}).get("labels") or {}
        for key in [k for k, v in labels.items() if "{{" in v or v.startswith("000000")]:
            labels.pop(key)
    return body


def cron_workflow(spec, body, name=None, workflow_labels=None):
    """A CronWorkflow running ``body``'s spec (:func:`for_any_run`) on the pipeline's schedule:
    named ``name`` (the pipeline's by default, as ``export --argo`` writes it), its Workflows
    labelled ``workflow_labels``."""
    schedule = spec.schedule
    cron = {
        "apiVersion": ARGO,
        "kind": "CronWorkflow",
        "metadata": {"name": name or spec.name, "labels": body["metadata"]["labels"]},
        "spec": {
            "schedules": [schedule.cron],
            "timezone": schedule.timezone,
            "concurrencyPolicy": "Forbid" if schedule.max_active_runs == 1 else "Allow",
            "workflowSpec": body["spec"],
        },
    }
    if workflow_labels:
        cron["spec"]["workflowMetadata"] = {"labels": workflow_labels}
    if "namespace" in body["metadata"]:
        cron["metadata"]["namespace"] = body["metadata"]["namespace"]
    return cron


def check_schedule_fits(spec):
    """Raise ArgoRefused unless Argo's CronWorkflow fires the schedule as the service would: no
    catchup or depends_on_past (Argo has neither), one run at a time (its Forbid), and no task
    reading ``{{scheduled}}`` (Argo's own scheduled time is written another way)."""
    schedule = spec.schedule
    if len(schedule.cron.split()) != 5:
        raise ArgoRefused("schedule.cron: Argo's cron takes five fields (no seconds)")
    if schedule.catchup:
        raise ArgoRefused("schedule.catchup: a CronWorkflow does not backfill missed times")
    if schedule.depends_on_past:
        raise ArgoRefused("schedule.depends_on_past: a CronWorkflow does not wait on the run before")
    if schedule.max_active_runs != 1:
        raise ArgoRefused("schedule.max_active_runs: a CronWorkflow runs one at a time (Forbid) or without a limit")
    for name, task in spec.tasks.items():
        if "{{scheduled}}" in json.dumps([task.job, task.when, task.outputs]).replace(" ", ""):
            raise ArgoRefused(f"tasks.{name}: {{{{scheduled}}}} is the service's, not Argo's")


# ---------------------------------------------------------------------- reading a Workflow


def task_states(workflow_obj):
    """{task: (our status, message, attempts, the pod of its last attempt, started, finished)} from
    a Workflow's ``status.nodes``."""
    name = workflow_obj["metadata"]["name"]
    nodes = (workflow_obj.get("status") or {}).get("nodes") or {}
    found = {}
    for node in nodes.values():
        if node.get("boundaryID") != name or node.get("type") not in ("Pod", "Retry", "Skipped"):
            continue
        if "(" in node.get("displayName", ""):  # an attempt of a Retry node
            continue
        phase = node.get("phase") or "Pending"
        attempts, last = 1, node
        if node["type"] == "Retry":
            children = [nodes[c] for c in node.get("children") or [] if c in nodes and "(" in nodes[c].get("name", "")]
            attempts = max(len(children), 1)
            last = children[-1] if children else node
        status = {
            "Succeeded": "succeeded",
            "Failed": "failed",
            "Error": "failed",
            "Skipped": "skipped",
            "Omitted": "skipped",
        }.get(phase, "running")
        message = node.get("message") or ""
        if phase == "Omitted":
            message = "its depends did not hold (omitted)"
        elif phase == "Skipped" and message.startswith("when "):
            message = message.replace("evaluated false", "was false")
        pod = (
            pod_name(name, node.get("templateName") or node["displayName"], last["name"])
            if node["type"] != "Skipped"
            else ""
        )
        found[node["displayName"]] = (status, message, attempts, pod, node.get("startedAt"), node.get("finishedAt"))
    return found


def run_phase(workflow_obj):
    """(running|succeeded|failed|cancelled, message) of a Workflow."""
    status = workflow_obj.get("status") or {}
    phase, message = status.get("phase") or "Running", status.get("message") or ""
    if phase in ("Pending", "Running", ""):
        return "running", message
    if phase == "Succeeded":
        return "succeeded", message
    if (workflow_obj.get("spec") or {}).get("shutdown"):
        return "cancelled", message
    return "failed", message
