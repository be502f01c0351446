"""An experiment as Katib runs it: the Experiment object, reading its Trials, and Katib's DB.

Where the cluster serves Katib's ``Experiment`` (``kubeflow.org/v1beta1``) and a spec says
``backend: katib`` (or ``auto``), the service hands the search to Katib: one Experiment whose
``trialTemplate`` is the trial's job exactly as the jobs backend would make it (the same image,
workspace, project placement and GPUs), with Katib's ``${trialParameters.<name>}`` where the
values go, and the **Push** metrics collector (no sidecar to inject). A trial still reports with
``kubestudio.trial`` (or the ``nni`` shim) to the service, which checks the report and pushes it to
Katib's DB manager (``ReportObservationLog``, gRPC), where Katib's trial controller reads it.

Pure builders and readers, plus the DB manager's client; nothing here lists or watches.
The DB manager's messages hold only strings and nested messages, so they are written and read
here by hand (protobuf's wire format, field numbers from Katib's ``api.proto``) rather than with
Katib's generated code.
"""

import json
import math
from datetime import datetime, timezone

KATIB = "kubeflow.org/v1beta1"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
DB_MANAGER_SERVICE = "api.v1.beta1.DBManager"
TRIAL_NAME_PARAMETER = "kubestudioTrialName"
# Katib's names of our algorithms (Katib runs them on Optuna too; qmc is its sobol)
ALGORITHMS = {"tpe": "tpe", "random": "random", "grid": "grid", "cmaes": "cmaes", "qmc": "sobol"}
SEEDED = ("tpe", "random", "cmaes", "sobol")
# the job kinds Katib follows by a condition of their status (gjson, as Katib's examples write it)
CONDITIONS = {
    "Job": ("Complete", "Failed"),
    "PyTorchJob": ("Succeeded", "Failed"),
    "TFJob": ("Succeeded", "Failed"),
    "MPIJob": ("Succeeded", "Failed"),
}
PRIMARY_CONTAINER = {"Job": "job", "PyTorchJob": "pytorch", "TFJob": "tensorflow", "MPIJob": "mpi"}


class KatibRefused(ValueError):
    """A spec that Katib cannot run as it is; the message names the field."""


# ------------------------------------------------------------------ the DB manager's wire format


def _varint(number):
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_message(fields):
    """Protobuf bytes of ``[(field number, str or bytes), ...]`` (every field length-delimited)."""
    out = bytearray()
    for number, value in fields:
        payload = value.encode() if isinstance(value, str) else value
        out += _varint(number << 3 | 2) + _varint(len(payload)) + payload
    return bytes(out)


def pb_fields(data):
    """``{field number: [bytes, ...]}`` of a message; fields that are not length-delimited are skipped."""
    fields, i = {}, 0

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            if i >= len(data):
                raise ValueError("truncated message")
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 2:
            length = varint()
            if i + length > len(data):
                raise ValueError("truncated message")
            fields.setdefault(number, []).append(bytes(data[i : i + length]))
            i += length
        elif wire == 0:
            varint()
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire} is not read here")
    return fields


def _text(fields, number):
    values = fields.get(number)
    return values[-1].decode() if values else ""


def observation_log(entries):
    """An ObservationLog of ``[(time_stamp, metric name, value), ...]``."""
    return pb_message(
        (1, pb_message([(1, stamp), (2, pb_message([(1, name), (2, str(value))]))])) for stamp, name, value in entries
    )


def read_observation_log(data):
    entries = []
    for metric_log in pb_fields(data).get(1, []):
        fields = pb_fields(metric_log)
        metric = pb_fields(fields.get(2, [b""])[-1])
        entries.append((_text(fields, 1), _text(metric, 1), _text(metric, 2)))
    return entries


def report_request(trial_name, metrics, stamp=None):
    """ReportObservationLogRequest: ``metrics`` of ``trial_name`` at ``stamp`` (now, RFC 3339)."""
    stamp = stamp or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return pb_message([(1, trial_name), (2, observation_log((stamp, n, v) for n, v in metrics.items()))])


def read_report_request(data):
    fields = pb_fields(data)
    return _text(fields, 1), read_observation_log(fields.get(2, [b""])[-1])


