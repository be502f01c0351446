"""A simulated Katib (v0.19, ``kubeflow.org/v1beta1``) for the bench, from its documented behaviour.

Katib's controllers cannot be built here; this one does what they document, so that the trials'
jobs then run through the bench's real control plane, its Job controller, the simulated Training
Operator and kubelet:

- **Experiment**: conditions Created -> Running -> Succeeded (``ExperimentGoalReached``,
  ``ExperimentMaxTrialsReached``) or Failed (more than ``maxFailedTrialCount`` failed trials, or an
  algorithm this simulation has no suggestion service for); one **Suggestion** named after it,
  whose ``spec.requests`` grows by what ``parallelTrialCount`` and ``maxTrialCount`` leave room
  for and whose ``status.suggestions`` get that many parameter assignments; a **Trial** per
  assignment, ``<experiment>-<8 characters>``, labelled ``katib.kubeflow.org/experiment``, owned by
  the Experiment; status: the trials counted by state, the lists of names and
  ``currentOptimalTrial`` (the best ``latest`` value of ``objectiveMetricName``); startTime,
  completionTime. A finished experiment's running trials are killed.
- **Suggestion service**: the algorithms random, tpe, multivariate-tpe, grid, cmaes and sobol, on
  Optuna's samplers (as Katib's own Optuna suggestion service), seeded by ``random_state``.
- **Trial**: its ``runSpec`` is the ``trialTemplate.trialSpec`` with ``${trialParameters.<name>}``
  replaced (a parameter's value, or ``${trialSpec.Name}``/``Namespace``), named after the trial and
  owned by it; with the Push collector the primary container gets ``KATIB_TRIAL_NAME``. Its
  ``successCondition``/``failureCondition`` (gjson ``status.conditions.#(type=="X")#|#(status=="True")#``)
  decide; a succeeded job whose trial pushed no value of the objective is ``MetricsUnavailable``,
  else ``Succeeded`` with ``observation.metrics`` (``latest``/``min``/``max``) from the DB manager.
- **DB manager**: ``api.v1.beta1.DBManager`` over gRPC (``ReportObservationLog``,
  ``GetObservationLog``, ``DeleteObservationLog``) on a loopback port, what Katib's SDK
  ``report_metrics`` and ``get_trial_metrics`` call.

Not simulated: early stopping (``earlyStopping`` is accepted and ignored), resume policies other
than ``Never``, trial templates from ConfigMaps, Tekton and TrainJob trials. Checked against the
upstream Python SDK (``kubeflow-katib``'s KatibClient and ``report_metrics``) in the tests.
"""

import asyncio
import json
import logging
import math
import random
import re
import string

from kubestudio.jobs.experiments.katib import (
    DB_MANAGER_SERVICE,
    EXPERIMENT_LABEL,
    KATIB,
    get_reply,
    read_get_request,
    read_report_request,
)

from .client import ApiError

log = logging.getLogger("kubebench.katib")

TRIAL_LABEL = "katib.kubeflow.org/trial"
CONDITION_RE = re.compile(r'^status\.conditions\.#\(type=="([A-Za-z]+)"\)#\|#\(status=="True"\)#$')
DONE = ("Succeeded", "Failed", "MetricsUnavailable", "EarlyStopped", "Killed")
JOB_KINDS = {  # runSpec kinds and where they live
    "Job": ("batch/v1", "jobs"),
    "PyTorchJob": ("kubeflow.org/v1", "pytorchjobs"),
    "TFJob": ("kubeflow.org/v1", "tfjobs"),
    "MPIJob": ("kubeflow.org/v1", "mpijobs"),
}


def now():
    from .operators import now as stamp

    return stamp()


