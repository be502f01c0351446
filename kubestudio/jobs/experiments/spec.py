"""The experiment spec: a search over a space of parameters, each trial an ordinary job.

JSON in the API, YAML in a file, :class:`ExperimentSpec` in the SDK; checked in full before any
trial runs, every error naming its field (``space.lr.low: ...``). Light on purpose (no Optuna
here): notebooks import it, and the service turns a checked spec into an Optuna study
(:mod:`.search`).

The space takes KubeStudio's own form and NNI's search-space JSON unchanged::

    lr:     {type: loguniform, low: 1e-4, high: 1e-1}
    bs:     {type: choice, values: [16, 32, 64]}
    layers: {type: int, low: 1, high: 4, step: 1}
    drop:   {_type: quniform, _value: [0.1, 0.5, 0.1]}      # NNI
"""

import json
import math
import re
from dataclasses import dataclass

import yaml

from ..spec import FIELDS as JOB_FIELDS
from ..spec import NAME_MAX as JOB_NAME_MAX
from ..spec import (
    SpecError,
    _int,
    _string,
    checked_name,
    duration,
    parse_spec,
    relative_path,
)

FIELDS = (
    "name",
    "objective",
    "space",
    "algorithm",
    "seed",
    "early_stopping",
    "max_trials",
    "parallel_trials",
    "max_failed_trials",
    "max_runtime",
    "trial",
    "backend",
)
# who runs the search: the service itself, Katib (its Experiment on the cluster), or Katib where
# the cluster serves it and the spec fits it
BACKENDS = ("kubestudio", "katib", "auto")
ALGORITHMS = ("tpe", "random", "grid", "cmaes", "qmc")
EARLY_STOPPING = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")
# KubeStudio's names and NNI's, to the kind of values each draws
DISTRIBUTIONS = {
    "uniform": "float",
    "loguniform": "float",
    "quniform": "float",
    "qloguniform": "float",
    "normal": "float",
    "int": "int",
    "randint": "int",
    "choice": "choice",
}
TRIAL_SUFFIX = "-t999"  # a trial's job is <experiment>-t<number>
NAME_MAX = JOB_NAME_MAX - len(TRIAL_SUFFIX)
METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,62}$")
PLACEHOLDER_RE = re.compile(r"\$\{([^}]*)\}")
PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_CHOICES = 1000


@dataclass(frozen=True)
class Param:
    """One dimension of the space. ``kind``: float, int or choice; ``distribution``: the name it
    was given (uniform, loguniform, quniform, qloguniform, normal, int, randint, choice)."""

    name: str
    distribution: str
    low: float = None
    high: float = None
    step: float = None  # quniform/qloguniform's q, int's step
    log: bool = False
    values: tuple = ()  # choice
    mu: float = None  # normal
    sigma: float = None

    @property
    def kind(self):
        return DISTRIBUTIONS[self.distribution]

    def grid(self):
        """Every value of a discrete dimension, in order; None for a continuous one."""
        if self.kind == "choice":
            return list(self.values)
        if self.step is None and self.kind != "int":
            return None
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        if count > 10**7:
            return None
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 12) for v in values]

    def to_json(self):
        data = {"type": self.distribution}
        if self.kind == "choice":
            data["values"] = list(self.values)
        elif self.distribution == "normal":
            data.update(mu=self.mu, sigma=self.sigma)
        else:
            data.update(low=self.low, high=self.high)
            if self.step is not None:
                data["step"] = self.step
        return data


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str = "maximize"
    goal: float = None  # stop once a trial reaches it

    def reached(self, value):
        if self.goal is None or value is None:
            return False
        return value >= self.goal if self.direction == "maximize" else value <= self.goal

    def better(self, value, than):
        if than is None:
            return True
        return value > than if self.direction == "maximize" else value < than