def get_request(trial_name, metric_name=""):
    return pb_message([(1, trial_name), (2, metric_name)] if metric_name else [(1, trial_name)])


def read_get_request(data):
    fields = pb_fields(data)
    return _text(fields, 1), _text(fields, 2)


def get_reply(entries):
    return pb_message([(1, observation_log(entries))])


def read_get_reply(data):
    return read_observation_log(pb_fields(data).get(1, [b""])[-1])


class DBManager:
    """Katib's DB manager (``katib-db-manager.kubeflow:6789``), over gRPC."""

    def __init__(self, address, timeout=10):
        self.address = address
        self.timeout = timeout
        self._channel = None

    def _call(self, method):
        import grpc.aio  # the service's dependency (the hub extra); trials never import it

        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.address)
        return self._channel.unary_unary(f"/{DB_MANAGER_SERVICE}/{method}")

    async def report(self, trial_name, metrics):
        await self._call("ReportObservationLog")(report_request(trial_name, metrics), timeout=self.timeout)

    async def observations(self, trial_name, metric_name=""):
        reply = await self._call("GetObservationLog")(get_request(trial_name, metric_name), timeout=self.timeout)
        return read_get_reply(reply)

    async def close(self):
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


# ------------------------------------------------------------------ the Experiment


def placeholder(name):
    return "${trialParameters.%s}" % name


def katib_parameters(space):
    """Katib's ``parameters`` of a space (values as strings, as Katib keeps them)."""
    out = []
    for p in space:
        where = f"space.{p.name}"
        if p.distribution == "normal":
            raise KatibRefused(f"{where}: Katib has no normal distribution over an unbounded range; use uniform")
        if p.kind == "choice":
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values)
            out.append(
                {
                    "name": p.name,
                    "parameterType": "discrete" if numbers else "categorical",
                    "feasibleSpace": {"list": [_katib_value(v) for v in p.values]},
                }
            )
            continue
        space = {"min": _katib_value(p.low), "max": _katib_value(p.high)}
        if p.kind == "int":
            space["min"], space["max"] = str(int(p.low)), str(int(p.high))
            if p.step and p.step != 1:
                space["step"] = str(int(p.step))
        else:
            if p.step is not None:
                space["step"] = _katib_value(p.step)
            space["distribution"] = "logUniform" if p.log else "uniform"
        out.append({"name": p.name, "parameterType": "int" if p.kind == "int" else "double", "feasibleSpace": space})
    return out


def _katib_value(value):
    return value if isinstance(value, str) else json.dumps(value)


def value_of(param, text):
    """A parameter's value from Katib's string."""
    if param.kind == "choice":
        for value in param.values:
            if _katib_value(value) == text or str(value) == text:
                return value
        return text
    number = float(text)
    if param.kind == "int":
        return int(number)
    return number


def params_template(space):
    """KUBESTUDIO_TRIAL_PARAMS as Katib fills it: numbers bare, strings quoted (valid JSON after)."""
    items = []
    for p in space:
        quoted = p.kind == "choice" and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values
        )
        value = placeholder(p.name)
        items.append(f"{json.dumps(p.name)}: " + (f'"{value}"' if quoted else value))
    return "{" + ", ".join(items) + "}"


def check_spec(spec, kind):
    """Why Katib cannot run this spec as it is (KatibRefused naming the field), else None."""
    if kind not in CONDITIONS:
        raise KatibRefused(f"trial: Katib runs Jobs, PyTorchJobs, TFJobs and MPIJobs here, not a {kind}")
    if spec.early_stopping != "none":
        # Katib stops trials early from what its StdOut or File collector reads, not from pushed values
        raise KatibRefused(
            f"early_stopping: Katib stops trials early only with its StdOut or File metrics collectors, not "
            f"with the Push collector the service uses; use none, or backend kubestudio for {spec.early_stopping}"
        )
    if spec.model is not None:
        raise KatibRefused("trial.model_class: a model class runs with backend kubestudio, not katib")
    katib_parameters(spec.space)


def experiment_name(experiment_id):
    return f"exp-{experiment_id}"


