"""The search behind an experiment: an Optuna study asked for each trial's parameters, told each
trial's result, and asked whether a trial's intermediate values call for stopping it early.

The study lives in memory and is made again from the service's SQL store at each start (every
trial's raw parameters, intermediate values and result are recorded there): the service's store
is the study's store, on the embedded default and on Kubernetes alike, and a restart loses
nothing. Trials still running when the service stopped are asked again with their own parameters
(``enqueue_trial``) and their intermediate values replayed, so the pruner sees them as before.
"""

import itertools
import math
import random
from statistics import NormalDist

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)

# a normal dimension is searched as its quantile, kept off 0 and 1 (where the inverse is infinite)
QUANTILE_EDGE = 1e-6


def distribution(param):
    """The Optuna distribution a parameter is searched in (a normal one: its quantile)."""
    if param.kind == "choice":
        return CategoricalDistribution(list(param.values))
    if param.kind == "int":
        return IntDistribution(param.low, param.high, step=param.step or 1)
    if param.distribution == "normal":
        return FloatDistribution(QUANTILE_EDGE, 1 - QUANTILE_EDGE)
    if param.distribution == "qloguniform":  # Optuna has no log scale with a step: rounded after
        return FloatDistribution(param.low, param.high, log=True)
    if param.distribution == "quniform":
        # Optuna wants high on the grid of step from low
        steps = math.floor((param.high - param.low) / param.step + 1e-9)
        return FloatDistribution(param.low, param.low + steps * param.step, step=param.step)
    return FloatDistribution(param.low, param.high, log=param.log)


def value_of(param, raw):
    """What the trial gets for ``raw``, the value Optuna drew."""
    if param.distribution == "normal":
        return param.mu + param.sigma * NormalDist().inv_cdf(raw)
    if param.distribution == "qloguniform":
        stepped = round(raw / param.step) * param.step
        return round(min(max(stepped, param.low), param.high), 12)
    if param.distribution == "quniform":
        return round(raw, 12)
    return raw


def make_sampler(spec):
    seed = spec.seed
    if spec.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if spec.algorithm == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if spec.algorithm == "grid":
        # the grid's points are enqueued one by one (Search.ask); a random sampler draws nothing then
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE's default of 10 random trials first is too many for a 20-trial search: a quarter, 2 to 10
    startup = max(2, min(10, spec.max_trials // 4))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def make_pruner(spec):
    if spec.early_stopping == "median":
        # Katib's median stop and Optuna's MedianPruner: a trial whose best value so far is worse
        # than the median of the others' at the same step is stopped, once a few have finished
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, spec.max_trials // 5)), n_warmup_steps=1)
    if spec.early_stopping == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


class Search:
    """The study of one experiment. ``trials``: its stored trials (:class:`StoredTrial`-like
    dicts: number, raw, state, value, intermediate), oldest first."""

    def __init__(self, spec, trials=()):
        self.spec = spec
        self.distributions = {p.name: distribution(p) for p in spec.space}
        direction = "maximize" if spec.objective.direction == "maximize" else "minimize"
        self.study = optuna.create_study(direction=direction, sampler=make_sampler(spec), pruner=make_pruner(spec))
        self.live = {}  # our trial number -> Optuna's Trial, while it runs
        self._grid = None
        for trial in trials:
            self._restore(trial)

    def _restore(self, trial):
        raw = trial["raw"]
        intermediate = {int(step): value for step, value in (trial.get("intermediate") or {}).items()}
        state = trial["state"]
        if state == "running":
            self.study.enqueue_trial(raw, skip_if_exists=False)
            live = self.study.ask(self.distributions)
            for step, value in sorted(intermediate.items()):
                live.report(value, step)
            self.live[trial["number"]] = live
            return
        optuna_state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(state, TrialState.FAIL)
        value = trial.get("value") if optuna_state == TrialState.COMPLETE else None
        if optuna_state == TrialState.COMPLETE and value is None:
            optuna_state = TrialState.FAIL
        self.study.add_trial(
            create_trial(
                state=optuna_state,
                value=value,
                params=raw,
                distributions=self.distributions,
                intermediate_values=intermediate,
            )
        )

    def grid_left(self):
        """Grid points no trial has had yet, in a seeded order (algorithm grid)."""
        if self._grid is None:
            names = [p.name for p in self.spec.space]
            points = [dict(zip(names, combo)) for combo in itertools.product(*(p.grid() for p in self.spec.space))]
            random.Random(self.spec.seed).shuffle(points)
            self._grid = points
        seen = [t.params for t in self.study.get_trials(deepcopy=False)]
        return [p for p in self._grid if p not in seen]

    def exhausted(self):
        return self.spec.algorithm == "grid" and not self.grid_left()

    def ask(self, number):
        """The next trial's (raw parameters, the values the trial gets)."""
        if self.spec.algorithm == "grid":
            left = self.grid_left()
            if not left:
                raise LookupError("every point of the grid has been tried")
            self.study.enqueue_trial(left[0], skip_if_exists=False)
        trial = self.study.ask(self.distributions)
        self.live[number] = trial
        raw = dict(trial.params)
        values = {p.name: value_of(p, raw[p.name]) for p in self.spec.space}
        return raw, values

    def report(self, number, step, value):
        """An intermediate value of the objective; whether the pruner would stop the trial now."""
        trial = self.live.get(number)
        if trial is None:
            return False
        if step in trial.storage.get_trial(trial._trial_id).intermediate_values:
            return False  # the same step again: the first value stands (as Optuna warns and ignores)
        trial.report(value, step)
        return bool(trial.should_prune())  # numpy.bool_ from some pruners: JSON wants a bool

    def tell(self, number, state, value=None):
        """A trial ended: ``complete`` (with its value), ``pruned`` or ``failed``."""
        trial = self.live.pop(number, None)
        if trial is None:
            return
        if state == "complete":
            self.study.tell(trial, value)
        elif state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
