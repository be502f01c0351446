"""The pipeline spec: a DAG of tasks, each an ordinary job, checked in full before a run starts.

JSON in the API, YAML in a file; every error names its field (``tasks.train.depends: ...``)::

    name: nightly
    params:
      threshold: {type: number, default: 0.8}
      epochs: 3                                   # a default alone: its type is the value's
    parallelism: 4                                # tasks running at once (default: all ready)
    cache: auto                                   # every task's default (off unless given)
    tasks:
      prepare:
        job: {script: prep.py, args: ["--out", "{{outputs.data}}"]}
        outputs: {data: "runs/{{run}}/data.csv"}  # paths in the workspace
        inputs: [raw/]                            # what else it reads: part of its cache key
      train:
        depends: [prepare]
        job: {script: train.py, args: ["--data", "{{tasks.prepare.outputs.data}}", "--epochs", "{{params.epochs}}"]}
        retries: 2
        timeout: 30m
      report:
        depends: "train.Succeeded || train.Failed"   # Argo's depends expression
        when: "{{params.threshold}} > 0.5"
        job: {command: "echo done"}

A task is a ``job``, an ``experiment`` (a hyperparameter search, as ``api/experiments`` takes it,
named by the pipeline) or ``serve`` (a serving of the owner's, ``{name, model, ...}`` as
``api/servings`` takes it: made, or updated to a new version, and ready before the task succeeds).

``{{run}}`` (the run's id), ``{{scheduled}}`` (the time a scheduled run is for; else its start),
``{{params.X}}``, ``{{outputs.Y}}`` (the task's own), ``{{tasks.X.outputs.Y}}`` (an upstream
task's path; X must be one the task depends on, directly or not), ``{{tasks.X.outputs.Y.value}}``
(the text that file holds, read when the task starts: Argo's output parameters) and an upstream
experiment's ``{{tasks.X.best.value}}``, ``{{tasks.X.best.params.P}}`` and ``{{tasks.X.best.model}}``
are filled into a task's spec and outputs when it starts.

``cache: auto`` skips a task whose job spec, the params it uses and the content of its inputs (its
script, the upstream outputs it names, its ``inputs``) are those of a task that succeeded in an
earlier run of the owner's that still has its outputs: those outputs are the task's. Light: no
service code here.
"""

import json
import re
from dataclasses import dataclass, field

import yaml

from ..spec import NAME_RE, SpecError, _int, checked_name, duration, relative_path

FIELDS = ("name", "params", "tasks", "parallelism", "schedule", "cache", "backend")
BACKENDS = ("auto", "argo", "kubestudio")  # who runs the DAG: Argo Workflows, or the service itself
CACHE_MODES = ("auto", "off")
SCHEDULE_FIELDS = ("cron", "timezone", "catchup", "start", "max_active_runs", "depends_on_past")
MAX_CATCHUP = 100  # missed intervals a schedule makes up for at once
TASK_FIELDS = ("job", "experiment", "serve", "depends", "when", "retries", "timeout", "outputs", "inputs", "cache")
KINDS = ("job", "experiment", "serve")
EXPERIMENT_TASK_NAME_MAX = 15  # an experiment's name is shorter than a job's (room for its trials)
MAX_INPUTS = 20
PARAM_TYPES = {"string": str, "int": int, "number": float, "bool": bool}
TASK_NAME_MAX = 16
NAME_MAX = 12  # a task's job is <pipeline>-<run id 6>-<task>[-r<attempt>]: within a job name's 40
MAX_TASKS = 200
MAX_RETRIES = 10
TEMPLATE_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# Argo's depends: task names with .Succeeded/.Failed/.Errored/.Skipped/.Omitted/.Completed/.Daemoned,
# && || ! and parentheses
DEPENDS_TOKEN = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|([a-z][-a-z0-9]*)(?:\.([A-Za-z]+))?)")
RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Completed", "AnySucceeded", "AllFailed")
WHEN_RE = re.compile(r"^(.+?)\s*(==|!=|<=|>=|<|>)\s*(.+)$")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: object = None  # None: the run must give it


