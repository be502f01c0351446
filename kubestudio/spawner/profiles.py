"""Profile catalogs: what a user can start (size, GPUs, IDE, image).

A catalog is a YAML file with a ``profiles`` list. It stays close to KubeSpawner's
``profile_list`` (``slug``, ``display_name``, ``description``, ``default``). Example::

    profiles:
      - slug: gpu
        display_name: "GPU · A100"
        ide: [jupyterlab, vscode]
        images:
          - {name: pytorch, display_name: PyTorch, image: quay.io/jupyter/pytorch-notebook:cuda12-latest}
        cpu: {guarantee: 4, limit: 8}
        memory: {guarantee: 16G, limit: 32G}
        gpu: {count: [1, 2], type: A100}
        shm: 8G
        projects: [vision]

Every entry is validated when the catalog is loaded; all problems are reported together, each
as ``<file>: <path>: <reason>`` (e.g. ``profiles/default.yaml: profiles[2].gpu.count: must be an
integer >= 0``).
"""

import dataclasses
import os
import re
from dataclasses import dataclass, field

import yaml

from ..quantities import format_bytes, parse_bytes, parse_cpu

IDES = ("jupyterlab", "vscode")
IDE_LABELS = {"jupyterlab": "JupyterLab", "vscode": "VS Code"}
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"

