"""The model runtime: one model served over KServe's V1 and V2 (Open Inference) protocols.

    python -m kubestudio.jobs.serve --model /mnt/alice/models/iris --name iris --port 8080

It is KServe's own Python model server (``kserve.ModelServer``, ``kserve.Model``), so the paths
and answers are KServe's: ``GET /v1/models/<name>``, ``POST /v1/models/<name>:predict``
(``{"instances": [...]}`` -> ``{"predictions": [...]}``), ``GET /v2/health/ready``,
``POST /v2/models/<name>/infer``. What this module adds is loading the user's model without
changes to their code:

- ``sklearn``: ``model.joblib`` / ``model.pkl`` (or that file named directly), loaded with joblib;
- ``pytorch``: ``model.pt`` / ``model.pth``, a TorchScript file or a whole pickled module;
- ``custom``: a class in a ``.py`` file of the model folder, named by ``--class`` (``MyModel``:
  the file ``MyModel.py``, Seldon's convention; or ``module:Class``). Seldon's shape
  (``predict(self, X, features_names)``, optional ``load()``) and Sugar-easy's (``load(path)``,
  ``predict(query)``, ``destroy()``; ``train``/``evaluate`` not used) both work.

A ``requirements.txt`` beside the model is installed first (into a folder of its own, never the
environment's site-packages). An error in the user's ``predict`` answers 400 (bad input:
``ValueError``, ``TypeError``, ``KeyError``, ``IndexError``) or 500 with the exception's last
line as ``{"error": ...}``, and the server keeps serving. An error while loading ends the process
with that line on stderr (exit code 3), for the record.
"""

import argparse
import hashlib
import hmac
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import warnings

from ...names import RUNTIME_SECRET_ENV, RUNTIME_SECRET_HEADER
from .formats import FORMATS, LOAD_FAILED, PYTORCH_FILES, SKLEARN_FILES, ModelError, detect_format

BAD_INPUT = (ValueError, TypeError, KeyError, IndexError)
# on a shared machine the runtime answers only callers that send its secret (the hub's proxy)
SECRET_HEADER_BYTES = RUNTIME_SECRET_HEADER.lower().encode()


def _model_file(path, candidates):
    if os.path.isfile(path):
        return path
    for name in candidates:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise ModelError(f"model: none of {', '.join(candidates)} in {path!r}")