@dataclass(frozen=True)
class Task:
    name: str
    job: dict  # the spec of what it runs: a job's, an experiment's, a serving's (``kind``)
    kind: str = "job"
    depends: tuple = ()  # the tasks named in ``depends``
    condition: str = ""  # Argo's depends expression; "" with a plain list (all Succeeded)
    when: str = ""
    retries: int = 0
    timeout: int = None
    outputs: dict = field(default_factory=dict)  # name -> path template
    inputs: tuple = ()  # path templates in the workspace the task reads (its cache key hashes them)
    cache: str = "off"


@dataclass(frozen=True)
class Schedule:
    """When a scheduled pipeline runs: ``cron`` (five fields, or six with seconds last) in
    ``timezone``; ``catchup`` runs every missed interval (from ``start`` when given), else only the
    latest; at most ``max_active_runs`` at once; ``depends_on_past``: a run waits for the one
    before it to have succeeded."""

    cron: str
    timezone: str = "UTC"
    catchup: bool = False
    start: object = None  # an aware datetime
    max_active_runs: int = 1
    depends_on_past: bool = False

    def next_after(self, when):
        """The first fire time after ``when`` (an aware datetime), as an aware UTC datetime."""
        from datetime import timezone
        from zoneinfo import ZoneInfo

        from croniter import croniter

        local = when.astimezone(ZoneInfo(self.timezone))
        return croniter(self.cron, local).get_next(type(when)).astimezone(timezone.utc)


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    params: tuple
    tasks: dict  # name -> Task, in the order given
    parallelism: int = None
    source: dict = field(default_factory=dict)  # the spec as sent (what a rerun runs again)
    schedule: Schedule = None
    backend: str = "auto"

    def order(self):
        """The tasks, each after what it depends on."""
        done, out = set(), []
        pending = list(self.tasks)
        while pending:
            for name in pending:
                if set(self.tasks[name].depends) <= done:
                    done.add(name)
                    out.append(name)
                    pending.remove(name)
                    break
        return out

    def upstream(self, name):
        """Every task ``name`` depends on, directly or not."""
        seen, stack = set(), list(self.tasks[name].depends)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.tasks[current].depends)
        return seen

    def downstream(self, name):
        """``name`` and every task that depends on it, directly or not."""
        return {t for t in self.tasks if t == name or name in self.upstream(t)}

    def resolve_params(self, given):
        """The run's parameters: the defaults with ``given`` on top, each of its type."""
        given = given or {}
        if not isinstance(given, dict):
            raise SpecError("params: a mapping of parameter names to values")
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise SpecError(f"params.{unknown[0]}: the pipeline has no such parameter ({', '.join(known) or 'none'})")
        values = {}
        for p in self.params:
            value = given.get(p.name, p.default)
            if value is None:
                raise SpecError(f"params.{p.name}: required (the pipeline gives it no default)")
            values[p.name] = typed(value, p.type, f"params.{p.name}")
        return values


def typed(value, kind, where):
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise SpecError(f"{where}: must be true or false, not {value!r}")
    if kind == "string":
        if isinstance(value, (dict, list)):
            raise SpecError(f"{where}: must be a string, not {type(value).__name__}")
        return str(value)
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: must be a {kind}, not {value!r}") from None
    if kind == "int":
        if not number.is_integer():
            raise SpecError(f"{where}: must be a whole number, not {value!r}")
        return int(number)
    return number


def parse_params(value):
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise SpecError("params: a mapping of names to {type, default} (or to a default)")
    out = []
    for name, p in value.items():
        where = f"params.{name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", name):
            raise SpecError(f"{where}: a parameter's name is a letter or _ then letters, digits or _")
        if isinstance(p, dict):
            unknown = sorted(set(p) - {"type", "default"})
            if unknown:
                raise SpecError(f"{where}.{unknown[0]}: unknown field (expected type, default)")
            kind = p.get("type", "string")
            if kind not in PARAM_TYPES:
                raise SpecError(f"{where}.type: one of {', '.join(PARAM_TYPES)}, not {kind!r}")
            default = p.get("default")
            if default is not None:
                default = typed(default, kind, f"{where}.default")
        else:
            default = p
            kind = next((k for k, t in PARAM_TYPES.items() if type(p) is t), None)
            if kind is None:
                raise SpecError(f"{where}: a default that is a string, number or bool, or {{type, default}}")
        out.append(Param(name, kind, default))
    return tuple(out)


