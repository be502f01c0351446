"""Pipelines in Python: ``@task`` functions wired by a ``@pipeline`` compile to the pipeline YAML.

Each task function runs as its own job (its source is shipped in the job, as ``JobsClient.train``
ships a function: it must import what it uses inside); its arguments are the pipeline's params,
constants, or upstream tasks' outputs, and a parameter annotated :class:`Output` is a path in the
workspace that the task writes (``runs/<run>/<task>/<name>``, its folder made before the call)::

    from kubestudio.pipelines import Output, pipeline, task

    @task()
    def prepare(rows: int, data: Output):
        with open(data, "w") as f:
            f.write("\\n".join(str(i) for i in range(rows)))

    @task(gpus=1, retries=1)
    def train(data: str, model: Output, epochs: int = 3):
        ...

    @pipeline(name="nightly", params={"rows": 100, "epochs": 3})
    def nightly(rows, epochs):
        p = prepare(rows=rows)
        train(data=p.outputs["data"], epochs=epochs)

    nightly.compile()                       # the spec: a dict, as the YAML file would be
    PipelinesClient().run(nightly, params={"epochs": 5})

``kubestudio pipelines compile FILE.py:nightly -o nightly.yaml`` writes the YAML. Light: the
standard library and PyYAML (notebooks import it).
"""

import inspect
import json
import re
import textwrap

TASK_FIELDS = ("retries", "timeout", "when", "depends", "cache", "inputs")
# shortcuts for the job's resources
RESOURCE_FIELDS = {"gpus": "gpu", "cpu": "cpu", "memory": "memory"}
NAME_RE = re.compile(r"[^a-z0-9-]+")


class Output(str):
    """Annotates a task parameter that is a path the task writes (a task output)."""


class _Ref:
    """A value known when the run starts: a pipeline param or an upstream task's output."""

    def __init__(self, template, quoted, task=None):
        self.template, self.quoted, self.task = template, quoted, task


class TaskCall:
    """A task in a pipeline being built: ``.outputs[name]`` for downstream tasks; ``.after(t)``
    for an order that no output carries."""

    def __init__(self, name, outputs):
        self.name = name
        self.outputs = {o: _Ref(f"{{{{tasks.{name}.outputs.{o}}}}}", True, name) for o in outputs}
        self.depends = []

    def after(self, *tasks):
        for t in tasks:
            if t.name not in self.depends:
                self.depends.append(t.name)
        return self


_building = []  # the pipelines being compiled (one at a time in practice)


class TaskFunction:
    def __init__(self, func, fields):
        self.func = func
        self.fields = fields
        signature = inspect.signature(func)
        self.outputs = [
            n for n, p in signature.parameters.items() if p.annotation is Output or p.annotation == "Output"
        ]
        self.signature = signature

    def __call__(self, *args, **kwargs):
        if not _building:  # outside a pipeline: the plain function
            return self.func(*args, **kwargs)
        return _building[-1].add(self, self.signature.bind_partial(*args, **kwargs).arguments)

    def job(self, arguments):
        """The job spec running the function with ``arguments`` ({name: value or _Ref})."""
        lines = textwrap.dedent(inspect.getsource(self.func)).splitlines()
        while lines and lines[0].lstrip().startswith("@"):  # the decorator: the job needs no kubestudio
            start = lines.pop(0)
            while start.count("(") > start.count(")") and lines:  # a decorator over several lines
                start += lines.pop(0)
        source = "\n".join(lines)
        parts = []
        for name, value in arguments.items():
            if isinstance(value, _Ref):
                text = f'"{value.template}"' if value.quoted else value.template
            else:
                text = json.dumps(value)
            parts.append(f"{json.dumps(name)}: {text}")
        call = (
            "import json, os, sys\n"
            "kwargs = json.loads(sys.argv[1])\n"
            f"for name in {self.outputs!r}:\n"
            "    os.makedirs(os.path.dirname(kwargs[name]) or '.', exist_ok=True)\n"
            f"{self.func.__name__}(**kwargs)\n"
        )
        # the annotation Output is evaluated where the function is defined again: a str there
        prelude = "Output = str\n"
        job = {"command": ["python", "-c", f"{prelude}{source}\n{call}", "{" + ", ".join(parts) + "}"]}
        resources = {}
        for key, value in self.fields.items():
            if key in RESOURCE_FIELDS:
                resources[RESOURCE_FIELDS[key]] = value
            elif key not in TASK_FIELDS:
                job[key] = value
        if resources:
            job["resources"] = {**job.get("resources", {}), **resources}
        return job


