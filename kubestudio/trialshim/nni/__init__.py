"""NNI's trial API, as KubeStudio's experiments provide it to a trial (not NNI itself):
``get_next_parameter``, ``report_intermediate_result``, ``report_final_result``,
``get_trial_id``, ``get_experiment_id``, ``get_sequence_id``.

A metric is a number, or a dict whose ``"default"`` is the number (NNI's convention); the
number is reported as the experiment's objective metric.
"""

import os

from kubestudio import trial as _trial

_step = 0


def get_next_parameter():
    return _trial.params()


def _value(metric):
    if isinstance(metric, dict):
        if "default" not in metric:
            raise ValueError("a dict metric needs a 'default' value (NNI's convention)")
        extra = {k: v for k, v in metric.items() if k != "default" and isinstance(v, (int, float))}
        return metric["default"], extra
    return metric, {}


def report_intermediate_result(metric):
    global _step
    value, extra = _value(metric)
    _trial.report(_step, **{_trial.objective() or "default": value}, **extra)
    _step += 1


def report_final_result(metric):
    value, extra = _value(metric)
    _trial.report(**{_trial.objective() or "default": value}, **extra)


def get_trial_id():
    return os.environ.get("KUBESTUDIO_TRIAL_NUMBER", "STANDALONE")


def get_experiment_id():
    return os.environ.get("KUBESTUDIO_EXPERIMENT", "STANDALONE")


def get_sequence_id():
    number = _trial.number()
    return number if number is not None else 0