def parse_schedule(value):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError("schedule: {cron, timezone, catchup, start, max_active_runs, depends_on_past}")
    unknown = sorted(set(value) - set(SCHEDULE_FIELDS))
    if unknown:
        raise SpecError(f"schedule.{unknown[0]}: unknown field (expected one of: {', '.join(SCHEDULE_FIELDS)})")
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import croniter

    cron = value.get("cron")
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise SpecError(
            f"schedule.cron: a cron expression such as '0 2 * * *' (minute hour day month weekday), not {cron!r}"
        )
    zone = value.get("timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise SpecError(f"schedule.timezone: a time zone such as UTC or Europe/Paris, not {zone!r}") from None
    flags = {}
    for key in ("catchup", "depends_on_past"):
        flag = value.get(key, False)
        if not isinstance(flag, bool):
            raise SpecError(f"schedule.{key}: true or false, not {flag!r}")
        flags[key] = flag
    start = value.get("start")
    if start is not None:
        try:
            start = datetime.fromisoformat(str(start))
        except ValueError:
            raise SpecError(f"schedule.start: a date and time such as 2026-12-01T00:00, not {start!r}") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=ZoneInfo(zone))
    return Schedule(
        cron=cron,
        timezone=zone,
        start=start,
        max_active_runs=_int(value.get("max_active_runs", 1), "schedule.max_active_runs", minimum=1, maximum=100),
        **flags,
    )


def parse_depends(value, where, names):
    """(tasks named, Argo expression or "") of a task's ``depends``."""
    if value is None:
        return (), ""
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str) or item not in names:
                raise SpecError(f"{where}: {item!r} is not a task of this pipeline ({', '.join(names)})")
        if len(set(value)) != len(value):
            raise SpecError(f"{where}: a task is named twice")
        return tuple(value), ""
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: a list of tasks, or an expression such as 'a.Succeeded && b.Failed'")
    named, position, text, depth, expect_operand = [], 0, value, 0, True
    while position < len(text):
        match = DEPENDS_TOKEN.match(text, position)
        if not match or match.end() == position:
            raise SpecError(f"{where}: cannot read {text[position:]!r} (tasks, .Succeeded/.Failed, &&, ||, !, ( ))")
        operator, task, result = match.groups()
        position = match.end()
        if task:
            if not expect_operand:
                raise SpecError(f"{where}: an operator is missing before {task!r}")
            if task not in names:
                raise SpecError(f"{where}: {task!r} is not a task of this pipeline ({', '.join(names)})")
            if result is not None and result not in RESULTS:
                raise SpecError(f"{where}: {task}.{result} is not one of Argo's ({', '.join(RESULTS)})")
            if task not in named:
                named.append(task)
            expect_operand = False
        elif operator in ("&&", "||"):
            if expect_operand:
                raise SpecError(f"{where}: {operator} needs a task before it")
            expect_operand = True
        elif operator == "!" or operator == "(":
            if not expect_operand:
                raise SpecError(f"{where}: an operator is missing before {operator!r}")
            depth += operator == "("
        else:  # ")"
            depth -= 1
            if depth < 0 or expect_operand:
                raise SpecError(f"{where}: unbalanced parentheses")
    if depth or expect_operand:
        raise SpecError(f"{where}: the expression ends too soon")
    return tuple(named), value.strip()


def evaluate_depends(expression, states):
    """Argo's ``depends``: ``states`` maps each named task to its end (succeeded, failed, skipped)."""
    words = []
    for operator, task, result in DEPENDS_TOKEN.findall(expression):
        if operator:
            words.append({"&&": " and ", "||": " or ", "!": " not "}.get(operator, operator))
            continue
        state = states[task]
        if not result:  # a bare name: it succeeded or was skipped, as Argo reads it
            words.append(" True " if state in ("succeeded", "skipped") else " False ")
            continue
        ok = {
            "Succeeded": state == "succeeded",
            "AnySucceeded": state == "succeeded",
            "Failed": state == "failed",
            "AllFailed": state == "failed",
            "Errored": state == "failed",
            "Skipped": state == "skipped",
            "Omitted": state == "skipped",
            "Completed": state in ("succeeded", "failed"),
        }[result]
        words.append(" True " if ok else " False ")
    return bool(eval("".join(words), {"__builtins__": {}}, {}))  # noqa: S307 - only True/False/and/or/not/()