def experiment_manifest(spec, experiment_id, namespace, kind, job, labels):
    """The Katib Experiment of ``spec``: ``job`` is the trial's object as the jobs backend makes
    it, its values already ``${trialParameters.<name>}``."""
    success, failure = CONDITIONS[kind]
    trial_spec = json.loads(json.dumps(job))
    trial_spec["metadata"] = {k: v for k, v in trial_spec.get("metadata", {}).items() if k in ("labels", "annotations")}
    algorithm = ALGORITHMS[spec.algorithm]
    manifest = {
        "apiVersion": KATIB,
        "kind": "Experiment",
        "metadata": {
            "name": experiment_name(experiment_id),
            "namespace": namespace,
            "labels": labels,
            "annotations": {"kubestudio.io/experiment-name": spec.name},
        },
        "spec": {
            "objective": {
                "type": spec.objective.direction,
                "objectiveMetricName": spec.objective.metric,
            },
            "algorithm": {"algorithmName": algorithm},
            "parallelTrialCount": spec.parallel_trials,
            "maxTrialCount": spec.max_trials,
            "parameters": katib_parameters(spec.space),
            "metricsCollectorSpec": {"collector": {"kind": "Push"}},
            "resumePolicy": "Never",
            "trialTemplate": {
                "primaryContainerName": PRIMARY_CONTAINER[kind],
                "trialParameters": [{"name": p.name, "reference": p.name} for p in spec.space]
                + [{"name": TRIAL_NAME_PARAMETER, "reference": "${trialSpec.Name}"}],
                "trialSpec": trial_spec,
                "successCondition": f'status.conditions.#(type=="{success}")#|#(status=="True")#',
                "failureCondition": f'status.conditions.#(type=="{failure}")#|#(status=="True")#',
            },
        },
    }
    body = manifest["spec"]
    if spec.objective.goal is not None:
        body["objective"]["goal"] = spec.objective.goal
    if spec.seed is not None and algorithm in SEEDED:
        body["algorithm"]["algorithmSettings"] = [{"name": "random_state", "value": str(spec.seed)}]
    if spec.max_failed_trials is not None:
        # Katib fails the experiment when more than maxFailedTrialCount trials failed; ours at max_failed_trials
        body["maxFailedTrialCount"] = spec.max_failed_trials - 1
    return manifest


# ------------------------------------------------------------------ reading what Katib wrote


def _conditions(obj):
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def trial_state(trial, metric):
    """(state, value, message) of a Katib Trial: running, complete, failed, pruned or cancelled."""
    conditions = _conditions(trial)
    value = None
    for m in ((trial.get("status") or {}).get("observation") or {}).get("metrics") or []:
        if m.get("name") == metric:
            try:
                value = float(m.get("latest"))
            except (TypeError, ValueError):
                value = None
            if value is not None and not math.isfinite(value):
                value = None
    if "Succeeded" in conditions:
        if value is None:
            return "failed", None, f"reported no {metric}"
        return "complete", value, ""
    if "MetricsUnavailable" in conditions:
        return "failed", None, f"reported no {metric} ({conditions['MetricsUnavailable'].get('message') or 'Katib'})"
    if "EarlyStopped" in conditions:
        return "pruned", None, "stopped early by Katib"
    if "Killed" in conditions:
        return "cancelled", None, conditions["Killed"].get("message") or "killed by Katib"
    if "Failed" in conditions:
        return "failed", None, f"its job failed: {conditions['Failed'].get('message') or 'no reason given'}"
    return "running", None, ""


def experiment_outcome(experiment):
    """(finished, succeeded, message) of a Katib Experiment."""
    conditions = _conditions(experiment)
    for kind, ok in (("Succeeded", True), ("Failed", False)):
        if kind in conditions:
            return True, ok, conditions[kind].get("message") or conditions[kind].get("reason") or kind
    return False, None, ""


def assignments(trial, params):
    """The values a Katib Trial was given, typed as the space's parameters."""
    values = {}
    for item in (trial.get("spec") or {}).get("parameterAssignments") or []:
        param = params.get(item.get("name"))
        if param is not None:
            values[param.name] = value_of(param, str(item.get("value")))
    return values
