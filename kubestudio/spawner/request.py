"""Turn what a user asked for (spawn form or API ``user_options``) into a checked request.

The same checks run for the form (so the user sees the problem on the form) and again at
start (so an API spawn cannot skip them). Every refusal is a :class:`SpawnRefused` whose
message names the field at fault.
"""

from dataclasses import dataclass

from .. import imageref
from .profiles import IDE_LABELS, ImageChoice, Profile
from .projects import PUBLIC_PROJECT, Project, ProjectError

OPTION_KEYS = ("profile", "project", "ide", "image", "gpus")
# a profile's image choice that runs on the hub machine's own Python (the embedded default only)
HOST_IMAGE = "host"


class SpawnRefused(ValueError):
    """A spawn that must not start; the message is shown to the user as is.

    ``status`` is the HTTP status an API caller gets: 400 for bad input, 403 for what the
    user may not do (projects, quotas), 409 for what is busy right now (free GPUs).
    """

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WorkspaceRequest:
    profile: Profile
    project: Project
    ide: str
    image: ImageChoice  # None when the profile lists no images
    gpus: int

    def as_options(self):
        options = {
            "profile": self.profile.slug,
            "project": self.project.name,
            "ide": self.ide,
            "gpus": self.gpus,
        }
        if self.image:
            options["image"] = self.image.name
        return options


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def check_quota(project, gpu_count, servers_in_use, gpus_in_use):
    """Refuse a spawn that would go over the project's per-user quotas."""
    if project.max_servers is not None and servers_in_use + 1 > project.max_servers:
        raise SpawnRefused(
            f"project: {project.name!r} allows {_plural(project.max_servers, 'running server')} "
            f"per user and you have {servers_in_use}; stop one first",
            status=403,
        )
    check_gpu_quota(project, gpu_count, gpus_in_use)


def check_gpu_quota(project, gpu_count, gpus_in_use):
    """Refuse GPUs over the project's per-user limit (servers and jobs count together)."""
    if project.max_gpus is not None and gpus_in_use + gpu_count > project.max_gpus:
        raise SpawnRefused(
            f"gpus: project {project.name!r} allows {_plural(project.max_gpus, 'GPU')} per user; "
            f"you hold {gpus_in_use} and asked for {gpu_count}",
            status=403,
        )