def _to_list(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return value.tolist() if hasattr(value, "tolist") else value


class Adapter:
    """The user's model behind one ``predict(inputs, names)`` (inputs: a numpy array)."""

    def __init__(self, path):
        self.path = path

    def load(self):
        raise NotImplementedError

    def predict(self, inputs, names):
        raise NotImplementedError

    def signature(self):
        """(inputs, outputs) of the V2 model metadata, as far as the model says: [] for unknown."""
        return [], []

    def destroy(self):
        pass


class SklearnAdapter(Adapter):
    def load(self):
        import joblib

        self.model = joblib.load(_model_file(self.path, SKLEARN_FILES))
        if not hasattr(self.model, "predict"):
            raise ModelError(f"model: the object in {self.path!r} ({type(self.model).__name__}) has no predict()")

    def predict(self, inputs, names):
        return self.model.predict(inputs)

    def signature(self):
        import numpy as np

        features = getattr(self.model, "n_features_in_", None)
        inputs = [{"name": "input-0", "datatype": "FP64", "shape": [-1, int(features)]}] if features else []
        classes = getattr(self.model, "classes_", None)
        if classes is not None:  # a classifier answers one of its labels per row
            outputs = [{"name": "output-0", "datatype": _datatype(np.asarray(classes)), "shape": [-1]}]
        else:
            targets = int(getattr(self.model, "n_outputs_", 1) or 1)
            outputs = [{"name": "output-0", "datatype": "FP64", "shape": [-1] if targets == 1 else [-1, targets]}]
        return inputs, outputs


class TorchAdapter(Adapter):
    def load(self):
        import torch

        path = _model_file(self.path, PYTORCH_FILES)
        try:
            self.model = torch.jit.load(path, map_location="cpu")
        except RuntimeError:  # not TorchScript: a whole module saved with torch.save
            self.model = torch.load(path, map_location="cpu", weights_only=False)
        if not callable(self.model):
            raise ModelError(
                f"model: {os.path.basename(path)} holds a {type(self.model).__name__}, not a model "
                "(a state dict needs its class: serve it as `custom` with a class that loads it)"
            )
        self.model.eval()

    def predict(self, inputs, names):
        import torch

        with torch.no_grad():
            return self.model(torch.as_tensor(inputs, dtype=torch.float32))


class ClassAdapter(Adapter):
    """A user's class: Seldon's ``predict(X, features_names)`` or Sugar-easy's ``predict(query)``."""

    def __init__(self, path, model_class):
        super().__init__(path)
        self.model_class = model_class

    def load(self):
        folder = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        module_name, _, class_name = self.model_class.rpartition(":")
        module_name = module_name or class_name  # Seldon: the class MyModel lives in MyModel.py
        file = os.path.join(folder, module_name.replace(".", os.sep) + ".py")
        if not os.path.isfile(file):
            raise ModelError(f"class: no file {os.path.basename(file)!r} in {folder!r} for the class {class_name!r}")
        sys.path.insert(0, folder)  # the class may import its neighbours
        spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        cls = getattr(module, class_name, None)
        if not inspect.isclass(cls):
            raise ModelError(f"class: {os.path.basename(file)} defines no class {class_name!r}")
        if not callable(getattr(cls, "predict", None)):
            raise ModelError(f"class: {class_name} has no predict() method")
        self.model = cls()
        load = getattr(self.model, "load", None)
        if callable(load):
            # Sugar-easy's load(path) takes the model folder; Seldon's load() nothing
            load(folder) if _positional_count(load) >= 1 else load()
        self.seldon = _positional_count(self.model.predict) >= 2

    def signature(self):
        """What the class declares, KServe's way (``get_input_types()``/``get_output_types()``) or
        as lists (``input_types``/``output_types``)."""
        declared = []
        for kind in ("input", "output"):
            getter = getattr(self.model, f"get_{kind}_types", None)
            value = getter() if callable(getter) else getattr(self.model, f"{kind}_types", [])
            declared.append(value if isinstance(value, list) else [])
        return tuple(declared)

    def predict(self, inputs, names):
        if self.seldon:
            return self.model.predict(inputs, names)
        return self.model.predict(_to_list(inputs))

    def destroy(self):
        destroy = getattr(getattr(self, "model", None), "destroy", None)
        if callable(destroy):
            destroy()


def _positional_count(method):
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return 0
    return sum(1 for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def make_adapter(path, model_format="auto", model_class=None):
    if model_format not in FORMATS:
        raise ModelError(f"format: {model_format!r} is not one of {', '.join(FORMATS)}")
    if model_format == "custom" and not model_class:
        raise ModelError("class: a custom model needs the name of its class")
    fmt = detect_format(path, model_class) if model_format == "auto" else model_format
    if fmt == "sklearn":
        return SklearnAdapter(path)
    if fmt == "pytorch":
        return TorchAdapter(path)
    return ClassAdapter(path, model_class)


def install_requirements(path, packages_dir, packages=()):
    """``requirements.txt`` beside the model and the spec's ``packages``, into a folder of
    ``packages_dir`` (put first on sys.path); the same list is installed once."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    requirements = os.path.join(folder, "requirements.txt")
    has_file = os.path.isfile(requirements)
    if not has_file and not packages:
        return None
    digest = hashlib.sha256("\n".join(packages).encode())
    if has_file:
        with open(requirements, "rb") as f:
            digest.update(f.read())
    target = os.path.join(packages_dir, digest.hexdigest()[:16])
    if not os.path.isdir(target):
        what = " and ".join((["requirements.txt"] if has_file else []) + ([" ".join(packages)] if packages else []))
        print(f"installing {what} into {target}", file=sys.stderr, flush=True)
        partial = target + ".partial"
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--target",
            partial,
        ]
        argv += (["-r", requirements] if has_file else []) + list(packages)
        # paths in requirements.txt are the model folder's (./my-package)
        result = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, cwd=folder)
        if result.returncode != 0:
            raise ModelError(f"packages: pip install of {what} failed (exit code {result.returncode})")
        os.replace(partial, target)
    sys.path.insert(0, target)
    return target


def served_model(name, adapter):
    """The adapter as a ``kserve.Model``."""
    import numpy as np
    from kserve import InferOutput, InferRequest, InferResponse, Model
    from kserve.errors import InferenceError, InvalidInput

    class ServedModel(Model):
        def load(self):
            adapter.load()
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None):
            v2 = isinstance(payload, InferRequest)
            if v2:
                if not payload.inputs:
                    raise InvalidInput("inputs: give at least one input tensor")
                names = [i.name for i in payload.inputs]
                inputs = payload.inputs[0].as_numpy()
            else:
                if not isinstance(payload, dict) or not isinstance(
                    payload.get("instances", payload.get("inputs")), list
                ):
                    raise InvalidInput('instances: send {"instances": [...]} (a list of rows)')
                names = payload.get("features_names") or []
                inputs = np.asarray(payload.get("instances", payload.get("inputs")))
            try:
                result = adapter.predict(inputs, names)
            except BAD_INPUT as e:
                raise InvalidInput(f"{type(e).__name__}: {e}") from None
            except Exception as e:
                raise InferenceError(f"{type(e).__name__}: {e}") from None
            if not v2:
                return {"predictions": _to_list(result)}
            array = np.asarray(_to_list(result))
            output = InferOutput(name="output-0", shape=list(array.shape), datatype=_datatype(array))
            output.set_data_from_numpy(array, binary_data=False)
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])

        def get_input_types(self):
            return adapter.signature()[0]

        def get_output_types(self):
            return adapter.signature()[1]

        def stop(self):
            adapter.destroy()

    return ServedModel(name)


def _datatype(array):
    from kserve.utils.utils import from_np_dtype

    return from_np_dtype(array.dtype) or "BYTES"


# a body sent as one of these (curl -d's default, or none at all) is JSON all the same, as KServe's
# and the Open Inference Protocol's own clients send it; binary tensors and CloudEvents say so
JSON_BY_DEFAULT = {b"", b"application/x-www-form-urlencoded", b"text/plain"}
BINARY_HEADERS = (b"inference-header-content-length", b"ce-specversion")


class JsonByDefault:
    """ASGI middleware: a request body that does not say it is something else is read as JSON."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT"):
            headers = scope["headers"]
            declared = next((v for k, v in headers if k == b"content-type"), b"")
            if declared.split(b";")[0].strip().lower() in JSON_BY_DEFAULT and not any(
                k in BINARY_HEADERS for k, _ in headers
            ):
                # a new header list only when it changes: the scope's own is left as the server made it
                headers = [(k, v) for k, v in headers if k != b"content-type"] + [
                    (b"content-type", b"application/json")
                ]
                scope = dict(scope, headers=headers)
        await self.app(scope, receive, send)


class CallerCheck:
    """ASGI middleware: only a caller that sends the runtime's secret (the jobs service's proxy,
    which checked the caller with the hub) is answered; anyone else on the machine gets 403."""

    def __init__(self, app, secret):
        self.app, self.secret = app, secret.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = next((v for k, v in scope["headers"] if k == SECRET_HEADER_BYTES), b"")
            if not hmac.compare_digest(given, self.secret):
                body = json.dumps(
                    {
                        "status": 403,
                        "message": "this model is served through the hub: call it at "
                        "<hub>/services/jobs/serve/<user>/<name>/",
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _listen_on(host, secret=None):
    """KServe's REST server always listens on 0.0.0.0 (right in a pod); on a shared machine the
    runtime must listen on loopback only, behind the hub's login, and (with ``secret``) answer the
    hub's proxy alone. Its uvicorn config is set here before the server binds."""
    import kserve.model_server
    from kserve.protocol.rest.server import RESTServer

    class HostRESTServer(RESTServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.config.host = host

        def _add_middlewares(self, app):
            super()._add_middlewares(app)
            app.add_middleware(JsonByDefault)
            if secret:
                app.add_middleware(CallerCheck, secret=secret)

    kserve.model_server.RESTServer = HostRESTServer


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kubestudio.jobs.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the model file or folder")
    parser.add_argument("--name", required=True, help="the model's name in the URLs")
    parser.add_argument("--format", default="auto", choices=FORMATS)
    parser.add_argument(
        "--class", dest="model_class", help="a custom model's class: MyModel (in MyModel.py) or module:Class"
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (127.0.0.1 on a shared machine)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port")
    parser.add_argument("--package", action="append", default=[], help="a package to pip-install first (repeatable)")
    parser.add_argument(
        "--packages-dir",
        default=os.path.join(tempfile.gettempdir(), "kubestudio-serve-packages"),
        help="where requirements.txt is installed",
    )
    args = parser.parse_args(argv)
    # the caller's secret is the runtime's alone: neither the model's code nor pip sees it
    secret = os.environ.pop(RUNTIME_SECRET_ENV, "")
    try:
        install_requirements(args.model, args.packages_dir, args.package)
        adapter = make_adapter(args.model, args.format, args.model_class)
        model = served_model(args.name, adapter)
        model.load()
    except ModelError as e:
        print(f"cannot serve the model: {e}", file=sys.stderr)
        return LOAD_FAILED
    except Exception as e:  # the user's code: its last line is what they need
        print(f"cannot serve the model: loading it raised {type(e).__name__}: {e}", file=sys.stderr)
        return LOAD_FAILED
    from kserve import ModelServer

    # KServe's own use of FastAPI warns on each first answer: noise in the user's log
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    # kserve reads its own flags from sys.argv: give it none of ours
    sys.argv = sys.argv[:1]
    _listen_on(args.host, secret)
    ModelServer(http_port=args.port, enable_grpc=False, workers=1, enable_latency_logging=False).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