_SLUG_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# extended resource names as Kubernetes accepts them: domain/name
_RESOURCE_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?/[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")

_PROFILE_KEYS = {
    "slug",
    "display_name",
    "description",
    "default",
    "ide",
    "images",
    "custom_images",
    "cpu",
    "memory",
    "gpu",
    "shm",
    "projects",
}


class CatalogError(ValueError):
    """A profile catalog that cannot be used; ``errors`` lists each problem."""

    def __init__(self, source, errors):
        self.source = source
        self.errors = list(errors)
        lines = [f"{source}: {e}" for e in self.errors]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ImageChoice:
    name: str
    display_name: str
    image: str


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    description: str = ""
    default: bool = False
    ides: tuple = ("jupyterlab",)
    images: tuple = ()
    custom_images: bool = False
    cpu_guarantee: float = None
    cpu_limit: float = None
    mem_guarantee: int = None
    mem_limit: int = None
    gpu_counts: tuple = (0,)
    gpu_type: str = None
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    shm: int = None
    projects: tuple = None  # None: every project may use it

    @property
    def max_gpus(self):
        return max(self.gpu_counts)

    @property
    def default_gpus(self):
        return self.gpu_counts[0]

    @property
    def default_ide(self):
        return self.ides[0]

    def image_choice(self, name):
        for choice in self.images:
            if choice.name == name:
                return choice
        return None

    def allows_project(self, project_name):
        return self.projects is None or project_name in self.projects

    def summary(self):
        """One line of what the profile gives, for the spawn form."""
        parts = []
        if self.cpu_limit:
            parts.append(f"{self.cpu_limit:g} CPU")
        if self.mem_limit:
            parts.append(f"{format_bytes(self.mem_limit)} RAM")
        if self.max_gpus:
            counts = "/".join(str(c) for c in self.gpu_counts)
            kind = f" {self.gpu_type}" if self.gpu_type else ""
            parts.append(f"{counts}{kind} GPU")
        parts.append(" or ".join(IDE_LABELS[i] for i in self.ides))
        return " · ".join(parts)


@dataclass
class Catalog:
    profiles: list
    source: str = "<catalog>"
    _by_slug: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_slug = {p.slug: p for p in self.profiles}

    def get(self, slug):
        return self._by_slug.get(slug)

    @property
    def default(self):
        for profile in self.profiles:
            if profile.default:
                return profile
        return self.profiles[0]


def yielded_to(catalog, image=None, sizes=None):
    """The shipped example ``catalog`` as an admin's KubeSpawner settings change it: ``image``
    replaces every profile's images, ``sizes`` (Profile field -> value) their sizes."""
    if not (image or sizes):
        return catalog
    profiles = []
    for profile in catalog.profiles:
        changes = dict(sizes or {})
        if image:
            changes["images"] = (ImageChoice(name="configured", display_name=image, image=image),)
        profiles.append(dataclasses.replace(profile, **changes))
    return type(catalog)(profiles=profiles, source=catalog.source)


class _Checker:
    """Collects validation errors with the path of the field at fault."""

    def __init__(self):
        self.errors = []

    def error(self, path, reason):
        self.errors.append(f"{path}: {reason}")

    def keys(self, path, value, allowed):
        for key in value:
            if key not in allowed:
                self.error(f"{path}.{key}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def string(self, path, value, required=False):
        if value is None:
            if required:
                self.error(path, "is required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.error(path, "must be a non-empty string" if required else "must be a string")
            return None
        return value

    def boolean(self, path, value, default=False):
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, "must be true or false")
            return default
        return value

    def quantity(self, path, value, parse):
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as e:
            self.error(path, str(e))
            return None


def _check_images(check, path, value):
    if value is None:
        return ()
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list) or not value:
        check.error(path, "must be a non-empty list of images")
        return ()
    images = []
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        if isinstance(item, str):
            item = {"image": item}
        if not isinstance(item, dict):
            check.error(item_path, "must be an image reference or a mapping with 'image'")
            continue
        check.keys(item_path, item, {"name", "display_name", "image"})
        image = check.string(f"{item_path}.image", item.get("image"), required=True)
        if image is None:
            continue
        if any(c.isspace() for c in image):
            check.error(f"{item_path}.image", f"must not contain spaces: {image!r}")
            continue
        default_name = image.rsplit("/", 1)[-1].split("@")[0]
        name = check.string(f"{item_path}.name", item.get("name")) or default_name
        if any(c.name == name for c in images):
            check.error(f"{item_path}.name", f"duplicate image name {name!r}")
            continue
        display = check.string(f"{item_path}.display_name", item.get("display_name")) or name
        images.append(ImageChoice(name=name, display_name=display, image=image))
    return tuple(images)


def _check_range(check, path, value, parse, fields=("guarantee", "limit")):
    """A ``{guarantee, limit}`` mapping, or a bare value meaning both."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        parsed = check.quantity(path, value, parse)
        return parsed, parsed
    check.keys(path, value, set(fields))
    guarantee = check.quantity(f"{path}.guarantee", value.get("guarantee"), parse)
    limit = check.quantity(f"{path}.limit", value.get("limit"), parse)
    if guarantee is not None and limit is not None and guarantee > limit:
        check.error(f"{path}.guarantee", "must not be more than the limit")
    return guarantee, limit


_CUBE_GPU = re.compile(r"^\s*(\d+)\s*(?:\(\s*([^()]+?)\s*\))?\s*$")


def _check_gpu(check, path, value):
    if value is None:
        return (0,), None, DEFAULT_GPU_RESOURCE
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"count": value}
    if isinstance(value, str):
        # cube-studio's form: "1(V100)" is one GPU of type V100
        match = _CUBE_GPU.match(value)
        if not match:
            check.error(path, f"must be a count, 'N(TYPE)' like 1(V100), or a mapping, not {value!r}")
            return (0,), None, DEFAULT_GPU_RESOURCE
        value = {"count": int(match[1]), **({"type": match[2]} if match[2] else {})}
    if not isinstance(value, dict):
        check.error(path, "must be a mapping with count, type and resource")
        return (0,), None, DEFAULT_GPU_RESOURCE
    check.keys(path, value, {"count", "type", "resource"})
    raw_count = value.get("count", 0)
    counts = raw_count if isinstance(raw_count, list) else [raw_count]
    good = []
    for i, count in enumerate(counts):
        count_path = f"{path}.count" if not isinstance(raw_count, list) else f"{path}.count[{i}]"
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            check.error(count_path, "must be an integer >= 0")
        elif count in good:
            check.error(count_path, f"duplicate count {count}")
        else:
            good.append(count)
    if isinstance(raw_count, list) and not raw_count:
        check.error(f"{path}.count", "must offer at least one count")
    gpu_type = check.string(f"{path}.type", value.get("type"))
    resource = check.string(f"{path}.resource", value.get("resource")) or DEFAULT_GPU_RESOURCE
    if not _RESOURCE_RE.match(resource):
        check.error(f"{path}.resource", f"must be an extended resource name like nvidia.com/gpu, not {resource!r}")
    return tuple(good) or (0,), gpu_type, resource


def _check_ides(check, path, value):
    if value is None:
        return ("jupyterlab",)
    ides = value if isinstance(value, list) else [value]
    good = []
    for ide in ides:
        if ide not in IDES:
            check.error(path, f"unknown IDE {ide!r} (expected one of: {', '.join(IDES)})")
        elif ide not in good:
            good.append(ide)
    if isinstance(value, list) and not value:
        check.error(path, "must name at least one IDE")
    return tuple(good) or ("jupyterlab",)


def _check_projects(check, path, value):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        check.error(path, "must be a list of project names")
        return None
    return tuple(value)


def _check_profile(check, path, raw):
    if not isinstance(raw, dict):
        check.error(path, "must be a mapping")
        return None
    before = len(check.errors)
    check.keys(path, raw, _PROFILE_KEYS)
    slug = check.string(f"{path}.slug", raw.get("slug"), required=True)
    if slug is not None and not _SLUG_RE.match(slug):
        check.error(
            f"{path}.slug",
            f"must be lowercase letters, digits and '-', at most 63 characters, not {slug!r}",
        )
    display_name = check.string(f"{path}.display_name", raw.get("display_name")) or slug
    description = check.string(f"{path}.description", raw.get("description")) or ""
    default = check.boolean(f"{path}.default", raw.get("default"))
    ides = _check_ides(check, f"{path}.ide", raw.get("ide"))
    images = _check_images(check, f"{path}.images", raw.get("images"))
    custom_images = check.boolean(f"{path}.custom_images", raw.get("custom_images"))
    cpu_guarantee, cpu_limit = _check_range(check, f"{path}.cpu", raw.get("cpu"), parse_cpu)
    mem_guarantee, mem_limit = _check_range(check, f"{path}.memory", raw.get("memory"), parse_bytes)
    gpu_counts, gpu_type, gpu_resource = _check_gpu(check, f"{path}.gpu", raw.get("gpu"))
    shm = check.quantity(f"{path}.shm", raw.get("shm"), parse_bytes)
    projects = _check_projects(check, f"{path}.projects", raw.get("projects"))
    if len(check.errors) > before:
        return None
    return Profile(
        slug=slug,
        display_name=display_name,
        description=description,
        default=default,
        ides=ides,
        images=images,
        custom_images=custom_images,
        cpu_guarantee=cpu_guarantee,
        cpu_limit=cpu_limit,
        mem_guarantee=mem_guarantee,
        mem_limit=mem_limit,
        gpu_counts=gpu_counts,
        gpu_type=gpu_type,
        gpu_resource=gpu_resource,
        shm=shm,
        projects=projects,
    )


def parse_catalog(data, source="<catalog>"):
    """Validate already-parsed YAML/JSON data and return a :class:`Catalog`.

    Raises :class:`CatalogError` listing every problem.
    """
    check = _Checker()
    if not isinstance(data, dict) or "profiles" not in data:
        raise CatalogError(source, ["the top level must be a mapping with a 'profiles' list"])
    check.keys("", data, {"profiles"})
    raw_profiles = data["profiles"]
    if not isinstance(raw_profiles, list) or not raw_profiles:
        raise CatalogError(source, ["profiles: must be a non-empty list"])
    profiles = []
    seen = {}
    for i, raw in enumerate(raw_profiles):
        path = f"profiles[{i}]"
        profile = _check_profile(check, path, raw)
        if profile is None:
            continue
        if profile.slug in seen:
            check.error(f"{path}.slug", f"duplicate slug {profile.slug!r} (also profiles[{seen[profile.slug]}])")
            continue
        seen[profile.slug] = i
        profiles.append(profile)
    defaults = [p.slug for p in profiles if p.default]
    if len(defaults) > 1:
        check.error("profiles", f"only one profile may be the default, found: {', '.join(defaults)}")
    # strip the leading '.' of top-level unknown keys
    errors = [e[1:] if e.startswith(".") else e for e in check.errors]
    if errors:
        raise CatalogError(source, errors)
    return Catalog(profiles=profiles, source=source)


def load_catalog(path):
    """Read and validate the catalog at ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise CatalogError(path, ["file not found"]) from None
    except yaml.YAMLError as e:
        raise CatalogError(path, [f"not valid YAML: {e}"]) from None
    return parse_catalog(data, source=path)


_cache = {}


def load_catalog_cached(path):
    """Like :func:`load_catalog`, re-reading the file only when it changes."""
    key = os.path.abspath(path)
    try:
        stamp = os.stat(key).st_mtime_ns
    except FileNotFoundError:
        raise CatalogError(path, ["file not found"]) from None
    cached = _cache.get(key)
    if cached and cached[0] == stamp:
        return cached[1]
    catalog = load_catalog(path)
    _cache[key] = (stamp, catalog)
    return catalog
