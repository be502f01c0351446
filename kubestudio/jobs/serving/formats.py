"""Which model a folder holds, told from its files alone: what the jobs service checks before it
starts a runtime, and what the runtime loads. Light on purpose: no model library is imported here
(the runtime, :mod:`kubestudio.jobs.serving.runtime`, does that in its own process)."""

import os

SKLEARN_FILES = ("model.joblib", "model.pkl", "model.pickle")
PYTORCH_FILES = ("model.pt", "model.pth")
FORMATS = ("auto", "sklearn", "pytorch", "custom")
LOAD_FAILED = 3


class ModelError(Exception):
    """The model cannot be loaded; the message says why, for people."""


def detect_format(path, model_class=None):
    """``sklearn``, ``pytorch`` or ``custom`` from the files at ``path``."""
    if model_class:
        return "custom"
    if os.path.isfile(path):
        name = os.path.basename(path)
        if name.endswith((".joblib", ".pkl", ".pickle")):
            return "sklearn"
        if name.endswith((".pt", ".pth")):
            return "pytorch"
        raise ModelError(f"model: {name!r} is not a model file (expected .joblib, .pkl, .pt or .pth)")
    if not os.path.isdir(path):
        raise ModelError(f"model: {path!r} does not exist")
    names = set(os.listdir(path))
    if names & set(SKLEARN_FILES):
        return "sklearn"
    if names & set(PYTORCH_FILES):
        return "pytorch"
    if any(n.endswith(".py") for n in names):
        raise ModelError("model: the folder has Python files but no model file; name the class to serve (`class`)")
    raise ModelError(
        f"model: no model in {path!r} (expected one of {', '.join(SKLEARN_FILES + PYTORCH_FILES)}, or a model class)"
    )
