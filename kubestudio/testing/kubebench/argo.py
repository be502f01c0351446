"""A simulated Argo Workflows controller (v4.1, ``argoproj.io/v1alpha1``) for the bench.

What Argo documents for DAG templates of container templates, so that a Workflow's pods run
through the real scheduler, garbage collector and the simulated kubelet:

- A Workflow's ``entrypoint`` is a ``dag`` (or a single ``container``) template. Each DAG task
  becomes a node of ``status.nodes`` named ``<workflow>.<task>`` whose id is the workflow's name and
  the FNV-1a hash of that name (Argo's ``NodeID``), and a pod ``<workflow>-<template>-<hash>`` (pod
  names v2) labelled ``workflows.argoproj.io/workflow``, annotated with its node's id and name and
  owned by the Workflow (deleting the Workflow removes its pods). Its container is ``main``.
- ``dependencies`` (each ``Succeeded``, ``Skipped`` or ``Daemoned``) and ``depends`` (Argo's
  expression over ``.Succeeded .Failed .Errored .Skipped .Omitted .Daemoned``, ``&& || !`` and
  parentheses): a task whose expression is false once its dependencies are fulfilled is
  *Omitted*; a ``when`` that is false makes it *Skipped*.
- ``retryStrategy.limit``: a ``Retry`` node whose children are the attempts ``<node>(N)``.
- ``activeDeadlineSeconds`` of a template (the attempt fails: "Pod was active on the node longer
  than the specified deadline") and of the workflow (it fails: "Max duration limit exceeded");
  ``spec.shutdown: Terminate|Stop``.
- The phase of the DAG, and so of the workflow: Argo's ``assessDAGPhase``: each leaf task's
  branch phase (an omitted leaf inherits the phase of the branch that led to it) decides; a
  failed leaf fails it.
- ``{{workflow.name}}``, ``{{workflow.namespace}}``, ``{{workflow.uid}}``,
  ``{{workflow.parameters.X}}``, ``{{inputs.parameters.X}}`` (a task's ``arguments`` over the
  template's ``inputs``) and ``{{pod.name}}`` are filled in.
- **CronWorkflow**: at each time of ``schedules`` (or ``schedule``) in ``timezone`` a Workflow
  ``<cron>-<unix time>`` of its ``workflowSpec``, labelled ``workflows.argoproj.io/cron-workflow``
  and owned by it; ``concurrencyPolicy`` Allow, Forbid or Replace; ``suspend``;
  ``status.lastScheduledTime`` and ``active``.

The workflow carries ``workflows.argoproj.io/phase`` and ``workflows.argoproj.io/completed``
labels, as Argo's controller sets them. Steps, scripts, artifacts, output parameters, memoization
and exit handlers are not simulated. Checked against Argo's Python SDK, Hera, in the tests.
"""

import asyncio
import copy
import logging
import re
from datetime import datetime, timezone

from .client import ApiError

log = logging.getLogger("kubebench.argo")

ARGO = "argoproj.io/v1alpha1"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
COMPLETED_LABEL = "workflows.argoproj.io/completed"
PHASE_LABEL = "workflows.argoproj.io/phase"
CRON_LABEL = "workflows.argoproj.io/cron-workflow"
NODE_ID = "workflows.argoproj.io/node-id"
NODE_NAME = "workflows.argoproj.io/node-name"
DONE = ("Succeeded", "Failed", "Error")
FULFILLED = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")
TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
DEPENDS = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|([A-Za-z0-9][-A-Za-z0-9_]*)(?:\.([A-Za-z]+))?)")
RESULTS = {
    "Succeeded": ("Succeeded",),
    "Failed": ("Failed",),
    "Errored": ("Error",),
    "Skipped": ("Skipped",),
    "Omitted": ("Omitted",),
    "Daemoned": (),
    "AnySucceeded": ("Succeeded",),
    "AllFailed": ("Failed",),
}


def fnv32a(text):
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def node_id(workflow, name):
    return workflow if name == workflow else f"{workflow}-{fnv32a(name)}"