def true_conditions(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def set_condition(status, kind, reason, message):
    """The Training Operator's rule, with Katib's ends (Killed, MetricsUnavailable, ...)."""
    from .operators import set_condition as operators_set_condition

    operators_set_condition(status, kind, reason, message, ends=DONE)


def substitute(text, values):
    def one(match):
        name = match.group(1)
        if name not in values:
            raise KeyError(name)
        return values[name]

    return re.sub(r"\$\{trialParameters\.([^}]+)\}", one, text)


class ObservationStore:
    """The DB manager's table of observation logs, behind its gRPC service."""

    def __init__(self):
        self.logs = {}  # trial name -> [(time stamp, metric, value)]
        self.server = None
        self.address = None

    async def start(self, host="127.0.0.1"):
        import grpc

        handlers = {
            "ReportObservationLog": grpc.unary_unary_rpc_method_handler(self._report),
            "GetObservationLog": grpc.unary_unary_rpc_method_handler(self._get),
            "DeleteObservationLog": grpc.unary_unary_rpc_method_handler(self._delete),
        }
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(DB_MANAGER_SERVICE, handlers)])
        port = self.server.add_insecure_port(f"{host}:0")
        await self.server.start()
        self.address = f"{host}:{port}"
        return self.address

    async def stop(self):
        if self.server is not None:
            await self.server.stop(0)

    async def _report(self, request, context):
        import grpc

        trial, entries = read_report_request(request)
        if not trial:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "trial_name is empty")
        for _, name, value in entries:
            try:
                float(value)
            except ValueError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"metric {name}: {value!r} is not a number")
        self.logs.setdefault(trial, []).extend(entries)
        log.info("observation log of %s: %s", trial, entries)
        return b""

    async def _get(self, request, context):
        trial, metric = read_get_request(request)
        entries = [e for e in self.logs.get(trial, []) if not metric or e[1] == metric]
        return get_reply(entries)

    async def _delete(self, request, context):
        trial, _ = read_get_request(request)
        self.logs.pop(trial, None)
        return b""

    def metrics(self, trial, names):
        """Katib's observation: latest, min and max of each named metric the trial pushed."""
        out = []
        for name in names:
            values = [v for _, n, v in self.logs.get(trial, []) if n == name]
            if not values:
                continue
            numbers = [float(v) for v in values]
            out.append({"name": name, "latest": values[-1], "min": repr(min(numbers)), "max": repr(max(numbers))})
        return out


class Suggestions:
    """Katib's suggestion services, on Optuna as Katib's own are: one study per experiment."""

    ALGORITHMS = ("random", "tpe", "multivariate-tpe", "grid", "cmaes", "sobol")

    def __init__(self):
        self.studies = {}  # (namespace, experiment) -> (study, {trial name: optuna trial})

    @staticmethod
    def distributions(parameters):
        import optuna

        out = {}
        for p in parameters:
            space = p.get("feasibleSpace") or {}
            kind = p.get("parameterType")
            if kind in ("categorical", "discrete"):
                out[p["name"]] = optuna.distributions.CategoricalDistribution(list(space.get("list") or []))
            elif kind == "int":
                out[p["name"]] = optuna.distributions.IntDistribution(
                    int(space["min"]), int(space["max"]), step=int(space.get("step") or 1)
                )
            else:
                step = float(space["step"]) if space.get("step") else None
                log_scale = space.get("distribution") == "logUniform"
                out[p["name"]] = optuna.distributions.FloatDistribution(
                    float(space["min"]), float(space["max"]), log=log_scale and step is None, step=step
                )
        return out

    def _study(self, key, spec):
        import optuna

        if key not in self.studies:
            algorithm = spec["algorithm"]["algorithmName"]
            settings = {s["name"]: s.get("value") for s in spec["algorithm"].get("algorithmSettings") or []}
            seed = int(settings["random_state"]) if settings.get("random_state") else None
            if algorithm == "random":
                sampler = optuna.samplers.RandomSampler(seed=seed)
            elif algorithm in ("tpe", "multivariate-tpe"):
                sampler = optuna.samplers.TPESampler(seed=seed, multivariate=algorithm == "multivariate-tpe")
            elif algorithm == "cmaes":
                sampler = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
            elif algorithm == "sobol":
                sampler = optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
            else:  # grid
                grid = {
                    name: list(d.choices) if hasattr(d, "choices") else _grid_points(d)
                    for name, d in self.distributions(spec["parameters"]).items()
                }
                sampler = optuna.samplers.GridSampler(grid, seed=seed)
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            direction = "maximize" if spec["objective"]["type"] == "maximize" else "minimize"
            self.studies[key] = (optuna.create_study(direction=direction, sampler=sampler), {})
        return self.studies[key]

    def suggest(self, key, spec, count):
        """``count`` new assignments ``[{name, value}]`` (fewer when a grid is exhausted)."""
        study, asked = self._study(key, spec)
        distributions = self.distributions(spec["parameters"])
        out = []
        for _ in range(count):
            if spec["algorithm"]["algorithmName"] == "grid" and len(asked) >= _grid_size(distributions):
                break
            trial = study.ask(distributions)
            name = f"{key[1]}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=8))}"
            asked[name] = trial
            out.append((name, [{"name": n, "value": _text(trial.params[n])} for n in distributions]))
        return out

    def tell(self, key, trial_name, value):
        entry = self.studies.get(key)
        if entry is None or trial_name not in entry[1]:
            return
        import optuna

        study, asked = entry
        trial = asked.pop(trial_name)
        try:
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
        except RuntimeError:  # a grid sampler stops its study once every point is told: nothing to ask
            pass