def _as_int(value, field):
    if isinstance(value, bool):
        raise SpawnRefused(f"{field}: must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise SpawnRefused(f"{field}: must be a whole number, not {value!r}")


def _custom_image(reference, prefix):
    """The user's own image (e.g. one they built) when it lives under their prefix."""
    if not (prefix and isinstance(reference, str) and reference.startswith(prefix)):
        return None
    if not imageref.is_valid(reference):  # the grammar admits no ".." path component
        return None
    return ImageChoice(name=reference, display_name=reference[len(prefix) :], image=reference)


def resolve_project(options, projects):
    """The project ``options`` name (``public`` when none), checked against the user's projects."""
    project_name = options.get("project") or PUBLIC_PROJECT
    project = projects.get(project_name) if isinstance(project_name, str) else None
    if project is None:
        raise SpawnRefused(f"project: you are not a member of project {project_name!r}", status=403)
    if isinstance(project, ProjectError):
        raise SpawnRefused(f"project: {project} (ask an admin to fix it)")
    return project


async def hub_project(hub, name):
    """Project ``name`` as a hub service reads it (``hub``: a HubAPI), for something made in it
    before (a job, board or serving whose owner was a member then): SpawnRefused if it is gone."""
    from .projects import hub_projects

    return resolve_project({"project": name}, await hub_projects(hub, {"groups": [name]}))


def resolve_request(
    options,
    catalog,
    projects,
    profile_unavailable=None,
    ide_unavailable=None,
    custom_image_prefix=None,
    host_image=False,
):
    """Check ``options`` against the catalog and the user's projects.

    ``projects`` is ``{name: Project or ProjectError}`` (see
    :func:`~kubestudio.spawner.projects.user_projects`); ``profile_unavailable`` and
    ``ide_unavailable`` map a profile slug or an IDE to the reason it cannot start here.
    ``custom_image_prefix`` is where the user's own images live (e.g.
    ``registry.example.org/kubestudio/alice/``); profiles with ``custom_images`` accept those.
    ``host_image``: the image choice ``host`` (the hub machine's own Python) can run here.
    """
    options = dict(options or {})
    profile_unavailable = profile_unavailable or {}
    ide_unavailable = ide_unavailable or {}
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise SpawnRefused(f"{unknown[0]}: unknown option (expected: {', '.join(OPTION_KEYS)})")

    slug = options.get("profile") or catalog.default.slug
    profile = catalog.get(slug) if isinstance(slug, str) else None
    if profile is None:
        known = ", ".join(p.slug for p in catalog.profiles)
        raise SpawnRefused(f"profile: unknown profile {slug!r} (available: {known})")

    project = resolve_project(options, projects)
    if not (profile.allows_project(project.name) and project.allows_profile(profile.slug)):
        raise SpawnRefused(f"profile: {profile.slug!r} is not available in project {project.name!r}", status=403)
    if profile.slug in profile_unavailable:
        raise SpawnRefused(
            f"profile: {profile.slug!r} cannot start here: {profile_unavailable[profile.slug]}", status=409
        )

    ide = options.get("ide") or profile.default_ide
    if ide not in profile.ides:
        offered = " or ".join(profile.ides)
        raise SpawnRefused(f"ide: profile {profile.slug!r} offers {offered}, not {ide!r}")
    if ide in ide_unavailable:
        raise SpawnRefused(f"ide: {IDE_LABELS[ide]} cannot start here: {ide_unavailable[ide]}", status=409)

    image = None
    custom_prefix = custom_image_prefix if profile.custom_images else None
    if profile.images or custom_prefix:
        image_name = options.get("image") or (profile.images[0].name if profile.images else None)
        image = profile.image_choice(image_name) if isinstance(image_name, str) else None
        image = image or _custom_image(image_name, custom_prefix)
        if image is None:
            known = ", ".join(c.name for c in profile.images) or "none"
            mine = f", or one of your images under {custom_prefix}" if custom_prefix else ""
            raise SpawnRefused(f"image: profile {profile.slug!r} has no image {image_name!r} (choices: {known}{mine})")
        if image.image == HOST_IMAGE and not host_image:
            raise SpawnRefused(
                f"image: {image.name!r} runs on the hub machine's own Python, which only the embedded "
                "default (no Kubernetes) has; choose another image",
                status=409,
            )
    elif options.get("image"):
        raise SpawnRefused(f"image: profile {profile.slug!r} offers no image choice")

    gpus = options.get("gpus")
    gpus = profile.default_gpus if gpus in (None, "") else _as_int(gpus, "gpus")
    if gpus not in profile.gpu_counts:
        offered = " or ".join(str(n) for n in profile.gpu_counts)
        raise SpawnRefused(f"gpus: profile {profile.slug!r} offers {offered} GPUs, not {gpus}")
    return WorkspaceRequest(profile=profile, project=project, ide=ide, image=image, gpus=gpus)


def options_from_formdata(formdata):
    """Spawn-form fields (``{name: [values]}``) -> ``user_options``.

    Per-profile fields are named ``<field>-<profile slug>`` so each profile card keeps its own
    choices; only the chosen profile's fields are kept.
    """

    def first(name):
        values = formdata.get(name) or [""]
        return values[0].strip() if isinstance(values[0], str) else values[0]

    options = {"profile": first("profile"), "project": first("project")}
    slug = options["profile"]
    for field in ("ide", "image", "gpus"):
        # the form names them per profile card; a link (?image=...) may name them plainly
        value = first(f"{field}-{slug}") or first(field)
        if value != "":
            options[field] = value
    return {k: v for k, v in options.items() if v != ""}