def pod_name(workflow, template, node_name):
    return f"{workflow}-{template}-{fnv32a(node_name)}"[:253]


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_since(stamp):
    if not stamp:
        return 0
    return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def _without_nulls(value):
    """``value`` without None and "" (the apiserver's merge of a patch turns an empty string where
    the object had none into a null, which the schema refuses; Argo omits empty fields anyway)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def substitute(value, scope):
    """``value`` with each ``{{name}}`` of ``scope`` filled in (others left as they are, as Argo
    leaves what it resolves later)."""
    if isinstance(value, str):
        return TEMPLATE.sub(lambda m: str(scope[m.group(1)]) if m.group(1) in scope else m.group(0), value)
    if isinstance(value, list):
        return [substitute(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, scope) for k, v in value.items()}
    return value


def depends_of(task):
    """(the tasks named, the expression with every bare name made explicit) of a DAG task."""
    if task.get("depends"):
        text = task["depends"]
    elif task.get("dependencies"):
        text = " && ".join(task["dependencies"])
    else:
        return [], ""
    named, words = [], []
    for operator, name, result in DEPENDS.findall(text):
        if operator:
            words.append(operator)
            continue
        if name not in named:
            named.append(name)
        words.append(f"{name}.{result}" if result else f"({name}.Succeeded || {name}.Skipped || {name}.Daemoned)")
    return named, " ".join(words)


def evaluate_depends(expression, phases):
    python = []
    for operator, name, result in DEPENDS.findall(expression):
        if operator:
            python.append({"&&": "and", "||": "or", "!": "not"}.get(operator, operator))
        else:
            python.append(str(phases[name] in RESULTS[result]))
    return bool(eval(" ".join(python), {"__builtins__": {}}, {}))  # noqa: S307 - True/False/and/or/not/()


def evaluate_when(text):
    """Argo's ``when`` after substitution: comparisons joined by && and ||, or true/false."""
    ors = []
    for part in text.split("||"):
        ands = []
        for item in part.split("&&"):
            item = item.strip().strip("()").strip()
            match = re.match(r"^(.*?)\s*(==|!=|<=|>=|<|>)\s*(.*)$", item)
            if not match:
                if item.lower() not in ("true", "false"):
                    raise ValueError(f"invalid when expression {text!r}")
                ands.append(item.lower() == "true")
                continue
            left, op, right = (match.group(i).strip().strip("'\"") for i in (1, 2, 3))
            try:
                left, right = float(left), float(right)
            except ValueError:
                if op not in ("==", "!="):
                    raise ValueError(f"cannot compare {left!r} {op} {right!r}") from None
            ands.append(
                {
                    "==": left == right,
                    "!=": left != right,
                    "<": left < right,
                    "<=": left <= right,
                    ">": left > right,
                    ">=": left >= right,
                }[op]
            )
        ors.append(all(ands))
    return any(ors)


