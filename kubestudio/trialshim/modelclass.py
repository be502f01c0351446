"""Sugar-easy's model class run as a trial: the class's file is loaded (as a script's folder is:
its neighbours importable), then ``train(train_dataset, **params)``, ``evaluate(validate_dataset)``
(the score: a number, or a dict holding the objective's metric) and ``save(folder)``; the class's
file is copied into that folder, so it can be served as it is (``serve(experiment=..., trial="best")``).
The score is reported as the experiment's metric; every other number of a dict score too.

Run by a trial's bootstrap (KUBESTUDIO_TRIAL_MODEL_CLASS set), never by hand.
"""

import importlib.util
import inspect
import json
import os
import shutil
import sys

from kubestudio import trial


def _where(path):
    """A dataset or folder named relative to the workspace, as the trial sees it."""
    if os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("KUBESTUDIO_WORKSPACE") or os.getcwd(), path)


def run_file(file):
    name = os.environ["KUBESTUDIO_TRIAL_MODEL_CLASS"]
    module_name = os.path.splitext(os.path.basename(file))[0]
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    cls = getattr(module, name, None)
    if not inspect.isclass(cls):
        sys.exit(f"model_class: {os.path.basename(file)} defines no class {name!r}")
    missing = [m for m in ("train", "evaluate", "save") if not callable(getattr(cls, m, None))]
    if missing:
        sys.exit(f"model_class: {name} has no {', '.join(missing)}() (Sugar-easy's train, evaluate, save)")
    params = trial.params()
    model = cls()
    print(f"train({os.environ['KUBESTUDIO_TRIAL_TRAIN_DATASET']!r}, **{json.dumps(params)})", flush=True)
    model.train(_where(os.environ["KUBESTUDIO_TRIAL_TRAIN_DATASET"]), **params)
    score = model.evaluate(_where(os.environ["KUBESTUDIO_TRIAL_VALIDATE_DATASET"]))
    metric = trial.objective() or "score"
    metrics = dict(score) if isinstance(score, dict) else {metric: score}
    if metric not in metrics:
        sys.exit(f"model_class: {name}.evaluate() returned {sorted(metrics)}, without {metric!r}")
    folder = _where(os.environ["KUBESTUDIO_TRIAL_SAVE"])
    os.makedirs(folder, exist_ok=True)
    model.save(folder)
    shutil.copy2(file, os.path.join(folder, os.path.basename(file)))
    print(
        f"saved to {os.environ['KUBESTUDIO_TRIAL_SAVE']}; " + " ".join(f"{k}={v}" for k, v in metrics.items()),
        flush=True,
    )
    trial.report(**{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