def _grid_points(distribution):
    step = distribution.step or 1
    count = int(math.floor((distribution.high - distribution.low) / step + 1e-9)) + 1
    return [distribution.low + i * step for i in range(count)]


def _grid_size(distributions):
    size = 1
    for d in distributions.values():
        size *= len(d.choices) if hasattr(d, "choices") else len(_grid_points(d))
    return size


def _text(value):
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


class KatibController:
    """Experiments, Suggestions and Trials; its reconcile calls come from the Operators' loop."""

    def __init__(self, operators):
        self.ops = operators
        self.client = operators.client
        self.store = ObservationStore()
        self.suggestions = Suggestions()
        self.told = set()  # trial names whose result the suggestion service has been given
        self.jobs = {}  # (namespace, trial name) -> its batch Job

    def watches(self):
        return [
            self.ops._watch(f"/apis/{KATIB}/experiments", "Experiment"),
            self.ops._watch(f"/apis/{KATIB}/trials", "Trial"),
            self._watch_trial_jobs(),
        ]

    async def _watch_trial_jobs(self):
        async for event, job in self.client.watch("/apis/batch/v1/jobs", labelSelector=TRIAL_LABEL):
            meta = job["metadata"]
            trial = meta["labels"][TRIAL_LABEL]
            if event == "DELETED":
                self.jobs.pop((meta["namespace"], trial), None)
            else:
                self.jobs[(meta["namespace"], trial)] = job
            self.ops._mark(("Trial", meta["namespace"], trial))

    def changed(self, obj):
        """An object came from a watch: the trial a Training Operator job runs looks again, and the
        experiment of a trial (as the watch has it now, not as a reconcile wrote it)."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if obj.get("kind") == "Trial" and labels.get(EXPERIMENT_LABEL):
            self.ops._mark(("Experiment", obj["metadata"]["namespace"], labels[EXPERIMENT_LABEL]))
        elif labels.get(TRIAL_LABEL):
            self.ops._mark(("Trial", obj["metadata"]["namespace"], labels[TRIAL_LABEL]))

    def _trials(self, namespace, experiment):
        return sorted(
            (
                t
                for (kind, ns, _), t in self.ops.objects.items()
                if kind == "Trial"
                and ns == namespace
                and (t["metadata"].get("labels") or {}).get(EXPERIMENT_LABEL) == experiment
            ),
            key=lambda t: (t["metadata"].get("creationTimestamp") or "", t["metadata"]["name"]),
        )

    # ------------------------------------------------------------------ Experiment

    async def reconcile_experiment(self, experiment):
        meta, spec = experiment["metadata"], experiment["spec"]
        ns, name = meta["namespace"], meta["name"]
        path = f"/apis/{KATIB}/namespaces/{ns}/experiments/{name}"
        status = json.loads(json.dumps(experiment.get("status") or {}))
        before = json.dumps(status, sort_keys=True)
        conditions = true_conditions(experiment)
        if not status.get("conditions"):
            set_condition(status, "Created", "ExperimentCreated", "Experiment is created")
            status["startTime"] = now()
        finished = "Succeeded" in conditions or "Failed" in conditions
        trials = self._trials(ns, name)
        for trial in trials:  # finished trials' results go to the suggestion service once
            tname = trial["metadata"]["name"]
            state = true_conditions(trial)
            if tname not in self.told and any(k in state for k in DONE):
                self.told.add(tname)
                value = _objective(trial, spec["objective"]["objectiveMetricName"])
                self.suggestions.tell((ns, name), tname, value if "Succeeded" in state else None)
        goal_reached = self._summary(status, spec, trials)
        if not finished:
            finished = self._conclude(status, spec, goal_reached)
            if not finished:
                finished = await self._more_trials(experiment, status, trials)
        if finished:
            for trial in trials:
                if not any(k in true_conditions(trial) for k in DONE):
                    await self._kill(trial)
        if json.dumps(status, sort_keys=True) != before:
            await self.ops._write_status(path, status)

    def _summary(self, status, spec, trials):
        lists = {"Running": [], "Pending": [], "Succeeded": [], "Failed": [], "Killed": [], "EarlyStopped": []}
        unavailable = []
        metric, goal = spec["objective"]["objectiveMetricName"], spec["objective"].get("goal")
        maximize = spec["objective"]["type"] == "maximize"
        best, best_value = None, None
        for trial in trials:
            state = true_conditions(trial)
            tname = trial["metadata"]["name"]
            if "Killed" in state:
                lists["Killed"].append(tname)
            elif "EarlyStopped" in state:
                lists["EarlyStopped"].append(tname)
            elif "MetricsUnavailable" in state:
                unavailable.append(tname)
            elif "Failed" in state:
                lists["Failed"].append(tname)
            elif "Succeeded" in state:
                lists["Succeeded"].append(tname)
            elif "Running" in state:
                lists["Running"].append(tname)
            else:
                lists["Pending"].append(tname)
            value = _objective(trial, metric)
            if value is not None and (best is None or (value > best_value if maximize else value < best_value)):
                best, best_value = trial, value
        status["trials"] = len(trials)
        for key, names in lists.items():
            status[f"trials{key}"] = len(names)
            status[f"{key[0].lower()}{key[1:]}TrialList"] = names
        status["trialMetricsUnavailable"] = len(unavailable)
        status["metricsUnavailableTrialList"] = unavailable
        if best is not None:
            status["currentOptimalTrial"] = {
                "bestTrialName": best["metadata"]["name"],
                "parameterAssignments": best["spec"].get("parameterAssignments") or [],
                "observation": best["status"]["observation"],
            }
        if goal is None or best is None:
            return False
        return best_value >= goal if maximize else best_value <= goal

    def _conclude(self, status, spec, goal_reached):
        completed = sum(
            status.get(k, 0)
            for k in (
                "trialsSucceeded",
                "trialsFailed",
                "trialsKilled",
                "trialsEarlyStopped",
                "trialMetricsUnavailable",
            )
        )
        failed = status.get("trialsFailed", 0)
        outcome = None
        if goal_reached:
            outcome = (
                "Succeeded",
                "ExperimentGoalReached",
                "Experiment has succeeded because Objective goal has reached",
            )
        elif spec.get("maxFailedTrialCount") is not None and failed > spec["maxFailedTrialCount"]:
            outcome = (
                "Failed",
                "ExperimentMaxFailedTrialsReached",
                "Experiment has failed because max failed count has reached",
            )
        elif spec.get("maxTrialCount") is not None and completed >= spec["maxTrialCount"]:
            outcome = (
                "Succeeded",
                "ExperimentMaxTrialsReached",
                "Experiment has succeeded because max trial count has reached",
            )
        if outcome is None:
            if not true_conditions({"status": status}).get("Running"):
                set_condition(status, "Running", "ExperimentRunning", "Experiment is running")
            return False
        set_condition(status, *outcome)
        status["completionTime"] = now()
        return True

    async def _more_trials(self, experiment, status, trials):
        """Ask the suggestion service for what the counts leave room for; one Trial each."""
        meta, spec = experiment["metadata"], experiment["spec"]
        ns, name = meta["namespace"], meta["name"]
        algorithm = spec["algorithm"]["algorithmName"]
        active = status.get("trialsRunning", 0) + status.get("trialsPending", 0)
        room = spec.get("parallelTrialCount", 3) - active
        if spec.get("maxTrialCount") is not None:
            room = min(room, spec["maxTrialCount"] - len(trials))
        if room <= 0:
            return False
        if algorithm not in Suggestions.ALGORITHMS:
            set_condition(
                status, "Failed", "ExperimentFailed", f"Suggestion failed: no suggestion service for {algorithm!r} here"
            )
            status["completionTime"] = now()
            return True
        suggestion = await self._suggestion(experiment, len(trials) + room)
        new = await asyncio.to_thread(self.suggestions.suggest, (ns, name), spec, room)
        if not new:
            if active == 0:
                set_condition(
                    status,
                    "Succeeded",
                    "ExperimentSuggestionEndReached",
                    "Experiment has succeeded because suggestion service has reached the end",
                )
                status["completionTime"] = now()
                return True
            return False
        sstatus = json.loads(json.dumps(suggestion.get("status") or {}))
        sstatus.setdefault("suggestions", []).extend({"name": n, "parameterAssignments": a} for n, a in new)
        sstatus["suggestionCount"] = len(sstatus["suggestions"])
        set_condition(sstatus, "Running", "SuggestionRunning", "Suggestion is running")
        await self.ops._write_status(f"/apis/{KATIB}/namespaces/{ns}/suggestions/{name}", sstatus)
        for trial_name, assignment in new:
            await self._create_trial(experiment, trial_name, assignment)
        return False

    async def _suggestion(self, experiment, requests):
        from .operators import owner_reference

        meta, spec = experiment["metadata"], experiment["spec"]
        path = f"/apis/{KATIB}/namespaces/{meta['namespace']}/suggestions"
        try:
            suggestion = await self.client.get(f"{path}/{meta['name']}")
        except ApiError as e:
            if e.status != 404:
                raise
            body = {
                "apiVersion": KATIB,
                "kind": "Suggestion",
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "labels": {EXPERIMENT_LABEL: meta["name"]},
                    "ownerReferences": [owner_reference(experiment)],
                },
                "spec": {"algorithm": spec["algorithm"], "requests": requests, "resumePolicy": "Never"},
            }
            if spec.get("earlyStopping"):
                body["spec"]["earlyStopping"] = spec["earlyStopping"]
            return await self.client.create(path, body)
        if suggestion["spec"].get("requests") != requests:
            suggestion = await self.client.merge_patch(f"{path}/{meta['name']}", {"spec": {"requests": requests}})
        return suggestion

    async def _create_trial(self, experiment, trial_name, assignment):
        from .operators import owner_reference

        meta, spec = experiment["metadata"], experiment["spec"]
        template = spec["trialTemplate"]
        values = {a["name"]: a["value"] for a in assignment}
        references = {}
        for param in template.get("trialParameters") or []:
            reference = param.get("reference") or param["name"]
            if reference == "${trialSpec.Name}":
                references[param["name"]] = trial_name
            elif reference == "${trialSpec.Namespace}":
                references[param["name"]] = meta["namespace"]
            else:
                references[param["name"]] = values[reference]
        run_spec = json.loads(substitute(json.dumps(template["trialSpec"]), references))
        run_spec.setdefault("metadata", {}).update(name=trial_name, namespace=meta["namespace"])
        body = {
            "apiVersion": KATIB,
            "kind": "Trial",
            "metadata": {
                "name": trial_name,
                "namespace": meta["namespace"],
                "labels": {EXPERIMENT_LABEL: meta["name"]},
                "ownerReferences": [owner_reference(experiment)],
            },
            "spec": {
                "objective": spec["objective"],
                "parameterAssignments": assignment,
                "runSpec": run_spec,
                "metricsCollector": spec.get("metricsCollectorSpec") or {"collector": {"kind": "StdOut"}},
                "primaryContainerName": template.get("primaryContainerName"),
                "successCondition": template.get("successCondition")
                or 'status.conditions.#(type=="Complete")#|#(status=="True")#',
                "failureCondition": template.get("failureCondition")
                or 'status.conditions.#(type=="Failed")#|#(status=="True")#',
            },
        }
        await self.client.create(f"/apis/{KATIB}/namespaces/{meta['namespace']}/trials", body)

    async def _kill(self, trial):
        meta = trial["metadata"]
        status = json.loads(json.dumps(trial.get("status") or {}))
        set_condition(status, "Killed", "TrialKilled", "Trial is killed: its experiment has finished")
        status["completionTime"] = now()
        await self.ops._write_status(f"/apis/{KATIB}/namespaces/{meta['namespace']}/trials/{meta['name']}", status)
        run = trial["spec"].get("runSpec") or {}
        kind = JOB_KINDS.get(run.get("kind"))
        if kind:
            await self.ops._delete(
                _object_path(kind, meta["namespace"], meta["name"]), {"propagationPolicy": "Foreground"}
            )

    # ------------------------------------------------------------------ Trial

    async def reconcile_trial(self, trial):
        meta, spec = trial["metadata"], trial["spec"]
        ns, name = meta["namespace"], meta["name"]
        conditions = true_conditions(trial)
        if any(k in conditions for k in DONE):
            return
        status = json.loads(json.dumps(trial.get("status") or {}))
        path = f"/apis/{KATIB}/namespaces/{ns}/trials/{name}"
        run = spec.get("runSpec") or {}
        kind = JOB_KINDS.get(run.get("kind"))
        if kind is None:
            set_condition(
                status, "Failed", "TrialFailed", f"the runSpec's kind {run.get('kind')!r} is not followed here"
            )
            await self.ops._write_status(path, status)
            return
        if not status.get("conditions"):
            await self._create_run(trial, run, kind)
            set_condition(status, "Created", "TrialCreated", "Trial is created")
            status["startTime"] = now()
            await self.ops._write_status(path, status)
            return
        job = self.jobs.get((ns, name)) if run["kind"] == "Job" else self.ops.objects.get((run["kind"], ns, name))
        if job is None:
            return
        success, failure = _condition_type(spec["successCondition"]), _condition_type(spec["failureCondition"])
        job_conditions = true_conditions(job)
        if success in job_conditions:
            names = [spec["objective"]["objectiveMetricName"], *(spec["objective"].get("additionalMetricNames") or [])]
            metrics = self.store.metrics(name, names)
            status["observation"] = {"metrics": metrics}
            if any(m["name"] == names[0] for m in metrics):
                set_condition(status, "Succeeded", "TrialSucceeded", "Trial has succeeded")
            else:
                set_condition(status, "MetricsUnavailable", "MetricsUnavailable", "Metrics are not available")
            status["completionTime"] = now()
        elif failure in job_conditions:
            message = job_conditions[failure].get("message") or "Trial has failed"
            set_condition(status, "Failed", "TrialFailed", f"Trial has failed. Job message: {message}")
            status["completionTime"] = now()
        elif "Running" not in true_conditions({"status": status}):
            set_condition(status, "Running", "TrialRunning", "Trial is running")
        else:
            return
        await self.ops._write_status(path, status)

    async def _create_run(self, trial, run, kind):
        from .operators import owner_reference

        meta = trial["metadata"]
        run = json.loads(json.dumps(run))
        run.setdefault("metadata", {}).setdefault("labels", {})[TRIAL_LABEL] = meta["name"]
        run["metadata"]["labels"][EXPERIMENT_LABEL] = meta["labels"][EXPERIMENT_LABEL]
        run["metadata"]["ownerReferences"] = [owner_reference(trial)]
        collector = ((trial["spec"].get("metricsCollector") or {}).get("collector") or {}).get("kind")
        primary = trial["spec"].get("primaryContainerName")
        for pod_spec in _pod_specs(run):
            for container in pod_spec.get("containers") or []:
                if collector == "Push" and container.get("name") == primary:
                    # what Katib's webhook gives the primary container for the Push collector
                    container.setdefault("env", []).append({"name": "KATIB_TRIAL_NAME", "value": meta["name"]})
        try:
            await self.client.create(_object_path(kind, meta["namespace"]), run)
        except ApiError as e:
            if e.status != 409:
                raise


def _object_path(kind, namespace, name=None):
    api_version, plural = kind
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def _pod_specs(run):
    spec = run.get("spec") or {}
    if run.get("kind") == "Job":
        return [spec.get("template", {}).get("spec") or {}]
    out = []
    for key, replicas in spec.items():
        if key.endswith("ReplicaSpecs"):
            out += [r.get("template", {}).get("spec") or {} for r in replicas.values()]
    return out


def _condition_type(expression):
    match = CONDITION_RE.match(expression or "")
    return match.group(1) if match else None


def _objective(trial, metric):
    for m in ((trial.get("status") or {}).get("observation") or {}).get("metrics") or []:
        if m.get("name") == metric:
            try:
                return float(m.get("latest"))
            except (TypeError, ValueError):
                return None
    return None