def fill(value, context, where):
    """``value`` with each ``{{...}}`` from ``context`` (run, params.X, outputs.Y, tasks.X.outputs.Y)."""
    if isinstance(value, str):

        def one(match):
            key = match.group(1)
            if key not in context:
                raise SpecError(f"{where}: {{{{{key}}}}} is not known here")
            value = context[key]
            return ("true" if value else "false") if isinstance(value, bool) else str(value)

        return TEMPLATE_RE.sub(one, value)
    if isinstance(value, list):
        return [fill(v, context, where) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, context, where) for k, v in value.items()}
    return value


def check_templates(value, task, spec, where):
    """Every ``{{...}}`` in ``value`` names something ``task`` will have when it starts."""
    text = json.dumps(value)
    for key in TEMPLATE_RE.findall(text):
        parts = key.split(".")
        if key in ("run", "scheduled"):
            continue
        if parts[0] == "params" and len(parts) == 2:
            if parts[1] not in {p.name for p in spec["params"]}:
                raise SpecError(f"{where}: {{{{{key}}}}}: the pipeline has no parameter {parts[1]!r}")
            continue
        if parts[0] == "outputs" and len(parts) == 2 and task is not None:
            if parts[1] not in spec["tasks"][task]["outputs"]:
                raise SpecError(f"{where}: {{{{{key}}}}}: task {task!r} declares no output {parts[1]!r}")
            continue
        if parts[0] == "tasks" and len(parts) >= 4 and parts[2] == "best" and task is not None:
            upstream = parts[1]
            if upstream not in spec["upstream"](task):
                raise SpecError(
                    f"{where}: {{{{{key}}}}}: {task!r} does not depend on {upstream!r}, so its result "
                    "is not there when it starts"
                )
            if spec["tasks"][upstream]["kind"] != "experiment":
                raise SpecError(f"{where}: {{{{{key}}}}}: task {upstream!r} is not an experiment")
            names = spec["tasks"][upstream]["space"]
            if parts[3:] in (["value"], ["model"]) or (len(parts) == 5 and parts[3] == "params" and parts[4] in names):
                continue
            raise SpecError(
                f"{where}: {{{{{key}}}}}: an experiment's result is best.value, best.model or best.params.P "
                f"with P one of {', '.join(names) or 'its parameters'}"
            )
        if parts[0] == "tasks" and len(parts) in (4, 5) and parts[2] == "outputs" and task is not None:
            if len(parts) == 5 and parts[4] != "value":
                raise SpecError(f"{where}: {{{{{key}}}}}: an output is its path, or .value (the text it holds)")
            upstream, output = parts[1], parts[3]
            if upstream not in spec["upstream"](task):
                raise SpecError(
                    f"{where}: {{{{{key}}}}}: {task!r} does not depend on {upstream!r}, so its outputs "
                    "may not be there when it starts"
                )
            if output not in spec["tasks"][upstream]["outputs"]:
                raise SpecError(f"{where}: {{{{{key}}}}}: task {upstream!r} declares no output {output!r}")
            continue
        raise SpecError(
            f"{where}: {{{{{key}}}}} is not something a pipeline fills in "
            "(run, scheduled, params.X, outputs.Y, tasks.X.outputs.Y[.value], tasks.X.best.value|model|params.P)"
        )


def parse_when(value, where):
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not WHEN_RE.match(value.strip()):
        raise SpecError(f"{where}: a comparison such as '{{{{params.threshold}}}} > 0.5' (==, !=, <, <=, >, >=)")
    return value.strip()