def task(**fields):
    """A function as a pipeline task: ``gpus``, ``cpu``, ``memory``, any job field (``image``,
    ``packages``, ``env``, ``nodes``, ``framework``, ...) and the task's ``retries``, ``timeout``,
    ``when``, ``cache`` ("auto": reuse an earlier result when the function's source, its arguments
    and what it reads are the same) and ``inputs`` (workspace paths it reads)."""

    def wrap(func):
        return TaskFunction(func, fields)

    return wrap


class Pipeline:
    def __init__(self, func, name, params, parallelism, schedule, cache=None):
        self.func = func
        self.name = name or NAME_RE.sub("-", func.__name__.lower()).strip("-")[:12]
        self.params = dict(params or {})
        self.parallelism = parallelism
        self.schedule = schedule
        self.cache = cache
        self._tasks = None

    def add(self, task_function, arguments):
        base = NAME_RE.sub("-", task_function.func.__name__.lower().replace("_", "-")).strip("-")[:13] or "task"
        name, n = base, 2
        while name in self._tasks:
            name, n = f"{base}-{n}", n + 1
        call = TaskCall(name, task_function.outputs)
        filled = {}
        for key, value in arguments.items():
            if key in task_function.outputs:
                raise TypeError(f"{name}: {key} is an output (a path the task writes): do not pass it")
            filled[key] = value
            if isinstance(value, _Ref) and value.task:
                call.after(self._calls[value.task])
        for output in task_function.outputs:
            filled[output] = _Ref(f"{{{{outputs.{output}}}}}", True)
        entry = {"job": task_function.job(filled), "depends": call.depends}
        if task_function.outputs:
            entry["outputs"] = {o: f"runs/{{{{run}}}}/{name}/{o}" for o in task_function.outputs}
        for key in ("retries", "timeout", "when", "cache", "inputs"):
            if key in task_function.fields:
                entry[key] = task_function.fields[key]
        self._tasks[name] = entry
        self._calls[name] = call
        return call

    def compile(self):
        """The pipeline spec (a dict, as its YAML file would be), checked as the service checks it."""
        from .jobs.pipelines.spec import parse_pipeline

        self._tasks, self._calls = {}, {}
        refs = {}
        for name, default in self.params.items():
            quoted = isinstance(default, str)
            refs[name] = _Ref(f"{{{{params.{name}}}}}", quoted)
        _building.append(self)
        try:
            self.func(**refs)
        finally:
            _building.pop()
        tasks = {}
        for name, entry in self._tasks.items():  # depends as the calls said, after() included
            entry = dict(entry)
            entry["depends"] = list(self._calls[name].depends)
            if not entry["depends"]:
                del entry["depends"]
            tasks[name] = entry
        spec = {"name": self.name, "tasks": tasks}
        if self.params:
            spec["params"] = self.params
        if self.parallelism:
            spec["parallelism"] = self.parallelism
        if self.schedule:
            spec["schedule"] = self.schedule
        if self.cache:
            spec["cache"] = self.cache
        parse_pipeline(spec)
        return spec

    def to_yaml(self):
        import yaml

        return yaml.safe_dump(self.compile(), sort_keys=False, width=120)


def pipeline(name=None, params=None, parallelism=None, schedule=None, cache=None):
    """A function wiring tasks as a pipeline: it is called once, at compile, with each of
    ``params`` (name -> default) as a placeholder its tasks take; ``cache="auto"`` is every task's
    default."""

    def wrap(func):
        return Pipeline(func, name, params, parallelism, schedule, cache)

    return wrap