class ArgoController:
    """Workflows and CronWorkflows; its reconcile calls come from the Operators' loop."""

    def __init__(self, operators):
        self.ops = operators
        self.client = operators.client
        self.pods = {}  # (namespace, pod name) -> pod of a workflow

    def watches(self):
        return [
            self.ops._watch(f"/apis/{ARGO}/workflows", "Workflow"),
            self.ops._watch(f"/apis/{ARGO}/cronworkflows", "CronWorkflow"),
            self._watch_pods(),
            self._tick(),
        ]

    async def _watch_pods(self):
        async for event, pod in self.client.watch("/api/v1/pods", labelSelector=WORKFLOW_LABEL):
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            if event == "DELETED":
                self.pods.pop(key, None)
            else:
                self.pods[key] = pod
            self.ops._mark(("Workflow", meta["namespace"], meta["labels"][WORKFLOW_LABEL]))

    async def _tick(self):
        """Deadlines and cron times depend on time, not only on events."""
        while True:
            await asyncio.sleep(1)
            for key, obj in list(self.ops.objects.items()):
                if key[0] == "CronWorkflow":
                    self.ops._mark(key)
                elif key[0] == "Workflow" and (obj.get("status") or {}).get("phase") in ("", None, "Running"):
                    self.ops._mark(key)

    # ------------------------------------------------------------------ workflows

    async def reconcile_workflow(self, wf):
        meta, spec = wf["metadata"], wf.get("spec") or {}
        status = copy.deepcopy(wf.get("status") or {})
        if status.get("phase") in DONE:
            return
        name, namespace = meta["name"], meta["namespace"]
        nodes = status.setdefault("nodes", {})
        templates = {t.get("name"): t for t in spec.get("templates") or []}
        entry = templates.get(spec.get("entrypoint"))
        scope = {
            "workflow.name": name,
            "workflow.namespace": namespace,
            "workflow.uid": meta.get("uid", ""),
            **{
                f"workflow.parameters.{p['name']}": p.get("value", "")
                for p in (spec.get("arguments") or {}).get("parameters") or []
            },
        }
        if not status.get("phase"):
            status.update(phase="Running", startedAt=now(), finishedAt=None, progress="0/0")
        if entry is None or not ("dag" in entry or "container" in entry):
            why = f"spec.entrypoint: no dag or container template named {spec.get('entrypoint')!r}"
            await self._finish(wf, status, "Error", why)
            return
        root = nodes.setdefault(
            name,
            {
                "id": name,
                "name": name,
                "displayName": name,
                "type": "DAG" if "dag" in entry else "Pod",
                "templateName": entry["name"],
                "templateScope": "local/" + name,
                "phase": "Running",
                "startedAt": status["startedAt"],
                "finishedAt": None,
            },
        )
        stopping = spec.get("shutdown")
        deadline = spec.get("activeDeadlineSeconds")
        if stopping in ("Terminate", "Stop") or (deadline and _seconds_since(status["startedAt"]) > deadline):
            message = (
                f"Stopped with strategy '{stopping}'"
                if stopping in ("Terminate", "Stop")
                else "Max duration limit exceeded"
            )
            for node in nodes.values():
                if node["phase"] not in FULFILLED:
                    node.update(phase="Failed", message=message, finishedAt=now())
                    if node["type"] == "Pod":
                        await self._delete_pod(namespace, node)
            await self._finish(wf, status, "Failed", message)
            return
        if "container" in entry:
            await self._advance_pod(wf, nodes, root, entry, scope)
            phase = root["phase"]
        else:
            phase = await self._advance_dag(wf, nodes, root, entry, templates, scope)
        pods = [n for n in nodes.values() if n["type"] == "Pod"]
        status["progress"] = f"{sum(1 for n in pods if n['phase'] == 'Succeeded')}/{len(pods)}"
        if phase in DONE:
            root.update(phase=phase, finishedAt=now())
            failed = next((n for n in nodes.values() if n["type"] == "Pod" and n["phase"] in ("Failed", "Error")), None)
            await self._finish(wf, status, phase, failed.get("message", "") if failed and phase != "Succeeded" else "")
            return
        await self._write(wf, status)

    async def _advance_dag(self, wf, nodes, root, entry, templates, scope):
        name = wf["metadata"]["name"]
        tasks = {t["name"]: t for t in entry["dag"].get("tasks") or []}
        depends = {t: depends_of(task) for t, task in tasks.items()}

        def node_of(task):
            return nodes.get(node_id(name, f"{root['name']}.{task}"))

        changed = True
        while changed:
            changed = False
            for task_name, task in tasks.items():
                node_name = f"{root['name']}.{task_name}"
                nid = node_id(name, node_name)
                named, expression = depends[task_name]
                if nid not in nodes:
                    upstream = [node_of(d) for d in named]
                    if any(n is None or n["phase"] not in FULFILLED for n in upstream):
                        continue
                    parents = [n["id"] for n in upstream] or [root["id"]]
                    base = {
                        "id": nid,
                        "name": node_name,
                        "displayName": task_name,
                        "templateName": task.get("template", ""),
                        "templateScope": "local/" + name,
                        "boundaryID": root["id"],
                        "startedAt": now(),
                    }
                    if expression:
                        try:
                            go = evaluate_depends(expression, {d: node_of(d)["phase"] for d in named})
                        except Exception as e:
                            go, base["message"] = None, f"invalid depends {task.get('depends')!r}: {e}"
                        if not go:
                            phase = "Error" if go is None else "Omitted"
                            base.setdefault("message", "omitted: depends condition not met")
                            nodes[nid] = {**base, "type": "Skipped", "phase": phase, "finishedAt": now()}
                            self._link(nodes, parents, nid)
                            changed = True
                            continue
                    template = templates.get(task.get("template"))
                    if template is None or "container" not in template:
                        nodes[nid] = {
                            **base,
                            "type": "Skipped",
                            "phase": "Error",
                            "message": f"templates.{task.get('template')}: not found, or not a container template",
                            "finishedAt": now(),
                        }
                        self._link(nodes, parents, nid)
                        changed = True
                        continue
                    task_scope = self._task_scope(scope, template, task)
                    if task.get("when"):
                        try:
                            go = evaluate_when(substitute(task["when"], task_scope))
                        except ValueError as e:
                            nodes[nid] = {
                                **base,
                                "type": "Skipped",
                                "phase": "Error",
                                "message": str(e),
                                "finishedAt": now(),
                            }
                            self._link(nodes, parents, nid)
                            changed = True
                            continue
                        if not go:
                            message = f"when '{substitute(task['when'], task_scope)}' evaluated false"
                            nodes[nid] = {
                                **base,
                                "type": "Skipped",
                                "phase": "Skipped",
                                "message": message,
                                "finishedAt": now(),
                            }
                            self._link(nodes, parents, nid)
                            changed = True
                            continue
                    retry = "retryStrategy" in template
                    nodes[nid] = {**base, "type": "Retry" if retry else "Pod", "phase": "Pending", "children": []}
                    self._link(nodes, parents, nid)
                    changed = True
                node = nodes[nid]
                if node["phase"] in FULFILLED:
                    continue
                template = templates[task["template"]]
                before = node["phase"]
                if node["type"] == "Retry":
                    await self._advance_retry(wf, nodes, node, template, self._task_scope(scope, template, task))
                else:
                    await self._advance_pod(wf, nodes, node, template, self._task_scope(scope, template, task))
                changed = changed or (node["phase"] in FULFILLED and before not in FULFILLED)
        return self._assess(entry, tasks, depends, nodes, root, name)

    @staticmethod
    def _link(nodes, parents, child):
        for parent in parents:
            children = nodes[parent].setdefault("children", [])
            if child not in children:
                children.append(child)

    @staticmethod
    def _task_scope(scope, template, task):
        inputs = {
            p["name"]: p.get("value", p.get("default", ""))
            for p in (template.get("inputs") or {}).get("parameters") or []
        }
        for p in (task.get("arguments") or {}).get("parameters") or []:
            inputs[p["name"]] = substitute(p.get("value", ""), scope)
        return {**scope, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}

    def _assess(self, entry, tasks, depends, nodes, root, name):
        """Argo's assessDAGPhase: the leaf tasks' branch phases."""
        needed = {d for named, _ in depends.values() for d in named}
        targets = (entry["dag"].get("target") or "").split() or [t for t in tasks if t not in needed]
        target_ids = {node_id(name, f"{root['name']}.{t}"): "" for t in targets}
        tasks_ids = {node_id(name, f"{root['name']}.{t}") for t in tasks}
        queue = [(child, "Succeeded") for child in root.get("children") or []]
        seen = set()
        while queue:
            nid, branch = queue.pop(0)
            if (nid, branch) in seen:
                continue
            seen.add((nid, branch))
            node = nodes[nid]
            if node["phase"] not in FULFILLED:
                return "Running"
            if node["phase"] != "Omitted":
                branch = node["phase"]
            if nid in target_ids and target_ids[nid] not in ("Failed", "Error"):
                target_ids[nid] = branch
            # a task's dependents are linked to it (a Retry node: to it, not to its attempts)
            children = [
                c for c in node.get("children") or [] if nodes[c].get("boundaryID") == root["id"] and c in tasks_ids
            ]
            queue.extend((c, branch) for c in children)
        result = "Succeeded"
        for phase in target_ids.values():
            if phase == "":
                return "Running"
            if phase in ("Failed", "Error"):
                return phase
        return result

    async def _advance_retry(self, wf, nodes, node, template, scope):
        limit = int(substitute(str((template.get("retryStrategy") or {}).get("limit", 0)), scope) or 0)
        children = node["children"]
        if not children or nodes[children[-1]]["phase"] in ("Failed", "Error") and len(children) <= limit:
            attempt_name = f"{node['name']}({len(children)})"
            attempt_id = node_id(wf["metadata"]["name"], attempt_name)
            nodes[attempt_id] = {
                "id": attempt_id,
                "name": attempt_name,
                "displayName": f"{node['displayName']}({len(children)})",
                "type": "Pod",
                "templateName": node["templateName"],
                "templateScope": node["templateScope"],
                "boundaryID": node["boundaryID"],
                "phase": "Pending",
                "startedAt": now(),
            }
            children.append(attempt_id)
        last = nodes[children[-1]]
        await self._advance_pod(wf, nodes, last, template, scope)
        if last["phase"] == "Succeeded" or (last["phase"] in ("Failed", "Error") and len(children) > limit):
            node.update(phase=last["phase"], message=last.get("message") or "", finishedAt=now())
        elif last["phase"] == "Running":
            node["phase"] = "Running"

    async def _advance_pod(self, wf, nodes, node, template, scope):
        namespace = wf["metadata"]["namespace"]
        name = pod_name(wf["metadata"]["name"], node["templateName"] or template["name"], node["name"])
        pod = self.pods.get((namespace, name))
        if pod is None and not node.get("podName"):
            node["podName"] = name
            await self._create_pod(wf, node, template, {**scope, "pod.name": name}, name)
            return
        if pod is None:
            return  # made, not yet seen by the watch
        phase = (pod.get("status") or {}).get("phase", "Pending")
        deadline = template.get("activeDeadlineSeconds")
        if phase == "Running":
            node["phase"] = "Running"
            if deadline and _seconds_since(node["startedAt"]) > int(deadline):
                await self._delete_pod(namespace, node)
                node.update(
                    phase="Failed",
                    message="Pod was active on the node longer than the specified deadline",
                    finishedAt=now(),
                )
        elif phase == "Succeeded":
            node.update(phase="Succeeded", finishedAt=now(), outputs={"exitCode": "0"})
        elif phase == "Failed":
            code = self._exit_code(pod)
            node.update(
                phase="Failed",
                message=f"Error (exit code {code})" if code is not None else (pod["status"].get("message") or "failed"),
                finishedAt=now(),
                outputs={"exitCode": str(code)} if code is not None else {},
            )

    @staticmethod
    def _exit_code(pod):
        for state in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (state.get("state") or {}).get("terminated")
            if terminated and state.get("name") == "main":
                return terminated.get("exitCode")
        return None

    async def _create_pod(self, wf, node, template, scope, name):
        meta, spec = wf["metadata"], wf.get("spec") or {}
        container = substitute(copy.deepcopy(template["container"]), scope)
        container["name"] = "main"
        pod_meta = template.get("metadata") or {}
        workflow_pods = spec.get("podMetadata") or {}
        pod_spec = {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": list(spec.get("volumes") or []) + list(template.get("volumes") or []),
        }
        for key in ("nodeSelector", "tolerations", "affinity", "securityContext", "serviceAccountName"):
            value = template.get(key, spec.get(key))
            if value:
                pod_spec[key] = value
        if "automountServiceAccountToken" in spec or "automountServiceAccountToken" in template:
            pod_spec["automountServiceAccountToken"] = template.get(
                "automountServiceAccountToken", spec.get("automountServiceAccountToken")
            )
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": {
                    **(workflow_pods.get("labels") or {}),
                    **(pod_meta.get("labels") or {}),
                    WORKFLOW_LABEL: meta["name"],
                    COMPLETED_LABEL: "false",
                },
                "annotations": {
                    **(workflow_pods.get("annotations") or {}),
                    **(pod_meta.get("annotations") or {}),
                    NODE_ID: node["id"],
                    NODE_NAME: node["name"],
                },
                "ownerReferences": [
                    {
                        "apiVersion": ARGO,
                        "kind": "Workflow",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
        }
        try:
            await self.client.create(f"/api/v1/namespaces/{meta['namespace']}/pods", body)
        except ApiError as e:
            if e.status == 409:
                return
            node.update(phase="Error", message=f"pods {name!r} refused: {e}", finishedAt=now())

    async def _delete_pod(self, namespace, node):
        if node.get("podName"):
            try:
                await self.client.delete(f"/api/v1/namespaces/{namespace}/pods/{node['podName']}")
            except ApiError as e:
                if e.status != 404:
                    raise

    async def _finish(self, wf, status, phase, message):
        status.update(phase=phase, finishedAt=now())
        if message:
            status["message"] = message
        await self._write(wf, status, labels={PHASE_LABEL: phase, COMPLETED_LABEL: "true"})
        log.info("workflow %s/%s %s %s", wf["metadata"]["namespace"], wf["metadata"]["name"], phase, message)

    async def _write(self, wf, status, labels=None):
        if status == wf.get("status") and not labels:
            return
        meta = wf["metadata"]
        body = {
            "metadata": {
                "resourceVersion": meta["resourceVersion"],
                "labels": labels or {PHASE_LABEL: status.get("phase", "Running")},
            },
            "status": _without_nulls(status),  # a merge patch's null where nothing was is kept as null
        }
        path = f"/apis/{ARGO}/namespaces/{meta['namespace']}/workflows/{meta['name']}"
        written = await self.client.merge_patch(path, body)
        self.ops.objects[("Workflow", meta["namespace"], meta["name"])] = written

    # ------------------------------------------------------------------ cron workflows

    async def reconcile_cron(self, cron):
        from zoneinfo import ZoneInfo

        from croniter import croniter

        meta, spec = cron["metadata"], cron.get("spec") or {}
        status = copy.deepcopy(cron.get("status") or {})
        active = [
            ref
            for ref in status.get("active") or []
            if (w := self.ops.objects.get(("Workflow", meta["namespace"], ref["name"]))) is not None
            and (w.get("status") or {}).get("phase") not in DONE
        ]
        changed = active != (status.get("active") or [])
        status["active"] = active
        schedules = spec.get("schedules") or ([spec["schedule"]] if spec.get("schedule") else [])
        if spec.get("suspend") or not schedules:
            if changed:
                await self._write_cron(cron, status)
            return
        zone = ZoneInfo(spec.get("timezone") or "UTC")
        last = status.get("lastScheduledTime") or meta["creationTimestamp"]
        last = datetime.fromisoformat(last.replace("Z", "+00:00")).astimezone(zone)
        current = datetime.now(zone)
        due = [croniter(s, last).get_next(datetime) for s in schedules]
        due = [t for t in due if t <= current]
        if due:
            when = max(due)
            policy = spec.get("concurrencyPolicy", "Allow")
            if active and policy == "Forbid":
                status["lastScheduledTime"] = when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                await self._write_cron(cron, status)
                return
            if active and policy == "Replace":
                for ref in active:
                    try:
                        await self.client.delete(f"/apis/{ARGO}/namespaces/{meta['namespace']}/workflows/{ref['name']}")
                    except ApiError as e:
                        if e.status != 404:
                            raise
                active = []
            name = f"{meta['name']}-{int(when.timestamp())}"
            workflow_meta = spec.get("workflowMetadata") or {}
            body = {
                "apiVersion": ARGO,
                "kind": "Workflow",
                "metadata": {
                    "name": name,
                    "namespace": meta["namespace"],
                    "labels": {**(workflow_meta.get("labels") or {}), CRON_LABEL: meta["name"]},
                    "annotations": {
                        **(workflow_meta.get("annotations") or {}),
                        "workflows.argoproj.io/scheduled-time": when.isoformat(),
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": ARGO,
                            "kind": "CronWorkflow",
                            "name": meta["name"],
                            "uid": meta["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": copy.deepcopy(spec.get("workflowSpec") or {}),
            }
            try:
                made = await self.client.create(f"/apis/{ARGO}/namespaces/{meta['namespace']}/workflows", body)
                active.append(
                    {"kind": "Workflow", "name": name, "namespace": meta["namespace"], "uid": made["metadata"]["uid"]}
                )
            except ApiError as e:
                if e.status != 409:
                    raise
            status["active"] = active
            status["lastScheduledTime"] = when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            changed = True
        if changed:
            await self._write_cron(cron, status)

    async def _write_cron(self, cron, status):
        meta = cron["metadata"]
        path = f"/apis/{ARGO}/namespaces/{meta['namespace']}/cronworkflows/{meta['name']}"
        written = await self.client.merge_patch(
            path, {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        )
        self.ops.objects[("CronWorkflow", meta["namespace"], meta["name"])] = written