def evaluate_when(text, context, where):
    """A filled-in ``when``: numbers compared as numbers, anything else as text."""
    left, operator, right = WHEN_RE.match(fill(text, context, where)).groups()
    left, right = (_number_or_text(side.strip()) for side in (left, right))
    try:
        return {
            "==": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[operator]
    except TypeError:  # a number against a text
        raise SpecError(f"{where}: cannot compare {left!r} {operator} {right!r}") from None


def _number_or_text(word):
    if word[:1] in ("'", '"') and word[-1:] == word[:1] and len(word) > 1:
        return word[1:-1]  # quoted: text, whatever it holds
    try:
        return float(word)
    except ValueError:
        return word


def parse_cache(value, where, default):
    if value is None:
        return default
    if value not in CACHE_MODES:
        raise SpecError(f"{where}: auto (reuse a matching earlier result) or off, not {value!r}")
    return value


def parse_inputs(value, where):
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_INPUTS:
        raise SpecError(f"{where}: a list of at most {MAX_INPUTS} paths in your workspace")
    for i, path in enumerate(value):
        if not isinstance(path, str) or not path.strip("/"):
            raise SpecError(f"{where}[{i}]: a path in your workspace")
        relative_path(path, f"{where}[{i}]")
    return tuple(path.strip("/") for path in value)


def parse_pipeline(body):
    """A :class:`PipelineSpec` from a JSON object (or YAML text), or SpecError naming the field."""
    if isinstance(body, str):
        try:
            body = yaml.safe_load(body)
        except yaml.YAMLError as e:
            raise SpecError(f"the pipeline is not valid YAML: {e}") from None
    name = checked_name(body, FIELDS, "pipeline")
    if len(name) > NAME_MAX:
        raise SpecError(f"name: at most {NAME_MAX} characters (room for the run and task in each job's name)")
    params = parse_params(body.get("params"))
    cache_default = parse_cache(body.get("cache"), "cache", "off")
    tasks_body = body.get("tasks")
    if not isinstance(tasks_body, dict) or not tasks_body:
        raise SpecError("tasks: a mapping of task names to {job, depends, ...}, with at least one")
    if len(tasks_body) > MAX_TASKS:
        raise SpecError(f"tasks: at most {MAX_TASKS}, not {len(tasks_body)}")
    names = list(tasks_body)
    for task_name in names:
        if not isinstance(task_name, str) or not NAME_RE.match(task_name) or len(task_name) > TASK_NAME_MAX:
            raise SpecError(
                f"tasks.{task_name}: a task's name is lower-case letters, digits and '-' (at most {TASK_NAME_MAX})"
            )
    raw = {}
    for task_name, t in tasks_body.items():
        where = f"tasks.{task_name}"
        if not isinstance(t, dict):
            raise SpecError(f"{where}: a mapping with job, experiment or serve (and depends, when, retries, ...)")
        unknown = sorted(set(t) - set(TASK_FIELDS))
        if unknown:
            raise SpecError(f"{where}.{unknown[0]}: unknown field (expected one of: {', '.join(TASK_FIELDS)})")
        kinds = [k for k in KINDS if k in t]
        if len(kinds) != 1:
            raise SpecError(
                f"{where}: one of job, experiment or serve"
                + (f", not {' and '.join(kinds)}" if kinds else " (what the task runs)")
            )
        kind = kinds[0]
        job = t[kind]
        if not isinstance(job, dict) or not job:
            raise SpecError(
                f"{where}.{kind}: "
                + {
                    "job": "the task's job spec (script or command, args, resources, ...)",
                    "experiment": "the experiment's spec (objective, space, trial, max_trials, ...)",
                    "serve": "the serving's spec: {name, model, ...}",
                }[kind]
            )
        if kind == "serve":
            if not isinstance(job.get("name"), str) or not NAME_RE.match(job["name"]):
                raise SpecError(f"{where}.serve.name: the serving to make or update (lower-case letters, digits, '-')")
            if t.get("outputs"):
                raise SpecError(f"{where}.outputs: a serve task writes no files")
        elif "name" in job:
            raise SpecError(f"{where}.{kind}.name: a task's {kind} is named by the pipeline (<pipeline>-<run>-<task>)")
        if kind == "experiment" and len(task_name) > EXPERIMENT_TASK_NAME_MAX:
            raise SpecError(
                f"tasks.{task_name}: an experiment task's name is at most {EXPERIMENT_TASK_NAME_MAX} characters "
                "(room for its trials' names)"
            )
        space = job.get("space") if kind == "experiment" else None
        if isinstance(space, str):
            try:
                space = json.loads(space)
            except ValueError:
                space = None
        cache = parse_cache(t.get("cache"), f"{where}.cache", cache_default if kind == "job" else "off")
        if cache == "auto" and kind != "job":
            raise SpecError(f"{where}.cache: only a job task is cached (an {kind} always runs)")
        depends, condition = parse_depends(t.get("depends"), f"{where}.depends", names)
        if task_name in depends:
            raise SpecError(f"{where}.depends: a task cannot depend on itself")
        outputs = t.get("outputs") or {}
        if not isinstance(outputs, dict):
            raise SpecError(f"{where}.outputs: a mapping of output names to paths in your workspace")
        for output, path in outputs.items():
            relative_path(path if isinstance(path, str) else None, f"{where}.outputs.{output}")
            if not isinstance(path, str) or not path:
                raise SpecError(f"{where}.outputs.{output}: a path in your workspace")
        raw[task_name] = {
            "job": job,
            "kind": kind,
            "space": sorted(space) if isinstance(space, dict) else [],
            "depends": depends,
            "condition": condition,
            "when": parse_when(t.get("when"), f"{where}.when"),
            "retries": _int(t.get("retries", 0), f"{where}.retries", maximum=MAX_RETRIES),
            "timeout": duration(t.get("timeout"), f"{where}.timeout"),
            "outputs": dict(outputs),
            "inputs": parse_inputs(t.get("inputs"), f"{where}.inputs"),
            "cache": cache,
        }
    _check_acyclic(raw)

    def upstream(task):
        seen, stack = set(), list(raw[task]["depends"])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(raw[current]["depends"])
        return seen

    context = {"params": params, "tasks": raw, "upstream": upstream}
    for task_name, t in raw.items():
        where = f"tasks.{task_name}"
        check_templates(t["job"], task_name, context, f"{where}.{t['kind']}")
        for output, path in t["outputs"].items():
            if "{{outputs." in path or "{{tasks." in path:
                raise SpecError(
                    f"{where}.outputs.{output}: an output's path takes {{{{run}}}} and {{{{params.X}}}} only"
                )
            check_templates(path, None, context, f"{where}.outputs.{output}")
        for i, path in enumerate(t["inputs"]):
            check_templates(path, task_name, context, f"{where}.inputs[{i}]")
        if t["when"]:
            check_templates(t["when"], task_name, context, f"{where}.when")
    parallelism = body.get("parallelism")
    if parallelism is not None:
        parallelism = _int(parallelism, "parallelism", minimum=1, maximum=MAX_TASKS)
    tasks = {n: Task(name=n, **{k: v for k, v in t.items() if k != "space"}) for n, t in raw.items()}
    return PipelineSpec(
        name=name,
        params=params,
        tasks=tasks,
        parallelism=parallelism,
        source=dict(body),
        schedule=parse_schedule(body.get("schedule")),
        backend=parse_backend(body.get("backend")),
    )


def parse_backend(value):
    if value is None:
        return "auto"
    if value not in BACKENDS:
        raise SpecError(
            f"backend: auto (Argo Workflows where the cluster has it and the tasks fit), argo or kubestudio "
            f"(the service runs the DAG), not {value!r}"
        )
    return value


def _check_acyclic(raw):
    state = {}

    def visit(task, path):
        if state.get(task) == "done":
            return
        if state.get(task) == "visiting":
            cycle = path[path.index(task) :] + [task]
            raise SpecError(f"tasks.{task}.depends: a cycle ({cycle[0]} depends on {' -> '.join(cycle[1:])})")
        state[task] = "visiting"
        for upstream in raw[task]["depends"]:
            visit(upstream, path + [task])
        state[task] = "done"

    for task in raw:
        visit(task, [])
