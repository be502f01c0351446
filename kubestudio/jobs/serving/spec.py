"""The serve spec: one model served from the notebook, checked in full before anything is made.

JSON in the API, :class:`ServeSpec` in the SDK. Every error names its field (``model: ...``);
the same parsers as jobs check names, resources, env and packages.
"""

from dataclasses import asdict, dataclass, field

from ... import imageref
from ..spec import (
    Resources,
    SpecError,
    _int,
    _string,
    checked_name,
    parse_env,
    parse_packages,
    parse_resources,
)
from .formats import FORMATS

FIELDS = ("name", "project", "model", "format", "class", "image", "resources", "replicas", "env", "packages")


@dataclass
class ServeSpec:
    name: str
    model: str  # as given: relative to the workspace, or /mnt/<user>/..., /archives/<user>/...
    project: str = "public"
    format: str = "auto"
    model_class: str = None
    image: str = None
    resources: Resources = field(default_factory=Resources)
    min_replicas: int = 1
    max_replicas: int = 1
    env: dict = field(default_factory=dict)
    packages: list = field(default_factory=list)

    def to_json(self):
        data = asdict(self)
        data["class"] = data.pop("model_class")
        data["replicas"] = {"min": data.pop("min_replicas"), "max": data.pop("max_replicas")}
        return data


def parse_replicas(value, max_replicas=None):
    if value is None:
        return 1, 1
    if isinstance(value, int) and not isinstance(value, bool):
        count = _int(value, "replicas", minimum=1, maximum=max_replicas)
        return count, count
    if not isinstance(value, dict) or set(value) - {"min", "max"}:
        raise SpecError('replicas: a number, or {"min": N, "max": M}')
    low = _int(value.get("min", 1), "replicas.min", minimum=1, maximum=max_replicas)
    high = _int(value.get("max", low), "replicas.max", minimum=1, maximum=max_replicas)
    if high < low:
        raise SpecError(f"replicas.max: {high} is less than replicas.min ({low})")
    return low, high


def parse_serve_spec(body, limits=None):
    """A :class:`ServeSpec` from a JSON object, or :class:`SpecError` naming the first bad field.

    ``limits``: ``{"max_replicas"}`` of the service."""
    limits = limits or {}
    name = checked_name(body, FIELDS, "serve")
    model = _string(body.get("model"), "model", required=True).strip()
    if not model:
        raise SpecError("model: required (a model file or folder in your workspace or archives)")
    model_format = _string(body.get("format"), "format") or "auto"
    if model_format not in FORMATS:
        raise SpecError(f"format: must be one of {', '.join(FORMATS)}, not {model_format!r}")
    model_class = _string(body.get("class"), "class")
    if model_format == "custom" and not model_class:
        raise SpecError(
            "class: a custom model needs its class: MyModel (defined in MyModel.py beside the model) or module:Class"
        )
    if model_class and model_format not in ("auto", "custom"):
        raise SpecError(f"class: only for custom models, not with format {model_format!r}")
    if model_class and not all(part.isidentifier() for piece in model_class.split(":") for part in piece.split(".")):
        raise SpecError(f"class: {model_class!r} is not a class name (MyModel or module:Class)")
    image = _string(body.get("image"), "image")
    if image and not imageref.is_valid(image):
        raise SpecError(f"image: not a valid image reference: {image!r}")
    low, high = parse_replicas(body.get("replicas"), limits.get("max_replicas"))
    resources = parse_resources(body.get("resources"))
    return ServeSpec(
        name=name,
        model=model,
        project=_string(body.get("project"), "project") or "public",
        format="custom" if model_class else model_format,
        model_class=model_class,
        image=image,
        resources=resources,
        min_replicas=low,
        max_replicas=high,
        env=parse_env(body.get("env")),
        packages=parse_packages(body.get("packages")),
    )


def serve_spec_from_json(data):
    """A stored spec (what :meth:`ServeSpec.to_json` wrote) back."""
    return parse_serve_spec({key: value for key, value in data.items() if value is not None})