@dataclass(frozen=True)
class ModelClass:
    """Sugar-easy's model class as a trial: ``train(dataset_path, **train_args)``,
    ``evaluate(dataset_path)`` (the score), ``save(path)``; its file is run by KubeStudio's runner
    (:mod:`kubestudio.trialshim.modelclass`) instead of as a script."""

    file: str  # a .py file of the workspace
    name: str  # the class in it
    train_dataset: str
    validate_dataset: str
    fixed: dict  # the trainparams with one value: passed to train() as they are
    searched: tuple  # the trainparams with a list of values: parameters of the space

    def save_folder(self, experiment, number):
        """Where trial ``number`` saves its model (relative to the workspace): the class file is
        copied beside what ``save`` writes, so the folder can be served as it is."""
        return f"experiments/{experiment}/trial-{number}"

    @property
    def serving_class(self):
        """The class as a serving names it (the module copied into the saved folder)."""
        return f"{self.file.rsplit('/', 1)[-1][: -len('.py')]}:{self.name}"


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    objective: Objective
    space: tuple  # of Param, in the order given
    trial: dict  # the job spec of every trial, ${param} placeholders unfilled, no name
    algorithm: str = "tpe"
    seed: int = None
    early_stopping: str = "none"
    max_trials: int = 10
    parallel_trials: int = 1
    max_failed_trials: int = None  # None: only max_trials ends it
    max_runtime: int = None  # seconds, the whole experiment
    model: ModelClass = None  # the trial is a model class (trial.model_class), not a script
    backend: str = "kubestudio"

    @property
    def params(self):
        return {p.name: p for p in self.space}

    def placeholders(self):
        """Whether the trial's command, args or env name a ``${param}``."""
        return bool(PLACEHOLDER_RE.search(json.dumps([self.trial.get(k) for k in ("command", "args", "env")])))

    def trial_job(self, number, values):
        """The job spec (JSON) of trial ``number`` with ``values``: each ``${name}`` filled in; when
        the trial names none, each parameter is appended as ``--name=value`` (NNI's convention). The
        values also reach the trial as KUBESTUDIO_TRIAL_PARAMS, which the service sets. A model
        class runs its file (the runner calls train, evaluate and save with the values)."""
        if self.model is not None:
            job = {k: v for k, v in self.trial.items() if k not in MODEL_FIELDS}
            job["script"] = self.model.file
        else:
            job = fill(self.trial, values)
        if self.model is None and not self.placeholders():
            extra = [f"--{name}={format_value(value)}" for name, value in values.items()]
            key = "command" if job.get("command") else "args"
            words = job.get(key) or []
            job[key] = (words.split() if isinstance(words, str) else list(words)) + extra
        job["name"] = f"{self.name}-t{number}"
        return job

    def to_json(self):
        data = {
            "name": self.name,
            "objective": {
                "metric": self.objective.metric,
                "direction": self.objective.direction,
                **({"goal": self.objective.goal} if self.objective.goal is not None else {}),
            },
            "space": {p.name: p.to_json() for p in self.space if not (self.model and p.name in self.model.searched)},
            "algorithm": self.algorithm,
            "early_stopping": self.early_stopping,
            "max_trials": self.max_trials,
            "parallel_trials": self.parallel_trials,
            "trial": self.trial,
        }
        for key in ("seed", "max_failed_trials", "max_runtime"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.backend != "kubestudio":
            data["backend"] = self.backend
        return data


def format_value(value):
    """A parameter's value as it goes into an argument or ``${name}``: numbers as Python writes
    them (0.01, 1e-05, 32), strings as they are."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value) if not isinstance(value, (dict, list)) else json.dumps(value)


def fill(value, values, where="trial"):
    """``value`` (strings, lists and mappings of them) with each ``${name}`` replaced."""
    if isinstance(value, str):
        return PLACEHOLDER_RE.sub(lambda m: format_value(values[m.group(1)]), value)
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    return value


# ------------------------------------------------------------------ checking a request


def _number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}: must be a number, not {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{where}: must be a finite number, not {value!r}")
    return value


def parse_param(name, value):
    """One dimension, in KubeStudio's form or NNI's ``{_type, _value}``."""
    where = f"space.{name}"
    if not PARAM_RE.match(name):
        raise SpecError(f"{where}: a parameter name is letters, digits and '_', not starting with a digit")
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be a mapping like {{type: uniform, low: 0, high: 1}}")
    if "_type" in value:  # NNI's search-space JSON, unchanged
        unknown = sorted(set(value) - {"_type", "_value"})
        if unknown:
            raise SpecError(f"{where}.{unknown[0]}: unknown field (NNI's form has _type and _value)")
        distribution = value["_type"]
        args = value.get("_value")
        if distribution not in DISTRIBUTIONS or distribution == "int":
            raise SpecError(
                f"{where}._type: unknown distribution {distribution!r} (NNI's: choice, randint, uniform, "
                "quniform, loguniform, qloguniform, normal)"
            )
        if not isinstance(args, list):
            raise SpecError(f"{where}._value: must be a list")
        if distribution == "choice":
            value = {"type": "choice", "values": args}
        elif distribution == "normal":
            if len(args) != 2:
                raise SpecError(f"{where}._value: normal takes [mu, sigma]")
            value = {"type": "normal", "mu": args[0], "sigma": args[1]}
        elif distribution in ("quniform", "qloguniform"):
            if len(args) != 3:
                raise SpecError(f"{where}._value: {distribution} takes [low, high, q]")
            value = {"type": distribution, "low": args[0], "high": args[1], "step": args[2]}
        else:
            if len(args) != 2:
                raise SpecError(f"{where}._value: {distribution} takes [low, high]")
            # NNI's randint draws from [low, high): ours includes high, so one less
            high = args[1] - 1 if distribution == "randint" and isinstance(args[1], int) else args[1]
            value = {"type": distribution, "low": args[0], "high": high}
        values_field = f"{where}._value"
    else:
        values_field = f"{where}.values"
    unknown = sorted(set(value) - {"type", "low", "high", "step", "values", "mu", "sigma"})
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: unknown field (expected type and low/high/step, values, or mu/sigma)")
    distribution = value.get("type")
    if distribution not in DISTRIBUTIONS:
        raise SpecError(f"{where}.type: unknown distribution {distribution!r} (one of: {', '.join(DISTRIBUTIONS)})")
    if distribution == "choice":
        values = value.get("values")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{values_field}: a choice needs at least one value")
        if len(values) > MAX_CHOICES:
            raise SpecError(f"{values_field}: at most {MAX_CHOICES} values")
        for i, item in enumerate(values):
            if not (item is None or isinstance(item, (str, int, float, bool))) or (
                isinstance(item, float) and not math.isfinite(item)
            ):
                raise SpecError(f"{values_field}[{i}]: must be a string, a number, true/false or null")
        if len({json.dumps(v) for v in values}) != len(values):
            raise SpecError(f"{values_field}: each value once")
        return Param(name=name, distribution="choice", values=tuple(values))
    if distribution == "normal":
        mu = _number(value.get("mu"), f"{where}.mu")
        sigma = _number(value.get("sigma"), f"{where}.sigma")
        if sigma <= 0:
            raise SpecError(f"{where}.sigma: must be more than 0, not {sigma}")
        return Param(name=name, distribution="normal", mu=float(mu), sigma=float(sigma))
    low = _number(value.get("low"), f"{where}.low")
    high = _number(value.get("high"), f"{where}.high")
    if low >= high:
        raise SpecError(f"{where}.low: must be less than high ({low!r} >= {high!r})")
    log = distribution in ("loguniform", "qloguniform")
    if log and low <= 0:
        raise SpecError(f"{where}.low: a {distribution} range must be above 0, not {low!r}")
    step = value.get("step")
    if step is not None:
        step = _number(step, f"{where}.step")
        if step <= 0:
            raise SpecError(f"{where}.step: must be more than 0, not {step!r}")
        if step > high - low:
            raise SpecError(f"{where}.step: {step!r} is more than the range ({low!r} to {high!r})")
    elif distribution in ("quniform", "qloguniform"):
        raise SpecError(f"{where}.step: {distribution} needs a step (NNI's q)")
    if DISTRIBUTIONS[distribution] == "int":
        for key, number in (("low", low), ("high", high), ("step", step)):
            if number is not None and not float(number).is_integer():
                raise SpecError(f"{where}.{key}: an int range takes whole numbers, not {number!r}")
        return Param(name=name, distribution=distribution, low=int(low), high=int(high), step=int(step) if step else 1)
    if step is not None and distribution in ("uniform", "loguniform"):
        raise SpecError(f"{where}.step: only quniform, qloguniform and int take a step")
    return Param(name=name, distribution=distribution, low=float(low), high=float(high), step=step, log=log)


def space_mapping(value):
    """The space as given: a mapping, or YAML (or JSON) text as a form's text box sends it."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise SpecError(f"space: not YAML: {str(e).splitlines()[0]}") from None


def parse_space(value):
    value = space_mapping(value)
    if not isinstance(value, dict) or not value:
        raise SpecError("space: a mapping of parameter name to its distribution, with at least one parameter")
    return tuple(parse_param(name, item) for name, item in value.items())


def parse_objective(value):
    if isinstance(value, str):
        value = {"metric": value}
    if not isinstance(value, dict):
        raise SpecError("objective: a mapping with metric, direction (maximize or minimize) and an optional goal")
    unknown = sorted(set(value) - {"metric", "direction", "goal"})
    if unknown:
        raise SpecError(f"objective.{unknown[0]}: unknown field (expected metric, direction, goal)")
    metric = _string(value.get("metric"), "objective.metric", required=True)
    if not METRIC_RE.match(metric):
        raise SpecError(f"objective.metric: letters, digits, '_', '.', '-' and '/', not {metric!r}")
    direction = value.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise SpecError(f"objective.direction: maximize or minimize, not {direction!r}")
    goal = value.get("goal")
    if goal is not None:
        goal = float(_number(goal, "objective.goal"))
    return Objective(metric=metric, direction=direction, goal=goal)


MODEL_FIELDS = ("model_class", "train_dataset", "validate_dataset", "trainparams")


def parse_model_class(trial, space):
    """A model-class trial: (its job part, the ModelClass, the space with trainparams' lists)."""
    if any(trial.get(k) for k in ("script", "command", "args")):
        key = next(k for k in ("script", "command", "args") if trial.get(k))
        raise SpecError(f"trial.{key}: a model_class trial runs the class; leave {key} out")
    value = _string(trial.get("model_class"), "trial.model_class", required=True)
    file, _, name = value.rpartition(":")
    if not file.endswith(".py") or not PARAM_RE.match(name or ""):
        raise SpecError(
            f"trial.model_class: a Python file of your workspace and its class, like models/mymodel.py:MyModel, "
            f"not {value!r}"
        )
    file = relative_path(file, "trial.model_class")
    train = relative_path(trial.get("train_dataset"), "trial.train_dataset")
    if not train:
        raise SpecError("trial.train_dataset: required with model_class (a file or folder of your workspace)")
    validate = relative_path(trial.get("validate_dataset"), "trial.validate_dataset") or train
    params = trial.get("trainparams") or {}
    if not isinstance(params, dict):
        raise SpecError("trial.trainparams: a mapping of train()'s arguments (a list of values: searched)")
    space = dict(space or {})
    fixed, searched = {}, []
    for key, item in params.items():
        if not PARAM_RE.match(key):
            raise SpecError(f"trial.trainparams.{key}: not a Python argument name")
        if isinstance(item, list):
            if key in space:
                raise SpecError(f"trial.trainparams.{key}: also in space; give it in one of them")
            space[key] = {"type": "choice", "values": item}
            searched.append(key)
        else:
            fixed[key] = item
    model = ModelClass(
        file=file, name=name, train_dataset=train, validate_dataset=validate, fixed=fixed, searched=tuple(searched)
    )
    return {k: v for k, v in trial.items() if k not in MODEL_FIELDS}, model, space


def check_trial(trial, space, limits):
    """The trial's job spec: a job spec without a name, whose ``${...}`` each name a parameter;
    checked as a job is, with the first value of each parameter filled in."""
    if not isinstance(trial, dict):
        raise SpecError("trial: the job spec of every trial (script or command, nodes, resources, ...)")
    if "name" in trial:
        raise SpecError("trial.name: trials are named after the experiment (<name>-t<number>); leave it out")
    unknown = sorted(set(trial) - set(JOB_FIELDS))
    if unknown:
        raise SpecError(f"trial.{unknown[0]}: unknown field (a job spec's: {', '.join(JOB_FIELDS[1:])})")
    names = {p.name for p in space}
    for key in ("command", "args", "env", "working_dir", "script"):
        for found in PLACEHOLDER_RE.findall(json.dumps(trial.get(key))):
            if found not in names:
                raise SpecError(
                    f"trial.{key}: ${{{found}}} is not a parameter of the space ({', '.join(sorted(names))})"
                )
    sample = {p.name: example_value(p) for p in space}
    try:
        parse_spec({**fill(trial, sample), "name": "trial"}, limits)
    except SpecError as e:
        raise SpecError(f"trial.{e}", e.status) from None


def example_value(param):
    if param.kind == "choice":
        return param.values[0]
    if param.distribution == "normal":
        return param.mu
    return param.low


def grid_size(space):
    """Points of the space's grid; None when a dimension is continuous."""
    size = 1
    for param in space:
        values = param.grid()
        if values is None:
            return None
        size *= len(values)
    return size


def parse_experiment(body, limits=None):
    """An :class:`ExperimentSpec` from a JSON object, or :class:`SpecError` naming the first bad
    field. ``limits``: the jobs service's job limits, plus ``max_trials`` and ``max_parallel_trials``."""
    limits = limits or {}
    name = checked_name(body, FIELDS, "experiment")
    if len(name) > NAME_MAX:
        raise SpecError(f"name: at most {NAME_MAX} characters (room for the trials' -t<number>), not {name!r}")
    objective = parse_objective(body.get("objective"))
    trial, model, space_body = body.get("trial"), None, space_mapping(body.get("space"))
    if isinstance(trial, dict) and "model_class" in trial:
        trial, model, space_body = parse_model_class(trial, space_body)
    space = parse_space(space_body)
    algorithm = _string(body.get("algorithm"), "algorithm") or "tpe"
    if algorithm not in ALGORITHMS:
        raise SpecError(f"algorithm: one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    seed = body.get("seed")
    if seed is not None:
        seed = _int(seed, "seed", maximum=2**32 - 1)
    stopping = body.get("early_stopping", "none")
    if stopping in (None, False):
        stopping = "none"
    if stopping not in EARLY_STOPPING:
        raise SpecError(f"early_stopping: one of {', '.join(EARLY_STOPPING)}, not {stopping!r}")
    max_trials = _int(body.get("max_trials", 10), "max_trials", minimum=1, maximum=limits.get("max_trials", 1000))
    parallel = _int(
        body.get("parallel_trials", 1), "parallel_trials", minimum=1, maximum=limits.get("max_parallel_trials", 16)
    )
    if parallel > max_trials:
        raise SpecError(f"parallel_trials: {parallel} is more than max_trials ({max_trials})")
    failed = body.get("max_failed_trials")
    if failed is not None:
        failed = _int(failed, "max_failed_trials", minimum=1)
    if algorithm in ("grid", "cmaes"):
        kinds = {p.kind for p in space}
        if algorithm == "cmaes" and kinds == {"choice"}:
            raise SpecError("algorithm: cmaes searches numbers; every parameter here is a choice (use tpe or grid)")
        if algorithm == "grid":
            size = grid_size(space)
            if size is None:
                continuous = next(p.name for p in space if p.grid() is None)
                raise SpecError(
                    f"space.{continuous}: the grid algorithm needs a step or a choice for every parameter; "
                    f"{continuous} is continuous"
                )
            if size > max_trials * 1000:
                raise SpecError(
                    f"space: the grid has {size} points, more than 1000 times max_trials ({max_trials}); "
                    "give fewer values or use tpe or random"
                )
    check_trial({**trial, "script": model.file} if model else trial, space, limits)
    backend = _string(body.get("backend"), "backend") or "kubestudio"
    if backend not in BACKENDS:
        raise SpecError(f"backend: one of {', '.join(BACKENDS)}, not {backend!r}")
    return ExperimentSpec(
        name=name,
        objective=objective,
        space=space,
        trial=dict(body["trial"]),
        algorithm=algorithm,
        seed=seed,
        early_stopping=stopping,
        max_trials=max_trials,
        parallel_trials=parallel,
        max_failed_trials=failed,
        max_runtime=duration(body.get("max_runtime"), "max_runtime"),
        model=model,
        backend=backend,
    )


def experiment_from_json(data):
    """A stored spec (what :meth:`ExperimentSpec.to_json` wrote) back as an ExperimentSpec."""
    return parse_experiment(data)
